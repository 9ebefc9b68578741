"""Reading a run's ``stdout.log`` without holding it in memory: its last bytes or lines, and
copying it out in chunks (the CLI's ``aqa runs logs``, the app's log tail and downloads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator

BLOCK = 1 << 16  # read backwards (and copy) this many bytes at a time


def tail_bytes(path: str | os.PathLike, limit: int) -> bytes:
    """The file's bytes, or its last ``limit`` bytes from the first line start inside them."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= limit:
            return f.read()
        f.seek(size - limit)
        data = f.read(limit)
    nl = data.find(b"\n")
    return data[nl + 1:] if 0 <= nl < len(data) - 1 else data


def tail_lines(path: str | os.PathLike, n: int) -> tuple[bytes, int]:
    """The last ``n`` lines of the file (a last line without its newline counts) and the file's
    size when read; read backwards a block at a time, so the cost is that of the lines."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if n <= 0:
            return b"", size
        pos, blocks, found = size, [], 0
        # one newline more than lines wanted marks the start (a trailing newline ends the last)
        need = n + 1 if size and _last_byte(f, size) == b"\n" else n
        while pos > 0 and found < need:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            blocks.append(f.read(step))
            found += blocks[-1].count(b"\n")
    data = b"".join(reversed(blocks))
    if found >= need:
        cut = len(data)
        for _ in range(need):
            cut = data.rindex(b"\n", 0, cut)
        data = data[cut + 1:]
    return data, size


def _last_byte(f: BinaryIO, size: int) -> bytes:
    f.seek(size - 1)
    return f.read(1)


def chunks(path: str | os.PathLike, offset: int = 0) -> Iterator[bytes]:
    """The file's bytes after ``offset``, a megabyte at a time."""
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(BLOCK * 16):
            yield chunk
