"""decord's resized pixels at PyAV's decoding speed.

decord 0.6 resizes in its decoder: an FFmpeg 4.1 filter graph scales each decoded YUV frame
to RGB24 with the libswscale 5.3 it bundles (bilinear). Its decoding is 2-4x slower than
PyAV's on the same file (``bench/loader.py``), and PyAV's own libswscale (a later FFmpeg) does
not make the same pixels (docs/datasets.md, "decord and PyAV"). This module calls decord's
bundled libswscale itself (ctypes) on the frames PyAV decodes: decoded YUV frames are the same
from both decoders, so the result is decord's resized frame, bit for bit, without decord's
decoder.

Every file is checked before it is read this way (:func:`matches_decord`, once per file
version and size): its first frame scaled here must equal decord's; a file whose colour
tagging, pixel format or anything else makes them differ is read by decord as before. A frame
of another pixel format or size than the checked one (a stream that changes mid-way) raises
:class:`~aqa.video_common.DecoderMismatch`, and the read is redone by decord.
``AQA_DECODER=decord`` (or ``decoder="decord"``) always uses decord itself.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aqa.video_common import DecoderMismatch

# AVPixelFormat values (the same in FFmpeg 4.1 and later): the planar 8-bit YUV formats the
# scaler takes here; anything else goes to decord.
PIX_FMTS = {"yuv420p": 0, "yuv422p": 4, "yuv444p": 5, "yuvj420p": 12, "yuvj422p": 13, "yuvj444p": 14}
RGB24, SWS_BILINEAR = 2, 2
ALIGN = 64  # row stride and buffer alignment of the scaled frame (as an FFmpeg frame buffer)

_lib: list = []  # [CDLL or None] once looked for


def library():
    """decord's bundled libswscale (ctypes), or None where there is none (decord missing)."""
    if not _lib:
        _lib.append(_load())
    return _lib[0]


def _load():
    try:
        import decord
    except (ImportError, OSError):
        return None
    here = Path(decord.__file__).resolve().parent
    found = sorted(glob.glob(str(here.parent / "decord.libs" / "libswscale*.so*"))
                   + glob.glob(str(here / "libswscale*.so*")))
    if not found:
        return None
    try:
        lib = ctypes.CDLL(found[0])
    except OSError:
        return None
    lib.sws_getContext.restype = ctypes.c_void_p
    lib.sws_getContext.argtypes = [ctypes.c_int] * 7 + [ctypes.c_void_p] * 3
    lib.sws_scale.restype = ctypes.c_int
    lib.sws_scale.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                              ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)]
    lib.sws_freeContext.restype = None
    lib.sws_freeContext.argtypes = [ctypes.c_void_p]
    lib.sws_getCoefficients.restype = _INTS
    lib.sws_getCoefficients.argtypes = [ctypes.c_int]
    lib.sws_getColorspaceDetails.restype = ctypes.c_int
    lib.sws_getColorspaceDetails.argtypes = [ctypes.c_void_p, ctypes.POINTER(_INTS), _INTS,
                                             ctypes.POINTER(_INTS), _INTS, _INTS, _INTS, _INTS]
    lib.sws_setColorspaceDetails.restype = ctypes.c_int
    lib.sws_setColorspaceDetails.argtypes = [ctypes.c_void_p, _INTS, ctypes.c_int, _INTS,
                                             ctypes.c_int] + [ctypes.c_int] * 3
    return lib


_INTS = ctypes.POINTER(ctypes.c_int)


class DecordScaler:
    """Scales PyAV ``VideoFrame`` s to ``size=(w, h)`` RGB24 as decord does; one libswscale
    context for the source format, size and colour matrix of the first frame (any other
    raises DecoderMismatch). Like FFmpeg 4.1's scale filter, the YUV -> RGB matrix is the one
    the frame is tagged with (BT.601 when untagged), the range the pixel format's."""

    def __init__(self, size: tuple[int, int]):
        self.lib = library()
        if self.lib is None:
            raise DecoderMismatch("decord's libswscale is not available")
        self.width, self.height = size
        self.stride = -(-self.width * 3 // ALIGN) * ALIGN
        raw = np.empty(self.height * self.stride + ALIGN, np.uint8)
        start = -raw.ctypes.data % ALIGN
        self.buffer = raw[start:start + self.height * self.stride].reshape(self.height, self.stride)
        self.source = None  # (format, width, height) the context was made for
        self.ctx = None

    def __call__(self, frame) -> np.ndarray:
        """The frame scaled, ``(h, w, 3)`` uint8 (a view of a buffer the next call reuses)."""
        source = (frame.format.name, frame.width, frame.height, int(frame.colorspace))
        if self.ctx is None:
            if source[0] not in PIX_FMTS:
                raise DecoderMismatch(f"pixel format {source[0]}")
            self.ctx = self.lib.sws_getContext(frame.width, frame.height, PIX_FMTS[source[0]],
                                               self.width, self.height, RGB24, SWS_BILINEAR,
                                               None, None, None)
            if not self.ctx:
                raise DecoderMismatch(f"libswscale refused {source}")
            self._set_matrix(source[3])
            self.source = source
        elif source != self.source:
            raise DecoderMismatch(f"the stream changed from {self.source} to {source}")
        planes = frame.planes[:3]
        keep = [np.frombuffer(p, np.uint8) for p in planes]  # alive during the call
        src = (ctypes.c_void_p * 4)(*[a.ctypes.data for a in keep], None)
        src_stride = (ctypes.c_int * 4)(*[p.line_size for p in planes], 0)
        dst = (ctypes.c_void_p * 4)(self.buffer.ctypes.data, None, None, None)
        dst_stride = (ctypes.c_int * 4)(self.stride, 0, 0, 0)
        rows = self.lib.sws_scale(self.ctx, src, src_stride, 0, frame.height, dst, dst_stride)
        if rows != self.height:
            raise DecoderMismatch(f"libswscale returned {rows} rows, not {self.height}")
        return self.buffer[:, :self.width * 3].reshape(self.height, self.width, 3)

    def _set_matrix(self, colorspace: int) -> None:
        """The frame's YUV matrix (``sws_getCoefficients``), the ranges left as they are."""
        lib, ints = self.lib, [ctypes.c_int() for _ in range(5)]
        inv, table = _INTS(), _INTS()
        if lib.sws_getColorspaceDetails(self.ctx, ctypes.byref(inv), ints[0], ctypes.byref(table),
                                        ints[1], ints[2], ints[3], ints[4]) < 0:
            raise DecoderMismatch("libswscale has no colour details for this format")
        matrix = lib.sws_getCoefficients(colorspace)
        if lib.sws_setColorspaceDetails(self.ctx, matrix, ints[0].value, matrix, ints[1].value,
                                        ints[2].value, ints[3].value, ints[4].value) < 0:
            raise DecoderMismatch(f"libswscale refused colour matrix {colorspace}")

    def __del__(self):
        if self.ctx and self.lib is not None:
            self.lib.sws_freeContext(self.ctx)
            self.ctx = None


class ScalerPool:
    """:class:`DecordScaler` s on ``threads`` threads (one each; libswscale runs without the
    GIL, so frames are scaled while PyAV decodes the next ones); ``threads <= 1``: in the
    calling thread. Every frame must have the first one's format, size and colour matrix."""

    def __init__(self, size: tuple[int, int], threads: int = 1):
        self.size = tuple(size)
        self.shape = (self.size[1], self.size[0], 3)  # (H, W, 3) of a scaled frame
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self._pending: list = []
        self._source = None

    def _scale(self, frame, dst: np.ndarray) -> None:
        scaler = getattr(self._local, "scaler", None)
        if scaler is None:
            scaler = self._local.scaler = DecordScaler(self.size)
        dst[...] = scaler(frame)

    def submit(self, frame, dst: np.ndarray) -> None:
        """Scale ``frame`` into ``dst`` (``shape``), now or on a thread (see :meth:`join`)."""
        source = (frame.format.name, frame.width, frame.height, int(frame.colorspace))
        if self._source is None:
            self._source = source
        elif source != self._source:
            raise DecoderMismatch(f"the stream changed from {self._source} to {source}")
        if self._pool is None:
            self._scale(frame, dst)
        else:
            self._pending.append(self._pool.submit(self._scale, frame, dst))

    def join(self) -> None:
        """Wait for every frame submitted (raising what a thread raised)."""
        pending, self._pending = self._pending, []
        for job in pending:
            job.result()

    def close(self) -> None:
        self._pending = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def threads_for(decode_threads: int) -> int:
    """Scaling threads beside a decoder of ``decode_threads`` (0: one per core, up to 4)."""
    return decode_threads if decode_threads > 0 else min(4, os.cpu_count() or 1)


_checked: dict[tuple, bool] = {}


def matches_decord(path: Path, size: tuple[int, int]) -> bool:
    """Whether this module makes decord's pixels for ``path`` at ``size``: the first frame,
    decoded by PyAV and scaled here, equals decord's (once per file version and size)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, tuple(size))
    if key not in _checked:
        _checked[key] = _first_frame_matches(path, size)
    return _checked[key]


def _first_frame_matches(path: Path, size: tuple[int, int]) -> bool:
    if library() is None:
        return False
    import av
    import decord

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(container.streams.video[0]))
            ours = DecordScaler(size)(frame).copy()
        theirs = decord.VideoReader(str(path), ctx=decord.cpu(0), width=size[0],
                                    height=size[1], num_threads=1)[0].asnumpy()
    except Exception:  # noqa: BLE001 - any failure: decord reads the file as before
        return False
    return theirs.shape == ours.shape and bool(np.array_equal(theirs, ours))
