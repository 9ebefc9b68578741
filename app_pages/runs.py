"""Runs: the table of runs with filters and chosen config columns (kept in the URL: ``?where=``,
``?cols=``, ``?archived=1``), actions on picked runs, a config diff and parallel coordinates;
``?run=<id>`` shows one run live."""

import streamlit as st

from aqa.runs.meta import display_name
from aqa.runs.store import STATUSES
from ui import common, explore, hygiene, runview, tables

run_id = st.query_params.get("run")
if run_id:
    if st.button("← All runs", key="back"):
        del st.query_params["run"]  # the list's filter and columns stay in the URL
        st.rerun()
    runview.show(common.runs_dir(), run_id)
    st.stop()

st.title("Runs")
everything = common.list_runs()
c = st.columns([2, 2, 2, 3])
statuses = c[0].multiselect("Status", STATUSES, key="f_status")
methods = c[1].multiselect("Method", sorted({r["method"] for r in everything}), key="f_method")
datasets = c[2].multiselect("Dataset", sorted({r["dataset"] for r in everything}), key="f_dataset")
text = c[3].text_input("Run id contains", key="f_text")
explore.controls(explore.record_keys(everything))
rows = everything if st.session_state.get("f_archived") else [r for r in everything
                                                               if not r["archived"]]
view = explore.apply(runview.filtered(rows, statuses, methods, datasets, text))
shown = view.rows if view else []
hidden = len(everything) - len(rows)
st.caption(f"{len(shown)} of {len(rows)} runs" + (f" ({hidden} archived hidden)" if hidden else ""))
tables.show_runs(shown, key="runs_table", height=min(38 * (len(shown) + 1) + 4, 600),
                 records=view.records if view else None, columns=view.columns if view else [])

if shown:
    names = {r["id"]: display_name(r) for r in shown}
    # each section below is built when opened (a rerun): its pickers list every shown run, and
    # a picker of a thousand options costs the page's first draw in the browser more than the
    # table does (docs/performance.md); the table's "open" links reach every run meanwhile
    with common.lazy_expander("Open a run by name", key="x_open") as open_:
        if open_:
            c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
            choice = c1.selectbox("Open a run", list(names), format_func=names.get,
                                  key="runs_open")
            if c2.button("Open", key="runs_open_btn"):
                common.open_run(choice)
    with common.lazy_expander("Tag, archive or delete runs", key="x_hygiene") as open_:
        if open_:
            picked = st.multiselect("Runs", list(names), format_func=names.get, key="h_pick")
            hygiene.actions(common.runs_dir(), [r for r in shown if r["id"] in picked],
                            key="h_many")
    with common.lazy_expander("Config diff of two runs", key="x_diff") as open_:
        if open_:
            explore.config_diff(shown)
    with common.lazy_expander("Parallel coordinates: hyperparameters against a metric",
                              key="x_parallel") as open_:
        if open_:
            explore.parallel(view)
else:
    st.info("No runs match. Start one on the Launch page, or the demo from Home.")
