"""Learning-curve charts: live series read incrementally from the index, drawn with Plotly.

``live_series`` is one tick of a live chart: on one index connection it ingests only the new
bytes of one run's ``events.jsonl`` and reads the run's row and the metric rows after the
cursor it holds (``index.follow_run``). The points already read are kept in
``st.session_state`` as a per-viewer chart cache, a copy of what the index holds, never the
run's state; when the index says to start over (a resume superseded rows), the cache does.
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from aqa import plotting
from aqa.plotting import minmax_downsample
from aqa.runs import index

MAX_POINTS = 2000  # per trace; more are min/max-downsampled into MAX_POINTS // 2 buckets
SYSTEM_SPLIT = "sys"  # the split of the trainer's system metrics (aqa.train.sysmetrics.SPLIT)


def live_series(runs_dir: Path, run_id: str, run_path: Path) -> tuple[dict | None, dict, int]:
    """The run's index row, ``{(split, name): {"step": [...], "epoch": [...], "value": [...]}}``
    and the new row count."""
    key = f"chart-cache:{runs_dir}:{run_id}"
    cache = st.session_state.get(key) or {"cursor": None, "series": {}}
    tick = index.follow_run(runs_dir, run_id, run_path, cache["cursor"])
    series = {} if tick.restart else cache["series"]
    for r in tick.metrics:
        s = series.setdefault((r["split"], r["name"]), {"step": [], "epoch": [], "value": []})
        s["step"].append(r["step"])
        s["epoch"].append(r["epoch"])
        s["value"].append(r["value"])
    st.session_state[key] = {"cursor": tick.cursor, "series": series}
    return tick.row, series, len(tick.metrics)


def by_step(split: str, name: str) -> bool:
    """Per-step training and system metrics are drawn against the step; the rest against the
    epoch."""
    return (split == "train" and not name.startswith("epoch_")) or split == SYSTEM_SPLIT


def _trace(x, y, name: str, mode: str) -> go.Scattergl | go.Scatter:
    if len(x) > MAX_POINTS:
        x, y = minmax_downsample(x, [float("nan") if v is None else v for v in y],
                                 MAX_POINTS // 2)
    cls = go.Scattergl if len(x) > 500 else go.Scatter
    return cls(x=list(x), y=list(y), name=name, mode=mode)


def metric_figure(title: str, traces: list, xlabel: str, height: int = 260) -> go.Figure:
    fig = go.Figure(traces)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=36, b=10), xaxis_title=xlabel,
                      showlegend=len(traces) > 1, legend=dict(orientation="h", y=-0.25))
    return fig


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
