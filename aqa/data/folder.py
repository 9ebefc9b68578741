"""``folder``: a folder of clips plus a score CSV, the format a user brings; and ``synthetic``.

The CSV (default ``scores.csv`` in the root) has a header with at least ``video`` and ``score``,
and optionally ``difficulty`` and ``split`` (``train``/``test``). ``video`` is a path relative
to the root; it may not point outside the root. Without a ``split`` column, a seeded
``test_fraction`` of the rows is the test split.

``synthetic`` is the same format, rendered by ``aqa.data.synthetic`` into the workspace
(``<runs-dir>/datasets/synthetic``) on first use.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aqa.config import DataConfig
from aqa.data.base import ClipDataset, Sample
from aqa.data.features import FeatureOptions, build_feature_dataset
from aqa.errors import DatasetError
from aqa.registry import DATASETS


@dataclass
class FolderDataConfig(DataConfig):
    csv: str = "scores.csv"  # score file inside the root: video,score[,difficulty,split]
    test_fraction: float = 0.2  # share of rows used as test split when the CSV has no split column
    split_seed: int = 0  # seed of that random split
    pipeline: str = "square"  # spatial preprocessing: square (frame_size x frame_size), tvv (CoRe/TPT/PECoP), tvv_fixed, musdl


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative``, refusing paths that escape ``root`` (absolute, ``..``, symlinks out)."""
    root_r = root.resolve()
    path = (root_r / relative).resolve()
    if path != root_r and root_r not in path.parents:
        raise DatasetError(f"{relative!r} points outside the dataset root {root}; "
                           "use paths relative to the root")
    return path


def read_score_csv(root: Path, csv_name: str, test_fraction: float, split_seed: int) -> list[Sample]:
    root = Path(root)
    path = safe_join(root, csv_name)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; pass --data-root with the folder "
                           "holding your clips and their score CSV")
    if not path.is_file():
        raise DatasetError(f"no score file {path}; the folder dataset needs a CSV with the header "
                           "video,score[,difficulty,split]")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        header = rows[0].keys() if rows else []
    missing = {"video", "score"} - set(header)
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                           "expected the header video,score[,difficulty,split]")
    has_split = "split" in header
    rng = np.random.default_rng(split_seed)
    test_mask = rng.random(len(rows)) < test_fraction
    samples = []
    for n, row in enumerate(rows, start=2):
        try:
            score = float(row["score"])
            difficulty = float(row.get("difficulty") or 1.0)
        except ValueError:
            raise DatasetError(f"{path} line {n}: score/difficulty must be numbers, "
                               f"got {row.get('score')!r}/{row.get('difficulty')!r}") from None
        split = (row["split"].strip() if has_split else ("test" if test_mask[n - 2] else "train"))
        if split not in ("train", "test", "val"):
            raise DatasetError(f"{path} line {n}: split must be train, val or test, got {split!r}")
        video = safe_join(root, row["video"])
        samples.append(Sample(id=Path(row["video"]).stem, video=video, score=score,
                              difficulty=difficulty, split=split))
    return samples


@DATASETS.register("folder")
class FolderDataset:
    config_cls = FolderDataConfig
    description = "a folder of clips with a score CSV (video,score[,difficulty,split])"

    @classmethod
    def resolve(cls, cfg: FolderDataConfig, workspace: Path) -> FolderDataConfig:
        """Fill in defaults that depend on the workspace; make the root absolute."""
        if not cfg.root:
            raise DatasetError("the folder dataset needs --data-root: the folder holding the clips "
                               "and the score CSV")
        from dataclasses import replace
        return replace(cfg, root=str(Path(cfg.root).expanduser().resolve()))

    @classmethod
    def prepare(cls, cfg: FolderDataConfig) -> None:
        """Make sure the data exists (nothing to do for a user's folder)."""

    @classmethod
    def samples(cls, cfg: FolderDataConfig, split: str) -> list[Sample]:
        rows = read_score_csv(Path(cfg.root), cfg.csv, cfg.test_fraction, cfg.split_seed)
        return [s for s in rows if s.split == split]

    @classmethod
    def build(cls, cfg: FolderDataConfig, split: str, train: bool, seed: int = 0) -> ClipDataset:
        from aqa.data.transforms import build_pipeline

        return ClipDataset(cls.samples(cfg, split), cfg.num_frames, cfg.frame_size, train=train,
                           hflip=cfg.hflip, cache=cfg.cache, seed=seed,
                           pipeline=build_pipeline(cfg.pipeline, cfg.frame_size, cfg.hflip),
                           video_resize=cfg.video_resize)


@dataclass
class SyntheticDataConfig(FolderDataConfig):
    num_clips: int = 240  # clips rendered for the synthetic dataset
    render_seed: int = 0  # seed of the renderer (same seed, same clips and scores)


def default_synthetic_root(workspace: Path) -> Path:
    return Path(workspace).resolve() / "datasets" / "synthetic"


@DATASETS.register("synthetic")
class SyntheticDataset(FolderDataset):
    config_cls = SyntheticDataConfig
    description = "built-in synthetic dives (rendered MP4 clips + scores.csv), for the demo and tests"

    @classmethod
    def resolve(cls, cfg: SyntheticDataConfig, workspace: Path) -> SyntheticDataConfig:
        from dataclasses import replace
        root = Path(cfg.root).expanduser() if cfg.root else default_synthetic_root(workspace)
        return replace(cfg, root=str(root.resolve()))

    @classmethod
    def prepare(cls, cfg: SyntheticDataConfig) -> None:
        from aqa.data.synthetic import render_dataset
        render_dataset(Path(cfg.root), num_clips=cfg.num_clips, seed=cfg.render_seed)


@dataclass
class FolderFeaturesDataConfig(FeatureOptions, DataConfig):
    csv: str = "scores.csv"  # score file inside the root: video,score[,difficulty,split]; a row's features are <features>/<video's stem>.npy
    features: str = "features"  # the folder of <name>.npy (T x D) per video, relative to the root or absolute
    test_fraction: float = 0.2  # share of rows used as test split when the CSV has no split column
    split_seed: int = 0  # seed of that random split


def feature_rows(root: Path, csv_name: str, folder: str, test_fraction: float,
                 split_seed: int) -> list[Sample]:
    """The score CSV's rows as feature samples: ``<folder>/<stem of video>.npy``."""
    folder_path = root / Path(folder).expanduser()
    out = []
    for s in read_score_csv(root, csv_name, test_fraction, split_seed):
        npy = folder_path / f"{s.id}.npy"
        out.append(Sample(id=s.id, video=npy, score=s.score, difficulty=s.difficulty,
                          split=s.split, meta={"features": str(npy), "difficulty": s.difficulty,
                                               "source": str(s.video)}))
    return out


@DATASETS.register("folder_features")
class FolderFeaturesDataset:
    """A user's folder of clips (the ``folder`` dataset's score CSV) read as per-clip features
    (``python -m aqa features extract --dataset folder``): items of ``aqa.data.features``."""

    config_cls = FolderFeaturesDataConfig
    description = "a folder's score CSV with a feature folder of <name>.npy (T x D) per video"

    @classmethod
    def resolve(cls, cfg: FolderFeaturesDataConfig, workspace: Path) -> FolderFeaturesDataConfig:
        if not cfg.root:
            raise DatasetError("the folder_features dataset needs --data-root: the folder holding "
                               "the score CSV and the feature folder")
        from dataclasses import replace
        return replace(cfg, root=str(Path(cfg.root).expanduser().resolve()))

    @classmethod
    def prepare(cls, cfg: FolderFeaturesDataConfig) -> None:
        """Nothing to make: extract the features with `python -m aqa features extract`."""

    @classmethod
    def samples(cls, cfg: FolderFeaturesDataConfig, split: str) -> list[Sample]:
        rows = feature_rows(Path(cfg.root), cfg.csv, cfg.features, cfg.test_fraction, cfg.split_seed)
        return [s for s in rows if s.split == split]

    @classmethod
    def build(cls, cfg: FolderFeaturesDataConfig, split: str, train: bool, seed: int = 0):
        return build_feature_dataset(cfg, cls.samples(cfg, split), split, train, seed, "folder",
                                     Path(cfg.root) / Path(cfg.features).expanduser(), ("difficulty",))
