"""Learning-curve charts: live series read incrementally from the index, drawn with Plotly.

``live_series`` is one tick of a live chart: on one index connection it ingests only the new
bytes of one run's ``events.jsonl`` and reads the run's row and the metric rows after the
cursor it holds (``index.follow_run``). The points already read are kept once per run for the
whole server (``_RunSeries``, the ``MAX_RUNS`` runs viewed last), a copy of what the index
holds, never the run's state, shared by every viewer: five people watching a run cost one read
a tick, not five. A first read of a run opens from the index's block summary (a few thousand
points whatever the run's length, ``index.series_summary``); a series longer than
``COMPACT_POINTS`` is min/max-downsampled in place (``count`` keeps its true length). When the
index says to start over (a resume superseded rows), the cache does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from aqa import plotting
from aqa.plotting import minmax_downsample
from aqa.runs import index

MAX_POINTS = 2000  # per trace; more are min/max-downsampled into MAX_POINTS // 2 buckets
SYSTEM_SPLIT = "sys"  # the split of the trainer's system metrics (aqa.train.sysmetrics.SPLIT)


MAX_RUNS = 16             # runs whose series the server keeps
RAW_POINTS = 8 * MAX_POINTS  # a series up to this long is read whole on a first read
COMPACT_POINTS = 16 * MAX_POINTS  # a longer series held is downsampled to MAX_POINTS


class _RunSeries:
    """One run's series as read so far: replaced, never changed in place, so a viewer drawing a
    snapshot is never disturbed by another viewer's tick."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cursor: index.Cursor | None = None
        self.series: dict[tuple, dict] = {}


_runs: OrderedDict[tuple[str, str], _RunSeries] = OrderedDict()
_runs_lock = threading.Lock()


def _held(runs_dir: Path, run_id: str) -> _RunSeries:
    key = (str(runs_dir), run_id)
    with _runs_lock:
        held = _runs.get(key)
        if held is None:
            held = _runs[key] = _RunSeries()
        _runs.move_to_end(key)
        while len(_runs) > MAX_RUNS:
            _runs.popitem(last=False)
        return held


def _extended(s: dict | None, rows: list[dict]) -> dict:
    """A new series: ``s``'s points and ``rows`` after them, compacted when too long."""
    s = s or {"count": 0, "step": [], "epoch": [], "value": []}
    out = {"count": s["count"] + len(rows), "step": s["step"] + [r["step"] for r in rows],
           "epoch": s["epoch"] + [r["epoch"] for r in rows],
           "value": s["value"] + [r["value"] for r in rows]}
    if len(out["value"]) > COMPACT_POINTS:
        positions, _ = minmax_downsample(range(len(out["value"])),
                                         [float("nan") if v is None else v for v in out["value"]],
                                         MAX_POINTS // 2)
        for k in ("step", "epoch", "value"):
            out[k] = [out[k][int(i)] for i in positions]
    return out


def live_series(runs_dir: Path, run_id: str, run_path: Path) -> tuple[dict | None, dict, int]:
    """The run's index row, ``{(split, name): {"count": n, "step": [...], "epoch": [...],
    "value": [...]}}`` (a snapshot: not to be changed) and the number of new rows."""
    held = _held(runs_dir, run_id)
    with held.lock:  # one viewer reads the run's new rows at a time; the others get them too
        tick = index.follow_run(runs_dir, run_id, run_path, held.cursor,
                                summary_limit=RAW_POINTS)
        series = dict(tick.series or {}) if tick.restart else dict(held.series)
        grouped: dict[tuple, list[dict]] = {}
        for r in tick.metrics:
            grouped.setdefault((r["split"], r["name"]), []).append(r)
        for key, rows in grouped.items():
            series[key] = _extended(series.get(key), rows)
        held.cursor, held.series = tick.cursor, series
    new = len(tick.metrics) if not tick.series else sum(s["count"] for s in tick.series.values())
    return tick.row, series, new


def point_count(series: dict) -> int:
    """How many metric rows the series stand for (downsampled ones included)."""
    return sum(s.get("count", len(s["value"])) for s in series.values())


def last_step(series: dict) -> int:
    return max((max((x for x in s["step"] if x is not None), default=0)
                for s in series.values()), default=0)


def by_step(split: str, name: str) -> bool:
    """Per-step training and system metrics are drawn against the step; the rest against the
    epoch."""
    return (split == "train" and not name.startswith("epoch_")) or split == SYSTEM_SPLIT


def _trace(x, y, name: str, mode: str) -> go.Scatter:
    # numpy arrays: plotly takes them whole (typed arrays in the JSON) instead of point by point.
    # SVG, not WebGL (Scattergl): at most MAX_POINTS points a trace is one SVG path drawn in a few
    # milliseconds, where a WebGL context costs its set-up on every chart (0.5-0.7 s of the run
    # page's first draw in Chromium on two cores without a GPU, docs/performance.md) and browsers
    # cap how many a page may hold
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # None -> NaN
    if len(x) > MAX_POINTS:
        x, y = minmax_downsample(x, y, MAX_POINTS // 2)
    return go.Scatter(x=x, y=y, name=name, mode=mode)


def metric_figure(title: str, traces: list, xlabel: str, height: int = 260) -> go.Figure:
    # the layout given whole to the constructor: a fifth of the time of update_layout
    return go.Figure(traces, layout=dict(
        title=dict(text=title, font=dict(size=14)), height=height,
        margin=dict(l=10, r=10, t=36, b=10), xaxis=dict(title=dict(text=xlabel)),
        showlegend=len(traces) > 1, legend=dict(orientation="h", y=-0.25)))


def run_figures(series: dict) -> list[tuple[str, go.Figure]]:
    """One figure per logged metric of one run: (key, figure)."""
    figs = []
    for (split, name), s in sorted(series.items(), key=lambda kv: (not by_step(*kv[0]), kv[0])):
        step = by_step(split, name)
        x = s["step"] if step else s["epoch"]
        trace = _trace(x, s["value"], name, "lines" if step else "lines+markers")
        axis = "step" if step else "epoch"
        figs.append((f"{split}-{name}", metric_figure(f"{name} ({split}, by {axis})", [trace], axis)))
    return figs


def overlay_figure(curves: dict[str, tuple[list, list]], title: str, xlabel: str) -> go.Figure:
    """Several runs' curves of one metric on one chart."""
    traces = [_trace(x, y, label, "lines+markers" if len(x) < 60 else "lines")
              for label, (x, y) in curves.items()]
    fig = metric_figure(title, traces, xlabel, height=380)
    fig.update_layout(showlegend=True)
    return fig


# ---------------------------------------------------------------- system metrics
# The run view's "System" section: the trainer's split-"sys" series (aqa.train.sysmetrics), one
# figure per kind, every device or parameter group a trace of it.

SYSTEM_GROUPS = {  # a series' name before "/" -> (figure, its title)
    "lr": ("lr", "learning rate"),
    "step_time": ("time", "seconds per step: step_time, data_wait (waiting for the batch)"),
    "data_wait": ("time", "seconds per step: step_time, data_wait (waiting for the batch)"),
    "gpu_util": ("gpu_util", "GPU utilisation (%)"),
    "gpu_mem": ("gpu_mem", "GPU memory (MiB): gpu_mem used on the device, gpu_reserved by this run"),
    "gpu_reserved": ("gpu_mem", "GPU memory (MiB): gpu_mem used on the device, gpu_reserved by this run"),
    "cpu_rss": ("cpu_rss", "CPU RSS of the training process (MiB)"),
}


def split_system(series: dict) -> tuple[dict, dict]:
    """``series`` as (the system metrics', everything else's)."""
    system = {k: v for k, v in series.items() if k[0] == SYSTEM_SPLIT}
    return system, {k: v for k, v in series.items() if k[0] != SYSTEM_SPLIT}


def system_figures(series: dict) -> list[tuple[str, go.Figure]]:
    """One figure per kind of system metric, by step: (key, figure). A series of a name not
    in ``SYSTEM_GROUPS`` gets its own figure."""
    groups: dict[str, tuple[str, list]] = {}
    order = list(dict.fromkeys(key for key, _ in SYSTEM_GROUPS.values()))
    for (split, name), s in sorted(series.items()):
        if split != SYSTEM_SPLIT:
            continue
        key, title = SYSTEM_GROUPS.get(name.split("/")[0], (name, name))
        groups.setdefault(key, (title, []))[1].append(_trace(s["step"], s["value"], name, "lines"))
    keys = sorted(groups, key=lambda k: (order.index(k) if k in order else len(order), k))
    figs = [(f"sys-{k}", metric_figure(groups[k][0], groups[k][1], "step")) for k in keys]
    for _, fig in figs:  # quantities >= 0; a constant lr of 1e-3 would otherwise sit on a +-1 axis
        fig.update_yaxes(rangemode="tozero")
    return figs


# ---------------------------------------------------------------- one checkpoint's predictions

def error_histogram_figure(label: str, rows: list[dict]) -> go.Figure:
    """Histogram of ``pred - true`` over a predictions file's rows (aqa.plotting's bins)."""
    edges, counts = plotting.error_histogram(plotting.prediction_errors(rows))
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure([go.Bar(x=centres.tolist(), y=counts.tolist(),
                            width=(edges[1:] - edges[:-1]).tolist(), name="clips",
                            marker_line=dict(width=1, color="white"),
                            customdata=list(zip(edges[:-1].tolist(), edges[1:].tolist())),
                            hovertemplate="%{customdata[0]:.3g} to %{customdata[1]:.3g}: "
                                          "%{y} clips<extra></extra>")])
    fig.update_layout(title=dict(text=label, font=dict(size=13)), height=320, showlegend=False,
                      margin=dict(l=10, r=10, t=36, b=10), bargap=0.02,
                      xaxis_title="error (predicted - true)", yaxis_title="clips")
    return fig


def confusion_figure(label: str, rows: list[dict]) -> go.Figure:
    """Confusion matrix of a classification run's predictions (rows with ``pred_class``): true
    class down, predicted class across, the count in each cell."""
    classes, counts = plotting.confusion_matrix([r["true"] for r in rows],
                                                [r["pred_class"] for r in rows])
    names = [str(c) for c in classes]
    fig = go.Figure([go.Heatmap(z=counts.tolist(), x=names, y=names, colorscale="Blues",
                                text=counts.tolist(), texttemplate="%{text}", showscale=False,
                                hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>")])
    fig.update_layout(title=dict(text=label, font=dict(size=13)), height=320,
                      margin=dict(l=10, r=10, t=36, b=10), xaxis_title="predicted class",
                      yaxis_title="true class", xaxis_type="category", yaxis_type="category",
                      yaxis_autorange="reversed")
    return fig
