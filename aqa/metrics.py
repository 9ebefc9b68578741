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
import math
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


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(p: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN if either side is constant."""
    p, y = _arrays(p, y)
    rp, ry = _ranks(p), _ranks(y)
    rp, ry = rp - rp.mean(), ry - ry.mean()
    denom = math.sqrt(float((rp ** 2).sum() * (ry ** 2).sum()))
    if denom == 0:
        return float("nan")
    return float((rp * ry).sum() / denom)


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


def bootstrap_ci(p: Sequence[float], y: Sequence[float],
                 metric: Callable[[np.ndarray, np.ndarray], float] = spearman,
                 n: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``metric`` over resampled (p, y) pairs."""
    p, y = _arrays(p, y)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(p), len(p))
        v = metric(p[idx], y[idx])
        if not math.isnan(v):
            values.append(v)
    if not values:
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
                with open(path, newline="") as f:
                    rows = list(csv.DictReader(f))
                part["rho_ci95"] = list(bootstrap_ci([float(r["pred"]) for r in rows],
                                                       [float(r["true"]) for r in rows]))
    return {"official": official, "honest": honest}
