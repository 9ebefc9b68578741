"""``aqa7``: AQA-7 (Parmar & Morris, WACV 2019), the six sports CoRe/TPT/USDL train on.

``--data-root`` is the ``Seven`` folder as distributed (or the folder holding ``Seven/``)::

    {class}-out/{idx:03d}/img_{i:05d}.jpg        frames, 1-based; the first 103 are used
    (or a video per sample instead of its frame folder: {class}-out/{idx:03d}.mp4 or
    videos/{class}/{idx:03d}.mp4, any of .mp4 .mkv .avi .mov .webm; its first 103 frames)
    Split_4/split_4_train_list.mat               consolidated_train_list: rows (class, idx, score)
    Split_4/split_4_test_list.mat                consolidated_test_list

Classes 1..6 are ``diving, gym_vault, ski_big_air, snowboard_big_air, sync_diving_3m,
sync_diving_10m`` (7, trampoline, is left out as by every method). ``class_name`` picks one
(one model per class, CoRe's ``--Seven_cls``) or ``all`` (TPT's joint training: pairs only
within a class, ``meta["class"]`` is the exemplar key). With ``normalize`` (default) scores are
mapped to 0..100 per class, ``(s - lo) / (hi - lo) * 100`` with CoRe's ranges below, and
metrics are then in normalised units, as the papers report them; ``meta["raw_score"]`` keeps
the judges' score. Items add ``class_index`` (0..5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aqa.data.base import (FrameSpan, FramesDataConfig, Sample, build_clip_dataset, find_video,
                           resolve_common)
from aqa.errors import DatasetError
from aqa.registry import DATASETS

CLASSES = ("diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m",
           "sync_diving_10m")
SCORE_RANGES = {  # (lo, hi) of CoRe's utils/misc.normalize
    "diving": (21.6, 102.6), "gym_vault": (12.3, 16.87), "ski_big_air": (8.0, 50.0),
    "snowboard_big_air": (8.0, 50.0), "sync_diving_3m": (46.2, 104.88),
    "sync_diving_10m": (49.8, 99.36),
}
SPLIT_VARS = {"train": "consolidated_train_list", "test": "consolidated_test_list"}
HINT = "the AQA-7 'Seven' folder holding {class}-out/ frame folders and Split_4/"


@dataclass
class AQA7DataConfig(FramesDataConfig):
    num_frames: int = 103  # frames per sample (the first 103 of each folder)
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    pipeline: str = "tvv"  # spatial preprocessing: square, tvv (CoRe/TPT), tvv_fixed, musdl
    class_name: str = "diving"  # one of the six sports, or all (joint training, TPT)
    normalize: bool = True  # scores mapped to 0..100 per class (CoRe/TPT); false: judges' scores
    split_dir: str = "Split_4"  # folder of split_4_{train,test}_list.mat inside the root


def normalize_score(score: float, class_name: str) -> float:
    lo, hi = SCORE_RANGES[class_name]
    return (score - lo) / (hi - lo) * 100.0


def read_split(path: Path, split: str) -> np.ndarray:
    """(N, >=3) rows of (class 1..7, folder number, score) from a split ``.mat``."""
    import scipy.io

    if not path.is_file():
        raise DatasetError(f"no AQA-7 split file at {path}; AQA-7.zip has it under Split_4/")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, MatReadError, ...
        raise DatasetError(f"{path}: not a readable MATLAB file ({exc})") from exc
    var = SPLIT_VARS[split]
    if var not in mat:
        names = [k for k in mat if not k.startswith("__")]
        if len(names) != 1:
            raise DatasetError(f"{path}: no variable {var} (found {', '.join(names)})")
        var = names[0]
    rows = np.asarray(mat[var], dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 3:
        raise DatasetError(f"{path}: {var} should have rows (class, index, score), got shape {rows.shape}")
    return rows


def class_counts(cfg: AQA7DataConfig) -> dict[str, tuple[int, int]]:
    """``{class: (train samples, test samples)}`` of a resolved config's split files, for the six
    classes whatever ``cfg.class_name`` (what a one-model-a-class protocol trains on)."""
    from dataclasses import replace

    everything = replace(cfg, class_name="all")
    counts = {name: [0, 0] for name in CLASSES}
    for k, split in enumerate(("train", "test")):
        for sample in AQA7Dataset.samples(everything, split):
            counts[sample.meta["class"]][k] += 1
    return {name: (n[0], n[1]) for name, n in counts.items()}


@DATASETS.register("aqa7")
class AQA7Dataset:
    config_cls = AQA7DataConfig
    description = "AQA-7 (six sports, split_4: 803 train / 303 test), per-class or all-class"

    @classmethod
    def resolve(cls, cfg: AQA7DataConfig, workspace: Path) -> AQA7DataConfig:
        from dataclasses import replace

        cfg = resolve_common(cfg, workspace, "aqa7", HINT)
        if cfg.class_name not in CLASSES + ("all",):
            raise DatasetError(f"unknown data.class_name {cfg.class_name!r}; choose one of "
                               f"{', '.join(CLASSES)} or all")
        root = Path(cfg.root)
        if not (root / cfg.split_dir).is_dir() and (root / "Seven").is_dir():
            cfg = replace(cfg, root=str(root / "Seven"))
        return cfg

    @classmethod
    def prepare(cls, cfg: AQA7DataConfig) -> None:
        """Nothing to make: the frames come with AQA-7.zip."""

    @classmethod
    def samples(cls, cfg: AQA7DataConfig, split: str) -> list[Sample]:
        if split not in SPLIT_VARS:
            return []
        root = Path(cfg.root)
        rows = read_split(root / cfg.split_dir / f"split_4_{split}_list.mat", split)
        out = []
        for cls_no, idx, score in rows[:, :3]:
            k = int(cls_no)
            if not 1 <= k <= len(CLASSES):
                continue  # trampoline (7)
            name = CLASSES[k - 1]
            if cfg.class_name not in ("all", name):
                continue
            s = normalize_score(float(score), name) if cfg.normalize else float(score)
            folder = root / f"{name}-out" / f"{int(idx):03d}"
            video = None if folder.is_dir() else (
                find_video(root / f"{name}-out", f"{int(idx):03d}")
                or find_video(root / "videos" / name, f"{int(idx):03d}"))
            out.append(Sample(
                id=f"{name}_{int(idx):03d}", video=video or folder, score=s, split=split,
                frames=None if video else FrameSpan(1, cfg.num_frames, pattern="img_{:05d}.jpg"),
                window_start=0,  # the first num_frames frames, of the folder or of the video
                meta={"class": name, "class_index": k - 1, "raw_score": float(score)}))
        return out

    @classmethod
    def build(cls, cfg: AQA7DataConfig, split: str, train: bool, seed: int = 0):
        return build_clip_dataset(cfg, cls.samples(cfg, split), split, train, seed, "AQA-7",
                                  extra_keys=("class_index",))
