"""Pure helpers for charts: keep a series small enough to draw without losing its extremes, and
the numbers of a checkpoint's prediction charts (errors, their histogram, a confusion matrix).

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


# ---------------------------------------------------------------- one checkpoint's predictions
# The numbers the run view draws from a predictions CSV (rows {id, true, pred[, pred_class]} as
# aqa.compare.read_predictions gives them); the figures themselves are built in ui/charts.py.

HIST_MAX_BINS = 50


def prediction_errors(rows: Sequence[dict]) -> np.ndarray:
    """``pred - true`` of each row (positive: the model scored too high)."""
    return np.array([r["pred"] - r["true"] for r in rows], dtype=np.float64)


def error_histogram(errors: Sequence[float],
                    max_bins: int = HIST_MAX_BINS) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, counts)`` of ``errors`` (NaN left out): numpy's "auto" bins, at most
    ``max_bins``; one bin of width 1 around the value when every error is the same."""
    e = np.asarray(errors, dtype=np.float64)
    e = e[~np.isnan(e)]
    if e.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    edges = np.histogram_bin_edges(e, bins="auto")
    if len(edges) - 1 > max_bins:
        edges = np.histogram_bin_edges(e, bins=max_bins)
    counts, edges = np.histogram(e, bins=edges)
    return edges, counts


def confusion_matrix(true: Sequence[float], pred_class: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """``(classes, counts)``: ``counts[i, j]`` rows whose true class is ``classes[i]`` and
    predicted class ``classes[j]``. True values are labels (0., 1., ...), rounded to ints;
    ``classes`` are every class seen on either side, ascending."""
    t = [int(round(v)) for v in true]
    p = [int(v) for v in pred_class]
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true labels but {len(p)} predicted classes")
    classes = sorted(set(t) | set(p))
    at = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for a, b in zip(t, p):
        counts[at[a], at[b]] += 1
    return classes, counts
