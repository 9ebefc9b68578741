"""Home: what is running, queued, finished and crashed; the best result per method and dataset."""

import streamlit as st

from aqa.errors import AQAError
from ui import common, jobs, tables

st.title("AQA Studio")
st.caption("Train, watch and compare action quality assessment models; score a clip.")

rows = common.list_runs()
if not rows:
    st.info("This workspace has no runs yet. The demo renders 240 synthetic dives (about "
            "20 s) and trains a tiny 3-D CNN on them on the CPU (a minute or two).")
    if st.button("Start the demo run on the synthetic dives", icon=":material/play_arrow:", type="primary", key="demo"):
        try:
            path = jobs.start_demo(common.runs_dir(), jobs.form_token("demo"))
        except AQAError as exc:
            common.show_error(exc)
        else:
            jobs.new_token("demo")
            common.open_run(path.name)
    st.stop()


def recently_done(rows: list[dict], n: int = 10) -> list[dict]:
    """The ``n`` runs that ended last (finished, failed or stopped)."""
    done = [r for r in rows if r["status"] in ("finished", "failed", "stopped")]
    return sorted(done, key=lambda r: r.get("ended") or 0, reverse=True)[:n]


@st.fragment(run_every=5)
def overview() -> None:
    rows = common.list_runs(sync=True)
    by = {s: [r for r in rows if r["status"] == s] for s in ("running", "queued", "finished",
                                                             "crashed", "failed", "stopped")}
    cols = st.columns(6)
    for col, (status, items) in zip(cols, by.items()):
        col.metric(common.status_label(status), len(items))
    st.subheader("Running and queued")
    tables.show_runs(by["running"] + by["queued"], key="home_active")
    if by["crashed"]:
        st.subheader("Crashed")
        st.warning("These runs' processes are gone without a final status. Open one to resume "
                   "it from its last checkpoint.")
        tables.show_runs(by["crashed"], key="home_crashed")
    st.subheader("Recently finished")
    tables.show_runs(recently_done(rows), key="home_done")


overview()

st.subheader("Best result per method and dataset")
best: dict[tuple[str, str], dict] = {}
for r in rows:
    if r["best_rho"] is None:
        continue
    key = (r["method"], r["dataset"])
    if key not in best or r["best_rho"] > best[key]["best_rho"]:
        best[key] = r
if best:
    st.dataframe(
        [{"method": m, "dataset": d, "best ρ": r["best_rho"], "epoch": r["best_epoch"],
          "run": f"/runs?run={r['id']}", "status": common.status_label(r["status"])}
         for (m, d), r in sorted(best.items())],
        hide_index=True, width="stretch",
        column_config={"best ρ": st.column_config.NumberColumn(format="%.4f",
                                                               help=common.BEST_RHO_HELP),
                       "epoch": st.column_config.NumberColumn(
                           help="the epoch of that ρ (of train.best_metric, when not rho)"),
                       "run": st.column_config.LinkColumn(display_text="open")})
else:
    st.caption("No run has been evaluated yet.")

# the runs this page lists (a picker of every run costs the page's first draw in the browser
# about 0.35 s a thousand options on two cores; the Runs page finds any run)
on_page = {r["id"] for r in rows if r["status"] in ("running", "queued", "crashed")}
on_page |= {r["id"] for r in recently_done(rows)} | {r["id"] for r in best.values()}
ids = [r["id"] for r in rows if r["id"] in on_page]
c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
choice = c1.selectbox("Open a run", ids, key="home_open",
                      help="the runs listed on this page; every run is on the Runs page")
if c2.button("Open", key="home_open_btn") and choice:
    common.open_run(choice)
