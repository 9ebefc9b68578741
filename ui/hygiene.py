"""Run hygiene in the app: name, note, tags, archive and delete, for one run (its page) or for the
runs picked on the Runs page. Stored in each run's meta.json (``aqa.runs.meta``) through
``aqa.runs.index.update_meta`` / ``delete_run``, the same calls as ``python -m aqa runs ...``."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from aqa.errors import AQAError
from aqa.runs import index, store
from aqa.runs.meta import ACTIVE, display_name
from ui import common


def _each(runs_dir: Path, run_ids: list[str], what: str, **change) -> None:
    """Apply one meta change to every run; say what happened, show the first error."""
    try:
        for run_id in run_ids:
            index.update_meta(runs_dir, store.run_dir(runs_dir, run_id), **change)
    except AQAError as exc:
        common.show_error(exc)
        return
    st.session_state["h_done"] = f"{what}: {len(run_ids)} run(s)"
    st.rerun()


def actions(runs_dir: Path, rows: list[dict], key: str) -> None:
    """Tag, untag, archive, unarchive and delete ``rows`` (with a confirmation for delete)."""
    if done := st.session_state.pop("h_done", None):
        st.toast(done)
    ids = [r["id"] for r in rows]
    c = st.columns([2, 1, 1, 1, 1], vertical_alignment="bottom")
    tag = c[0].text_input("Tag", key=f"{key}_tag", placeholder="fav")
    if c[1].button("Add tag", key=f"{key}_tag_add", disabled=not ids):
        _each(runs_dir, ids, f"tag {tag.strip()!r} added", add_tag=tag)
    known = sorted({t for r in rows for t in r.get("tags") or []})
    if c[2].button("Remove tag", key=f"{key}_tag_rm", disabled=not ids,
                   help=f"tags here: {', '.join(known) or 'none'}"):
        _each(runs_dir, [r["id"] for r in rows if tag.strip() in (r.get("tags") or [])] or ids,
              f"tag {tag.strip()!r} removed", remove_tag=tag)
    if c[3].button("Archive", key=f"{key}_archive", disabled=not ids,
                   help="hidden from the runs table until 'Archived' is on; nothing is deleted"):
        _each(runs_dir, ids, "archived", archived=True)
    if c[4].button("Unarchive", key=f"{key}_unarchive", disabled=not ids):
        _each(runs_dir, ids, "unarchived", archived=False)
    active = [display_name(r) for r in rows if r["status"] in ACTIVE]
    c = st.columns([4, 1], vertical_alignment="bottom")
    sure = c[0].checkbox(f"Delete {len(ids)} run(s) with all their files (checkpoints, "
                         "predictions, logs): this cannot be undone", key=f"{key}_sure",
                         disabled=not ids or bool(active))
    if active:
        c[0].caption(f"Stop {', '.join(active)} first: a running or queued run is not deleted.")
    if c[1].button("Delete", key=f"{key}_delete", type="primary", disabled=not (ids and sure)
                   or bool(active)):
        try:
            for run_id in ids:
                index.delete_run(runs_dir, store.run_dir(runs_dir, run_id))
        except AQAError as exc:
            common.show_error(exc)
            return
        st.session_state["h_done"] = f"deleted {len(ids)} run(s)"
        st.session_state.pop(f"{key}_sure", None)  # the next delete asks again
        if "run" in st.query_params:  # the page of a run that is gone: back to the list
            del st.query_params["run"]
        st.rerun()


def run_controls(runs_dir: Path, row: dict) -> None:
    """One run's name, note and tags, and its archive / delete actions (its page)."""
    said = [row.get("name") or "", ", ".join(row.get("tags") or []),
            "archived" if row.get("archived") else ""]
    with st.expander(" · ".join(["Name, tags and note"] + [s for s in said if s])):
        if st.session_state.get("h_for") != (row["id"], row.get("name"), row.get("note")):
            st.session_state["h_for"] = (row["id"], row.get("name"), row.get("note"))
            st.session_state["h_name"] = row.get("name") or ""
            st.session_state["h_note"] = row.get("note") or ""
        c = st.columns([2, 3, 1], vertical_alignment="bottom")
        c[0].text_input("Name", key="h_name", placeholder=row["id"],
                        help="shown instead of the id; empty: the id")
        c[1].text_input("Note", key="h_note")
        if c[2].button("Save", key="h_save"):
            _each(runs_dir, [row["id"]], "name and note saved", name=st.session_state["h_name"],
                  note=st.session_state["h_note"])
        actions(runs_dir, [row], key="h_one")
