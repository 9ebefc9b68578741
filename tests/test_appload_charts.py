"""The live chart's server-wide series: shared by viewers, read incrementally, bounded; and the
vectorised min/max downsampling keeps the points the per-bucket loop kept."""

from __future__ import annotations

import numpy as np
import pytest

from aqa.plotting import minmax_downsample
from aqa.runs import index
from aqa.runs.events import EventWriter
from test_appload_index import long_run
from ui import charts


@pytest.fixture
def ticks(monkeypatch):
    """The rows each index read of the chart returned."""
    seen: list[int] = []
    real = index.follow_run

    def counted(*args, **kwargs):
        tick = real(*args, **kwargs)
        seen.append(len(tick.metrics) if tick.series is None else -1)  # -1: a summary read
        return tick

    monkeypatch.setattr(index, "follow_run", counted)
    monkeypatch.setattr(charts, "_runs", type(charts._runs)())
    return seen


def test_viewers_share_one_copy_read_incrementally(tmp_path, ticks):
    path = long_run(tmp_path, n=120)
    _, first, new = charts.live_series(tmp_path, path.name, path)
    assert ticks == [-1] and new == 120 == charts.point_count(first)
    w = EventWriter(path / "events.jsonl")
    w.metric("loss", 9.0, epoch=2, step=121, split="train")
    w.close()
    _, second, new = charts.live_series(tmp_path, path.name, path)  # another viewer's tick
    assert ticks == [-1, 1] and new == 1 and charts.last_step(second) == 121
    assert charts.point_count(second) == 121
    assert second[("train", "loss")]["value"][-1] == 9.0
    assert len(first[("train", "loss")]["value"]) == 120  # the first snapshot is untouched
    _, third, new = charts.live_series(tmp_path, path.name, path)
    assert ticks == [-1, 1, 0] and new == 0 and third == second


def test_a_long_series_held_is_compacted_but_counted(tmp_path, ticks, monkeypatch):
    monkeypatch.setattr(charts, "COMPACT_POINTS", 150)
    monkeypatch.setattr(charts, "MAX_POINTS", 40)
    path = long_run(tmp_path, n=120)
    charts.live_series(tmp_path, path.name, path)
    w = EventWriter(path / "events.jsonl")
    for step in range(121, 161):
        w.metric("loss", 50.0 if step == 140 else 0.5, epoch=2, step=step, split="train")
    w.close()
    _, series, _ = charts.live_series(tmp_path, path.name, path)
    loss = series[("train", "loss")]
    assert loss["count"] == 160 and len(loss["value"]) <= 40 and 50.0 in loss["value"]
    assert charts.point_count(series) == 160


def loop_downsample(x, y, buckets):
    """The per-bucket loop minmax_downsample replaced (the reference)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(xs)
    if n <= 2 * buckets:
        return xs, ys
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
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


def test_vectorised_downsampling_keeps_the_loops_points():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n, buckets = int(rng.integers(3, 2000)), int(rng.integers(1, 400))
        y = np.round(rng.normal(size=n), 1)  # ties
        y[rng.random(n) < 0.1] = np.nan
        if trial % 3 == 0:
            y[rng.integers(0, n, 10)] = np.inf * rng.choice([-1, 1], 10)
        if trial % 5 == 0:
            y[: n // 2] = np.nan  # whole buckets of NaN
        x = np.arange(n) * 0.5
        got, want = minmax_downsample(x, y, buckets), loop_downsample(x, y, buckets)
        assert np.array_equal(got[0], want[0])
        assert np.array_equal(got[1], want[1], equal_nan=True)
