"""Pure metric functions, as every AQA paper computes them (docs/methods.md, Evaluation).

p: predictions, y: ground truth, both over the evaluated split.
    spearman   scipy.stats.spearmanr(p, y) with average ranks for ties; NaN when p or y is constant
    l2         mean((p - y)^2)
    rl2        mean(((p - y) / (max(y) - min(y)))^2): the range is the evaluated split's own
               ground truth (the MTL-AQA test split: 104.5 - 0.0); papers report rl2 x 100
    accuracy   mean((p > threshold) == label)
    fisher_z_mean  tanh(mean(arctanh(rho_i))): AQA-7's "Avg. Corr."

summarize: a run's best results under both selection protocols (official and honest), from its
metric rows.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def _arrays(p: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"predictions {p.shape} and targets {y.shape} must be equal-length 1-D")
    if p.size == 0:
        raise ValueError("no samples to evaluate")
    return p, y


def _row_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis of a 2-D array, ties given their average rank."""
    m, n = x.shape
    order = np.argsort(x, axis=1, kind="mergesort")
    sorted_x = np.take_along_axis(x, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (m, n))
    first = np.ones((m, n), dtype=bool)  # where a run of equal values starts
    first[:, 1:] = sorted_x[:, 1:] != sorted_x[:, :-1]
    last = np.ones((m, n), dtype=bool)  # where it ends
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((m, n), dtype=np.float64)
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=1)
    return ranks


def spearman_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of two (m, n) arrays; NaN where a row is constant."""
    rp, ry = _row_ranks(p), _row_ranks(y)
    rp = rp - rp.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rp ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    num = (rp * ry).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom == 0, np.nan, num / np.where(denom == 0, 1.0, denom))


def spearman(p: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN if either side is constant."""
    p, y = _arrays(p, y)
    return float(spearman_rows(p[None], y[None])[0])


def l2(p: Sequence[float], y: Sequence[float]) -> float:
    p, y = _arrays(p, y)
    return float(np.mean((p - y) ** 2))


def rl2(p: Sequence[float], y: Sequence[float]) -> float:
    """Relative L2 with the range of ``y`` itself; NaN when y is constant. Not scaled by 100."""
    p, y = _arrays(p, y)
    span = float(y.max() - y.min())
    if span == 0:
        return float("nan")
    return float(np.mean(((p - y) / span) ** 2))


def accuracy(p: Sequence[float], labels: Sequence[float], threshold: float = 0.5) -> float:
    p, labels = _arrays(p, labels)
    return float(np.mean((p > threshold) == (labels > threshold)))


def fisher_z_mean(rhos: Sequence[float]) -> float:
    """tanh of the mean Fisher z-transform of correlations (|rho| < 1)."""
    r = np.asarray(rhos, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no correlations to average")
    if np.any(np.abs(r) >= 1):
        raise ValueError("Fisher z needs |rho| < 1 for every value")
    return float(np.tanh(np.mean(np.arctanh(r))))


BOOT_BLOCK = 1 << 21  # resampled values held at once (rows x clips) by bootstrap_ci


def bootstrap_ci(p: Sequence[float], y: Sequence[float],
                 metric: Callable[[np.ndarray, np.ndarray], float] = spearman,
                 n: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``metric`` over resampled (p, y) pairs.

    Resample ``b`` is ``rng.integers(0, len(p), len(p))``, the ``b``-th draw of
    ``default_rng(seed)``; the draws are taken as blocks of rows of one index array (the same
    sequence) and Spearman's rho is computed over a block's rows at once. Resamples where the
    metric is NaN (a constant side) are left out.
    """
    p, y = _arrays(p, y)
    rng = np.random.default_rng(seed)
    size = len(p)
    rows = max(1, BOOT_BLOCK // size)
    values = []
    for done in range(0, n, rows):
        idx = rng.integers(0, size, (min(rows, n - done), size))
        if metric is spearman:
            block = spearman_rows(p[idx], y[idx])
        else:
            block = np.array([metric(p[i], y[i]) for i in idx], dtype=np.float64)
        values.append(block[~np.isnan(block)])
    values = np.concatenate(values) if values else np.empty(0)
    if not values.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def regression_metrics(p: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """The per-epoch evaluation set: rho, l2, rl2."""
    return {"rho": spearman(p, y), "l2": l2(p, y), "rl2": rl2(p, y)}


HIGHER_IS_BETTER = {"rho": True, "accuracy": True, "l2": False, "rl2": False, "tiou_50": True,
                    "tiou_75": True}


def _best(scored: list[tuple[float, int]], higher: bool) -> tuple[float, int]:
    """The best (value, epoch); on a tie the earliest epoch, as the loop's best.pt keeps it."""
    sign = 1 if higher else -1
    return max(scored, key=lambda ve: (sign * ve[0], -ve[1]))


def summarize(metric_rows: list[dict], best_metric: str = "rho",
              predictions_dir: str | Path | None = None) -> dict:
    """Best results of a run, both ways, from its metric rows (the index's or the event log's).

    official: each test metric's best over the epochs, independently (rho max, L2 and RL2 min,
              possibly from different epochs), as the papers' code reports them;
    honest:   one epoch, chosen by ``best_metric`` on the held-out validation split, with all its
              test metrics; None when the run had no validation split.
    With ``predictions_dir``, each gets the bootstrap 95% interval of its rho.
    """
    by_split: dict[str, dict[int, dict[str, float]]] = {}
    for r in metric_rows:
        if r.get("split") in ("val", "test") and r.get("value") is not None:
            by_split.setdefault(r["split"], {}).setdefault(r["epoch"], {})[r["name"]] = r["value"]
    test, val = by_split.get("test", {}), by_split.get("val", {})
    official = {}
    for name in ("rho", "l2", "rl2", "accuracy", "tiou_50", "tiou_75"):
        scored = [(m[name], e) for e, m in test.items() if name in m]
        if scored:
            value, epoch = _best(scored, HIGHER_IS_BETTER[name])
            official[name], official[f"{name}_epoch"] = value, epoch
    honest = None
    candidates = [(m[best_metric], e) for e, m in val.items() if best_metric in m and e in test]
    if candidates:
        _, epoch = _best(candidates, HIGHER_IS_BETTER.get(best_metric, True))
        honest = {"epoch": epoch, "selected_on": f"val {best_metric}", **test[epoch]}
    if predictions_dir is not None:
        for part, epoch in ((official, official.get("rho_epoch")),
                            (honest, (honest or {}).get("epoch"))):
            path = Path(predictions_dir) / f"test_epoch_{epoch:03d}.csv" if epoch else None
            if part is not None and path is not None and path.exists():
                part["rho_ci95"] = list(predictions_ci(path))
    return {"official": official, "honest": honest}


PREDICTIONS_CI_CACHE = 256  # predictions files whose rho interval is kept (a few bytes each)


def predictions_ci(path: str | Path, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """:func:`bootstrap_ci` of Spearman's rho over a predictions CSV (``pred`` and ``true``
    columns), cached per file (resolved path, modification time, size) and bootstrap settings:
    a page that shows the same epoch again does not bootstrap again, and a rewritten file is read
    anew. The one bootstrap of a file for the run page (``summarize``) and Compare."""
    path = Path(path).resolve()
    st = path.stat()
    return _predictions_ci(str(path), st.st_mtime_ns, st.st_size, n_boot, seed)


@functools.lru_cache(maxsize=PREDICTIONS_CI_CACHE)
def _predictions_ci(path: str, mtime_ns: int, size: int, n_boot: int,
                    seed: int) -> tuple[float, float]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return bootstrap_ci([float(r["pred"]) for r in rows], [float(r["true"]) for r in rows],
                        n=n_boot, seed=seed)
