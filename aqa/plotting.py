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
    lo = edges[:-1][edges[1:] > edges[:-1]]  # each bucket's first index; they tile [0, n)
    bucket_of = np.repeat(np.arange(len(lo)), np.diff(np.append(lo, n)))
    nan = np.isnan(ys)
    pos = np.arange(n)
    keep = [np.array([0, n - 1])]
    for reduce, fill in ((np.minimum, np.inf), (np.maximum, -np.inf)):
        y = np.where(nan, fill, ys)  # as nanargmin / nanargmax do: an all-NaN bucket gives lo
        best = reduce.reduceat(y, lo)  # each bucket's min (max)
        keep.append(np.minimum.reduceat(np.where(y == best[bucket_of], pos, n), lo))  # first
    idx = np.unique(np.concatenate(keep))
    return xs[idx], ys[idx]
