"""Runs: the table of runs with filters; ``?run=<id>`` shows one run live."""

import streamlit as st

from aqa.runs.store import STATUSES
from ui import common, runview, tables

run_id = st.query_params.get("run")
if run_id:
    if st.button("← All runs", key="back"):
        st.query_params.clear()
        st.rerun()
    runview.show(common.runs_dir(), run_id)
    st.stop()

st.title("Runs")
rows = common.list_runs()
c = st.columns([2, 2, 2, 3])
statuses = c[0].multiselect("Status", STATUSES, key="f_status")
methods = c[1].multiselect("Method", sorted({r["method"] for r in rows}), key="f_method")
datasets = c[2].multiselect("Dataset", sorted({r["dataset"] for r in rows}), key="f_dataset")
text = c[3].text_input("Run id contains", key="f_text")
shown = runview.filtered(rows, statuses, methods, datasets, text)
st.caption(f"{len(shown)} of {len(rows)} runs")
tables.show_runs(shown, key="runs_table", height=min(38 * (len(shown) + 1) + 4, 600))

if shown:
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    choice = c1.selectbox("Open a run", [r["id"] for r in shown], key="runs_open")
    if c2.button("Open", key="runs_open_btn"):
        common.open_run(choice)
else:
    st.info("No runs match. Start one on the Launch page, or the demo from Home.")
