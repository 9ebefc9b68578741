"""Decoding speed: this project's reader vs the ffmpeg ceiling vs pre-extracted JPEGs with PIL.

    python bench/decode.py [--seconds 30] [--gop 250] [--repeat 3] [--out bench/out/decode.json]

Makes a 640x360 H.264 file (x264 defaults: GOP 250, B-frames), then measures, interleaved
(every case once a round, ``--repeat`` rounds, best of each kept, so a busy neighbour on a
shared machine slows every case of a round alike), frames per second:

- ``ffmpeg_null``: full sequential decode of the file, ``ffmpeg -i F -f null -`` (the practical
  ceiling; ``ffmpeg_null_1thread`` with ``-threads 1``); ``ffmpeg_scale_rgb`` the same decode
  also scaling to 455x256 and converting to RGB (the reader's work);
- the reader (``aqa.video.read_frames``) on three plans: ``window`` (CoRe's 103-frame window at a
  random position), ``clips`` (10 clips of 16 frames spread over the file) and ``core_clips``
  (CoRe's 10 clips of 16 at ``CORE_STARTS`` inside that window, read in one call: 160 asked,
  103 decoded once); ``reader_*_native`` (default: PyAV seek path), ``decord_*_native``
  (decord forced), ``reader_*_455x256`` (default: decord's resize), ``*_bilinear`` /
  ``*_fast_bilinear`` (PyAV resizing with that filter);
- ``pil_jpeg``: the same window from pre-extracted JPEGs (``-qscale:v 2``) read with PIL.

Reader numbers count the distinct frames a plan needs (``frames.<plan>.distinct``);
``ratio_*_vs_ffmpeg_null`` divides them by the ceiling. A read starts at the keyframe before its
first frame, so it goes through more frames than it returns (``frames.<plan>.decoded``, under
the reader's seek rule); ``ratio_<plan>_inherent_max`` = distinct / decoded is the ratio of a
reader that decoded every one of those frames at the ceiling's speed and converted nothing (the
reader beats it by not decoding non-reference frames it does not need). ``core_clips`` returns
160 frames, the repeats as copies (110 MB at 640x360): allocating and filling that output
costs 40-250 ms on this machine, more than decoding; CoRe itself reads the window once and
slices its clips on the tensor. ``BENCH_DEBUG=1`` prints every timing to stderr. Prints one JSON object and writes
it to ``--out``.
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

from aqa import video, video_pyav  # noqa: E402
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


def frames_to_decode(indices: list[int], keys: list[int]) -> int:
    """Frames the reader's PyAV path decodes for ``indices``: from the keyframe at or before
    each wanted frame, seeking again only past a gap of more than ``video_pyav.SEEK_GAP`` frames."""
    import bisect

    todo = sorted(set(indices))
    total, pos = 0, None  # pos: the last frame decoded so far
    for i in todo:
        key = keys[bisect.bisect_right(keys, i) - 1]
        if pos is None or (key > pos + video_pyav.SEEK_GAP):
            total += i - key + 1
        else:
            total += i - pos
        pos = i
    return total


def interleaved_best(cases: dict, repeat: int) -> dict:
    """Best time of ``repeat`` rounds, every case once a round (a busy neighbour slows all)."""
    best = {name: float("inf") for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            if os.environ.get("BENCH_DEBUG"):
                print(name, round(time.perf_counter() - t0, 3), file=sys.stderr)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=30, help="length of the test video")
    ap.add_argument("--gop", type=int, default=250, help="keyframe interval (x264's default 250; phones ~30-60)")
    ap.add_argument("--repeat", type=int, default=7, help="rounds (the best of each measure is kept)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "decode.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mp4 = tmp / "bench.mp4"
        make_video(mp4, args.seconds, args.gop)
        n = video.probe(mp4).num_frames
        res: dict = {"video": {"size": "640x360", "codec": "h264", "frames": n, "fps": 25, "gop": args.gop},
                     "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
                     "repeat": args.repeat, "decode_threads": video.decode_threads()}

        def ffmpeg(*extra):
            return lambda: subprocess.run(["ffmpeg", "-loglevel", "error", *extra[:2], "-i", str(mp4),
                                           *extra[2:], "-f", "null", "-"], check=True)

        start = int(rng.integers(0, n - 103))
        window = list(range(start, start + 103))
        starts = np.linspace(0, n - 16, 10).astype(int)
        spread = [int(s) + k for s in starts for k in range(16)]
        from aqa.models.core import CORE_STARTS
        core = [start + s + k for s in CORE_STARTS for k in range(16)]  # 160 asked, 103 distinct
        keys = keyframes(mp4)
        plans = {"window": window, "clips": spread, "core_clips": core}
        res["frames"] = {k: {"asked": len(v), "distinct": len(set(v)),
                             "decoded": frames_to_decode(v, keys)} for k, v in plans.items()}
        res["window_start"] = start
        video.read_frames(mp4, window[:2])  # warm: backend choice, index, file cache
        video.read_frames(mp4, window[:2], decoder="decord")
        size = (455, 256)
        cases = {
            "ffmpeg_null": ffmpeg("-threads", "0"),
            "ffmpeg_null_1thread": ffmpeg("-threads", "1"),
            "ffmpeg_scale_rgb": ffmpeg("-threads", "0", "-vf", "scale=455:256", "-pix_fmt", "rgb24"),
        }
        for plan, idx in plans.items():
            cases[f"reader_{plan}_native"] = lambda idx=idx: video.read_frames(mp4, idx)
            cases[f"decord_{plan}_native"] = lambda idx=idx: video.read_frames(mp4, idx, decoder="decord")
            cases[f"reader_{plan}_455x256"] = lambda idx=idx: video.read_frames(mp4, idx, size)
            for interp in ("bilinear", "fast_bilinear"):
                cases[f"reader_{plan}_455x256_{interp}"] = (
                    lambda idx=idx, interp=interp: video.read_frames(mp4, idx, size, interpolation=interp))
        t = interleaved_best(cases, args.repeat)
        for name in ("ffmpeg_null", "ffmpeg_null_1thread", "ffmpeg_scale_rgb"):
            res[name] = n / t[name]
        for name, secs in t.items():
            if name.startswith(("reader_", "decord_")):
                plan = name.split("_")[1] if not name.split("_")[1] == "core" else "core_clips"
                res[name] = res["frames"][plan]["distinct"] / secs  # frames needed, a second
                res[f"ratio_{name}_vs_ffmpeg_null"] = res[name] / res["ffmpeg_null"]
        for plan, f in res["frames"].items():
            # the best any reader can do deciding frames at the ceiling's speed
            res[f"ratio_{plan}_inherent_max"] = f["distinct"] / max(f["decoded"], 1)
        res["ratio_window_455x256_vs_ffmpeg_scale_rgb"] = (res["reader_window_455x256_bilinear"]
                                                          / res["ffmpeg_scale_rgb"])

        jpgs = tmp / "frames"
        jpgs.mkdir()
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(mp4), "-qscale:v", "2",
                        str(jpgs / "%08d.jpg")], check=True)
        paths = [jpgs / f"{i + 1:08d}.jpg" for i in window]
        t = interleaved_best({"native": lambda: read_images(paths, None),
                              "455x256": lambda: read_images(paths, size)}, 3)
        for name, secs in t.items():
            res[f"pil_jpeg_{name}"] = 103 / secs

    res = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}
    text = json.dumps(res, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
