"""``pd4t``: PD4T Parkinson's tasks (PECoP, WACV 2024), in PECoP's list-file format.

``--data-root`` is the frames folder (PECoP's ``rgb_prefix``)::

    <num_p>/<sample_name>/img_{i:05d}.jpg      frames, 1-based
    train.list, test.list                      lines "sample_name label num_frames num_p"
                                               (also looked up in label/ and <task>/label/)

The label is the UPDRS score 0..4 (the sample's ``score``; items add ``label``). PECoP reads
``num_frames - 3`` frames of a sample as usable; so does this adapter. ``aqa data pecop-lists``
writes such lists for another dataset (MTL-AQA) so PECoP's pretext task can run on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aqa.data.base import FrameSpan, FramesDataConfig, Sample, build_clip_dataset, resolve_common
from aqa.errors import DatasetError
from aqa.registry import DATASETS

HINT = "the PD4T frames folder (<num_p>/<sample>/img_00001.jpg) with train.list and test.list"
UNUSABLE_TAIL = 3  # PECoP uses num_frames - 3 frames of each sample


@dataclass
class PD4TDataConfig(FramesDataConfig):
    num_frames: int = 32  # frames per clip (PECoP: 32)
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    pipeline: str = "tvv"  # spatial preprocessing (torch_videovision, 256x455; pecop sets tvv_cv2, its cv2 path)
    task: str = ""  # sub-folder of the root holding this task's frames and label/ (empty: the root)
    train_list: str = "train.list"  # PECoP list of the training samples
    test_list: str = "test.list"  # PECoP list of the test samples


def read_pecop_list(path: Path) -> list[tuple[str, int, int, str]]:
    """Rows ``(sample_name, label, num_frames, num_p)`` of a PECoP list file."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise DatasetError(f"{path} line {n}: expected 'sample_name label num_frames num_p', "
                               f"got {line!r}")
        try:
            rows.append((parts[0], int(float(parts[1])), int(parts[2]), parts[3]))
        except ValueError:
            raise DatasetError(f"{path} line {n}: label and num_frames must be numbers, got {line!r}") from None
    return rows


def find_list(root: Path, name: str) -> Path:
    for cand in (root / name, root / "label" / name):
        if cand.is_file():
            return cand
    raise DatasetError(f"no PECoP list {name} in {root} or {root / 'label'}; expected {HINT}")


@DATASETS.register("pd4t")
class PD4TDataset:
    config_cls = PD4TDataConfig
    description = "PD4T Parkinson's tasks (UPDRS 0-4) in PECoP's list format"

    @classmethod
    def resolve(cls, cfg: PD4TDataConfig, workspace: Path) -> PD4TDataConfig:
        return resolve_common(cfg, workspace, "pd4t", HINT)

    @classmethod
    def prepare(cls, cfg: PD4TDataConfig) -> None:
        """Nothing to make: the frames are distributed on request."""

    @classmethod
    def samples(cls, cfg: PD4TDataConfig, split: str) -> list[Sample]:
        if split not in ("train", "test"):
            return []
        root = Path(cfg.root) / cfg.task if cfg.task else Path(cfg.root)
        rows = read_pecop_list(find_list(root, cfg.train_list if split == "train" else cfg.test_list))
        out = []
        for name, label, num_frames, num_p in rows:
            usable = max(num_frames - UNUSABLE_TAIL, 1)
            out.append(Sample(id=name, video=root / num_p / name, score=float(label), split=split,
                              frames=FrameSpan(1, usable, pattern="img_{:05d}.jpg"),
                              meta={"label": float(label), "num_p": num_p}))
        return out

    @classmethod
    def build(cls, cfg: PD4TDataConfig, split: str, train: bool, seed: int = 0):
        return build_clip_dataset(cfg, cls.samples(cfg, split), split, train, seed, "PD4T",
                                  extra_keys=("label",))
