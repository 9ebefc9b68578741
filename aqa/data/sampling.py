"""Frame-index maths of every method, as pure functions (docs/methods.md).

Positions are 0-based indices into a sample's frame list (or a video's frames). A method reads a
*window* of frames (103 for CoRe/MUSDL/TSA/TPT) and cuts it into *clips* for the backbone:

    plan     clip starts inside the window                 clip length   window
    CORE     0, 10, ..., 80, 86   (frame 102 never used)   16            103
    MUSDL    0, 10, ..., 80, 87   (the last 16 frames)     16            103
    TSA      0, 16, 32, 48, 64, 80, 87                     16            103
    TPT      0, 5, ..., 95        (20 overlapping clips)    8            103
    PECOP    0                    (one clip)               32            32
    JIGSAWS  0, 16, ..., 144      (10 clips, 160 frames)   16            160

Short samples: when a sample has fewer frames than the window needs, the window is the sample
resampled uniformly with repetition (``aqa.video.sample_indices``: frame ``floor(i*n/W)``),
never an index error. A window that would run past either end of a longer sample is moved
inside it (the official loaders would crash or read a neighbouring dive).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from aqa.video import sample_indices


class ClipPlan(NamedTuple):
    starts: tuple[int, ...]  # clip start positions inside the window
    clip_len: int  # frames per clip
    window: int  # frames in the window


CORE = ClipPlan(tuple(range(0, 90, 10)) + (86,), 16, 103)
MUSDL = ClipPlan(tuple(range(0, 90, 10)) + (87,), 16, 103)
TSA = ClipPlan((0, 16, 32, 48, 64, 80, 87), 16, 103)
TPT = ClipPlan(tuple(range(0, 100, 5)), 8, 103)
PECOP = ClipPlan((0,), 32, 32)
JIGSAWS = ClipPlan(tuple(range(0, 160, 16)), 16, 160)
PLANS = {"core": CORE, "musdl": MUSDL, "usdl": MUSDL, "tsa": TSA, "tpt": TPT, "pecop": PECOP,
         "jigsaws": JIGSAWS}


def clip_indices(plan: ClipPlan) -> np.ndarray:
    """(n_clips, clip_len) window positions of each clip."""
    starts = np.asarray(plan.starts)[:, None]  # (N, 1)
    out = starts + np.arange(plan.clip_len)[None, :]  # (N, L)
    if out.max() >= plan.window:
        raise ValueError(f"a clip of {plan} runs past its {plan.window}-frame window")
    return out


def fit_window(start: int, length: int, num_available: int) -> list[int]:
    """``length`` positions from ``start``, kept inside ``[0, num_available)``.

    Shorter samples are resampled uniformly with repetition; a window past an end is moved in.
    """
    if num_available < length:
        return sample_indices(num_available, length)
    start = min(max(0, start), num_available - length)
    return list(range(start, start + length))


def core_window(end_frame: int, num_available: int, shift: int = 0, length: int = 103) -> list[int]:
    """CoRe's MTL-AQA window: the ``length`` list positions ending just before
    ``end_frame + shift`` (positions ``[end+shift-length, end+shift)``; list position k is the
    frame file numbered k+1). ``shift`` is the train-time temporal jitter in [-3, 3]."""
    return fit_window(end_frame + shift - length, length, num_available)


def offset_window(offset: int, num_available: int, length: int = 103) -> list[int]:
    """MUSDL's and TPT's pre-trimmed folders: ``length`` frames from ``offset`` (MUSDL: train
    offset randint(0, 6), test 0; TPT: 3 + randint(-3, 3) train, 3 for an exemplar, 0 for a
    test query)."""
    return fit_window(offset, length, num_available)


def linspace_indices(num_available: int, count: int) -> list[int]:
    """``np.linspace(0, n-1, count).astype(int)``: JIGSAWS's 160 frames (floor, not round)."""
    if num_available < 1:
        raise ValueError("cannot sample from 0 frames")
    return np.linspace(0, num_available - 1, count).astype(int).tolist()


def window_clips(window: list[int], plan: ClipPlan) -> np.ndarray:
    """(n_clips, clip_len) sample positions: the plan's clips cut out of ``window``."""
    if len(window) != plan.window:
        raise ValueError(f"the window has {len(window)} frames, the plan needs {plan.window}")
    return np.asarray(window)[clip_indices(plan)]


class VSPPClip(NamedTuple):
    indices: list  # clip_len frame positions
    pace: int  # pace label r - 1 (0..max_sr-1; class fr - 1 never occurs)
    segment: int  # segment label s - 1 (0..max_segment-1)


def vspp_segment_bounds(segment: int, clip_len: int = 32, max_segment: int = 4) -> tuple[int, int]:
    """Clip frames ``lo..hi`` (both inclusive) of 1-based ``segment``: ``int((s-1)*L/S)`` and
    ``int(s*L/S)``. Neighbouring segments share their boundary frame, as in PECoP."""
    if not 1 <= segment <= max_segment:
        raise ValueError(f"segment must be in 1..{max_segment}, got {segment}")
    seg = clip_len / max_segment
    return int((segment - 1) * seg), int(segment * seg)


def vspp_indices(num_available: int, start: int, fr: int, rate: int, segment: int,
                 clip_len: int = 32, max_segment: int = 4, official: bool = False) -> list[int]:
    """PECoP's segment-pace clip (docs/methods.md, PECoP, datasets/ucf101.py ``loop_load_rgb``):
    ``clip_len`` positions from ``start``; clip frame ``i`` of the segment (``lo <= i <= hi``, see
    :func:`vspp_segment_bounds`) is ``rate`` frames after frame ``i-1``, any other frame ``fr``
    after it. A position past the end wraps to the first frame (position 0).

    ``official=True`` reproduces two quirks of ``loop_load_rgb``: the first frame after the
    segment is 1 (not ``fr``) frame after the segment's last; and the wrap is decided before the
    step, by a look-ahead of ``rate`` frames inside the segment and of 4 frames outside it (so
    it can wrap early, or step once past ``num_available`` when entering the segment)."""
    if num_available < 1:
        raise ValueError("cannot sample from 0 frames")
    lo, hi = vspp_segment_bounds(segment, clip_len, max_segment)
    inside = lambda i: lo <= i <= hi  # noqa: E731
    out, pos = [start], start
    for i in range(1, clip_len):
        if official:
            # 1-based frame pos+1; the look-ahead uses the branch of the frame just read
            if pos + 1 + (rate if inside(i - 1) else 4) > num_available:
                pos = 0
            else:
                pos += rate if inside(i) else (1 if inside(i - 1) else fr)
        else:
            pos += rate if inside(i) else fr
            if pos >= num_available:
                pos = 0
        out.append(pos)
    return out


def draw_vspp(rng: np.random.Generator, num_available: int, fr: int = 1, max_sr: int = 5,
              clip_len: int = 32, max_segment: int = 4, official: bool = False) -> VSPPClip:
    """A random VSPP clip: rate r in 1..max_sr other than ``fr``, segment s in 1..max_segment,
    start uniform in ``0 .. num_available - clip_len - 1`` (PECoP's ``randint(1, n - L)``, 1-based;
    0 when the sample is shorter). PECoP passes ``num_frames - 3`` as ``num_available``."""
    rates = [r for r in range(1, max_sr + 1) if r != fr]
    if not rates:
        raise ValueError(f"no playback rate in 1..{max_sr} differs from fr={fr}")
    rate = int(rng.choice(rates))
    segment = int(rng.integers(1, max_segment + 1))
    start = int(rng.integers(0, max(num_available - clip_len, 1)))
    return VSPPClip(vspp_indices(num_available, start, fr, rate, segment, clip_len, max_segment,
                                 official), rate - 1, segment - 1)
