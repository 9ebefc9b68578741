"""Video decoding: probe a file, read frames by index, sample a fixed-length clip.

Native-size reads go through PyAV by default (``decoder="auto"``): a per-file index of frame
timestamps and keyframes lets it seek to the keyframe before the first wanted frame, decode
forward (frame threads on every core) and convert only the wanted frames to RGB with one reused
scaler, straight into the output array; the pixels are identical to decord's and it is faster
(``bench/decode.py``; numbers in docs/datasets.md). Resized reads make decord's pixels, whose
in-decoder resize made the pixels the models were trained on, unless an ``interpolation`` is
asked for (then PyAV resizes with that libswscale filter: different pixels, faster): PyAV
decodes and decord's own bundled libswscale scales (:mod:`aqa.video_sws`, checked against
decord once per file; decord itself reads any file where the two differ): faster than decord's
own read (1.6x on ``bench/loader.py``'s window plan, about 2x on short clips; docs/performance.md).
``decoder="decord"`` or ``"pyav"`` (or ``$AQA_DECODER``) forces one. decord is optional: where it
does not import (0.6 has no wheel for aarch64 Linux or macOS arm64), every read goes through PyAV
and a resized read is scaled by libswscale's bilinear filter, the closest to decord's resize but
not the same pixels (``bench/decord_vs_pyav.py``); :func:`frames_decoder` names what made the
frames, and the clip cache and scores carry it, so they stay tied to it. PyAV also reads what
decord cannot: containers it cannot open (GIF, some MOV/WebM), widths decord 0.6 garbles, and
clips with a display rotation (portrait phone video: decord 0.6 returns garbled frames for
those), which are turned upright as ffmpeg would show them. Audio streams are ignored. Frame
indices count decoded frames (not time x fps), so variable-frame-rate files are read exactly.
Both decoders are imported only when a video is opened, so ``import aqa.video`` stays cheap.
Every failure a user can cause (missing, empty, corrupt or frameless file, an index past the
end) is a :class:`~aqa.errors.VideoError` whose message names the file, says what went wrong
and what to do.

Frames come back as ``uint8`` numpy arrays of shape ``(T, H, W, 3)`` in RGB order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from aqa.errors import VideoError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from decord import VideoReader

PathLike = str | os.PathLike

from aqa.video_common import FIX_HINT as _FIX_HINT  # noqa: E402
from aqa.video_common import decode_error as _decode_error  # noqa: E402
from aqa.video_common import decode_threads  # noqa: E402,F401
from aqa.video_common import first_line as _first_line  # noqa: E402


class VideoInfo(NamedTuple):
    """What :func:`probe` learns about a video without decoding it all."""

    num_frames: int  # frames the container reports
    fps: float  # average frames per second
    width: int  # native width in pixels
    height: int  # native height in pixels


def probe(path: PathLike) -> VideoInfo:
    """Frame count, fps and upright size of the video at ``path`` (width and height swapped for
    a portrait clip whose container says to rotate it by 90 or 270 degrees).

    Decodes one frame to learn the size, so a file that opens but cannot decode fails here. The
    answer is learned once per file version, with the decoder choice (:func:`_opened`), so a
    later :func:`read_frames` of the same file does not open it again to count its frames.
    """
    return _opened(_existing_file(path)).info


def _probe_opened(path: Path, backend: "_Backend", reader=None) -> VideoInfo:
    """VideoInfo of ``path`` read with ``backend`` (``reader``: decord's, already open)."""
    if backend.pyav:
        num_frames, fps, width, height = video_pyav.info(path)
    else:
        reader = reader if reader is not None else _open(path)
        num_frames = _num_frames(reader, path)
        try:
            height, width, _ = reader[0].shape  # (H, W, 3)
            fps = float(reader.get_avg_fps())
        except Exception as exc:  # decord raises RuntimeError, DECORDError and others
            if not _is_width_bug(exc):
                raise _decode_error(path, "its first frame", exc) from exc
            height, width, _ = video_pyav.read(path, [0], None)[0].shape
            fps = float(reader.get_avg_fps())
    if backend.rotation % 180:
        width, height = height, width
    return VideoInfo(num_frames=num_frames, fps=fps, width=int(width), height=int(height))


DECODERS = ("auto", "decord", "pyav")
_decord_import: list = []  # [None] once decord imported, [reason] once it failed


def decord_missing() -> str | None:
    """Why decord cannot be used here (its import error), or None when it imports. Asked once."""
    if not _decord_import:
        try:
            import decord  # noqa: F401
        except (ImportError, OSError) as exc:  # no wheel for the platform, or a missing library
            _decord_import.append(f"{type(exc).__name__}: {exc}")
        else:
            _decord_import.append(None)
    return _decord_import[0]


def frames_decoder(size: tuple[int, int] | None = None, decoder: str | None = None,
                   interpolation: str | None = None) -> str:
    """What :func:`read_frames` decodes (and resizes) with for these options, with its version:
    ``"decord 0.6.0"``, ``"pyav 18.1.0"`` (native size) or ``"pyav 18.1.0 libswscale 9.5.102
    bilinear"``. Native-size frames are the same from either decoder; resized ones are not, so a
    cache entry or a score made with one names it. (A file decord cannot open, a rotated clip or
    one of decord's bad widths goes to PyAV whatever this says; those files always do.)"""
    decoder = decoder or os.environ.get("AQA_DECODER") or "auto"
    pyav = (decoder == "pyav" or size is None or interpolation is not None
            or (decoder == "auto" and decord_missing() is not None))
    if not pyav:
        import decord
        return f"decord {decord.__version__}"
    import av
    if size is None:
        return f"pyav {av.__version__}"
    swscale = ".".join(map(str, av.library_versions["libswscale"]))
    return f"pyav {av.__version__} libswscale {swscale} {interpolation or 'bilinear'}"
from aqa.video_common import INTERPOLATIONS  # noqa: E402  (interpolation name -> libswscale filter)


def read_frames(
    path: PathLike, indices: Sequence[int], size: tuple[int, int] | None = None, *,
    decoder: str | None = None, interpolation: str | None = None,
) -> np.ndarray:
    """Frames ``indices`` of the video at ``path`` as uint8 RGB, shape ``(len(indices), H, W, 3)``.

    ``indices`` may repeat and be unsorted; the sorted unique set is decoded in one pass (or one
    batched call) and the frames are returned in the order asked for. ``size=(width, height)``
    resizes inside the decoder; ``None`` keeps the native size.

    ``decoder``: "auto" (default, or ``$AQA_DECODER``) reads native size with PyAV (seek to the
    keyframe, decode forward; pixels identical to decord's) and resized frames with decord
    (its resize, the pixels the models were trained with) unless ``interpolation`` is given;
    "decord" or "pyav" forces one. ``interpolation`` (one of ``INTERPOLATIONS``) resizes with
    that libswscale filter in PyAV: faster, but not decord's pixels; PyAV without it resizes
    bilinear.
    """
    path = _existing_file(path)
    decoder = decoder or os.environ.get("AQA_DECODER") or "auto"
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    if interpolation is not None and decoder == "decord":
        raise ValueError("decord resizes with its own filter; an interpolation needs "
                         "decoder='pyav' or 'auto'")
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)  # (T,)
    if wanted.size == 0:
        raise ValueError("read_frames needs at least one frame index")
    if size is not None and (size[0] < 1 or size[1] < 1):
        raise ValueError(f"size must be (width, height) with positive values, got {size}")
    if decoder == "decord" and decord_missing():
        raise VideoError(f"decoder='decord' was asked for (AQA_DECODER?) but decord does not "
                         f"import here ({decord_missing()}); use decoder='auto' or 'pyav' "
                         f"(pip install decord==0.6.0 where a wheel exists: x86-64)")
    opened = _opened(path)
    backend = opened.backend
    # a clip shown rotated by 90/270 is stored transposed: decode at the transposed size
    decode_size = (size[1], size[0]) if size is not None and backend.rotation % 180 else size
    if decoder == "pyav" or (decoder == "auto" and (size is None or interpolation is not None)) \
            or decord_missing() is not None:  # without decord, "auto" resizes with PyAV's bilinear
        backend = backend._replace(pyav=True)
    num_frames = opened.info.num_frames  # counted once, when the file was first opened
    bad = wanted[(wanted < 0) | (wanted >= num_frames)]
    if bad.size:
        raise VideoError(
            f"{path}: frame index {int(bad[0])} is out of range: the video has {num_frames} frames "
            f"(valid indices 0..{num_frames - 1}); sample indices with aqa.video.sample_indices."
        )
    unique, where = np.unique(wanted, return_inverse=True)  # (U,), (T,)
    batch = None
    if backend.pyav:
        batch = video_pyav.read(path, unique.tolist(), decode_size, interpolation)  # (U, H, W, 3)
    elif decoder == "auto" and decode_size is not None and \
            video_sws.matches_decord(path, decode_size):
        try:  # decord's pixels, PyAV's decoding (aqa.video_sws)
            batch = video_pyav.read(path, unique.tolist(), None,
                                    convert=video_sws.ScalerPool(
                                        decode_size, video_sws.threads_for(decode_threads())))
        except DecoderMismatch:
            batch = None  # decord reads it below
    if batch is None:
        reader = _open(path, decode_size)
        try:
            batch = reader.get_batch(unique.tolist()).asnumpy()  # (U, H, W, 3), one batched read
        except Exception as exc:
            if not _is_width_bug(exc):
                raise _decode_error(path, f"frames {unique.min()}..{unique.max()}", exc) from exc
            batch = video_pyav.read(path, unique.tolist(), decode_size)  # (U, H, W, 3)
    if backend.rotation:
        batch = np.rot90(batch, k=backend.rotation // 90, axes=(1, 2))  # counter-clockwise
    if len(where) != len(unique) or np.any(where != np.arange(len(unique))):
        batch = batch[where]  # back to the order asked for, repeats included
    return np.ascontiguousarray(batch, dtype=np.uint8)  # (T, H, W, 3)


class _Backend(NamedTuple):
    pyav: bool  # decode with PyAV (decord cannot open the container: GIF, some MOV/WebM)
    rotation: int  # counter-clockwise degrees to turn decoded frames upright: 0, 90, 180, 270


class _Opened(NamedTuple):
    backend: _Backend
    info: VideoInfo


_opened_files: dict[tuple, _Opened] = {}


def _opened(path: Path) -> _Opened:
    """Which decoder reads ``path``, how to rotate its frames, and what :func:`probe` says:
    learned together, once per file version (path, size, mtime), from one look at the file.

    decord is tried first (fast batched reads) where it imports. A file decord cannot open goes
    to PyAV. A clip
    with a display rotation (portrait phone video) also goes to PyAV: decord 0.6 returns garbled
    4-channel frames for those.
    """
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _opened_files:
        return _opened_files[key]
    rotation = video_pyav.rotation(path)
    pyav, reader = bool(rotation) or decord_missing() is not None, None
    if not pyav:
        try:
            reader = _open(path)
        except VideoError as decord_error:
            try:
                info = video_pyav.info(path)
            except VideoError:
                raise decord_error  # keeps decord's chained cause
            pyav = True
            backend = _Backend(True, rotation)
            width, height = (info[3], info[2]) if rotation % 180 else (info[2], info[3])
            _opened_files[key] = _Opened(backend, VideoInfo(info[0], info[1], int(width), int(height)))
            return _opened_files[key]
    backend = _Backend(pyav, rotation)
    _opened_files[key] = _Opened(backend, _probe_opened(path, backend, reader))
    return _opened_files[key]


def _backend(path: Path) -> _Backend:
    """The decoder choice and rotation of ``path`` (see :func:`_opened`)."""
    return _opened(path).backend


def _is_width_bug(exc: BaseException) -> bool:
    """decord 0.6 cannot return frames of a few small widths (8, 12, 16, 24, 48, 72 ...)."""
    return "DECORDArrayCopyFromTo" in str(exc)

def sample_indices(num_available: int, num_wanted: int) -> list[int]:
    """``num_wanted`` frame indices spread uniformly over ``num_available`` frames.

    The rule (integer arithmetic, no rounding surprises):

    - ``num_available >= num_wanted``: evenly spaced with both ends kept,
      ``i -> round(i * (num_available - 1) / (num_wanted - 1))`` (halves round up); an exact fit
      gives ``0..n-1`` and a single wanted frame is the middle one, ``(num_available - 1) // 2``.
    - ``num_available < num_wanted``: every frame repeated ``num_wanted // num_available`` or one
      more times, in order, ``i -> floor(i * num_available / num_wanted)``.

    ``num_available == 0`` is a :class:`VideoError` (an empty video cannot be sampled).
    """
    if num_wanted < 1:
        raise ValueError(f"num_wanted must be >= 1, got {num_wanted}")
    if num_available < 1:
        raise VideoError(f"cannot sample {num_wanted} frames from a video with 0 frames")
    if num_available < num_wanted:
        return [i * num_available // num_wanted for i in range(num_wanted)]
    if num_wanted == 1:
        return [(num_available - 1) // 2]
    span, steps = num_available - 1, num_wanted - 1
    return [(2 * i * span + steps) // (2 * steps) for i in range(num_wanted)]


def read_clip(path: PathLike, num_frames: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The whole video resampled to ``num_frames`` frames, uint8 RGB ``(num_frames, H, W, 3)``.

    Probe, :func:`sample_indices`, then :func:`read_frames`; ``size=(width, height)`` as there.
    """
    info = probe(path)
    return read_frames(path, sample_indices(info.num_frames, num_frames), size)


def _existing_file(path: PathLike) -> Path:
    """``path`` as a Path after checking it is a non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such video file; check the path or the dataset root.")
    if not path.is_file():
        raise VideoError(f"{path}: is not a file (a folder?); give the path of a video file.")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes); copy or download it again.")
    return path


def _open(path: Path, size: tuple[int, int] | None = None) -> "VideoReader":
    """A decord VideoReader on ``path`` (CPU, :func:`decode_threads` threads), resizing to
    ``size=(w, h)`` in the decoder if given."""
    import decord

    width, height = size if size is not None else (-1, -1)
    if size is not None and (width < 1 or height < 1):
        raise ValueError(f"size must be (width, height) with positive values, got {size}")
    try:
        return decord.VideoReader(
            str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=decode_threads()
        )
    except Exception as exc:  # RuntimeError, decord.DECORDError, ...
        raise VideoError(
            f"{path}: cannot open as a video ({_first_line(exc)}); it is not a video decord can read, "
            f"or it is truncated or corrupt; {_FIX_HINT}."
        ) from exc


def _num_frames(reader: "VideoReader", path: Path) -> int:
    """Frame count of an open reader; a video without frames is a VideoError."""
    num_frames = len(reader)
    if num_frames < 1:
        raise VideoError(f"{path}: the video has 0 frames; {_FIX_HINT}.")
    return num_frames


# The PyAV reader lives in its own module (its helpers are in aqa.video_common).
from aqa import video_pyav, video_sws  # noqa: E402
from aqa.video_common import DecoderMismatch  # noqa: E402
