"""Keep the memory a model pass frees inside the process while it runs (glibc's malloc only).

A forward pass on the CPU allocates and frees tensors of tens to hundreds of megabytes, layer after
layer. glibc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and unmaps it on free, so the next layer's tensor of the same size faults in and zeroes fresh
pages again: scoring a TSA clip at 224 px took about 250,000 page faults and a quarter of its CPU
time in the kernel. Inside :func:`reuse_freed_memory` the process takes every block from its
heap (``M_MMAP_MAX`` 0) and keeps what is freed there (``M_TRIM_THRESHOLD`` high), so later
tensors reuse those pages: the same pass then faults a few hundred times. On leaving the last
open context the defaults come back and the free memory is handed back to the system
(``malloc_trim``), so a long-lived server does not keep its peak.

The setting is the process's: contexts opened from several threads count, and the defaults come
back when the last one closes. Nothing is done (the context is a no-op) on a C library other than
glibc, or when ``AQA_ALLOCATOR=system`` is set. docs/performance.md measures what it changes
(time, page faults, peak memory).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from typing import Iterator

__all__ = ["reuse_freed_memory", "active", "available"]

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's defaults
DEFAULT_MMAP_MAX = 65536
KEEP_FREED = 2 ** 31 - 1  # the largest trim threshold mallopt takes (an int)

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    """The process's own C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
    global _libc
    if _libc is False:
        lib = None
        if sys.platform.startswith("linux"):
            try:
                cand = ctypes.CDLL(None)
                if all(hasattr(cand, f) for f in ("gnu_get_libc_version", "mallopt",
                                                    "malloc_trim")):
                    lib = cand
            except OSError:
                lib = None
        _libc = lib
    return _libc or None


def available() -> bool:
    """Whether :func:`reuse_freed_memory` changes anything here (glibc, and not switched off
    with ``AQA_ALLOCATOR=system``)."""
    return os.environ.get("AQA_ALLOCATOR", "").strip().lower() != "system" and _glibc() is not None


def active() -> bool:
    """Whether a :func:`reuse_freed_memory` context is open in this process."""
    return _depth > 0


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[bool]:
    """Serve and keep every block from the heap while the context is open; yields whether that
    is in effect (False where :func:`available` is False)."""
    global _depth
    if not available():
        yield False
        return
    lib = _glibc()
    with _lock:
        _depth += 1
        if _depth == 1:
            lib.mallopt(M_MMAP_MAX, 0)
            lib.mallopt(M_TRIM_THRESHOLD, KEEP_FREED)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                lib.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                lib.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                lib.malloc_trim(0)
