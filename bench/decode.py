"""Decoding speed: this project's reader vs the ffmpeg ceiling vs pre-extracted JPEGs with PIL.

    python bench/decode.py [--seconds 30] [--gop 250] [--repeat 3] [--out bench/out/decode.json]

Makes a 640x360 H.264 file (x264 defaults: GOP 250, B-frames), then measures frames per second

- ``ffmpeg_null``: full sequential decode of the file, ``ffmpeg -i F -f null -`` (the practical
  ceiling; ``ffmpeg_null_1thread`` with ``-threads 1``, like the reader's one decoder thread);
- ``reader_window``: ``aqa.video.read_frames`` of a 103-frame window at a random position
  (CoRe's sample window), native size and resized to 455x256 in the decoder;
- ``reader_clips``: 10 clips of 16 frames spread over the whole file (160 frames needed);
- ``pil_jpeg``: the same 103-frame window from pre-extracted JPEGs (``-qscale:v 2``) read with
  PIL, as the official loaders do, native and resized to 455x256.

``ffmpeg_scale_rgb`` is the same full decode doing the reader's work too (scale to 455x256,
convert to RGB). ``ratio_*`` is the reader's frames/s on the frames it needs over a ceiling.
A window read starts at the keyframe before it, so it decodes more frames than it returns
(``window.frames_decoded``; ``reader_window_455x256_decoded_fps`` counts those). Prints one JSON object and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (its modules shadow stdlib names)

from aqa import video  # noqa: E402
from aqa.data.base import read_images  # noqa: E402


def make_video(path: Path, seconds: int, gop: int, fps: int = 25) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=640x360:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
                    "-g", str(gop), "-pix_fmt", "yuv420p", "-crf", "23", str(path)], check=True)


def keyframes(path: Path) -> list[int]:
    """Indices (decode order) of the keyframes: a read starts at the one before its first frame."""
    import av

    with av.open(str(path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    order = sorted(range(len(packets)), key=lambda i: packets[i].pts)  # display order
    return sorted(rank for rank, i in enumerate(order) if packets[i].is_keyframe)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=30, help="length of the test video")
    ap.add_argument("--gop", type=int, default=250, help="keyframe interval (x264's default 250; phones ~30-60)")
    ap.add_argument("--repeat", type=int, default=3, help="timings per measure (the best is kept)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "decode.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mp4 = tmp / "bench.mp4"
        make_video(mp4, args.seconds, args.gop)
        n = video.probe(mp4).num_frames
        res: dict = {"video": {"size": "640x360", "codec": "h264", "frames": n, "fps": 25, "gop": args.gop},
                     "host": {"cpus": os.cpu_count(), "python": platform.python_version()}}

        def ffmpeg_null(threads: list[str]):
            subprocess.run(["ffmpeg", "-loglevel", "error", *threads, "-i", str(mp4), "-f", "null", "-"],
                           check=True)

        t = best_of(lambda: ffmpeg_null([]), args.repeat)
        res["ffmpeg_null"] = n / t
        t = best_of(lambda: ffmpeg_null(["-threads", "1"]), args.repeat)
        res["ffmpeg_null_1thread"] = n / t
        same_work = ["-vf", "scale=455:256", "-pix_fmt", "rgb24"]  # what the reader also does
        t = best_of(lambda: subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(mp4), *same_work,
                                            "-f", "null", "-"], check=True), args.repeat)
        res["ffmpeg_scale_rgb"] = n / t

        start = int(rng.integers(0, n - 103))
        window = list(range(start, start + 103))
        video.read_frames(mp4, window[:2])  # warm: backend choice and file cache
        for name, size in (("native", None), ("455x256", (455, 256))):
            t = best_of(lambda: video.read_frames(mp4, window, size), args.repeat)
            res[f"reader_window_{name}"] = 103 / t
        keys = keyframes(mp4)
        decoded = window[-1] + 1 - max(k for k in keys if k <= window[0])
        res["window"] = {"start": start, "frames": 103, "frames_decoded": decoded}
        res["reader_window_455x256_decoded_fps"] = res["reader_window_455x256"] * decoded / 103
        starts = np.linspace(0, n - 16, 10).astype(int)
        clips = [int(s) + k for s in starts for k in range(16)]
        for name, size in (("native", None), ("455x256", (455, 256))):
            t = best_of(lambda: video.read_frames(mp4, clips, size), args.repeat)
            res[f"reader_clips_{name}"] = 160 / t

        jpgs = tmp / "frames"
        jpgs.mkdir()
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(mp4), "-qscale:v", "2",
                        str(jpgs / "%08d.jpg")], check=True)
        paths = [jpgs / f"{i + 1:08d}.jpg" for i in window]
        for name, size in (("native", None), ("455x256", (455, 256))):
            t = best_of(lambda: read_images(paths, size), args.repeat)
            res[f"pil_jpeg_{name}"] = 103 / t

    res["decode_threads"] = video.decode_threads()
    for what in ("window", "clips"):
        for size in ("native", "455x256"):
            res[f"ratio_{what}_{size}_vs_ffmpeg_null"] = res[f"reader_{what}_{size}"] / res["ffmpeg_null"]
        res[f"ratio_{what}_455x256_vs_ffmpeg_scale_rgb"] = res[f"reader_{what}_455x256"] / res["ffmpeg_scale_rgb"]
    res = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}
    text = json.dumps(res, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
