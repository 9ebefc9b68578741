"""``frfs``: FR-FS, fall recognition in figure skating (TSA-Net, ACM MM 2021), a 2-class task.

``--data-root`` is the ``FRFS`` folder as distributed::

    Train.xls, Test.xls      Sheet1, a header row, then (key, label); class 1 if label > 0.5
    Images/<key>/*.jpg       frames, sorted by name; the first 103 are used
    FRFS_Boxes.json          {key: [[x1, y1, ..., x4, y4] per frame]} SiamMask corner points in
                             640x360 pixels (optional; items then carry ``boxes`` (T, 8))

The ``.xls`` files (BIFF8, legacy Excel) are read by ``xlrd`` (:func:`read_xls`), as the official
loader reads them. A ``Train.csv`` / ``Test.csv`` (same two columns) next to them takes
precedence. Items carry ``label`` (0. or 1.) and ``score`` = label, so regression code paths work
too. The boxes are raw: TSA-Net swaps corners
3 and 4 of frame 0 before rasterising, which is the method's business.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aqa.data.base import FrameSpan, FramesDataConfig, Sample, build_clip_dataset, resolve_common
from aqa.errors import DatasetError
from aqa.registry import DATASETS

SHEETS = {"train": "Train", "test": "Test"}
HINT = "the FRFS folder holding Train.xls, Test.xls, Images/ and FRFS_Boxes.json"


@dataclass
class FRFSDataConfig(FramesDataConfig):
    num_frames: int = 103  # frames per sample (the first 103 of each folder)
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    pipeline: str = "musdl"  # spatial preprocessing: TSA-Net resizes to 455x256 and centre-crops
    use_boxes: bool = True  # add the SiamMask boxes of FRFS_Boxes.json to each item (when present)


def read_labels(root: Path, split: str) -> list[tuple[str, float]]:
    """(key, label) rows of ``Train``/``Test`` (.xls through xlrd, or .csv)."""
    stem = SHEETS[split]
    xls, csv_path = root / f"{stem}.xls", root / f"{stem}.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))[1:]
    elif xls.is_file():
        rows = [[_cell_text(v) for v in row] for row in read_xls(xls, "Sheet1")[1:]]
    else:
        raise DatasetError(f"no {stem}.xls (or {stem}.csv) in {root}; expected {HINT}")
    out = []
    for n, row in enumerate(rows, start=2):
        if not row or not str(row[0]).strip():
            continue
        try:
            out.append((str(row[0]).strip(), float(row[1])))
        except (IndexError, ValueError):
            raise DatasetError(f"{root / stem} row {n}: expected key,label with a numeric label, "
                               f"got {row!r}") from None
    return out


def read_xls(path: str | Path, sheet: str) -> list[list]:
    """The rows of ``sheet`` of a legacy Excel ``.xls`` file (cells as str/float), through xlrd."""
    try:
        import xlrd
    except ImportError:
        raise DatasetError(f"{path}: reading .xls needs xlrd (pip install xlrd), or save the "
                           f"sheet as CSV next to it") from None
    try:  # xlrd's warnings go to a buffer, not to our stdout
        book = xlrd.open_workbook(str(path), on_demand=True, logfile=io.StringIO())
    except (xlrd.XLRDError, xlrd.compdoc.CompDocError) as exc:
        raise DatasetError(f"{path}: not an OLE2 .xls file ({exc}); an .xlsx or a CSV renamed? "
                           "save the sheet as CSV next to it") from None
    try:
        if sheet not in book.sheet_names():
            raise DatasetError(f"{path}: no sheet {sheet!r} (has {', '.join(book.sheet_names())})")
        table = book.sheet_by_name(sheet)
        return [table.row_values(r) for r in range(table.nrows)]
    finally:
        book.release_resources()


def _cell_text(value) -> str:
    """A sheet cell as text: keys stored as numbers lose their ``.0`` (``12.0`` -> ``12``)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _frames(folder: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")))
    except OSError:
        return ()


@DATASETS.register("frfs")
class FRFSDataset:
    config_cls = FRFSDataConfig
    description = "FR-FS figure-skating falls (classification: fall / no fall)"

    @classmethod
    def resolve(cls, cfg: FRFSDataConfig, workspace: Path) -> FRFSDataConfig:
        from dataclasses import replace

        cfg = resolve_common(cfg, workspace, "frfs", HINT)
        root = Path(cfg.root)
        if not (root / "Images").is_dir() and (root / "FRFS").is_dir():
            cfg = replace(cfg, root=str(root / "FRFS"))
        return cfg

    @classmethod
    def prepare(cls, cfg: FRFSDataConfig) -> None:
        """Nothing to make: the frames come with the dataset."""

    @classmethod
    def _boxes(cls, cfg: FRFSDataConfig) -> dict | None:
        path = Path(cfg.root) / "FRFS_Boxes.json"
        if not cfg.use_boxes or not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from exc

    @classmethod
    def samples(cls, cfg: FRFSDataConfig, split: str) -> list[Sample]:
        if split not in SHEETS:
            return []
        root = Path(cfg.root)
        boxes = cls._boxes(cfg)
        out = []
        for key, value in read_labels(root, split):
            label = 1 if value > 0.5 else 0
            files = _frames(root / "Images" / key)
            meta = {"label": float(label)}
            if boxes is not None:
                b = np.asarray(boxes.get(key, []), dtype=np.float32).reshape(-1, 8)
                if len(b) < cfg.num_frames:  # absent or short: zeros (the doctor reports it)
                    b = np.concatenate([b, np.zeros((cfg.num_frames - len(b), 8), np.float32)])
                meta["boxes"] = b[:cfg.num_frames]
            span = FrameSpan(0, min(len(files), cfg.num_frames) if files else cfg.num_frames,
                             files=files) if files else FrameSpan(1, cfg.num_frames, pattern="{:05d}.jpg")
            out.append(Sample(id=key, video=root / "Images" / key, score=float(label), split=split,
                              frames=span, window_start=0, meta=meta))
        return out

    @classmethod
    def build(cls, cfg: FRFSDataConfig, split: str, train: bool, seed: int = 0):
        extra = ("label", "boxes") if cls._boxes(cfg) is not None else ("label",)
        return build_clip_dataset(cfg, cls.samples(cfg, split), split, train, seed, "FR-FS",
                                  extra_keys=extra)
