"""Keep the memory a model pass frees inside the process while it runs (glibc's malloc only).

A forward pass on the CPU allocates and frees tensors of tens to hundreds of megabytes, layer after
layer. glibc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and unmaps it on free, so the next layer's tensor of the same size faults in and zeroes fresh
pages again: scoring a CoRe clip at 224 px took about 1,100,000 page faults, and the benchmark
spent a quarter of its CPU time in the kernel. Inside :func:`reuse_freed_memory` the process takes
every block from its heap (``M_MMAP_MAX`` 0) and keeps what is freed there (``M_TRIM_THRESHOLD``
high), so later tensors reuse those pages: the same score then faults about 250,000 times, its
first touches. On leaving the last open context the free memory is handed back to the system
(``malloc_trim``), so a long-lived server does not keep its peak.

Any ``mallopt`` call turns glibc's dynamic thresholds off for good, so after the first context the
process keeps fixed ones: blocks over 32 MiB mapped, 64 MiB of free heap top kept (the values the
dynamic scheme grows to). Nothing is touched where the user has set those through the
environment (``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or their ``GLIBC_TUNABLES``), on a C library other than glibc, or with
``AQA_ALLOCATOR=system``.

Only the heap of the thread's arena is reused: a thread other than the main one allocates from
its own arena, whose heaps are at most 64 MiB, so its larger blocks are still mapped afresh.
``server_env`` gives a process that scores in threads (the app's server) one arena
(``GLIBC_TUNABLES=glibc.malloc.arena_max=1``).

The setting is the process's: contexts opened from several threads count, and the fixed values
above come back when the last one closes. docs/performance.md measures what it changes (time,
page faults, peak memory).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from typing import Iterator

__all__ = ["reuse_freed_memory", "active", "available", "server_env"]

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
AFTER = ((M_MMAP_MAX, 65536), (M_MMAP_THRESHOLD, 32 * 2 ** 20), (M_TRIM_THRESHOLD, 64 * 2 ** 20))
KEEP_FREED = 2 ** 31 - 1  # the largest trim threshold mallopt takes (an int)
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                 "MALLOC_TOP_PAD_")
USER_TUNABLES = ("glibc.malloc.mmap_max", "glibc.malloc.trim_threshold",
                 "glibc.malloc.mmap_threshold", "glibc.malloc.top_pad")
ONE_ARENA = "glibc.malloc.arena_max=1"

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


def _user_set(env: dict | os._Environ) -> bool:
    """Whether ``env`` sets one of the malloc parameters this module would change."""
    tunables = env.get("GLIBC_TUNABLES", "")
    return (any(env.get(k) for k in USER_SETTINGS) or
            any(t.split("=", 1)[0].strip() in USER_TUNABLES for t in tunables.split(":")))


def _declined(env: dict | os._Environ) -> bool:
    """Whether ``env`` switches the reuse off (``AQA_ALLOCATOR=system``) or sets one of the
    malloc parameters it would change, or this is not glibc."""
    return (env.get("AQA_ALLOCATOR", "").strip().lower() == "system" or _user_set(env)
            or _glibc() is None)


def available() -> bool:
    """Whether :func:`reuse_freed_memory` changes anything here: glibc, not switched off with
    ``AQA_ALLOCATOR=system``, and none of its parameters set by the user's environment."""
    return not _declined(os.environ)


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
    entered = False
    try:
        with _lock:
            _depth += 1
            entered = True
            if _depth == 1:
                lib.mallopt(M_MMAP_MAX, 0)
                lib.mallopt(M_TRIM_THRESHOLD, KEEP_FREED)
        yield True
    finally:
        if entered:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    for param, value in AFTER:
                        lib.mallopt(param, value)
                    lib.malloc_trim(0)


def server_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a process that scores in threads (the app's server): glibc's malloc with one
    arena, so that a scoring thread allocates from the main heap that :func:`reuse_freed_memory`
    keeps (a thread's own arena maps its blocks over 64 MiB afresh). Unchanged where the user
    chose an arena count, switched the reuse off, or set the parameters it would change."""
    out = dict(env)
    tunables = out.get("GLIBC_TUNABLES", "")
    if _declined(out) or out.get("MALLOC_ARENA_MAX") or "glibc.malloc.arena_max" in tunables:
        return out
    out["GLIBC_TUNABLES"] = f"{tunables}:{ONE_ARENA}" if tunables else ONE_ARENA
    return out
