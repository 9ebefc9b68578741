"""The Runs page's exploration: a filter expression and chosen config columns kept in the page
URL, a config diff of two runs, and a parallel-coordinates view of hyperparameters against a
metric. The parsing and the records are ``aqa.runs.query`` (the CLI uses the same)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from aqa.runs import index, query
from aqa.runs.meta import display_name
from ui import common
from ui.runview import config_json

# URL parameter -> widget key. A link with ?where=...&cols=...&archived=1 reproduces the view.
URL = {"where": "f_where", "cols": "f_cols", "archived": "f_archived"}
METRICS = ("rho", "l2", "rl2", "accuracy")


def from_url() -> None:
    """Seed the widgets from the URL on a page's first script run (or when the URL changed)."""
    for param, key in URL.items():
        value = st.query_params.get(param)
        if st.session_state.get(f"_url_{param}") == value and key in st.session_state:
            continue
        st.session_state[f"_url_{param}"] = value
        if key == "f_cols":
            st.session_state[key] = query.split_columns(value)
        elif key == "f_archived":
            st.session_state[key] = value in ("1", "true", "yes")
        else:
            st.session_state[key] = value or ""


def to_url() -> None:
    """Write the widgets' state into the URL (a parameter at its default is left out)."""
    values = {"where": st.session_state.get("f_where", "").strip(),
              "cols": ",".join(st.session_state.get("f_cols") or []),
              "archived": "1" if st.session_state.get("f_archived") else ""}
    for param, value in values.items():
        if value:
            if st.query_params.get(param) != value:
                st.query_params[param] = value
        elif param in st.query_params:
            del st.query_params[param]
        st.session_state[f"_url_{param}"] = value or None


def controls(keys: list[str]) -> None:
    """The filter box, the column picker and the archived toggle (state in the URL)."""
    from_url()
    c = st.columns([4, 4, 1.5], vertical_alignment="bottom")
    c[0].text_input("Filter", key="f_where", placeholder="optim.lr<1e-3 and rho>0.9",
                    help="comparisons (< <= > >= == != contains) of config keys (optim.lr), "
                         "metrics (rho, l2, rl2: best on test) and fields (method, status, "
                         "tags, name), joined with and / or / not and parentheses; words and "
                         "'quoted text' compare as text. Examples: method==core, "
                         "tags contains fav, not (train.epochs>=10 or status==failed)")
    chosen = st.session_state.get("f_cols") or []
    c[1].multiselect("Columns", sorted(set(keys) | set(chosen)), key="f_cols",
                     accept_new_options=True, placeholder="optim.lr, train.batch_size, model.*",
                     help="config keys and metrics shown as columns; type a pattern such as "
                          "model.* and press Enter for every key it matches")
    c[2].toggle("Archived", key="f_archived", help="show archived runs too")
    to_url()


def apply(rows: list[dict]) -> query.View | None:
    """The rows that match the filter, their records and the chosen columns; None (with the
    parser's message shown) when the filter does not parse."""
    best = index.best_test_metrics(common.runs_dir(), [r["id"] for r in rows])
    try:
        return query.view(rows, best, st.session_state.get("f_where"),
                          st.session_state.get("f_cols") or [])
    except query.QueryError as exc:
        common.show_error(exc)
        return None


def record_keys(rows: list[dict]) -> list[str]:
    """Every key a run's record can have: config keys, fields, metric names."""
    keys = set(query.RUN_FIELDS) | set(METRICS)
    for r in rows:
        keys |= set(query.record(r))
    return sorted(keys)


# ---------------------------------------------------------------- config diff

def diff_frame(a: dict, b: dict) -> pd.DataFrame:
    """The differing config keys of two runs' resolved configs, one row a key."""
    rows = [{"key": k, "A": query.as_text(va), "B": query.as_text(vb)}
            for k, va, vb in query.config_diff(a, b)]
    return pd.DataFrame(rows, columns=["key", "A", "B"])


def config_diff(rows: list[dict]) -> None:
    """Pick two runs, see the config keys they differ in."""
    if len(rows) < 2:
        st.caption("Two runs are needed for a diff.")
        return
    ids = [r["id"] for r in rows]
    names = {r["id"]: display_name(r) for r in rows}
    c = st.columns(2)
    a = c[0].selectbox("Run A", ids, index=0, format_func=names.get, key="diff_a")
    b = c[1].selectbox("Run B", ids, index=1, format_func=names.get, key="diff_b")
    by_id = {r["id"]: r for r in rows}
    frame = diff_frame(config_json(by_id[a]), config_json(by_id[b]))
    if frame.empty:
        st.success("Same config." if a != b else "The same run twice: pick another B.")
    else:
        st.caption(f"{len(frame)} differing key(s)")
        st.dataframe(frame, hide_index=True, width="stretch", key="diff_table")


# ---------------------------------------------------------------- parallel coordinates

def _numeric(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return float(v)
    return None


def parallel_figure(records: list[dict], dims: list[str], metric: str) -> go.Figure:
    """One line a run across ``dims`` (numeric axes, or categorical ones for text values) and
    the metric last, the line coloured by the metric. Runs without the metric are left out."""
    recs = [r for r in records if _numeric(r.get(metric)) is not None]
    dimensions = []
    for d in [d for d in dims if d != metric] + [metric]:
        values = [r.get(d) for r in recs]
        if all(_numeric(v) is not None or v is None for v in values) and \
                any(v is not None for v in values):
            dimensions.append({"label": d, "values": [_numeric(v) for v in values]})
        else:  # text (or mixed): one tick a distinct value
            text = [query.as_text(v) for v in values]
            cats = sorted(set(text))
            dimensions.append({"label": d, "values": [cats.index(t) for t in text],
                               "tickvals": list(range(len(cats))), "ticktext": cats})
    color = [_numeric(r[metric]) for r in recs]
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line={"color": color, "colorscale": "Viridis", "showscale": True,
              "reversescale": not index.HIGHER_IS_BETTER.get(metric, True)}))
    fig.update_layout(height=440, margin={"l": 60, "r": 60, "t": 100, "b": 30},
                      title=f"{len(recs)} run(s) with {metric}")
    return fig


def parallel(view: query.View) -> None:
    """The chosen columns of the filtered runs against a metric."""
    found: set[str] = set()  # a key once found numeric is not looked at again (1,000 runs)
    for rec in view.records:
        found.update(k for k, v in rec.items() if k not in found and _numeric(v) is not None)
    numeric_keys = sorted(found - {"created", "started", "ended"})
    metrics = [m for m in METRICS if any(m in rec for rec in view.records)] or numeric_keys
    if not metrics:
        st.caption("No run has a metric yet.")
        return
    c = st.columns([1, 3])
    metric = c[0].selectbox("Metric", metrics, key="pc_metric")
    kept = st.session_state.get("pc_dims") or []  # still offered when the filter drops them
    dims = c[1].multiselect("Axes", sorted(set(numeric_keys) | set(view.columns) | set(kept)),
                            default=[d for d in view.columns if d != metric], key="pc_dims",
                            help="the table's chosen columns by default")
    if not dims:
        st.caption("Choose columns (above) or axes to draw.")
        return
    st.plotly_chart(parallel_figure(view.records, dims, metric), key="pc_chart",
                    config={"displaylogo": False})
