"""Queries and charts for the Compare page (logic and export live in ``aqa.compare``)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from aqa import compare
from aqa.runs import index


def metric_rows(runs_dir: Path, run_id: str, split: str | None = None,
                name: str | None = None) -> list[dict]:
    """A run's metric rows from the index, optionally one split / one metric (log order)."""
    return index.run_metrics(runs_dir, run_id, split=split, name=name)


def evaluation_rows(runs_dir: Path, run_id: str) -> list[dict]:
    """A run's test and validation metric rows: what ``aqa.compare.run_row`` needs for both
    selection protocols (the honest one chooses its epoch on the validation rows)."""
    return index.run_metrics(runs_dir, run_id, split=("test", "val"))  # one index connection


def metric_names(runs_dir: Path, run_ids: list[str]) -> list[tuple[str, str]]:
    return index.metric_names(runs_dir, run_ids)


def groups(runs: dict[str, dict]) -> dict[str, dict]:
    """Group id -> its ``group`` section, member ids (oldest first, as
    ``aqa.compare.group_member_ids``) and each member's label (``member_of``), for the index
    rows ``runs``: each run's config read once."""
    out: dict[str, dict] = {}
    for run in runs.values():
        group = compare.group_of(run.get("config"))
        if group:
            entry = out.setdefault(group["id"], {**group, "ids": [], "member_of": {}})
            entry["ids"].append(run["id"])
            entry["member_of"][run["id"]] = group.get("member")
    for entry in out.values():
        entry["ids"].sort(key=lambda i: (runs[i].get("created") or 0, i))
    return out


def group_label(group: dict, runs: dict[str, dict]) -> str:
    members = [runs[i] for i in group["ids"]]
    label = group["member_of"]
    done = len({label[m["id"]] for m in members if m.get("status") == "finished"})
    first = members[0]
    size = max(group.get("size") or 0, len(set(label.values())))  # a rerun member counts once
    return (f"{group['id']} · {group.get('protocol') or group.get('kind')} · {first['method']} "
            f"· {first['dataset']} · {done}/{size} finished")


def group_row(runs_dir: Path, group: dict, runs: dict[str, dict]) -> dict:
    """One comparison row for a group: its members at their best epochs, folded
    (``aqa.compare.fold_group``: mean ± std of the finished members; ``members`` keeps them)."""
    members = [compare.run_row(runs[i], None, evaluation_rows(runs_dir, i), n_boot=0)
               for i in group["ids"]]
    return compare.fold_group(members)


def epoch_choices(run: dict, rows: list[dict] | None = None) -> dict[str, int | None]:
    """Label -> epoch for one run: its best epoch (chosen on held-out data where ``rows``, its
    test and val metric rows, have a validation split), then every epoch with test predictions."""
    choices: dict[str, int | None] = {}
    held_out = compare.selection_metrics(rows).get("held_out_epoch") if rows else None
    if held_out:
        choices[f"best on held-out (epoch {held_out})"] = held_out
    elif run.get("best_epoch"):
        choices[f"best (epoch {run['best_epoch']})"] = run["best_epoch"]
    for e in reversed(compare.prediction_epochs(run["run_dir"])):
        choices[f"epoch {e}"] = e
    return choices or {"latest": None}


def scatter_figure(label: str, rows: list[dict]) -> go.Figure:
    true = [r["true"] for r in rows]
    pred = [r["pred"] for r in rows]
    lo, hi = min(true + pred), max(true + pred)
    fig = go.Figure([go.Scatter(x=true, y=pred, mode="markers", name="clips",
                                text=[r["id"] for r in rows]),
                     go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                line=dict(dash="dot", color="grey"))])
    fig.update_layout(title=dict(text=label, font=dict(size=13)), height=320, showlegend=False,
                      margin=dict(l=10, r=10, t=36, b=10), xaxis_title="true score",
                      yaxis_title="predicted score")
    return fig
