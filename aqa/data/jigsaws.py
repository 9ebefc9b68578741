"""``jigsaws``: JIGSAWS surgical skill (Gao et al. 2014), as prepared by MUSDL.

``--data-root`` is MUSDL's ``data`` folder (or its parent)::

    info/label.pkl     {"Suturing_B001": [6 GRS sub-scores, 1..5], ...}   (103 trials)
    info/splits.pkl    {task: [fold0 names, fold1, fold2, fold3]}
    frames/<name>_capture1/*.jpg                                          (left view only)
    or the trial videos: videos/<name>_capture1.avi, or <task>/video/<name>_capture1.avi as
    in JIGSAWS' own archive (any of .mp4 .mkv .avi .mov .webm), frames spread uniformly

Three tasks (``Suturing``, ``Needle_Passing``, ``Knot_Tying``), four folds: ``fold`` k is the
test split and the other three are training (4-fold cross-validation = four runs). A sample's
score is the sum of its six sub-scores (6..30); items add ``sub_scores`` (6,) for MUSDL's six
heads. A clip is 160 frames, ``np.linspace(0, n-1, 160).astype(int)`` (MUSDL), the frames
already resized by the preparation: MUSDL centre-crops them to 224 (the ``crop`` pipeline, the
usdl/musdl default here); the ``square`` pipeline resizes them instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aqa.data.base import (FrameSpan, FramesDataConfig, Sample, build_clip_dataset, find_video,
                           resolve_common)
from aqa.data.sampling import linspace_indices
from aqa.errors import AQAError, DatasetError
from aqa.registry import DATASETS

TASKS = ("Suturing", "Needle_Passing", "Knot_Tying")
HINT = "MUSDL's JIGSAWS data folder holding info/label.pkl, info/splits.pkl and frames/"


@dataclass
class JIGSAWSDataConfig(FramesDataConfig):
    num_frames: int = 160  # frames per trial, linspace over the whole trial (MUSDL)
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    task: str = "Suturing"  # Suturing, Needle_Passing or Knot_Tying
    fold: int = 0  # test fold 0..3; the other three folds train
    view: str = "capture1"  # camera folder suffix (MUSDL uses the left view, capture1)


def _load(path: Path):
    from aqa.safe_pickle import safe_load

    if not path.is_file():
        raise DatasetError(f"no {path.name} at {path}; expected {HINT}")
    try:
        return safe_load(path)
    except AQAError as exc:
        raise DatasetError(f"{path}: not a readable pickle ({exc})") from exc


@DATASETS.register("jigsaws")
class JIGSAWSDataset:
    config_cls = JIGSAWSDataConfig
    description = "JIGSAWS surgical skill (3 tasks x 4 folds, six GRS sub-scores)"

    @classmethod
    def resolve(cls, cfg: JIGSAWSDataConfig, workspace: Path) -> JIGSAWSDataConfig:
        from dataclasses import replace

        cfg = resolve_common(cfg, workspace, "jigsaws", HINT)
        if cfg.task not in TASKS:
            raise DatasetError(f"unknown data.task {cfg.task!r}; choose one of {', '.join(TASKS)}")
        if not 0 <= cfg.fold <= 3:
            raise DatasetError(f"data.fold must be 0..3, got {cfg.fold}")
        root = Path(cfg.root)
        if not (root / "info").is_dir() and (root / "data" / "info").is_dir():
            cfg = replace(cfg, root=str(root / "data"))
        return cfg

    @classmethod
    def prepare(cls, cfg: JIGSAWSDataConfig) -> None:
        """Nothing to make: the frames are MUSDL's preparation."""

    @classmethod
    def samples(cls, cfg: JIGSAWSDataConfig, split: str) -> list[Sample]:
        if split not in ("train", "test"):
            return []
        root = Path(cfg.root)
        labels = _load(root / "info" / "label.pkl")
        folds = _load(root / "info" / "splits.pkl")
        if cfg.task not in folds:
            raise DatasetError(f"{root / 'info' / 'splits.pkl'}: no task {cfg.task!r} "
                               f"(has {', '.join(folds)})")
        names = [n for k, fold in enumerate(folds[cfg.task])
                 if (k == cfg.fold) == (split == "test") for n in fold]
        out = []
        for name in names:
            if name not in labels:
                raise DatasetError(f"{root / 'info' / 'label.pkl'}: no label for {name}")
            sub = np.asarray(labels[name], dtype=np.float32).reshape(-1)
            folder = root / "frames" / f"{name}_{cfg.view}"
            try:
                files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
            except OSError:
                files = []
            video = None
            if files:  # the 160 linspace frames, fixed per trial
                picked = tuple(files[i] for i in linspace_indices(len(files), cfg.num_frames))
                span = FrameSpan(0, len(picked), files=picked)
            else:  # the trial's video (JIGSAWS as distributed), frames spread uniformly over it
                stem = f"{name}_{cfg.view}"
                video = find_video(root / "videos", stem) or find_video(
                    root / cfg.task / "video", stem)
                span = None if video else FrameSpan(1, cfg.num_frames, pattern="{:05d}.jpg")  # missing
            out.append(Sample(id=name, video=video or folder, score=float(sub.sum()), split=split,
                              frames=span, meta={"sub_scores": sub, "task": cfg.task}))
        return out

    @classmethod
    def build(cls, cfg: JIGSAWSDataConfig, split: str, train: bool, seed: int = 0):
        return build_clip_dataset(cfg, cls.samples(cfg, split), split, train, seed, "JIGSAWS",
                                  extra_keys=("sub_scores",))
