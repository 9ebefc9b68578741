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

from aqa.plotting import minmax_downsample
from aqa.runs import index

MAX_POINTS = 2000  # per trace; more are min/max-downsampled into MAX_POINTS // 2 buckets


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
    """Per-step training metrics are drawn against the step; the rest against the epoch."""
    return split == "train" and not name.startswith("epoch_")


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
