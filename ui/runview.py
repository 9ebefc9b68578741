"""One run's page: header, live charts (losses, metrics, the "System" section), stdout tail,
checkpoints, artifacts (downloads; per-checkpoint prediction charts) and the run's actions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from aqa import compare, jobs
from aqa.errors import AQAError
from aqa.runs import index, store
from aqa.runs.logtail import tail_bytes
from aqa.runs.events import EVENTS_FILE
from ui import charts, common, comparing, hygiene, tables

ACTIVE = ("running", "queued")
LIVE_EVERY_S = 2.0
TAIL_BYTES = 64_000
# A log or event file up to this size downloads whole; a larger one downloads as its last this
# many bytes (from a line start), and the page gives its path: a 1 GB log is never held in memory.
FULL_DOWNLOAD_BYTES = 64 * 2**20


def stdout_tail(path: Path, lines: int = 40) -> str:
    log = path / store.STDOUT_LOG
    if not log.exists():
        return "(no output yet)"
    text = tail_bytes(log, TAIL_BYTES).decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(no output yet)"


def header(row: dict) -> None:
    c = st.columns([1.6, 1, 1, 1, 1, 1])
    pos = tables.queue_positions([row]).get(row["id"])
    c[0].metric("status", common.status_label(row["status"]) + (f" #{pos}" if pos else ""),
                help="queued runs: their place in the queue" if pos else None)
    c[1].metric("epoch", f"{row['epoch'] or 0}/{row['epochs'] or '?'}")
    c[2].metric("step", f"{row['step'] or 0}/{row['total_steps'] or '?'}")
    c[3].metric("ETA", common.fmt_duration(row["eta_s"]) if row["status"] == "running" else "–")
    c[4].metric("best ρ", common.fmt_float(row["best_rho"]), help=common.BEST_RHO_HELP)
    c[5].metric("duration", common.fmt_duration(common.run_duration(row)))


def show(runs_dir: Path, run_id: str) -> None:
    try:
        path = store.run_dir(runs_dir, run_id)
    except AQAError as exc:
        common.show_error(exc)
        return
    row = index.get_run(runs_dir, run_id)
    if row is None:
        st.warning("The index has not seen this run yet; reload in a moment.")
        return
    st.title(f"Run {run_id}")
    st.caption(f"{row['method']} on {row['dataset']} · started {common.fmt_time(row['started'])}"
               f" · {path}")
    actions(path, row)
    hygiene.run_controls(runs_dir, row)
    results(runs_dir, run_id, path, row)
    live(runs_dir, run_id, path, row["status"] in ACTIVE)
    checkpoints(runs_dir, run_id, path, row)
    artifacts(run_id, path, row)
    with st.expander("Resolved config (run.json)"):
        # the JSON tree viewer loads its own front-end bundle: only when asked for
        if st.toggle("Show the config", key="show_config"):
            st.json(store.read_run(path).get("config", {}), expanded=False)


def results(runs_dir: Path, run_id: str, path: Path, row: dict) -> None:
    """The run's best results both ways: the papers' protocol and an honest held-out choice."""
    from aqa.metrics import summarize
    summary = summarize(index.run_metrics(runs_dir, run_id, split=("val", "test")),
                        row.get("best_metric") or "rho", path / "predictions")
    off, hon = summary["official"], summary["honest"]
    if not off:
        return
    fmt = common.fmt_float
    x100 = lambda v: fmt(v * 100 if v is not None else None)  # noqa: E731
    ci = lambda part: (f"[{fmt(part['rho_ci95'][0])}, {fmt(part['rho_ci95'][1])}]"  # noqa: E731
                       if part and "rho_ci95" in part else "–")
    table = [{"protocol": "official: best of each test metric (as the papers report)",
              "epoch": f"ρ@{off.get('rho_epoch')}", "ρ": fmt(off.get("rho")), "ρ 95% CI": ci(off),
              "L2": fmt(off.get("l2")), "RL2 ×100": x100(off.get("rl2"))}]
    if hon:
        table.append({"protocol": f"honest: one epoch chosen on {hon['selected_on']}",
                      "epoch": str(hon["epoch"]), "ρ": fmt(hon.get("rho")), "ρ 95% CI": ci(hon),
                      "L2": fmt(hon.get("l2")), "RL2 ×100": x100(hon.get("rl2"))})
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    if not hon:
        st.caption("No validation split: set train.val_fraction to choose the best epoch on "
                   "held-out training data instead of the test split.")


def actions(path: Path, row: dict) -> None:
    status = row["status"]
    if status == "crashed":
        st.error("This run crashed: its process is gone without a final status. Resume continues "
                 "from checkpoints/last.pt; only the work after that checkpoint is lost.")
    elif status == "failed":
        st.error(f"This run failed: {row.get('message') or 'see the output below'}")
    c = st.columns([1, 1, 2, 4])
    if c[0].button("Stop", icon=":material/stop:", disabled=status != "running", key="stop",
                   help="SIGTERM: the trainer writes last.pt and exits; SIGKILL after 30 s"):
        try:
            jobs.stop(path, wait=False)
            st.toast("Stop requested; the run checkpoints and exits.")
        except AQAError as exc:
            common.show_error(exc)
    if c[1].button("Resume", icon=":material/play_arrow:", disabled=status not in ("stopped", "crashed", "failed"),
                   key="resume", type="primary" if status == "crashed" else "secondary",
                   help="start again from checkpoints/last.pt"):
        try:
            jobs.resume(path)
            st.rerun()
        except AQAError as exc:
            common.show_error(exc)
    if c[2].button("Duplicate with changes", icon=":material/content_copy:", key="duplicate",
                   help="open the Launch form filled with this run's config"):
        st.switch_page(common.PAGES["launch"], query_params={"from": row["id"]})


def live(runs_dir: Path, run_id: str, path: Path, active: bool) -> None:
    @st.fragment(run_every=LIVE_EVERY_S if active else None)
    def _live() -> None:
        row, series, _ = charts.live_series(runs_dir, run_id, path)
        row = row or {}
        if row:
            header(row)
        points, last_step = charts.point_count(series), charts.last_step(series)
        st.caption(f"{points} metric points · last step {last_step}"
                   + (" · updating every 2 s" if active else ""))
        system, series = charts.split_system(series)
        figs = charts.run_figures(series)
        if not figs:
            st.info("No metrics logged yet.")
        _chart_grid(figs)
        st.markdown("**System**")
        if system:
            _chart_grid(charts.system_figures(system))
        else:
            st.caption("No system metrics: the trainer logs them every train.log_every steps "
                       "(off with train.system_metrics=false, absent in older runs).")
        with st.expander("Output (stdout.log, last 40 lines)", expanded=active):
            common.plain_block(stdout_tail(path))
        if active and row and row.get("status") not in ACTIVE:
            st.rerun()  # the run ended: redraw the page (actions, checkpoints) without polling

    _live()


def _chart_grid(figs: list) -> None:
    cols = st.columns(2)
    for i, (key, fig) in enumerate(figs):
        cols[i % 2].plotly_chart(fig, key=f"chart-{key}", config={"displaylogo": False})


def checkpoints(runs_dir: Path, run_id: str, path: Path, row: dict) -> None:
    st.subheader("Checkpoints")
    ckpts = [c for c in index.run_checkpoints(runs_dir, run_id) if (path / c["path"]).is_file()]
    if not ckpts:
        st.caption("No checkpoint yet (one is written at the end of each epoch).")
        return
    table = []
    for c in ckpts:
        m = compare.checkpoint_metrics(c)
        table.append({"checkpoint": c["name"], "epoch": c["epoch"], "ρ": m.get("rho"),
                      "L2": m.get("l2"), "RL2 (×100)": 100 * m["rl2"] if m.get("rl2") else None,
                      "size (MB)": (path / c["path"]).stat().st_size / 1e6,
                      "written": common.fmt_time(c["t"])})
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch",
                 column_config={"ρ": st.column_config.NumberColumn(format="%.4f"),
                                "L2": st.column_config.NumberColumn(format="%.2f"),
                                "RL2 (×100)": st.column_config.NumberColumn(format="%.3f"),
                                "size (MB)": st.column_config.NumberColumn(format="%.2f")})
    names = [c["name"] for c in ckpts]
    c = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
    chosen = c[0].selectbox("Checkpoint", names, index=names.index("best.pt")
                            if "best.pt" in names else 0, key="ckpt_pick")
    ck = ckpts[names.index(chosen)]
    ck_path = path / ck["path"]
    evaluate = c[1].button("Evaluate", key="ckpt_eval",
                           help="ρ with its bootstrap 95% CI, L2 and RL2 from this epoch's "
                                "test predictions")
    if c[2].button("Score with it", key="ckpt_score"):
        st.switch_page(common.PAGES["score"], query_params={"ckpt": str(ck_path)})
    c[3].download_button("Download", data=lambda: ck_path.read_bytes(),
                         file_name=f"{run_id}-{chosen}", mime="application/octet-stream",
                         key="ckpt_dl", on_click="ignore")
    if evaluate:
        result = compare.run_row(row, ck["epoch"], comparing.evaluation_rows(runs_dir, run_id),
                                 label=f"{chosen} (epoch {ck['epoch']})")
        if result["source"] == "index":
            st.warning("No predictions file for this epoch; showing the logged metrics only.")
        st.dataframe(tables.comparison_frame([result]), hide_index=True, width="stretch")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


ARTIFACTS = ((store.RUN_JSON, "application/json"), (store.JOB_JSON, "application/json"),
             (store.STDOUT_LOG, "text/plain"), (EVENTS_FILE, "application/jsonl"))


def artifacts(run_id: str, path: Path, row: dict) -> None:
    """Download buttons for the run's files (read on click, a large log bounded to its tail)
    and the charts of one predictions file."""
    st.subheader("Artifacts")
    cols = st.columns(len(ARTIFACTS))
    notes = []
    for col, (name, mime) in zip(cols, ARTIFACTS):
        f = path / name
        size = f.stat().st_size if f.is_file() else None
        whole = size is not None and size <= FULL_DOWNLOAD_BYTES
        label = name if whole or size is None else f"{name} (last {_mib(FULL_DOWNLOAD_BYTES)})"
        col.download_button(label,
                            data=(lambda f=f, n=FULL_DOWNLOAD_BYTES: tail_bytes(f, n)),
                            file_name=f"{run_id}-{name}" if whole else f"{run_id}-tail-{name}",
                            mime=mime, key=f"art-{name}", on_click="ignore",
                            disabled=size is None, icon=":material/download:",
                            help=_mib(size) if size is not None else "not written")
        if size is not None and not whole:
            notes.append(f"{name} is {_mib(size)}: the button gives its last "
                         f"{_mib(FULL_DOWNLOAD_BYTES)}; the whole file is {f}")
    for note in notes:
        st.caption(note)
    predictions(run_id, path, row)


def prediction_label(name: str, best_epoch: int | None) -> str:
    """``test_epoch_003.csv`` -> "test, epoch 3 (best)"; ``test_eval_best.csv`` -> "test, aqa
    eval of best.pt"; any other file name as it is."""
    stem = name.removesuffix(".csv")
    split, _, rest = stem.partition("_")
    kind, _, tag = rest.partition("_")
    if kind == "epoch" and tag.isdigit():
        best = " (best)" if split != "val" and best_epoch == int(tag) else ""
        return f"{split}, epoch {int(tag)}{best}"
    if kind == "eval" and tag:
        return f"{split}, aqa eval of {tag}.pt"
    return name


def predictions(run_id: str, path: Path, row: dict) -> None:
    folder = path / "predictions"
    names = sorted(p.name for p in folder.glob("*.csv")) if folder.is_dir() else []
    if not names:
        st.caption("No predictions yet: each evaluation writes predictions/<split>_epoch_NNN.csv.")
        return
    best = row.get("best_epoch")
    default = f"test_epoch_{best:03d}.csv" if best else None
    if default not in names:
        tests = [n for n in names if n.startswith("test_epoch_")]
        default = tests[-1] if tests else names[-1]
    c = st.columns([3, 1], vertical_alignment="bottom")
    chosen = c[0].selectbox("Predictions", names, index=names.index(default), key="pred_pick",
                            format_func=lambda n: prediction_label(n, best),
                            help="the predictions one evaluation wrote: a split after an epoch, "
                                 "or `aqa eval` of a checkpoint")
    f = folder / chosen
    c[1].download_button("Download CSV", data=lambda: f.read_bytes(),
                         file_name=f"{run_id}-{chosen}", mime="text/csv", key="pred_dl",
                         on_click="ignore", icon=":material/download:")
    try:
        rows = compare.read_predictions(f)
    except (OSError, ValueError, KeyError) as exc:
        st.warning(f"Cannot read {f}: {exc}. Evaluate the checkpoint again to rewrite it "
                   "(`python -m aqa eval RUN`).")
        return
    if not rows:
        st.caption(f"{chosen} has no rows.")
        return
    label = prediction_label(chosen, best)
    classes = all("pred_class" in r for r in rows)
    cols = st.columns(3 if classes else 2)
    cols[0].plotly_chart(comparing.scatter_figure(f"predicted vs true · {label}", rows),
                         key="pred-scatter")
    cols[1].plotly_chart(charts.error_histogram_figure(f"error · {label}", rows), key="pred-hist")
    if classes:
        cols[2].plotly_chart(charts.confusion_figure(f"confusion matrix · {label}", rows),
                             key="pred-confusion")


def filtered(rows: list[dict], statuses: list[str], methods: list[str], datasets: list[str],
             text: str) -> list[dict]:
    return [r for r in rows
            if (not statuses or r["status"] in statuses) and (not methods or r["method"] in methods)
            and (not datasets or r["dataset"] in datasets) and (text.lower() in r["id"].lower())]


def config_json(row: dict) -> dict:
    try:
        return json.loads(row.get("config") or "{}")
    except ValueError:
        return {}
