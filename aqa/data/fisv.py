"""``fisv``: Fis-V figure skating (Xu et al., 2019), 500 short programs, TES or PCS.

``--data-root`` is the Fis-V folder::

    videos/1.mp4 ... videos/500.mp4      (or 1.mp4 ... in the root itself)
    <scores>.csv                         header number,total,tes,pcs,ded (one row a video)
    train.txt, test.txt                  lines "number tes pcs ded" (400 / 100)

The target is ``tes``, ``pcs`` or ``total`` (``data.target``). Scores come from the score file,
or from the list lines when there is none. The clips are long (about 2 min 50 s); a clip is
``num_frames`` frames spread uniformly over the whole program. Items add ``tes``, ``pcs`` and
``ded`` so a model can predict both.

**Features mode** (``data.features`` set: a folder of ``<name>.npy``, T x D, relative to the root
or absolute): the layout GDLT (``xuangch/CVPR22_GDLT``) and CoFInAl distribute Fis-V in, the
label files holding a header line, then ``name TES PCS`` (TES in column 1, PCS in column 2, as
the official readers take them; more columns are ignored), and the same ``train.txt``/``test.txt``
names. The video-mode lists above (``number tes pcs ded``, no header) are read too, so features
extracted from the videos (``aqa features extract --dataset fisv``) train with the same lists.
Items are those of ``aqa.data.features`` with ``tes`` and ``pcs``; ``total`` needs the score CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aqa.data.base import FramesDataConfig, Sample, build_clip_dataset, find_video, resolve_common
from aqa.data.features import FeatureOptions, build_feature_dataset, read_label_file
from aqa.errors import DatasetError
from aqa.registry import DATASETS

TARGETS = ("tes", "pcs", "total")
FEATURE_COLUMNS = {"tes": 1, "pcs": 2}  # label-file positions in the official feature release
HINT = "the Fis-V folder holding the videos (1.mp4 ... 500.mp4), the score CSV and train.txt/test.txt"


@dataclass
class FisVDataConfig(FeatureOptions, FramesDataConfig):
    num_frames: int = 128  # frames spread uniformly over each program
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    target: str = "tes"  # the score to learn: tes, pcs or total
    score_file: str = ""  # CSV with number,total,tes,pcs,ded (empty: the root's CSV with that header)
    train_list: str = "train.txt"  # lines "number tes pcs ded" of the training programs
    test_list: str = "test.txt"  # lines "number tes pcs ded" of the test programs
    features: str = ""  # features mode: the folder of <name>.npy (T x D) per program, relative to the root (GDLT's swintx_avg_fps25_clip32); empty = read the videos


def _find_score_file(root: Path, name: str) -> Path | None:
    if name:
        return root / name
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="") as f:
            header = [h.strip().lower() for h in next(csv.reader(f), [])]
        if {"number", "tes", "pcs"} <= set(header):
            return path
    return None


def read_scores(path: Path) -> dict[int, dict[str, float]]:
    if not path.is_file():
        raise DatasetError(f"no Fis-V score file at {path}; expected a CSV with the header "
                           "number,total,tes,pcs,ded")
    out = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [h.strip().lower() for h in reader.fieldnames or []]
        for n, row in enumerate(reader, start=2):
            try:
                out[int(float(row["number"]))] = {k: float(row[k]) for k in ("total", "tes", "pcs", "ded")
                                                  if row.get(k) not in (None, "")}
            except (KeyError, ValueError):
                raise DatasetError(f"{path} line {n}: expected number,total,tes,pcs,ded, got {row}") from None
    return out


def read_list(path: Path) -> list[tuple[int, dict[str, float]]]:
    if not path.is_file():
        raise DatasetError(f"no Fis-V list file at {path}; expected lines 'number tes pcs ded'")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise DatasetError(f"{path} line {n}: expected 'number tes pcs ded', got {line!r}") from None
        scores = dict(zip(("tes", "pcs", "ded"), values[1:4]))
        if {"tes", "pcs", "ded"} <= scores.keys():
            scores["total"] = scores["tes"] + scores["pcs"] - scores["ded"]
        out.append((int(values[0]), scores))
    return out


def _video(root: Path, number: int) -> Path:
    for folder in (root / "videos", root):
        if (found := find_video(folder, str(number))) is not None:
            return found
    return (root / "videos" if (root / "videos").is_dir() else root) / f"{number}.mp4"


@DATASETS.register("fisv")
class FisVDataset:
    config_cls = FisVDataConfig
    description = "Fis-V figure skating (500 short programs, 400 train / 100 test), TES or PCS"

    @classmethod
    def resolve(cls, cfg: FisVDataConfig, workspace: Path) -> FisVDataConfig:
        cfg = resolve_common(cfg, workspace, "fisv", HINT)
        if cfg.target not in TARGETS:
            raise DatasetError(f"unknown data.target {cfg.target!r}; choose one of {', '.join(TARGETS)}")
        return cfg

    @classmethod
    def prepare(cls, cfg: FisVDataConfig) -> None:
        """Nothing to make: the videos are the user's."""

    @classmethod
    def samples(cls, cfg: FisVDataConfig, split: str) -> list[Sample]:
        if split not in ("train", "test"):
            return []
        if cfg.features:
            return cls.feature_samples(cfg, split)
        root = Path(cfg.root)
        score_path = _find_score_file(root, cfg.score_file)
        table = read_scores(score_path) if score_path is not None else {}
        out = []
        for number, listed in read_list(root / (cfg.train_list if split == "train" else cfg.test_list)):
            scores = {**listed, **table.get(number, {})}
            if cfg.target not in scores:
                raise DatasetError(f"Fis-V program {number}: no {cfg.target} score in "
                                   f"{score_path or 'the list file'}")
            meta = {k: float(scores.get(k, 0.0)) for k in ("tes", "pcs", "ded")}
            out.append(Sample(id=str(number), video=_video(root, number), score=scores[cfg.target],
                              split=split, meta=meta))
        return out

    @classmethod
    def feature_samples(cls, cfg: FisVDataConfig, split: str) -> list[Sample]:
        """Features mode: one sample a label line, its features ``<features>/<name>.npy``."""
        root = Path(cfg.root)
        score_path = _find_score_file(root, cfg.score_file)
        table = read_scores(score_path) if score_path is not None else {}
        folder = root / Path(cfg.features).expanduser()
        out = []
        lines = read_label_file(root / (cfg.train_list if split == "train" else cfg.test_list),
                                FEATURE_COLUMNS, "Fis-V")
        for name, scores in lines:
            number = int(name) if name.isdigit() else None
            scores = {**scores, **table.get(number, {})}
            if cfg.target not in scores:
                raise DatasetError(f"Fis-V program {name}: no {cfg.target} score (the label files "
                                   "hold TES and PCS; total needs the score CSV)")
            npy = folder / f"{name}.npy"
            out.append(Sample(id=name, video=npy, score=scores[cfg.target], split=split,
                              meta={"tes": scores["tes"], "pcs": scores["pcs"], "features": str(npy)}))
        return out

    @classmethod
    def videos(cls, cfg: FisVDataConfig) -> list[tuple[str, Path]]:
        """``(name, video)`` of every program of both lists (for feature extraction)."""
        root = Path(cfg.root)
        names = dict.fromkeys(name for split in ("train", "test") for name, _ in read_label_file(
            root / (cfg.train_list if split == "train" else cfg.test_list), FEATURE_COLUMNS, "Fis-V"))
        return [(n, _video(root, int(n)) if n.isdigit() else root / "videos" / f"{n}.mp4")
                for n in names]

    @classmethod
    def build(cls, cfg: FisVDataConfig, split: str, train: bool, seed: int = 0):
        if cfg.features:
            return build_feature_dataset(cfg, cls.samples(cfg, split), split, train, seed, "Fis-V",
                                         Path(cfg.root) / Path(cfg.features).expanduser(),
                                         ("tes", "pcs"))
        return build_clip_dataset(cfg, cls.samples(cfg, split), split, train, seed, "Fis-V",
                                  extra_keys=("tes", "pcs", "ded"))
