"""On-disk cache of decoded, resized clips (uint8 ``.npy``), reused by later epochs and runs.

An entry's key is a SHA-1 over what determines its pixels:

- the source's *content fingerprint*: for a video file its size and the SHA-1 of its first and
  last MiB (a re-encoded or replaced file changes it; a touched file does not); for a folder of
  frames the names, sizes and modification times of the frame files read;
- the frame positions decoded, the decode size and the interpolation.

Entries are written to a temp file and renamed, so concurrent DataLoader workers and crashed
runs never leave a half-written entry; a corrupt entry is deleted and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> str:
    """Size plus SHA-1 of the first and last MiB of ``path``."""
    st = os.stat(path)
    h = hashlib.sha1(str(st.st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_CHUNK))
        if st.st_size > _CHUNK:
            f.seek(max(_CHUNK, st.st_size - _CHUNK))
            h.update(f.read(_CHUNK))
    return h.hexdigest()


def files_fingerprint(paths: Sequence[Path]) -> str:
    """Names, sizes and mtimes of many small files (frame JPEGs); missing files count too."""
    h = hashlib.sha1()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()


def clip_key(fingerprint: str, positions: Sequence[int], size: tuple[int, int] | None,
             interpolation: str) -> str:
    spec = json.dumps([fingerprint, list(map(int, positions)), list(size or ()), interpolation])
    return hashlib.sha1(spec.encode()).hexdigest()


class ClipCache:
    """A folder of ``<key[:2]>/<key>.npy`` arrays."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str, mmap: bool = False) -> np.ndarray | None:
        """The entry, or None; ``mmap``: a read-only memory map of it (pages read when used)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a corrupt entry: decode again
            return None

    def put(self, key: str, frames: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(frames, dtype=np.uint8), allow_pickle=False)
            try:
                os.replace(tmp, path)
            except PermissionError:  # Windows: another process holds the entry open (mapped);
                if not path.exists():  # it holds the same frames
                    raise
        finally:
            tmp.unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*.npy")) if self.folder.exists() else 0
