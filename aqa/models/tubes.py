"""Tubes for TSA-Net: per-frame athlete boxes -> feature-grid masks; boxes estimated from motion.

A tube is one box per frame, four corner points ``x1, y1, ..., x4, y4`` in the pixels of some
frame size (FR-FS's SiamMask boxes: 640x360 source frames). ``tube_mask`` rasterises it onto the
feature grid of TSA's split point, as the official ``get_mask`` does (METHODS.md section 4.1):
the corners are scaled to grid units (the whole frame onto the grid, ignoring resize and crop),
truncated to cells, the convex quadrilateral is filled (edges included, like
cv2.fillConvexPoly), and the masks of each group of ``t_ratio`` frames of a clip are OR-ed, one
mask per feature time step.

Clips without boxes (an uploaded clip; MTL-AQA and AQA-7 as distributed here) get a tube from
``motion_boxes``: frame differences of the clip itself, smoothed over time and space, a robust
box around the moving pixels of each frame (quantiles, a margin, a minimum size), the boxes
smoothed over time; the whole frame when nothing moves. Pure numpy and deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import uniform_filter, uniform_filter1d


def fill_convex(corners: np.ndarray, height: int, width: int) -> np.ndarray:
    """(4, 2) corner points (x, y) in grid units -> (height, width) bool: the cells (x, y), with
    integer-truncated vertices, inside or on the edge of the convex polygon."""
    pts = np.trunc(np.asarray(corners, dtype=np.float64)).astype(np.int64)  # (4, 2)
    ys, xs = np.mgrid[0:height, 0:width]  # (H, W) each
    signs = []
    for k in range(len(pts)):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % len(pts)]
        signs.append((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0))  # cross product per cell
    signs = np.stack(signs)  # (4, H, W)
    inside = (signs >= 0).all(0) | (signs <= 0).all(0)
    if (pts == pts[0]).all():  # a degenerate box: its single cell
        inside = (xs == pts[0, 0]) & (ys == pts[0, 1])
    return inside


def tube_mask(boxes: np.ndarray, starts: Sequence[int], clip_len: int = 16,
              t_ratio: int = 4, grid: tuple[int, int] = (14, 14),
              frame_size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """(frames, 8) corner boxes x1,y1,...,x4,y4 in ``frame_size`` (width, height) pixels ->
    (len(starts) * clip_len / t_ratio, gh, gw) bool: per clip, the OR of each group of
    ``t_ratio`` frames' masks."""
    gh, gw = grid
    fw, fh = frame_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), 4, 2)  # (F, 4, (x, y))
    scaled = boxes / np.array([fw / gw, fh / gh])
    out = []
    for s in starts:
        for g in range(clip_len // t_ratio):
            frames = range(s + g * t_ratio, s + (g + 1) * t_ratio)
            out.append(np.any([fill_convex(scaled[f], gh, gw) for f in frames], axis=0))
    return np.stack(out)  # (T', gh, gw)


def swap_first_corners(boxes: np.ndarray) -> np.ndarray:
    """The official FR-FS loader's fix of frame 0: its corners 3 and 4 come in the other order
    (a crossed quadrilateral otherwise). Returns a copy with them swapped."""
    out = np.array(boxes, dtype=np.float64, copy=True)
    out[0, 4:6], out[0, 6:8] = boxes[0, 6:8], boxes[0, 4:6]
    return out


def full_frame_boxes(frames: int, width: int, height: int) -> np.ndarray:
    """(frames, 8): every frame's box is the whole frame."""
    return np.tile(rect_corners(0, 0, width - 1, height - 1), (frames, 1))


def rect_corners(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """An axis-aligned box as four corners, clockwise from the top left: (8,)."""
    return np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)


def motion_boxes(video: np.ndarray, window: int = 4, threshold: float = 0.3,
                 quantile: float = 0.02, margin: float = 0.08, min_side: float = 0.25,
                 noise: float = 2.0) -> tuple[np.ndarray, bool]:
    """Estimate the mover's tube of a clip from its frame differences.

    video (T, H, W, 3) or (T, H, W) uint8/float -> ((T, 8) corner boxes in its pixels, found):

    1. gray frames; per frame t the mean absolute difference to its neighbours t-1 and t+1;
    2. smoothed over ``window`` frames either side and a 3x3 pixel neighbourhood;
    3. per frame, the pixels above ``threshold`` x the frame's peak (if the peak is above
       ``noise`` grey levels) span the box from their ``quantile`` to 1 - ``quantile``
       coordinates (a stray moving pixel does not stretch it), padded by ``margin`` of the frame
       side and grown to at least ``min_side`` of it, clipped to the frame;
    4. frames without motion take the nearest frame's box; the box edges are averaged over
       ``window`` frames either side. ``found`` is False (and every box the whole frame) when
       no frame has motion.
    """
    v = np.asarray(video, dtype=np.float32)
    if v.ndim == 4:
        v = v.mean(axis=3)  # (T, H, W) gray
    t, h, w = v.shape
    if t < 2:
        return full_frame_boxes(t, w, h), False
    d = np.abs(np.diff(v, axis=0))  # (T-1, H, W): |frame t+1 - frame t|
    motion = np.zeros_like(v)
    count = np.zeros((t, 1, 1), dtype=np.float32)
    motion[:-1] += d
    count[:-1] += 1
    motion[1:] += d
    count[1:] += 1
    motion /= count  # (T, H, W)
    motion = uniform_filter1d(motion, 2 * window + 1, axis=0, mode="nearest")
    motion = uniform_filter(motion, size=(1, 3, 3), mode="nearest")
    boxes = np.full((t, 4), np.nan)
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(t):
        peak = float(motion[i].max())
        if peak < noise:
            continue
        sel = motion[i] >= threshold * peak
        x0, x1 = np.quantile(xs[sel], [quantile, 1 - quantile])
        y0, y1 = np.quantile(ys[sel], [quantile, 1 - quantile])
        (bx0, bx1), (by0, by1) = (_grow(x0, x1, w, margin, min_side),
                                  _grow(y0, y1, h, margin, min_side))
        boxes[i] = bx0, by0, bx1, by1
    have = ~np.isnan(boxes[:, 0])
    if not have.any():
        return full_frame_boxes(t, w, h), False
    idx = np.flatnonzero(have)
    nearest = idx[np.abs(np.arange(t)[:, None] - idx[None, :]).argmin(axis=1)]
    boxes = boxes[nearest]  # (T, 4): x0, y0, x1, y1
    boxes = uniform_filter1d(boxes, 2 * window + 1, axis=0, mode="nearest")
    return np.stack([rect_corners(*b) for b in boxes]), True


def _grow(lo: float, hi: float, side: int, margin: float, min_side: float) -> tuple[float, float]:
    """An interval padded by ``margin * side``, at least ``min_side * side`` long, inside
    [0, side - 1]."""
    lo, hi = lo - margin * side, hi + margin * side
    need = min_side * side - (hi - lo)
    if need > 0:
        lo, hi = lo - need / 2, hi + need / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > side - 1:
        lo, hi = max(0.0, lo - (hi - (side - 1))), float(side - 1)
    return float(lo), float(hi)
