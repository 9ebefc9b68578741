"""Pure helpers for charts: keep a series small enough to draw without losing its extremes.

A screen is ~2,000 pixels wide, so a learning curve of 100,000 steps is drawn from at most a few
thousand points. :func:`minmax_downsample` keeps, for each of ``buckets`` equal-count slices of
the series, the point with the smallest and the one with the largest ``y`` (in their original
order), so spikes and dips stay visible while the point count drops to ``<= 2 * buckets``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def minmax_downsample(x: Sequence[float], y: Sequence[float],
                      buckets: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` reduced to the min and max point of each of ``buckets`` slices.

    Series with at most ``2 * buckets`` points are returned unchanged (as arrays). NaN values of
    ``y`` are never chosen as a bucket's min or max unless the whole bucket is NaN. The first and
    last points are always kept, and points stay in their original order.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x {xs.shape} and y {ys.shape} must be equal-length 1-D sequences")
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    n = len(xs)
    if n <= 2 * buckets:
        return xs, ys
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)  # (buckets + 1,)
    keep = {0, n - 1}
    for lo, hi in zip(edges[:-1], edges[1:]):
        part = ys[lo:hi]
        if hi <= lo:
            continue
        if np.all(np.isnan(part)):
            keep.add(int(lo))
            continue
        keep.add(int(lo + np.nanargmin(part)))
        keep.add(int(lo + np.nanargmax(part)))
    idx = np.fromiter(sorted(keep), dtype=np.int64)
    return xs[idx], ys[idx]
