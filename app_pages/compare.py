"""Compare: runs and checkpoints side by side, against the published numbers (aqa.papers)."""

import streamlit as st

from aqa import compare, papers
from ui import charts, common, comparing, tables

st.title("Compare")
runs_dir = common.runs_dir()
runs = {r["id"]: r for r in common.list_runs()}
if not runs:
    st.info("No runs yet. Start one on the Launch page, or the demo from Home.")
groups = comparing.groups(runs)
in_group = {i for g in groups.values() for i in g["ids"]}
evaluated = [i for i, r in runs.items() if r["best_rho"] is not None]
chosen_groups = st.multiselect(
    "Groups (runs differing only in seed, fold or class: one row, mean ± std)", list(groups),
    default=([st.query_params["group"]] if st.query_params.get("group") in groups else
             [g for g in groups if any(i in evaluated for i in groups[g]["ids"])][:2]),
    key="cmp_groups", format_func=lambda g: comparing.group_label(groups[g], runs))
chosen = st.multiselect("Runs", list(runs), default=[i for i in evaluated if i not in in_group][:3],
                        key="cmp_runs",
                        format_func=lambda i: f"{i} · {runs[i]['method']} · {runs[i]['dataset']}"
                        f" · best ρ {common.fmt_float(runs[i]['best_rho'])}")

rows = []
if chosen:
    st.caption("Checkpoint (epoch) of each run; ρ's 95% CI is a percentile bootstrap over the "
               "test clips (1,000 resamples) from the epoch's predictions file.")
    cols = st.columns(min(len(chosen), 4))
    for i, run_id in enumerate(chosen):
        run, evaluated_rows = runs[run_id], comparing.evaluation_rows(runs_dir, run_id)
        choices = comparing.epoch_choices(run, evaluated_rows)
        pick = cols[i % len(cols)].selectbox(run_id[-30:], list(choices), key=f"cmp_ep:{run_id}")
        rows.append(compare.run_row(run, choices[pick], evaluated_rows,
                                    label=f"{run_id} ({pick})"))

group_rows = [comparing.group_row(runs_dir, groups[g], runs) for g in chosen_groups]
if group_rows:
    st.caption("A group row is the mean ± standard deviation (ddof 1) over its finished member "
               "runs, each at its best epoch; ρ official is each member's best test ρ (the "
               "papers' protocol), ρ honest its ρ at the epoch chosen on held-out data, else "
               "its last epoch. A Fisher-z group averages ρ as tanh(mean(atanh ρ)).")
ours = rows + group_rows

benches = {f"{name} ({split})": key for key, (name, split) in papers.BENCHMARKS.items()}
matched = [k for k, b in benches.items() if any(compare.benchmark_of(r["dataset"] or "") == b
                                                for r in ours)]
refs = st.multiselect("Published reference rows", list(benches),
                      default=matched or list(benches)[:1], key="cmp_refs")
if refs and not matched:
    st.caption("The papers' rows are on their own benchmarks: references, not results on the "
               "runs' dataset.")
if refs:
    st.caption("Each published row says its protocol, its source and how sure we are of it "
               "(provenance: *paper* read in the paper; *paper (recalled)* the paper's table as "
               "recalled, approximate; *repo figure* / *repo log* from a public repository; "
               "*reproduction* a third party re-running the official code). Where sources "
               "disagree, each version is its own row.")
all_rows = ours + [r for k in refs for r in compare.reference_rows(benches[k])]

if all_rows:
    st.dataframe(tables.comparison_frame(all_rows), hide_index=True, width="stretch")
    c = st.columns(3)
    c[0].download_button("CSV", compare.to_csv(all_rows), "comparison.csv", "text/csv", icon=":material/download:",
                         key="dl_csv", on_click="ignore")
    c[1].download_button("Markdown", compare.to_markdown(all_rows), "comparison.md",
                         "text/markdown", icon=":material/download:", key="dl_md", on_click="ignore")
    c[2].download_button("LaTeX", compare.to_latex(all_rows), "comparison.tex", "text/x-tex", icon=":material/download:",
                         key="dl_tex", on_click="ignore")
    with st.expander("Markdown / LaTeX source"):
        t1, t2 = st.tabs(["Markdown", "LaTeX"])
        with t1:
            common.plain_block(compare.to_markdown(all_rows))
        with t2:
            common.plain_block(compare.to_latex(all_rows))
for row in group_rows:
    with st.expander(f"Member runs of {row['group_id']} ({row['runs']} finished)"):
        st.dataframe(tables.comparison_frame(compare.with_members([row])[1:]), hide_index=True,
                     width="stretch",
                     key=f"members:{row['group_id']}")

st.subheader("Reproducibility ledger")
st.caption("Each published number with its source and provenance; beside it the known public "
           "reproduction gaps (third parties re-running the official code, as their issue "
           "threads report it); then the chosen runs and groups under both selection "
           "protocols, with the ground-truth labels they use at test in their protocol.")
ledger_options = list(benches)
pick = st.selectbox("Benchmark", ledger_options,
                    index=ledger_options.index(matched[0]) if matched else 0, key="cmp_ledger")
ledger = compare.ledger_rows(benches[pick], ours)
st.dataframe(tables.comparison_frame(ledger), hide_index=True, width="stretch", key="ledger")
c = st.columns(3)
for col, (fmt, fn, mime) in zip(c, (("csv", compare.to_csv, "text/csv"),
                                    ("md", compare.to_markdown, "text/markdown"),
                                    ("tex", compare.to_latex, "text/x-tex"))):
    col.download_button(f"Ledger {fmt}", fn(ledger), f"ledger.{fmt}", mime,
                        icon=":material/download:", key=f"dl_ledger_{fmt}", on_click="ignore")
with st.expander("Ledger source (Markdown)"):
    common.plain_block(compare.to_markdown(ledger))


def learning_curves(chosen: list[str]) -> None:
    names = comparing.metric_names(runs_dir, chosen)
    if not names:
        st.caption("No metric logged by these runs.")
        return
    labels = [f"{n} ({s})" for s, n in names]
    default = labels.index("rho (test)") if "rho (test)" in labels else 0
    split, name = names[labels.index(st.selectbox("Metric", labels, index=default,
                                                  key="cmp_metric"))]
    axis = "step" if charts.by_step(split, name) else "epoch"
    curves = {}
    for run_id in chosen:
        m = comparing.metric_rows(runs_dir, run_id, split=split, name=name)
        curves[run_id] = ([r[axis] for r in m], [r["value"] for r in m])
    st.plotly_chart(charts.overlay_figure(curves, f"{name} ({split}) by {axis}", axis),
                    key="cmp_curves")


def predicted_vs_true(rows: list[dict]) -> None:
    cols = st.columns(min(len(rows), 3) or 1)
    for i, row in enumerate(rows):
        path = compare.predictions_path(runs[row["run_id"]]["run_dir"], row["epoch"] or 0)
        with cols[i % len(cols)]:
            if path.is_file():
                st.plotly_chart(comparing.scatter_figure(row["label"],
                                                         compare.read_predictions(path)),
                                key=f"scatter:{row['run_id']}")
            else:
                st.caption(f"{row['label']}: no predictions file for this epoch.")


if chosen:
    # charts when opened: Plotly's front end (4.7 MB of JavaScript) would otherwise be loaded
    # and run before the comparison table is drawn in a new tab (docs/performance.md)
    with common.lazy_expander("Learning curves", key="x_curves") as open_:
        if open_:
            learning_curves(chosen)
    with common.lazy_expander("Predicted vs true (test split)", key="x_scatter") as open_:
        if open_:
            predicted_vs_true(rows)
