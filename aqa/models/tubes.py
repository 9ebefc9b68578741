"""Tubes for TSA-Net: per-frame athlete boxes -> feature-grid masks; boxes estimated from motion.

A tube is one box per frame, four corner points ``x1, y1, ..., x4, y4`` in the pixels of some
frame size (FR-FS's SiamMask boxes: 640x360 source frames). ``tube_mask`` rasterises it onto the
feature grid of TSA's split point, as the official ``get_mask`` does (docs/methods.md, TSA-Net):
the corners are scaled to grid units (the whole frame onto the grid, ignoring resize and crop),
truncated to cells, rasterised exactly as cv2.fillConvexPoly does (:func:`fill_convex_poly`, a
pure-Python re-implementation: edges drawn as 8-connected lines, then spans filled row by row;
checked cell for cell against cv2's output on 500 seeded quads in tests/test_parity_tsa.py), and
the masks of each group of ``t_ratio`` frames of a clip are OR-ed, one mask per feature time
step.

Clips without boxes (an uploaded clip; MTL-AQA and AQA-7 as distributed here) get a tube from
``motion_boxes``: frame differences of the clip itself, smoothed over time and space, a robust
box around the moving pixels of each frame (quantiles, a margin, a minimum size), the boxes
smoothed over time; the whole frame when nothing moves. Pure numpy and deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import uniform_filter, uniform_filter1d


XY_SHIFT = 16  # the rasteriser's fixed point: x is kept in 1/65536 of a cell
XY_HALF = 1 << (XY_SHIFT - 1)


def _c_div(a: int, b: int) -> int:
    """Integer division truncating toward zero (C's ``/``; Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def clip_segment(p1: tuple[int, int], p2: tuple[int, int], width: int,
                 height: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The part of segment p1-p2 inside [0, width-1] x [0, height-1] by integer outcode
    clipping (first against the top/bottom rows, then the left/right columns, every step
    truncating toward zero and reusing the end point moved just before), or None when the
    segment misses the grid."""
    right, bottom = width - 1, height - 1
    (x1, y1), (x2, y2) = p1, p2

    def code(x, y):
        return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    c1, c2 = code(x1, y1), code(x2, y2)
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += _c_div((a - y1) * (x2 - x1), y2 - y1)
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += _c_div((a - y2) * (x2 - x1), y2 - y1)
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += _c_div((a - x1) * (y2 - y1), x2 - x1)
                x1 = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += _c_div((a - x2) * (y2 - y1), x2 - x1)
                x2 = a
                c2 = 0
    if c1 | c2:
        return None
    return (x1, y1), (x2, y2)


def draw_line(mask: np.ndarray, p1: tuple[int, int], p2: tuple[int, int]) -> None:
    """Mark the 8-connected Bresenham line p1-p2 (integer cells, clipped to the grid first),
    walked from its left end; ``mask`` (H, W) bool is changed in place."""
    h, w = mask.shape
    if not (0 <= p1[0] < w and 0 <= p2[0] < w and 0 <= p1[1] < h and 0 <= p2[1] < h):
        clipped = clip_segment(p1, p2, w, h)
        if clipped is None:
            return
        p1, p2 = clipped
    if p2[0] < p1[0]:  # walk left to right
        p1, p2 = p2, p1
    (x, y), dx, dy = p1, p2[0] - p1[0], p2[1] - p1[1]
    sy = -1 if dy < 0 else 1
    dy = abs(dy)
    steep = dy > dx
    major, minor = (dy, dx) if steep else (dx, dy)  # major axis: one cell every step
    err = major - 2 * minor
    for _ in range(major + 1):
        mask[y, x] = True
        diagonal = err < 0
        err += -2 * minor + (2 * major if diagonal else 0)
        if steep:
            y += sy
            x += 1 if diagonal else 0
        else:
            x += 1
            y += sy if diagonal else 0


def fill_convex_poly(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 2) integer points (x, y) -> (height, width) bool: cv2.fillConvexPoly(img, points, 1)
    on a zero image, 8-connected lines, no sub-cell shift.

    Re-implemented from its behaviour: the N edges (last point to first, then in order) are
    drawn as 8-connected lines (:func:`draw_line`); then, from the topmost point (the first one
    if several), two edges are followed downward, one along the point order and one against it,
    row by row, their x kept in 1/65536 cells and advanced by a per-row step
    ``round((x_end - x_start) / rows)`` (C division); each row from the top to the lowest point
    (clipped to the grid) is filled between the two x positions rounded half up. The walk ends
    when the edges run out, so a bottom row reached through a flat edge keeps only its line.
    A crossed (not convex) quadrilateral gives what this walk gives, as cv2 does."""
    pts = [(int(x), int(y)) for x, y in np.asarray(points).reshape(-1, 2)]
    n = len(pts)
    mask = np.zeros((height, width), dtype=bool)
    prev = pts[-1]
    for p in pts:
        draw_line(mask, prev, p)
        prev = p
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    ymin, ymax = min(ys), max(ys)
    top = ys.index(ymin)
    if n < 3 or max(xs) < 0 or ymax < 0 or min(xs) >= width or ymin >= height:
        return mask
    ymax = min(ymax, height - 1)
    edges = n  # edges left to walk, both sides together
    # per side: [index of the edge's end point, direction, x, per-row x step, last row]
    side = [[top, 1, -(1 << XY_SHIFT), 0, ymin], [top, n - 1, -(1 << XY_SHIFT), 0, ymin]]
    y = ymin
    while True:
        for s in side:
            if y < s[4]:
                continue
            start, step = s[0], s[1]
            end = (start + step) % n
            while True:
                edges -= 1
                if edges < 0:  # cv2's `edges-- > 0` leaves -1 behind when nothing was left
                    break
                ty = pts[end][1]
                if ty > y:
                    xs_, xe_ = pts[start][0] << XY_SHIFT, pts[end][0] << XY_SHIFT
                    rows = ty - y  # per-row x step, rounded (C division)
                    s[3] = _c_div((xe_ - xs_) * 2 + rows, 2 * rows)
                    s[2], s[4], s[0] = xs_, ty, end
                    break
                start, end = end, (end + step) % n
        if edges < 0:
            break
        if y >= 0:
            lo, hi = sorted((side[0][2], side[1][2]))
            x1, x2 = (lo + XY_HALF) >> XY_SHIFT, (hi + XY_HALF) >> XY_SHIFT
            if x2 >= 0 and x1 < width:
                mask[y, max(x1, 0):min(x2, width - 1) + 1] = True
        side[0][2] += side[0][3]
        side[1][2] += side[1][3]
        y += 1
        if y > ymax:
            break
    return mask


def fill_convex(corners: np.ndarray, height: int, width: int) -> np.ndarray:
    """(4, 2) corner points (x, y) in grid units -> (height, width) bool: the corners truncated
    toward zero to integer cells (what the official ``get_mask`` does by writing the scaled
    corners back into its integer box array) and rasterised as cv2.fillConvexPoly does
    (:func:`fill_convex_poly`)."""
    pts = np.trunc(np.asarray(corners, dtype=np.float64)).astype(np.int64)  # (4, 2)
    return fill_convex_poly(pts, height, width)


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

    Steps 1-2 in time run on bands of rows, the spatial smoothing and step 3 on groups of
    frames, one band or group per core in threads (numpy and scipy let go of the interpreter
    lock): every value is computed by the same operations in the same order as on the whole
    clip, so the boxes are the same to the last bit as the whole clip's in one thread with
    ``np.quantile`` (tests/test_perf_paths.py). A frame in which no pixel passes the cut (NaN
    values) counts as a frame without motion.
    """
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile={quantile} is not in [0, 1]")
    v = np.asarray(video)
    t, h, w = v.shape[:3]
    if t < 2:
        return full_frame_boxes(t, w, h), False
    motion = np.empty((h, w, t), dtype=np.float32)  # time last: the temporal filter's lines

    def in_time(rows: slice) -> None:
        band = _grey(v[:, rows])  # (T, rows, W) float32
        d = np.abs(np.diff(band, axis=0))  # (T-1, rows, W): |frame t+1 - frame t|
        # per frame the mean of its differences to the frames either side (one at the ends)
        m = motion[rows]
        m[..., 0], m[..., -1] = d[0], d[-1]
        if t > 2:
            inner = d[:-1] + d[1:]
            inner /= np.float32(2)
            m[..., 1:-1] = np.moveaxis(inner, 0, -1)
        m[...] = uniform_filter1d(m, 2 * window + 1, axis=-1, mode="nearest")

    boxes = np.full((t, 4), np.nan)

    def in_space(frames: slice) -> None:
        part = np.ascontiguousarray(np.moveaxis(motion[..., frames], -1, 0))  # (t', H, W)
        part = uniform_filter(part, size=(1, 3, 3), mode="nearest")  # frame by frame
        peaks, sel = _moving(part, threshold)
        cols = sel.sum(axis=1)  # (t', W): moving pixels a column
        xq = _count_quantiles(cols, quantile)  # (t', 2)
        yq = _count_quantiles(sel.sum(axis=2), quantile)  # (t', 2) from row counts
        moving = cols.sum(axis=1)
        for j, i in enumerate(range(t)[frames]):
            if peaks[j] < noise or not moving[j]:  # still, or nothing found (NaN frames)
                continue
            (bx0, bx1), (by0, by1) = (_grow(float(xq[j, 0]), float(xq[j, 1]), w, margin, min_side),
                                      _grow(float(yq[j, 0]), float(yq[j, 1]), h, margin, min_side))
            boxes[i] = bx0, by0, bx1, by1

    _in_parallel(in_time, h)
    _in_parallel(in_space, t)
    have = ~np.isnan(boxes[:, 0])
    if not have.any():
        return full_frame_boxes(t, w, h), False
    idx = np.flatnonzero(have)
    nearest = idx[np.abs(np.arange(t)[:, None] - idx[None, :]).argmin(axis=1)]
    boxes = boxes[nearest]  # (T, 4): x0, y0, x1, y1
    boxes = uniform_filter1d(boxes, 2 * window + 1, axis=0, mode="nearest")
    return np.stack([rect_corners(*b) for b in boxes]), True


def _grey(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...) float32: the channel mean, summed in the order np.mean sums 3 values
    ((c0 + c1) + c2, float32) and divided by 3, one channel plane at a time (a mean over the
    strided last axis is several times slower); (T, H, W) -> float32 as it is."""
    if v.ndim == 3:
        return v.astype(np.float32)
    grey = v[..., 0].astype(np.float32)
    for k in range(1, v.shape[-1]):
        grey += v[..., k].astype(np.float32, copy=False)
    grey /= np.float32(v.shape[-1])
    return grey


def _moving(part: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames, H, W) float32 motion -> each frame's peak (float64) and its pixels at or above
    ``threshold`` x the peak: per frame ``m >= threshold * float(m.max())``, a float64 product
    compared with float32 pixels, the product taken as float32 (NumPy 2's rule for a Python
    float), for all frames at once."""
    peaks = part.max(axis=(1, 2)).astype(np.float64)
    cut = (threshold * peaks).astype(np.float32)
    return peaks, part >= cut[:, None, None]


def _cores() -> int:
    """The cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _in_parallel(work, n: int) -> None:
    """``work(slice)`` over [0, n) cut into one piece a core (at most 4), in threads."""
    from concurrent.futures import ThreadPoolExecutor

    k = max(1, min(_cores(), 4, n))
    cuts = [n * i // k for i in range(k + 1)]
    pieces = [slice(a, b) for a, b in zip(cuts, cuts[1:])]
    if k == 1:
        work(pieces[0])
        return
    with ThreadPoolExecutor(k) as pool:
        for f in [pool.submit(work, p) for p in pieces]:
            f.result()


def _count_quantiles(counts: np.ndarray, q: float) -> np.ndarray:
    """Per row of ``counts`` (rows, n): the ``q`` and ``1 - q`` quantiles of the coordinates
    ``i`` taken ``counts[row, i]`` times each -> (rows, 2), equal to the last bit to
    ``np.quantile(coords, [q, 1 - q])`` (the default linear method, on int64 coordinates)
    without building and partitioning the coordinates: each order statistic is read off the
    running count, then interpolated by numpy's own formula (its ``_lerp``). Rows that count
    nothing give NaN."""
    cum = np.cumsum(counts, axis=1)  # (rows, n)
    n = cum[:, -1:]  # (rows, 1)
    virtual = (n - 1) * np.array([q, 1 - q])  # numpy's virtual index for the linear method
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1  # past the last: both neighbours are the largest value
    prev[above], nxt[above] = -1, -1
    prev_i, next_i = prev.astype(np.intp), nxt.astype(np.intp)

    def order_stat(k: np.ndarray) -> np.ndarray:  # the k-th smallest coordinate (-1: largest)
        k = np.where(k < 0, n - 1, k)  # (rows, 2)
        return (cum[:, None, :] <= k[:, :, None]).sum(axis=2).astype(np.int64)

    a, b = order_stat(prev_i), order_stat(next_i)
    gamma = virtual - prev_i
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    out[n[:, 0] == 0] = np.nan
    return out


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
