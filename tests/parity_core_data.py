"""The inputs of CoRe's parity tests (tests/test_parity_core.py), in the official layouts.

``write_inputs(root)`` writes, deterministically:

- ``MTL-AQA/``: CoRe's MTL-AQA layout: ``info/`` (annotation dict and split pickles) and
  ``new/new_total_frames_256s/{event:02d}/{n:08d}.jpg``, the whole "event" as JPEG frames 455x256
  (as ffmpeg's ``scale=-1:256`` makes them); one sample per event, its window ending at
  ``end_frame``.
- ``clips/``: the same samples as a folder of clips: each window's 103 frames (the JPEGs' decoded
  pixels) in a lossless FFV1 video, with ``scores.csv`` (video, score, difficulty, split).
- ``MTL_CoRe.pth``: an official CoRe checkpoint: ``base_model`` and ``regressor`` state dicts with
  DataParallel's ``module.`` prefix, seeded well-conditioned weights, numpy-1.x scalars and
  ``cuda:0`` storages (tests/legacy_pickle.py); ``MTL_CoRe_legacy.pth`` the same in the legacy
  (pre-1.6) serialisation; ``model_rgb.pth``: the I3D part alone, hassony2's layout.

The official code read exactly these files to produce the reference numbers.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import torch

from legacy_pickle import save_as_numpy1
from parity_inputs import condition, moving_frames

# (event, idx, split, final_score, difficulty, end_frame): three DD-3.0 training dives (three
# pair differences for the bins), one DD-2.0; a test dive of each DD.
SAMPLES = [(1, 1, "train", 60.0, 3.0, 106), (2, 1, "train", 75.6, 3.0, 108),
           (3, 1, "train", 52.5, 3.0, 105), (4, 1, "train", 40.0, 2.0, 107),
           (5, 1, "test", 66.3, 3.0, 106), (6, 1, "test", 44.8, 2.0, 104)]
FRAMES_AFTER_END = 4  # frames past end_frame, so every train-time shift (+3) exists
LENGTH = 103
WEIGHT_SEED = 2021


def core_model(seed: int = WEIGHT_SEED):
    """Our CoRe model (hassony2 I3D + tree) with the parity weights."""
    from aqa.config import build_run_config
    from aqa.models.core import CoRe

    cfg = build_run_config("core", "folder", overrides=["backbone.weights=",
                                                         "backbone.family=hassony2"])
    torch.manual_seed(0)
    return condition(CoRe(cfg).build_model(), seed)


def official_checkpoint(model) -> dict:
    """What CoRe's save_checkpoint writes for ``model`` (DataParallel names)."""
    state = model.state_dict()
    return {"base_model": {f"module.{k}": v for k, v in state.items() if k.startswith("backbone.")},
            "regressor": {f"module.{k[len('regressor.'):]}": v for k, v in state.items()
                          if k.startswith("regressor.")},
            "optimizer": {"state": {}, "param_groups": [
                {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                 "amsgrad": False, "params": list(range(300))}]},
            "epoch": 156, "epoch_best": 131, "rho_best": np.float64(0.951234),
            "L2_min": np.float64(47.125), "RL2_min": np.float64(0.0026)}


def event_frames(event: int, end_frame: int) -> np.ndarray:
    return moving_frames(end_frame + FRAMES_AFTER_END, 256, 455, seed=100 + event)


def write_inputs(root: str | Path) -> dict:
    from PIL import Image

    root = Path(root)
    mtl = root / "MTL-AQA"
    (mtl / "info").mkdir(parents=True, exist_ok=True)
    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    ann, rows = {}, []
    for event, idx, split, score, dd, end in SAMPLES:
        folder = mtl / "new" / "new_total_frames_256s" / f"{event:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        frames = event_frames(event, end)
        for n, frame in enumerate(frames, start=1):
            Image.fromarray(frame).save(folder / f"{n:08d}.jpg", quality=90)
        # the window's decoded JPEG pixels, losslessly in a video (files end-102 .. end)
        window = [np.asarray(Image.open(folder / f"{n:08d}.jpg").convert("RGB"))
                  for n in range(end - LENGTH + 1, end + 1)]
        write_lossless(clips / f"{event:02d}_{idx:02d}.mkv", np.stack(window))
        judges = np.full(7, score / dd / 3.0)
        ann[(event, idx)] = {"final_score": score, "difficulty": dd, "start_frame": end - 150,
                             "end_frame": end, "dive_number": "405B" if dd == 3.0 else "101A",
                             "judge_scores": judges}
        rows.append((f"{event:02d}_{idx:02d}.mkv", score, dd, split))
    with open(mtl / "info" / "final_annotations_dict_with_dive_number.pkl", "wb") as f:
        pickle.dump(ann, f, protocol=2)
    for split in ("train", "test"):
        with open(mtl / "info" / f"{split}_split_0.pkl", "wb") as f:
            pickle.dump([(e, i) for e, i, s, *_ in SAMPLES if s == split], f, protocol=2)
    with open(clips / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "score", "difficulty", "split"])
        w.writerows(rows)
    model = core_model()
    ckpt = official_checkpoint(model)
    save_as_numpy1(ckpt, root / "MTL_CoRe.pth")
    save_as_numpy1(ckpt, root / "MTL_CoRe_legacy.pth", legacy=True)
    torch.save({k[len("module.backbone."):]: v for k, v in ckpt["base_model"].items()},
               root / "model_rgb.pth")
    return {"mtl": mtl, "clips": clips, "checkpoint": root / "MTL_CoRe.pth",
            "legacy": root / "MTL_CoRe_legacy.pth", "model": model}


def write_lossless(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """(T, H, W, 3) uint8 RGB as FFV1 in Matroska: decoding gives these pixels back exactly."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":  # python tests/parity_core_data.py OUT  (for the official runner)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    write_inputs(sys.argv[1])


# AQA-7 (CoRe's SevenPair layout): class 1 (diving), rows (class, folder number, judges' score)
SEVEN_TRAIN = [(1, 1, 45.6), (1, 2, 88.2), (1, 3, 60.0), (1, 5, 71.4), (2, 1, 14.9)]
SEVEN_TEST = [(1, 4, 52.8), (1, 6, 95.1)]


def write_seven(root: str | Path) -> Path:
    """``Seven/``: ``diving-out/{idx:03d}/img_{i:05d}.jpg`` (110 frames, 320x240) and
    ``Split_4/split_4_{train,test}_list.mat`` (``consolidated_*_list``, float64 rows)."""
    import scipy.io
    from PIL import Image

    seven = Path(root) / "Seven"
    (seven / "Split_4").mkdir(parents=True, exist_ok=True)
    for cls, idx, _ in SEVEN_TRAIN + SEVEN_TEST:
        name = ("diving", "gym_vault")[cls - 1]
        folder = seven / f"{name}-out" / f"{idx:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n, frame in enumerate(moving_frames(110, 240, 320, seed=300 + 10 * cls + idx), start=1):
            Image.fromarray(frame).save(folder / f"img_{n:05d}.jpg", quality=90)
    scipy.io.savemat(seven / "Split_4" / "split_4_train_list.mat",
                     {"consolidated_train_list": np.asarray(SEVEN_TRAIN, dtype=np.float64)})
    scipy.io.savemat(seven / "Split_4" / "split_4_test_list.mat",
                     {"consolidated_test_list": np.asarray(SEVEN_TEST, dtype=np.float64)})
    return seven
