"""The vectorised bootstrap CI gives the loop's numbers exactly; its results are cached per
predictions file (path, modification time, size)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from aqa import compare
from aqa import metrics as M


# ------------------------------------------------ the reference: the per-resample loop it replaced

def loop_ranks(x: np.ndarray) -> np.ndarray:
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


def loop_spearman(p, y) -> float:
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rp, ry = loop_ranks(p), loop_ranks(y)
    rp, ry = rp - rp.mean(), ry - ry.mean()
    denom = math.sqrt(float((rp ** 2).sum() * (ry ** 2).sum()))
    if denom == 0:
        return float("nan")
    return float((rp * ry).sum() / denom)


def loop_bootstrap_ci(p, y, n=1000, alpha=0.05, seed=0) -> tuple[float, float]:
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(p), len(p))
        v = loop_spearman(p[idx], y[idx])
        if not math.isnan(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def cases():
    rng = np.random.default_rng(123)
    y = rng.uniform(0, 100, 60)
    yield "continuous", y + rng.normal(0, 15, 60), y, 0
    yield "scores with ties", np.round(y / 10), np.round(y + rng.normal(0, 20, 60)), 7
    yield "tiny and tied", np.array([1.0, 1.0, 2.0]), np.array([3.0, 1.0, 3.0]), 1
    yield "one clip", np.array([4.0]), np.array([2.0]), 0


@pytest.mark.parametrize("name,p,y,seed", list(cases()), ids=[c[0] for c in cases()])
def test_vectorised_bootstrap_equals_the_loop_exactly(name, p, y, seed):
    got = M.bootstrap_ci(p, y, n=400, seed=seed)
    want = loop_bootstrap_ci(p, y, n=400, seed=seed)
    assert got == want or all(math.isnan(g) and math.isnan(w) for g, w in zip(got, want))


def test_blocks_of_draws_are_the_same_draws(monkeypatch):
    """Drawing the resamples in several blocks (large test sets) changes nothing."""
    _, p, y, _ = next(cases())
    whole = M.bootstrap_ci(p, y, n=300, seed=3)
    monkeypatch.setattr(M, "BOOT_BLOCK", 7 * len(p))  # 7 resamples a block, a short last one
    assert M.bootstrap_ci(p, y, n=300, seed=3) == whole == loop_bootstrap_ci(p, y, n=300, seed=3)


def test_spearman_still_equals_the_loop():
    for _, p, y, _ in cases():
        a, b = M.spearman(p, y), loop_spearman(p, y)
        assert a == b or (math.isnan(a) and math.isnan(b))


def test_any_other_metric_goes_through_the_same_draws():
    _, p, y, _ = next(cases())
    got = M.bootstrap_ci(p, y, metric=M.l2, n=50, seed=5)
    rng = np.random.default_rng(5)
    values = [M.l2(p[i], y[i]) for i in (rng.integers(0, len(p), len(p)) for _ in range(50))]
    assert got == tuple(float(v) for v in np.quantile(values, [0.025, 0.975]))


# ------------------------------------------------ the cache of a predictions file's metrics

def write_predictions(path, rows) -> None:
    path.write_text("id,true,pred\n" + "".join(f"{i},{t},{p}\n" for i, t, p in rows))


def test_predictions_metrics_are_cached_per_file_and_reread_after_a_change(tmp_path, monkeypatch):
    reads = []
    real = compare.read_predictions
    monkeypatch.setattr(compare, "read_predictions", lambda path: reads.append(path) or real(path))
    path = tmp_path / "test_epoch_001.csv"
    write_predictions(path, [(f"c{i}", i, i + (i % 3)) for i in range(12)])
    first = compare.predictions_metrics(path, n_boot=200)
    assert first["rho"] == M.spearman([i + (i % 3) for i in range(12)], list(range(12)))
    assert (first["rho_lo"], first["rho_hi"]) == loop_bootstrap_ci(
        [i + (i % 3) for i in range(12)], list(range(12)), n=200)
    first["rho"] = -5.0  # a caller changing its copy does not change the cache
    again = compare.predictions_metrics(path, n_boot=200)
    assert len(reads) == 1 and again["rho"] != -5.0  # hit: same path, mtime and size

    write_predictions(path, [(f"c{i}", i, 11 - i) for i in range(12)])
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later write
    changed = compare.predictions_metrics(path, n_boot=200)
    assert len(reads) == 2 and changed["rho"] == pytest.approx(-1.0)  # miss: the file changed

    compare.predictions_metrics(path, n_boot=100)  # other bootstrap settings: their own entry
    assert len(reads) == 3
