"""Does PyAV's scaler reproduce decord's resized pixels? Absolute differences, per size and filter.

    python bench/decord_vs_pyav.py [--clip ../shared/data/clips/X.mp4] [--out bench/out/decord_vs_pyav.json]

Reads every frame of the real dive clip (``../shared/data/clips/*.mp4``, read in place) with
decord, resized in its decoder (``aqa.video.read_frames(..., size, decoder="decord")``, what
``data.video_resize=decord`` trains on), and with PyAV scaling by each libswscale filter
(``video_pyav.read(..., size, interpolation)``; ``null`` = PyAV's default, bilinear), at the
decode sizes of our pipelines (docs/datasets.md, "Spatial pipelines"): 455x256 (``tvv_fixed``,
``musdl``), 256x455 (``tvv``, torch_videovision's swapped resize) and 224x224 (``square`` at the
default ``frame_size``); and at native size, where the two must agree exactly. For each: max and
mean absolute difference over all pixels and channels (0-255 levels) and the share of values
that differ. Prints one JSON object and writes it to ``--out``. No timing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"455x256": (455, 256), "256x455": (256, 455), "224x224": (224, 224)}
FILTERS = [None, "bilinear", "fast_bilinear", "bicubic", "area", "nearest"]


def diff(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(d.max()), "mean": round(float(d.mean()), 4),
            "share_differing": round(float((d > 0).mean()), 4)}


def main() -> None:
    import av
    import decord

    from aqa import video, video_pyav

    clips = sorted((ROOT.parent / "shared" / "data" / "clips").glob("*.mp4"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(clips[0]) if clips else None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "decord_vs_pyav.json"))
    args = ap.parse_args()
    if not args.clip:
        sys.exit("no clip: pass --clip (the real clip lives in ../shared/data/clips/)")
    clip = Path(args.clip)
    info = video.probe(clip)
    idx = list(range(info.num_frames))
    res = {"clip": clip.name, "frames": info.num_frames, "native": f"{info.width}x{info.height}",
           "decord": decord.__version__, "pyav": av.__version__,
           "libswscale_pyav": ".".join(map(str, av.library_versions["libswscale"])),
           "native_size": diff(video.read_frames(clip, idx, None, decoder="decord"),
                               video_pyav.read(clip, idx, None)),
           "resized": {}}
    for name, size in SIZES.items():
        ref = video.read_frames(clip, idx, size, decoder="decord")  # (T, H, W, 3)
        res["resized"][name] = {str(f).lower(): diff(ref, video_pyav.read(clip, idx, size, f))
                                for f in FILTERS}
    closest = {name: min((r for r in rows if r != "none"), key=lambda r: rows[r]["mean"])
               for name, rows in res["resized"].items()}
    res["closest_filter"] = closest
    res["pyav_reproduces_decord_resize"] = all(
        res["resized"][n][f]["max"] == 0 for n, f in closest.items())
    text = json.dumps(res, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
