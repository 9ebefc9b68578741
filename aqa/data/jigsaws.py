"""``jigsaws``: JIGSAWS surgical skill (Gao et al. 2014), as prepared by MUSDL.

``--data-root`` is MUSDL's ``data`` folder (or its parent)::

    info/label.pkl     {"Suturing_B001": [6 GRS sub-scores, 1..5], ...}   (103 trials)
    info/splits.pkl    {task: [fold0 names, fold1, fold2, fold3]}
    frames/<name>_capture1/*.jpg                                          (left view only)
    or the trial videos: videos/<name>_capture1.avi, or <task>/video/<name>_capture1.avi as
    in JIGSAWS' own archive (any of .mp4 .mkv .avi .mov .webm), frames spread uniformly

Three tasks (``Suturing``, ``Needle_Passing``, ``Knot_Tying``); a trial is named
``<Task>_<user><supertrial>``, user a letter B..I, supertrial 001..005. ``scheme`` says how the
task's trials are cut into cross-validation folds, ``fold`` which one is the test split (the
others train; one run a fold, see ``aqa protocol``):

- ``4fold`` (default): the four folds of ``info/splits.pkl`` (MUSDL's; ``fold`` 0..3). Without
  that file, MUSDL's published folds (:data:`MUSDL_FOLDS`, restated here as data).
- ``loso``: leave one supertrial out; ``fold`` k tests supertrial k+1 of every user (0..4).
- ``louo``: leave one user out; ``fold`` k tests user ``USERS[k]`` (B..I, 0..7); Needle_Passing
  has no user G, so its fold 5 is empty (an error) and the protocol has seven folds.

A sample's
score is the sum of its six sub-scores (6..30); items add ``sub_scores`` (6,) for MUSDL's six
heads. A clip is 160 frames, ``np.linspace(0, n-1, 160).astype(int)`` (MUSDL), the frames
already resized by the preparation: MUSDL centre-crops them to 224 (the ``crop`` pipeline, the
usdl/musdl default here); the ``square`` pipeline resizes them instead.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from pathlib import Path

import numpy as np

from aqa.data.base import (FrameSpan, FramesDataConfig, Sample, build_clip_dataset, find_video,
                           resolve_common)
from aqa.data.sampling import linspace_indices
from aqa.errors import AQAError, DatasetError
from aqa.registry import DATASETS

TASKS = ("Suturing", "Needle_Passing", "Knot_Tying")
HINT = "MUSDL's JIGSAWS data folder holding info/label.pkl, info/splits.pkl and frames/"
SCHEMES = ("4fold", "loso", "louo")
USERS = "BCDEFGHI"  # the eight JIGSAWS surgeons; louo fold k tests USERS[k]
SUPERTRIALS = 5  # repetitions 001..005 of a task; loso fold k tests supertrial k + 1
TRIAL_NAME = re.compile(r"^(?P<task>[A-Za-z_]+)_(?P<user>[B-I])(?P<trial>\d{3})$")
# MUSDL's four folds a task (nzl-thu/MUSDL JIGSAWS/data/info/splits.pkl, commit 205868a, read
# 2026-12-06), as <user><supertrial> codes: used where the data folder has no splits.pkl.
MUSDL_FOLDS = {
    "Suturing": (
        "B001 C002 C003 D004 E001 E004 F004 G004 I002",
        "C004 C005 D003 D005 E003 F005 G002 G003 H001 H005",
        "B003 B005 D001 E005 F001 F002 F003 H004 I004 I005",
        "B002 B004 C001 D002 E002 G001 G005 H003 I001 I003"),
    "Needle_Passing": (
        "B002 B003 B004 C002 D004 E004 F004",
        "D001 D005 E003 E005 H002 H005 I004",
        "B001 C003 C004 C005 E001 F003 I002",
        "C001 D002 D003 F001 H004 I003 I005"),
    "Knot_Tying": (
        "B001 C004 F005 G001 G003 H003 H005 I001 I002",
        "B004 D005 E001 E002 E003 E004 E005 G004 G005",
        "B002 B003 C001 D001 D002 F001 G002 H004 I005",
        "C002 C003 C005 D003 D004 F002 F003 F004 I003"),
}


@dataclass
class JIGSAWSDataConfig(FramesDataConfig):
    num_frames: int = 160  # frames per trial, linspace over the whole trial (MUSDL)
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    task: str = "Suturing"  # Suturing, Needle_Passing or Knot_Tying
    scheme: str = "4fold"  # cross-validation folds: 4fold (MUSDL's splits.pkl), loso, louo
    fold: int = 0  # the test fold (4fold 0..3, loso 0..4 = supertrial 1..5, louo 0..7 = user B..I)
    view: str = "capture1"  # camera folder suffix (MUSDL uses the left view, capture1)


def _load(path: Path):
    from aqa.safe_pickle import safe_load

    if not path.is_file():
        raise DatasetError(f"no {path.name} at {path}; expected {HINT}")
    try:
        return safe_load(path)
    except AQAError as exc:
        raise DatasetError(f"{path}: not a readable pickle ({exc})") from exc


def fold_count(scheme: str) -> int:
    return {"4fold": 4, "loso": SUPERTRIALS, "louo": len(USERS)}[scheme]


def fold_label(scheme: str, fold: int) -> str:
    """What fold ``fold`` of ``scheme`` tests, in words: ``fold 2``, ``supertrial 3``, ``user D``."""
    if scheme == "loso":
        return f"supertrial {fold + 1}"
    if scheme == "louo":
        return f"user {USERS[fold]}"
    return f"fold {fold}"


def parse_trial(name: str) -> tuple[str, str, int]:
    """``Suturing_B003`` -> ``("Suturing", "B", 3)``; a DatasetError for any other shape."""
    m = TRIAL_NAME.match(name)
    if not m or m["task"] not in TASKS or not 1 <= int(m["trial"]) <= SUPERTRIALS:
        raise DatasetError(f"{name!r} is not a JIGSAWS trial name <Task>_<user B..I><001..005> "
                           f"(Task one of {', '.join(TASKS)})")
    return m["task"], m["user"], int(m["trial"])


def musdl_folds(task: str) -> list[list[str]]:
    """MUSDL's four published folds of ``task`` (:data:`MUSDL_FOLDS`) as trial names."""
    return [[f"{task}_{code}" for code in fold.split()] for fold in MUSDL_FOLDS[task]]


def folds_source(cfg: JIGSAWSDataConfig) -> str:
    """Where a resolved 4fold config's folds come from, in words: MUSDL's published lists, or
    the data folder's splits.pkl and whether it holds those (the same trials in the same folds;
    the folds' order does not change the 4-fold mean)."""
    path = Path(cfg.root) / "info" / "splits.pkl"
    if not path.is_file():
        return "MUSDL's published folds (no info/splits.pkl in the data folder)"
    own = sorted(sorted(names) for _, names in task_folds(cfg, {}) if names)
    if own == sorted(sorted(f) for f in musdl_folds(cfg.task)):  # the folds' order is no matter
        return "info/splits.pkl: MUSDL's published folds"
    return ("info/splits.pkl, which differs from MUSDL's published folds: the numbers are not "
            "comparable with the papers' 4-fold numbers")


def task_folds(cfg: JIGSAWSDataConfig, labels: dict) -> list[tuple[str, list[str]]]:
    """``[(label, test trial names)]`` for every fold of ``cfg.scheme`` on ``cfg.task`` (a fold
    may be empty: user G never did Needle_Passing); ``labels`` is label.pkl's dict."""
    root = Path(cfg.root)
    if cfg.scheme == "4fold":
        path = root / "info" / "splits.pkl"
        if path.is_file():
            folds = _load(path)
            if cfg.task not in folds:
                raise DatasetError(f"{path}: no task {cfg.task!r} (has {', '.join(folds)})")
            lists = [list(f) for f in folds[cfg.task]]
        else:
            lists = musdl_folds(cfg.task)
        return [(fold_label("4fold", k), names) for k, names in enumerate(lists)]
    trials = sorted(n for n in labels if n.startswith(cfg.task + "_"))
    if not trials:
        raise DatasetError(f"{root / 'info' / 'label.pkl'}: no {cfg.task} trials")
    key = 2 if cfg.scheme == "loso" else 1
    of = [parse_trial(n)[key] for n in trials]
    values = range(1, SUPERTRIALS + 1) if cfg.scheme == "loso" else USERS
    return [(fold_label(cfg.scheme, k), [n for n, v in zip(trials, of) if v == value])
            for k, value in enumerate(values)]


def folds_of(cfg: JIGSAWSDataConfig) -> list[tuple[int, str, list[str]]]:
    """The folds of a resolved config that have test trials: ``[(fold, label, test names)]``."""
    labels = _load(Path(cfg.root) / "info" / "label.pkl")
    return [(k, label, names) for k, (label, names) in enumerate(task_folds(cfg, labels)) if names]


@DATASETS.register("jigsaws")
class JIGSAWSDataset:
    config_cls = JIGSAWSDataConfig
    description = "JIGSAWS surgical skill (3 tasks; 4-fold, LOSO or LOUO folds; six GRS sub-scores)"

    @classmethod
    def resolve(cls, cfg: JIGSAWSDataConfig, workspace: Path) -> JIGSAWSDataConfig:
        from dataclasses import replace

        cfg = resolve_common(cfg, workspace, "jigsaws", HINT)
        if cfg.task not in TASKS:
            raise DatasetError(f"unknown data.task {cfg.task!r}; choose one of {', '.join(TASKS)}")
        if cfg.scheme not in SCHEMES:
            raise DatasetError(f"unknown data.scheme {cfg.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if not 0 <= cfg.fold < fold_count(cfg.scheme):
            raise DatasetError(f"data.fold must be 0..{fold_count(cfg.scheme) - 1} with "
                               f"data.scheme={cfg.scheme}, got {cfg.fold}")
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
        folds = task_folds(cfg, labels)
        if not folds[cfg.fold][1]:
            raise DatasetError(f"{cfg.task} has no trials in {fold_label(cfg.scheme, cfg.fold)} "
                               f"(data.scheme={cfg.scheme}, data.fold={cfg.fold}); "
                               f"the task's folds with trials: "
                               f"{', '.join(str(k) for k, (_, test) in enumerate(folds) if test)}")
        names = [n for k, (_, fold) in enumerate(folds)
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
