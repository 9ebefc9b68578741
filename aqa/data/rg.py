"""``rg``: Rhythmic Gymnastics (Zeng et al., ACM MM 2020), 1000 routines of four apparatus, read
as per-clip features the way GDLT (CVPR 2022, ``xuangch/CVPR22_GDLT``) distributes them.

``--data-root`` holds the label files and one feature folder::

    train.txt, test.txt                 a header line, then "name difficulty execution total"
                                        (whitespace separated; name = apparatus_number, Ball_001)
    swintx_avg_fps25_clip32/Ball_001.npy ...   T x 1024 per routine (data.features)
    videos/Ball_001.mp4 ...             only for `aqa features extract --dataset rg`

``data.apparatus`` (Ball, Clubs, Hoop, Ribbon, or all) picks the routines by the name's prefix
before ``_``; ``data.target`` (difficulty, execution, total) the score. Scores are the judges'
raw points; items carry all three columns. Items are those of ``aqa.data.features``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from aqa.config import DataConfig
from aqa.data.base import Sample, find_video
from aqa.data.features import FeatureOptions, build_feature_dataset, read_label_file
from aqa.errors import DatasetError
from aqa.registry import DATASETS

APPARATUS = ("Ball", "Clubs", "Hoop", "Ribbon")
COLUMNS = {"difficulty": 1, "execution": 2, "total": 3}  # positions in a label line
TARGETS = tuple(COLUMNS)
HINT = ("the RG folder holding train.txt/test.txt and the feature folder "
        "(swintx_avg_fps25_clip32/<name>.npy)")


@dataclass
class RGDataConfig(FeatureOptions, DataConfig):
    features: str = "swintx_avg_fps25_clip32"  # the feature folder (relative to the root, or absolute): <name>.npy of T x D
    train_labels: str = "train.txt"  # label file of the training routines (header, then name difficulty execution total)
    test_labels: str = "test.txt"  # label file of the test routines
    apparatus: str = "Ball"  # the routines to use: Ball, Clubs, Hoop, Ribbon or all
    target: str = "total"  # the score to learn: difficulty, execution or total


def feature_folder(cfg) -> Path:
    return Path(cfg.root) / Path(cfg.features).expanduser()


def video_of(root: Path, name: str) -> Path:
    """The routine's video (for extraction): ``videos/<name>.<ext>`` or ``<name>.<ext>``."""
    for folder in (root / "videos", root):
        if (found := find_video(folder, name)) is not None:
            return found
    return root / "videos" / f"{name}.mp4"


@DATASETS.register("rg")
class RGDataset:
    config_cls = RGDataConfig
    description = ("Rhythmic Gymnastics (ball, clubs, hoop, ribbon; difficulty / execution / "
                   "total) as per-clip features (GDLT's layout)")

    @classmethod
    def resolve(cls, cfg: RGDataConfig, workspace: Path) -> RGDataConfig:
        if not cfg.root:
            raise DatasetError(f"the rg dataset needs --data-root: {HINT}")
        root = Path(cfg.root).expanduser().resolve()
        if not root.is_dir():
            raise DatasetError(f"rg data root {root} does not exist; pass --data-root with {HINT}")
        if cfg.apparatus not in APPARATUS + ("all",):
            raise DatasetError(f"unknown data.apparatus {cfg.apparatus!r}; choose one of "
                               f"{', '.join(APPARATUS)} or all")
        if cfg.target not in TARGETS:
            raise DatasetError(f"unknown data.target {cfg.target!r}; choose one of {', '.join(TARGETS)}")
        return replace(cfg, root=str(root))

    @classmethod
    def prepare(cls, cfg: RGDataConfig) -> None:
        """Nothing to make: the features are the user's (or `aqa features extract`'s)."""

    @classmethod
    def routines(cls, cfg: RGDataConfig, split: str) -> list[tuple[str, dict[str, float]]]:
        """``(name, scores)`` of every routine of the split's label file, all apparatus."""
        name = cfg.train_labels if split == "train" else cfg.test_labels
        return read_label_file(Path(cfg.root) / name, COLUMNS, "rg")

    @classmethod
    def samples(cls, cfg: RGDataConfig, split: str) -> list[Sample]:
        if split not in ("train", "test"):
            return []
        folder = feature_folder(cfg)
        out = []
        for name, scores in cls.routines(cfg, split):
            if cfg.apparatus != "all" and name.split("_")[0] != cfg.apparatus:
                continue
            npy = folder / f"{name}.npy"
            out.append(Sample(id=name, video=npy, score=scores[cfg.target], split=split,
                              meta={**scores, "features": str(npy),
                                    "apparatus": name.split("_")[0]}))
        return out

    @classmethod
    def videos(cls, cfg: RGDataConfig) -> list[tuple[str, Path]]:
        """``(name, video)`` of every routine in both label files (for feature extraction)."""
        root = Path(cfg.root)
        names = dict.fromkeys(n for split in ("train", "test") for n, _ in cls.routines(cfg, split))
        return [(n, video_of(root, n)) for n in names]

    @classmethod
    def build(cls, cfg: RGDataConfig, split: str, train: bool, seed: int = 0):
        return build_feature_dataset(cfg, cls.samples(cfg, split), split, train, seed, "rg",
                                     feature_folder(cfg), TARGETS)
