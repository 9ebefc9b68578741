"""Feature datasets in the official layouts, and short program videos, for the tests.

Deterministic by ``seed``. Features are written with ``np.save`` as float32 (T, D); label files
as GDLT's release has them (a header line, then whitespace-separated columns), so the official
readers and ours read the same files:

- :func:`make_rg`: ``train.txt``/``test.txt`` = header, ``name difficulty execution total``
  (``Ball_001`` ...), features in ``<root>/swintx_avg_fps25_clip32/<name>.npy``;
- :func:`make_fisv_features`: header, ``name TES PCS``, the same feature folder name;
- :func:`make_feature_folder`: the ``folder`` dataset's ``scores.csv`` (video,score,difficulty,
  split) with ``features/<stem>.npy``;
- :func:`make_program_videos`: tiny MP4 programs (moving frames) named as a dataset expects.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

RG_FEATURES = "swintx_avg_fps25_clip32"
RG_HEADER = "Video_Name Difficulty_Score Execution_Score Total_Score"
FISV_HEADER = "Video_Name TES PCS"


def _features(rng: np.random.Generator, t_range: tuple[int, int], dim: int) -> np.ndarray:
    t = int(rng.integers(t_range[0], t_range[1] + 1))
    return rng.standard_normal((t, dim)).astype(np.float32)


def make_rg(root: str | Path, apparatus: Sequence[str] = ("Ball",), n_train: int = 6,
            n_test: int = 3, t_range: tuple[int, int] = (4, 12), dim: int = 1024, seed: int = 0,
            features: str = RG_FEATURES) -> dict:
    """RG in GDLT's layout; returns ``{"train": [(name, d, e, total)], "test": [...], "lengths":
    {name: T}}``. Routines of each apparatus are numbered from 001; every apparatus gets
    ``n_train`` training and ``n_test`` test routines (the splits interleave in the files)."""
    root = Path(root)
    folder = root / features
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {"train": [], "test": [], "lengths": {}}
    for app in apparatus:
        for k in range(n_train + n_test):
            name = f"{app}_{k + 1:03d}"
            d = round(float(rng.uniform(3, 12)), 3)
            e = round(float(rng.uniform(4, 9)), 3)
            total = round(d + e - float(rng.choice([0.0, 0.0, 0.3, 0.6])), 3)
            feat = _features(rng, t_range, dim)
            np.save(folder / f"{name}.npy", feat)
            out["lengths"][name] = len(feat)
            out["train" if k < n_train else "test"].append((name, d, e, total))
    for split in ("train", "test"):
        lines = [RG_HEADER] + [f"{n} {d:.3f} {e:.3f} {t:.3f}" for n, d, e, t in out[split]]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return out


def make_fisv_features(root: str | Path, n_train: int = 6, n_test: int = 3,
                       t_range: tuple[int, int] = (4, 12), dim: int = 1024, seed: int = 0,
                       features: str = RG_FEATURES) -> dict:
    """Fis-V in GDLT's feature layout (header, then ``name TES PCS``; programs 1..N);
    returns ``{"train": [(name, tes, pcs)], "test": [...], "lengths": {name: T}}``."""
    root = Path(root)
    folder = root / features
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {"train": [], "test": [], "lengths": {}}
    for k in range(n_train + n_test):
        name = str(k + 1)
        tes = round(float(rng.uniform(15, 50)), 2)
        pcs = round(float(rng.uniform(15, 45)), 2)
        feat = _features(rng, t_range, dim)
        np.save(folder / f"{name}.npy", feat)
        out["lengths"][name] = len(feat)
        out["train" if k < n_train else "test"].append((name, tes, pcs))
    for split in ("train", "test"):
        lines = [FISV_HEADER] + [f"{n} {t:.2f} {p:.2f}" for n, t, p in out[split]]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return out


def make_feature_folder(root: str | Path, n: int = 8, t_range: tuple[int, int] = (4, 12),
                        dim: int = 64, seed: int = 0, test_every: int = 4,
                        features: str = "features") -> list[dict]:
    """The ``folder`` dataset's CSV (``video,score,difficulty,split``, videos ``clips/clip_NNN.mp4``,
    not rendered) with ``<features>/clip_NNN.npy``; returns the CSV rows with ``length``."""
    root = Path(root)
    (root / features).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        stem = f"clip_{k:03d}"
        feat = _features(rng, t_range, dim)
        np.save(root / features / f"{stem}.npy", feat)
        rows.append({"video": f"clips/{stem}.mp4", "score": f"{rng.uniform(0, 100):.2f}",
                     "difficulty": f"{rng.choice([1.0, 2.0, 3.0]):.1f}",
                     "split": "test" if k % test_every == test_every - 1 else "train",
                     "length": len(feat)})
    with open(root / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["video", "score", "difficulty", "split"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return rows


def program_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8: a seeded colour gradient with a moving bright square."""
    from tests.parity_inputs import moving_frames

    return moving_frames(num_frames, height, width, seed)


def write_lossless_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 at qp 0 (lossless in YUV 4:2:0): whatever the encoder decides, every decoder gives
    the same pixels, so two writes of the same frames decode identically (a parity input)."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "threads": "1"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def make_program_videos(folder: str | Path, names: Sequence[str], num_frames: int = 20,
                        size: tuple[int, int] = (48, 64), fps: int = 25, seed: int = 0) -> list[Path]:
    """One tiny lossless H.264 program ``<folder>/<name>.mp4`` per name, ``num_frames`` frames of
    ``size=(h, w)``; program k has ``num_frames + 3 * k`` frames (lengths differ)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        path = folder / f"{name}.mp4"
        write_lossless_mp4(path, program_frames(num_frames + 3 * k, size[0], size[1], seed + k), fps)
        paths.append(path)
    return paths
