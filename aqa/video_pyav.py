"""The PyAV reader behind :func:`aqa.video.read_frames` (imported only when a video is opened).

A per-file index of frame timestamps and keyframes lets a read seek to the keyframe before the
first wanted frame (in containers whose seek index is exact), decode forward with frame threads,
skip decoding unwanted frames that no other frame depends on, and convert only the wanted frames
to RGB with one reused scaler, straight into the output array. A seek that lands past the frame
it aimed at, and containers without an exact index, decode from the start instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aqa.errors import VideoError
from aqa.video_common import FIX_HINT as _FIX_HINT
from aqa.video_common import DecoderMismatch
from aqa.video_common import INTERPOLATIONS
from aqa.video_common import decode_error as _decode_error
from aqa.video_common import decode_threads
from aqa.video_common import first_line as _first_line


def rotation(path: Path) -> int:
    """The display rotation of the first video frame (0 when PyAV cannot tell)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            for frame in container.decode(container.streams.video[0]):
                return int(round(getattr(frame, "rotation", 0) or 0)) % 360 // 90 * 90
    except Exception:  # unreadable: let decord's open produce the error message
        return 0
    return 0


_infos: dict[tuple, tuple[int, float, int, int]] = {}


def info(path: Path) -> tuple[int, float, int, int]:
    """``(num_frames, fps, width, height)`` (stored size) counting the stream's packets, so
    containers without a frame count (GIF) and variable frame rate are exact."""
    import av

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _infos:
        return _infos[key]
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: the file has no video stream (audio only?); {_FIX_HINT}.")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
            duration = (float(stream.duration * stream.time_base) if stream.duration
                        else (container.duration or 0) / 1e6)
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else (num_frames / duration if duration else 0.0)
    except VideoError:
        raise
    except Exception as exc:  # av.error.* and friends
        raise VideoError(f"{path}: cannot open as a video ({_first_line(exc)}); it is not a video "
                         f"PyAV or decord can read, or it is truncated or corrupt; {_FIX_HINT}.") from exc
    if num_frames < 1:
        raise VideoError(f"{path}: the video has 0 frames; {_FIX_HINT}.")
    _infos[key] = (num_frames, fps, int(width), int(height))
    return _infos[key]



_indexes: dict[tuple, tuple[list, list[int]] | None] = {}
SEEKABLE_FORMATS = ("mov", "mp4", "matroska", "webm")  # containers whose seek index is exact
SEEK_GAP = 32  # re-seek only when the next wanted frame is this many frames past a keyframe


def frame_index(path: Path) -> tuple[list, list[int]] | None:
    """``(pts of each frame in display order, display indices of the keyframes)`` from the
    packets (no decoding), learned once per file version; None when the timestamps cannot
    place every frame (missing or repeated pts): such files are decoded from the start."""
    import av

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _indexes:
        return _indexes[key]
    index = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [(p.pts, bool(p.is_keyframe)) for p in container.demux(stream) if p.size]
        pts = [p for p, _ in packets]
        if packets and None not in pts and len(set(pts)) == len(pts):
            pts.sort()
            rank = {p: i for i, p in enumerate(pts)}
            keys = sorted(rank[p] for p, k in packets if k)
            if keys and keys[0] == 0:
                index = (pts, keys)
    except Exception:  # unreadable here: the sequential path reports the error
        index = None
    _indexes[key] = index
    return index


def read(path: Path, indices: list[int], size: tuple[int, int] | None,
                 interpolation: str | None = None, convert=None) -> np.ndarray:
    """Frames ``indices`` (sorted, unique) decoded with PyAV, scaled by libswscale to
    ``size=(w, h)`` (bilinear unless ``interpolation`` names another filter), or by
    ``convert`` (an ``aqa.video_sws.ScalerPool``: decord's scaler, on threads).

    With a usable index (:func:`frame_index`) it seeks to the keyframe at or before the first
    wanted frame and decodes forward, seeking again only past a gap of more than ``SEEK_GAP``
    frames that a keyframe shortens; otherwise one sequential pass from the start. Only the
    wanted frames are converted to RGB, all by one reused scaler (a new one per frame costs
    as much as the conversion)."""
    import av
    from av.video.reformatter import VideoReformatter

    index = frame_index(path)
    scaler = VideoReformatter()
    kwargs = {"format": "rgb24"}
    if size:
        kwargs.update(width=size[0], height=size[1])
    if interpolation:
        kwargs["interpolation"] = INTERPOLATIONS[interpolation]
    out = _FrameBatch(indices, scaler, kwargs, convert)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = decode_threads()
            if index is None:
                _decode_from_start(container, stream, indices, out)
            else:
                seekable = any(f in SEEKABLE_FORMATS for f in container.format.name.split(","))
                try:
                    _decode_seeking(container, stream, indices, index, out, seekable)
                except _SeekMissed:
                    out.clear()
                    index = None
        if index is None and out.done == set():  # no index, or a seek that missed its frame
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.thread_count = decode_threads()
                _decode_from_start(container, stream, indices, out)
        out.join()
    except DecoderMismatch:
        raise  # the caller reads the file with decord instead
    except Exception as exc:  # av.error.* and friends
        raise _decode_error(path, f"frames {indices[0]}..{indices[-1]}", exc) from exc
    finally:
        if convert is not None:
            convert.close()
    missing = [i for i in indices if i not in out]
    if missing:
        raise VideoError(f"{path}: frame {missing[0]} could not be decoded (the stream ended "
                         f"early); {_FIX_HINT}.")
    return out.array


class _FrameBatch:
    """The frames of a read, converted to RGB straight into one preallocated
    ``(len(indices), H, W, 3)`` array (one copy a frame: no per-frame arrays, no stacking)."""

    def __init__(self, indices: list[int], scaler, kwargs: dict, convert=None):
        self.slot = {i: k for k, i in enumerate(indices)}
        self.scaler, self.kwargs, self.convert = scaler, kwargs, convert
        self.array: np.ndarray | None = None
        self.done: set[int] = set()

    def __contains__(self, i: int) -> bool:
        return i in self.done

    def clear(self) -> None:
        self.join()
        self.done.clear()

    def add(self, i: int, frame) -> None:
        if self.convert is not None:  # scaled into its slot, maybe on a thread (join())
            if self.array is None:
                self.array = np.empty((len(self.slot), *self.convert.shape), np.uint8)
            self.convert.submit(frame, self.array[self.slot[i]])
            self.done.add(i)
            return
        rgb = self.scaler.reformat(frame, **self.kwargs)
        plane = rgb.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(rgb.height, plane.line_size)  # (H, stride)
        if self.array is None:
            self.array = np.empty((len(self.slot), rgb.height, rgb.width, 3), np.uint8)  # (U, H, W, 3)
        self.array[self.slot[i]] = rows[:, : rgb.width * 3].reshape(rgb.height, rgb.width, 3)
        self.done.add(i)

    def join(self) -> None:
        """Every frame added is in ``array`` (the threads of ``convert`` done)."""
        if self.convert is not None:
            self.convert.join()


def _decode_from_start(container, stream, indices, out: _FrameBatch) -> None:
    wanted = set(indices)
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            out.add(i, frame)
        if i >= indices[-1]:
            break


def _frames_skipping(container, stream, wanted: set, where: dict):
    """Decoded frames from the container's position on; the packets of frames that are not
    wanted are decoded with ``skip_frame=NONREF``: a frame no other frame refers to (most
    B-frames) is then not decoded at all, and nothing else changes (that is what non-reference
    means), so a read pays less for the frames between its keyframe and the ones it wants."""
    ctx = stream.codec_context
    mode = None
    try:
        for packet in container.demux(stream):
            i = where.get(packet.pts)
            want = "NONREF" if i is not None and i not in wanted else "DEFAULT"
            if want != mode:
                ctx.skip_frame = mode = want
            yield from ctx.decode(packet)  # the last, empty packet drains the decoder
    finally:
        ctx.skip_frame = "DEFAULT"


class _SeekMissed(Exception):
    """A seek landed past the frame it was for (an imprecise container index)."""


def _decode_seeking(container, stream, indices, index, out: _FrameBatch,
                    seekable: bool = True) -> None:
    """Decode ``indices`` by timestamp, seeking to keyframes when the container can
    (``seekable``), else in one pass from the start; raises ``_SeekMissed`` when a seek
    overshoots or the stream ends short (the caller then decodes from the start)."""
    import bisect

    pts, keys = index
    where = {p: i for i, p in enumerate(pts)}
    wanted = set(indices)
    k = 0  # indices[k] is the next frame still wanted
    last_seek = None
    while k < len(indices):
        key = keys[bisect.bisect_right(keys, indices[k]) - 1] if seekable else 0
        if key == last_seek:
            raise _SeekMissed
        if last_seek is not None or key > 0:
            container.seek(pts[key], stream=stream, backward=True)
        last_seek = key
        first = True
        for frame in _frames_skipping(container, stream, wanted, where):
            i = where.get(frame.pts)
            if i is None:
                continue
            if first and i > indices[k]:
                raise _SeekMissed
            first = False
            if i in wanted and i not in out:
                out.add(i, frame)
            while k < len(indices) and indices[k] in out:
                k += 1
            if k == len(indices):
                return
            nxt_key = keys[bisect.bisect_right(keys, indices[k]) - 1]
            if seekable and nxt_key > i + SEEK_GAP and nxt_key != last_seek:
                break  # a keyframe well ahead: seek there instead of decoding the gap
        else:
            raise _SeekMissed  # the stream ended before the frames wanted
