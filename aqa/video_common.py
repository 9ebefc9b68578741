"""What the two video readers share (decord's in :mod:`aqa.video`, PyAV's in
:mod:`aqa.video_pyav`): the advice on an unreadable file, the decode-error message, the decoder
thread count. Below both, so neither imports the other's internals."""

from __future__ import annotations

import os
from pathlib import Path

from aqa.errors import VideoError

# interpolation name -> libswscale filter (PyAV's Interpolation names)
INTERPOLATIONS = {"nearest": "POINT", "fast_bilinear": "FAST_BILINEAR", "bilinear": "BILINEAR",
                  "bicubic": "BICUBIC", "area": "AREA"}


class DecoderMismatch(Exception):
    """A frame that ``aqa.video_sws`` cannot scale as decord would (another pixel format or
    size than the file's first frame): the read is redone by decord. Never reaches the user."""


FIX_HINT = "re-export it as H.264 MP4 (e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`) or remove it"


def decode_threads() -> int:
    """Decoder threads: ``$AQA_DECODE_THREADS``, else 1 inside a DataLoader worker (the workers
    already keep the cores busy) and 0 (= as many as the cores) in the main process."""
    env = os.environ.get("AQA_DECODE_THREADS")
    if env:
        return int(env)
    try:
        from torch.utils.data import get_worker_info
        return 1 if get_worker_info() is not None else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0


def decode_error(path: Path, what: str, exc: Exception) -> VideoError:
    """The VideoError for a file that opened but whose frames ``what`` did not decode."""
    if "DECORDArrayCopyFromTo" in str(exc):  # decord 0.6 bug: rows padded for some small widths
        return VideoError(
            f"{path}: decord cannot return frames of this width (a decord 0.6 bug for a few small "
            f"widths such as 8, 12, 16, 24, 48 and 72 pixels); decode at another size, e.g. a "
            f"multiple of 32, or re-encode the video at another width."
        )
    return VideoError(
        f"{path}: decoding {what} failed ({first_line(exc)}); the file may be truncated or "
        f"corrupt; {FIX_HINT}."
    )


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message (decord's are multi-line tracebacks)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:200]
    return type(exc).__name__
