"""``frfs``: FR-FS, fall recognition in figure skating (TSA-Net, ACM MM 2021), a 2-class task.

``--data-root`` is the ``FRFS`` folder as distributed::

    Train.xls, Test.xls      Sheet1, a header row, then (key, label); class 1 if label > 0.5
    Images/<key>/*.jpg       frames, sorted by name; the first 103 are used
    FRFS_Boxes.json          {key: [[x1, y1, ..., x4, y4] per frame]} SiamMask corner points in
                             640x360 pixels (optional; items then carry ``boxes`` (T, 8))

The ``.xls`` files are read by ``xlrd`` when it is installed, else by the small BIFF8 reader at
the end of this module (:func:`read_xls`: shared strings, numbers, labels; enough for these
sheets). A ``Train.csv`` / ``Test.csv`` (same two columns) next to them takes precedence. Items carry ``label`` (0. or 1.) and
``score`` = label, so regression code paths work too. The boxes are raw: TSA-Net swaps corners
3 and 4 of frame 0 before rasterising, which is the method's business.
"""

from __future__ import annotations

import csv
import json
import struct
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
        try:
            import xlrd
        except ImportError:
            table = read_xls(xls)  # the first sheet (Sheet1)
            rows = [[_cell_text(v) for v in row] for row in table[1:]]
        else:
            sheet = xlrd.open_workbook(str(xls)).sheet_by_name("Sheet1")
            rows = [[_cell_text(v) for v in sheet.row_values(r)] for r in range(1, sheet.nrows)]
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


# ----------------------------------------------------------------- a minimal .xls (BIFF8) reader

def read_xls(path: str | Path, sheet: str | None = None) -> list[list]:
    """Rows (lists of str/float/None, ragged rows padded) of ``sheet`` (default: the first) of a
    legacy Excel ``.xls`` file (BIFF8 in an OLE2 container). No dates, formats or formulas."""
    path = Path(path)
    try:
        return _biff_rows(_ole_stream(path.read_bytes(), ("Workbook", "Book")), sheet)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (struct.error, IndexError, UnicodeDecodeError, KeyError) as exc:
        raise DatasetError(f"{path}: not a readable .xls file ({type(exc).__name__}: {exc}); "
                           "save the sheet as CSV next to it") from exc


OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_END = 0xFFFFFFFA  # sector ids at or above this end a chain


def read_xls(path: str | Path, sheet: str | None = None) -> list[list]:
    """Rows (lists of str/float/None, ragged rows padded) of ``sheet`` (default: the first)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        stream = _ole_stream(data, ("Workbook", "Book"))
        return _biff_rows(stream, sheet)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (struct.error, IndexError, UnicodeDecodeError, KeyError) as exc:
        raise DatasetError(f"{path}: not a readable .xls file ({type(exc).__name__}: {exc}); "
                           "save the sheet as CSV next to it") from exc


def _ole_stream(data: bytes, names: tuple[str, ...]) -> bytes:
    if data[:8] != OLE_MAGIC:
        raise DatasetError("not an OLE2 .xls file (an .xlsx or CSV renamed?); save it as CSV")
    u16 = lambda o: struct.unpack_from("<H", data, o)[0]  # noqa: E731
    u32 = lambda o: struct.unpack_from("<I", data, o)[0]  # noqa: E731
    ssz, mssz = 1 << u16(0x1E), 1 << u16(0x20)
    n_fat, dir_start, cutoff = u32(0x2C), u32(0x30), u32(0x38)
    minifat_start, difat_start, n_difat = u32(0x3C), u32(0x44), u32(0x48)

    def sector(i: int) -> bytes:
        return data[512 + i * ssz: 512 + (i + 1) * ssz]

    difat = list(struct.unpack_from("<109I", data, 0x4C))
    s = difat_start
    for _ in range(n_difat):
        vals = struct.unpack(f"<{ssz // 4}I", sector(s))
        difat += vals[:-1]
        s = vals[-1]
    fat: list[int] = []
    for i in difat[:n_fat]:
        fat += struct.unpack(f"<{ssz // 4}I", sector(i))

    def chain(start: int, table: list[int]) -> list[int]:
        out, seen = [], set()
        while start < _END and start not in seen and start < len(table):
            seen.add(start)
            out.append(start)
            start = table[start]
        return out

    directory = b"".join(sector(i) for i in chain(dir_start, fat))
    entries = []
    for off in range(0, len(directory) - 127, 128):
        e = directory[off:off + 128]
        n = struct.unpack_from("<H", e, 64)[0]
        name = e[:max(n - 2, 0)].decode("utf-16-le", "replace")
        entries.append((name, e[66], struct.unpack_from("<I", e, 116)[0], struct.unpack_from("<I", e, 120)[0]))
    for name, kind, start, size in entries:
        if kind != 2 or name not in names:
            continue
        if size >= cutoff:
            return b"".join(sector(i) for i in chain(start, fat))[:size]
        root_start = entries[0][2]
        mini_stream = b"".join(sector(i) for i in chain(root_start, fat))
        minifat: list[int] = []
        for i in chain(minifat_start, fat):
            minifat += struct.unpack(f"<{ssz // 4}I", sector(i))
        return b"".join(mini_stream[i * mssz:(i + 1) * mssz] for i in chain(start, minifat))[:size]
    raise DatasetError("no Workbook stream in the file")


def _records(stream: bytes, pos: int = 0):
    while pos + 4 <= len(stream):
        rid, size = struct.unpack_from("<HH", stream, pos)
        yield pos, rid, stream[pos + 4:pos + 4 + size]
        pos += 4 + size


class _Chunks:
    """A cursor over an SST record and its CONTINUE records."""

    def __init__(self, chunks: list[bytes]):
        self.chunks, self.ci, self.pos = chunks, 0, 0

    def _next(self) -> None:
        self.ci, self.pos = self.ci + 1, 0

    def take(self, n: int) -> bytes:
        out = b""
        while n:
            if self.pos >= len(self.chunks[self.ci]):
                self._next()
            part = self.chunks[self.ci][self.pos:self.pos + n]
            out, n, self.pos = out + part, n - len(part), self.pos + len(part)
        return out

    def chars(self, count: int, wide: bool) -> str:
        out = []
        while count:
            if self.pos >= len(self.chunks[self.ci]):  # a string split by CONTINUE: new flags byte
                self._next()
                wide = bool(self.take(1)[0] & 1)
            width = 2 if wide else 1
            avail = (len(self.chunks[self.ci]) - self.pos) // width
            n = min(count, avail)
            raw = self.take(n * width)
            out.append(raw.decode("utf-16-le" if wide else "latin-1"))
            count -= n
        return "".join(out)


def _sst(chunks: list[bytes]) -> list[str]:
    cur = _Chunks(chunks)
    _, unique = struct.unpack("<II", cur.take(8))
    strings = []
    for _ in range(unique):
        cch, flags = struct.unpack("<HB", cur.take(3))
        runs = struct.unpack("<H", cur.take(2))[0] if flags & 0x08 else 0
        ext = struct.unpack("<I", cur.take(4))[0] if flags & 0x04 else 0
        strings.append(cur.chars(cch, bool(flags & 1)))
        cur.take(4 * runs + ext)
    return strings


def _rk(v: int) -> float:
    if v & 2:
        value = float(struct.unpack("<i", struct.pack("<I", v))[0] >> 2)
    else:
        value = struct.unpack("<d", struct.pack("<Q", (v & 0xFFFFFFFC) << 32))[0]
    return value / 100 if v & 1 else value


def _biff_rows(stream: bytes, sheet: str | None) -> list[list]:
    sheets, sst_chunks, in_sst = [], [], False
    for _, rid, body in _records(stream):
        if rid == 0x0085:  # BOUNDSHEET: offset, state, type, ShortXLUnicodeString name
            offset, cch, flags = struct.unpack_from("<I", body)[0], body[6], body[7]
            name = body[8:8 + cch * (2 if flags & 1 else 1)].decode("utf-16-le" if flags & 1 else "latin-1")
            sheets.append((name, offset))
        elif rid == 0x00FC:
            sst_chunks, in_sst = [body], True
        elif rid == 0x003C and in_sst:
            sst_chunks.append(body)
        else:
            in_sst = False
            if rid == 0x000A:  # EOF of the globals
                break
    if not sheets:
        raise DatasetError("no worksheet in the workbook")
    names = [n for n, _ in sheets]
    if sheet is not None and sheet not in names:
        raise DatasetError(f"no sheet {sheet!r} (has {', '.join(names)})")
    offset = dict(sheets)[sheet] if sheet is not None else sheets[0][1]
    strings = _sst(sst_chunks) if sst_chunks else []
    cells: dict[tuple[int, int], object] = {}
    for pos, rid, body in _records(stream, offset):
        if rid == 0x000A and pos > offset:
            break
        if rid == 0x00FD:  # LABELSST
            r, c, _, i = struct.unpack_from("<HHHI", body)
            cells[r, c] = strings[i]
        elif rid == 0x0203:  # NUMBER
            r, c, _, v = struct.unpack_from("<HHHd", body)
            cells[r, c] = v
        elif rid == 0x027E:  # RK
            r, c, _, v = struct.unpack_from("<HHHI", body)
            cells[r, c] = _rk(v)
        elif rid == 0x00BD:  # MULRK
            r, c0 = struct.unpack_from("<HH", body)
            for k in range((len(body) - 6) // 6):
                cells[r, c0 + k] = _rk(struct.unpack_from("<I", body, 6 + 6 * k)[0])
        elif rid == 0x0204:  # LABEL
            r, c, _, cch, flags = struct.unpack_from("<HHHHB", body)
            cells[r, c] = body[9:9 + cch * (2 if flags & 1 else 1)].decode(
                "utf-16-le" if flags & 1 else "latin-1")
        elif rid == 0x0006 and body[12:14] != b"\xff\xff":  # FORMULA with a numeric result
            r, c, _, v = struct.unpack_from("<HHHd", body)
            cells[r, c] = v
    if not cells:
        return []
    n_rows = max(r for r, _ in cells) + 1
    n_cols = max(c for _, c in cells) + 1
    return [[cells.get((r, c)) for c in range(n_cols)] for r in range(n_rows)]
