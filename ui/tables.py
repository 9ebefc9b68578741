"""The runs table (Home and Runs pages): index rows -> a DataFrame with readable columns."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.common import BEST_RHO_HELP, fmt_duration, run_duration, status_label

COLUMNS = ["open", "name", "status", "method", "dataset", "epoch", "ETA", "best ρ", "started",
           "duration", "tags", "id"]


def queue_positions(rows: list[dict]) -> dict[str, int]:
    """Queue positions of the waiting runs among ``rows`` (none asked for when none waits)."""
    if not any(r["status"] == "queued" for r in rows):
        return {}
    from aqa.jobs import queue_positions as positions
    from ui.common import runs_dir
    return positions(runs_dir())


def _status(r: dict, positions: dict[str, int]) -> str:
    pos = positions.get(r["id"])
    return status_label(r["status"]) + (f" #{pos}" if pos else "")


def _column_values(values: list) -> list:
    """A chosen config/metric column's cells: numbers stay numbers when every cell is one (or
    empty); otherwise each cell is its text, so a column of mixed types still displays."""
    from aqa.runs.query import as_text

    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return values
    return [None if v is None else as_text(v) for v in values]


def runs_frame(rows: list[dict], positions: dict[str, int] | None = None,
               records: list[dict] | None = None, columns: list[str] = ()) -> pd.DataFrame:
    """The runs table; ``columns`` (config keys, metrics: ``aqa.runs.query``) come after
    "best ρ", their cells from ``records`` (one a row)."""
    positions = positions or {}
    data = []
    for r in rows:
        data.append({
            "open": f"/runs?run={r['id']}",
            "name": r.get("name") or "",
            "status": _status(r, positions) + (" · archived" if r.get("archived") else ""),
            "method": r["method"], "dataset": r["dataset"],
            "epoch": f"{r['epoch'] or 0}/{r['epochs'] or '?'}",
            "ETA": fmt_duration(r["eta_s"]) if r["status"] == "running" else "–",
            "best ρ": r["best_rho"],
            "started": r.get("started") or None,
            "duration": fmt_duration(run_duration(r)),
            "tags": ", ".join(r.get("tags") or []),
            "id": r["id"],
        })
    frame = pd.DataFrame(data, columns=COLUMNS)
    # one conversion of the whole column: per row, to_datetime costs ~2 ms (2 s for 1,000 runs)
    frame["started"] = pd.to_datetime(frame["started"].astype("float64"), unit="s")
    at = COLUMNS.index("best ρ") + 1  # the chosen columns come after the result, where they show
    for i, c in enumerate([c for c in columns if c not in COLUMNS]):
        frame.insert(at + i, c, _column_values([rec.get(c) for rec in records or [{}] * len(rows)]))
    return frame


def show_runs(rows: list[dict], key: str, height: int | str = "auto",
              records: list[dict] | None = None, columns: list[str] = ()) -> None:
    if not rows:
        st.caption("none")
        return
    st.dataframe(
        runs_frame(rows, queue_positions(rows), records, columns), hide_index=True, key=key,
        height=height, width="stretch",
        column_config={
            "open": st.column_config.LinkColumn("run", display_text="open", width="small"),
            "best ρ": st.column_config.NumberColumn(format="%.4f", help=BEST_RHO_HELP),
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        })


def comparison_frame(rows: list[dict]) -> pd.DataFrame:
    """Comparison rows (``aqa.compare``) formatted for display: one string per cell."""
    from aqa import compare

    header, body = compare.to_records(rows)
    return pd.DataFrame(body, columns=header)
