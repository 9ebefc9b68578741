"""Benchmark feature extraction: seconds a clip window and a program's minutes, per backbone and
device. JSON out.

    .venv/bin/python bench/features.py [--device cpu|cuda] [--backbone i3d] [--frames 400]
        [--clip-len 32 --stride 16 --frame-size 224] [--batch-clips 8] [--weights kinetics400]

Writes one lossless program of ``--frames`` frames (a moving square, 25 fps) and extracts it
with ``aqa.features.extract_video`` (decode, resize, backbone), after one warm-up window. The
numbers say how long a real dataset takes: Fis-V is 500 programs of about 4250 frames.
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="i3d")
    p.add_argument("--weights", default="", help="'' (random init: no download) or kinetics400")
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--clip-len", type=int, default=32)
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--frame-size", type=int, default=224)
    p.add_argument("--batch-clips", type=int, default=8)
    a = p.parse_args()
    import torch

    from aqa.features import Recipe, extract_video, load_backbone
    from tests.features_fixture import make_program_videos

    recipe = Recipe(backbone=a.backbone, weights=a.weights, clip_len=a.clip_len, stride=a.stride,
                    frame_size=a.frame_size)
    with tempfile.TemporaryDirectory() as d:
        path = make_program_videos(d, ["program"], num_frames=a.frames, size=(360, 640))[0]
        t = time.perf_counter()
        encoder, _ = load_backbone(recipe, a.device)
        load_s = time.perf_counter() - t
        warm = make_program_videos(d, ["warm"], num_frames=a.clip_len, size=(360, 640))[0]
        extract_video(warm, recipe, encoder=encoder, batch_clips=a.batch_clips)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        feat = extract_video(path, recipe, encoder=encoder, batch_clips=a.batch_clips)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        s = time.perf_counter() - t
    print(json.dumps({"backbone": a.backbone, "device": a.device, "frames": a.frames,
                      "clip_len": a.clip_len, "stride": a.stride, "frame_size": a.frame_size,
                      "batch_clips": a.batch_clips, "rows": int(feat.shape[0]),
                      "dim": int(feat.shape[1]), "load_s": round(load_s, 3),
                      "extract_s": round(s, 3), "s_per_window": round(s / feat.shape[0], 4),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
