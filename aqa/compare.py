"""Comparing runs, checkpoints and the papers: rows in, tables (CSV / Markdown / LaTeX) out.

A comparison row is one (run, epoch): its test metrics recomputed from
``predictions/test_epoch_NNN.csv`` (Spearman rho with a percentile-bootstrap 95% CI, L2, RL2)
where that file exists, else the values logged in the index. RL2 is reported x100, as in the
papers. A predictions CSV with a ``class`` column (AQA-7) also gets one rho per class and their
Fisher-z mean, AQA-7's "Avg. Corr.".

The published numbers are ``aqa.papers``'s rows (each with its protocol, source and provenance);
they are reference rows, never recomputed.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from aqa import metrics as M
from aqa import papers

# ---------------------------------------------------------------- the papers (aqa.papers)

AQA7_CLASSES = papers.AQA7_CLASSES
benchmark_of = papers.benchmark_of


def reference_rows(benchmark: str) -> list[dict]:
    """The published rows of ``benchmark`` (a key of ``aqa.papers.BENCHMARKS``) in the
    comparison-row shape: each with its protocol, source and provenance."""
    if benchmark not in papers.BENCHMARKS:
        return []
    name = papers.BENCHMARKS[benchmark][0]
    out = []
    for r in papers.rows(benchmark):
        row = {"label": f"{r.provenance}: {r.method}", "kind": "paper", "method": r.method,
               "dataset": name, "protocol": r.protocol, "rho": r.rho, "rl2x100": r.rl2x100,
               "source": r.source, "provenance": r.provenance, "note": r.note}
        if r.per_class:
            row["per_class"] = dict(r.per_class)
        out.append(row)
    return out


# ---------------------------------------------------------------- predictions

def predictions_path(run_dir: str | Path, epoch: int, split: str = "test") -> Path:
    return Path(run_dir) / "predictions" / f"{split}_epoch_{int(epoch):03d}.csv"


def read_predictions(path: str | Path) -> list[dict]:
    """Rows ``{id, true, pred[, class][, pred_class]}`` of a predictions CSV (numbers as floats;
    ``pred_class``, a classification run's predicted class, an int)."""
    with open(path, newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            out = {"id": row["id"], "true": float(row["true"]), "pred": float(row["pred"])}
            if row.get("class"):
                out["class"] = row["class"]
            if row.get("pred_class"):
                out["pred_class"] = int(row["pred_class"])
            rows.append(out)
    return rows


def prediction_epochs(run_dir: str | Path, split: str = "test") -> list[int]:
    """Epochs that have a predictions CSV, ascending."""
    folder = Path(run_dir) / "predictions"
    epochs = []
    for p in folder.glob(f"{split}_epoch_*.csv"):
        try:
            epochs.append(int(p.stem.rsplit("_", 1)[1]))
        except ValueError:
            continue
    return sorted(epochs)


def evaluate_predictions(true: Sequence[float], pred: Sequence[float], n_boot: int = 1000,
                         seed: int = 0) -> dict:
    """rho with its bootstrap 95% CI, L2 and RL2 x 100 of one set of predictions."""
    lo, hi = M.bootstrap_ci(pred, true, M.spearman, n=n_boot, seed=seed) if n_boot else (None, None)
    return {"rho": M.spearman(pred, true), "rho_lo": lo, "rho_hi": hi, "l2": M.l2(pred, true),
            "rl2x100": 100.0 * M.rl2(pred, true), "n": len(true)}


def per_class_rho(rows: Iterable[dict]) -> dict[str, float]:
    """Spearman rho per ``class`` of prediction rows (rows without a class are ignored)."""
    groups: dict[str, tuple[list, list]] = {}
    for r in rows:
        if r.get("class"):
            t, p = groups.setdefault(r["class"], ([], []))
            t.append(r["true"])
            p.append(r["pred"])
    return {c: M.spearman(p, t) for c, (t, p) in sorted(groups.items())}


def fisher_z_avg(per_class: dict[str, float]) -> float | None:
    values = [v for v in per_class.values() if v is not None and math.isfinite(v) and abs(v) < 1]
    return M.fisher_z_mean(values) if values else None


PREDICTIONS_CACHE = 256  # predictions files whose metrics are kept (a few KB each)


def predictions_metrics(path: str | os.PathLike, n_boot: int = 1000, seed: int = 0) -> dict:
    """``evaluate_predictions`` of one predictions CSV, with ``per_class`` rho and their
    Fisher-z mean ``rho_fz_avg`` when it has a ``class`` column; ``{}`` under two rows.

    Cached per file (resolved path, modification time, size) and bootstrap settings, so pages
    that show the same epoch again do not bootstrap again, and a rewritten file is read anew.
    """
    path = Path(path).resolve()
    st = path.stat()
    return copy.deepcopy(_predictions_metrics(str(path), st.st_mtime_ns, st.st_size, n_boot, seed))


@functools.lru_cache(maxsize=PREDICTIONS_CACHE)
def _predictions_metrics(path: str, mtime_ns: int, size: int, n_boot: int, seed: int) -> dict:
    preds = read_predictions(path)
    if len(preds) < 2:
        return {}
    out = evaluate_predictions([r["true"] for r in preds], [r["pred"] for r in preds], n_boot=0)
    if n_boot:  # the interval from the one per-file bootstrap cache (the run page's too)
        out["rho_lo"], out["rho_hi"] = M.predictions_ci(path, n_boot=n_boot, seed=seed)
    classes = per_class_rho(preds)
    if classes:
        out["per_class"] = classes
        out["rho_fz_avg"] = fisher_z_avg(classes)
    return out


# ---------------------------------------------------------------- rows from runs

def _metrics_at(db_rows: list[dict], epoch: int) -> dict[str, float]:
    return {r["name"]: r["value"] for r in db_rows
            if r["split"] == "test" and r["epoch"] == epoch and r["value"] is not None}


def run_row(run: dict, epoch: int | None, metric_rows: list[dict], n_boot: int = 1000,
            label: str | None = None) -> dict:
    """One comparison row for ``run`` (an index ``runs`` row) at ``epoch`` (None: best epoch).

    ``metric_rows`` are the run's index ``metrics`` rows (test, and val: the honest protocol of
    :func:`selection_metrics` chooses its epoch on them); the predictions CSV of that epoch, when
    present, gives the bootstrap CI, L2 and RL2 recomputed from the raw predictions.
    """
    test_epochs = sorted({r["epoch"] for r in metric_rows if r["split"] == "test"})
    selection = selection_metrics(metric_rows, run.get("best_metric") or "rho")
    if epoch is None:  # best.pt's epoch: chosen on held-out data where the run has some
        epoch = (selection.get("held_out_epoch") or run.get("best_epoch")
                 or (test_epochs[-1] if test_epochs else None))
    logged = _metrics_at(metric_rows, epoch) if epoch is not None else {}
    row = {"label": label or f"{run['id']} @ epoch {epoch}", "kind": "run", "run_id": run["id"],
           "method": run.get("method"), "dataset": run.get("dataset"), "epoch": epoch,
           "protocol": run_protocol(run.get("config")),
           "rho": logged.get("rho"), "rho_lo": None, "rho_hi": None, "l2": logged.get("l2"),
           "rl2x100": 100.0 * logged["rl2"] if logged.get("rl2") is not None else None,
           "accuracy": logged.get("accuracy"), "params": run.get("params"),
           "train_time_s": _train_time(run), "n": None, "source": "index",
           "status": run.get("status"), **selection}
    group = group_of(run.get("config"))
    if group:
        row["group"] = group
    path = predictions_path(run["run_dir"], epoch) if epoch is not None else None
    if path is not None and path.is_file():
        recomputed = predictions_metrics(path, n_boot=n_boot)
        if recomputed:
            row.update(recomputed)
            row["source"] = path.name
    return row


def _config_dict(config: dict | str | None) -> dict:
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            config = {}
    return config or {}


def group_of(config: dict | str | None) -> dict | None:
    """The ``group`` section of a run's config (``aqa.config.GroupConfig`` as a dict), or None
    when the run is in no group."""
    group = _config_dict(config).get("group") or {}
    return dict(group) if group.get("id") else None


def run_protocol(config: dict | str | None) -> str:
    """How a run's test numbers were obtained, from its config: the ground-truth labels its
    evaluation uses (difficulty with DD, the exemplars' group: difficulty, dive number, class)
    and how its best epoch is chosen (held-out validation, or the test split as the papers do)."""
    config = _config_dict(config)
    model, train = config.get("model") or {}, config.get("train") or {}
    parts = []
    if model.get("use_dd"):
        parts.append("w/ DD (ground-truth difficulty at test)")
    rule = model.get("exemplar_rule")
    if rule in ("difficulty", "dive_number", "class"):
        parts.append(f"exemplars by {rule.replace('_', ' ')} (ground truth at test)")
    elif rule == "none":
        parts.append("exemplars from the whole training split")
    val = train.get("val_fraction") or 0
    parts.append(f"best epoch on held-out {val:.0%} of train" if val > 0
                 else "best epoch on test (papers' protocol)")
    return "; ".join(parts)


def _train_time(run: dict) -> float | None:
    start = run.get("started")
    end = run.get("ended") or run.get("last_t")
    return (end - start) if start and end else None


# ---------------------------------------------------------------- both selection protocols

SELECTIONS = {"official": "best of each test metric over the epochs (the papers' protocol)",
              "honest": "one epoch chosen on held-out training data, else the last epoch"}
_SELECTED = (("rho", "rho", 1.0), ("l2", "l2", 1.0), ("rl2", "rl2x100", 100.0),
             ("accuracy", "accuracy", 1.0))


def selection_metrics(metric_rows: list[dict], best_metric: str = "rho") -> dict:
    """A run's test metrics under both selection protocols (:data:`SELECTIONS`), as the columns
    ``<metric>_official`` and ``<metric>_honest`` (rho, l2, rl2x100, accuracy) and
    ``honest_epoch`` ("7 (val rho)" / "10 (last epoch)"); ``held_out_epoch``, the epoch chosen on
    the validation split, where the run has one.

    official: each metric's best over the test epochs, independently (``aqa.metrics.summarize``);
    honest: the epoch chosen by ``best_metric`` on the held-out validation split when the run has
    one, else the last evaluated epoch: no choice made on the test split either way."""
    summary = M.summarize(metric_rows, best_metric)  # the one definition of both protocols
    honest = summary["honest"]
    if honest is None:
        epochs = sorted({r["epoch"] for r in metric_rows if r.get("split") == "test"
                         and r.get("value") is not None and r.get("epoch") is not None})
        if epochs:
            honest = {"epoch": epochs[-1], "selected_on": "last epoch",
                      **_metrics_at(metric_rows, epochs[-1])}
    out: dict = {}
    for proto, part in (("official", summary["official"]), ("honest", honest or {})):
        for name, key, scale in _SELECTED:
            if part.get(name) is not None:
                out[f"{key}_{proto}"] = scale * part[name]
    if honest:
        out["honest_epoch"] = f"{honest['epoch']} ({honest['selected_on']})"
    if summary["honest"] is not None:  # the epoch best.pt was chosen at, on held-out data
        out["held_out_epoch"] = summary["honest"]["epoch"]
    return out


# ---------------------------------------------------------------- groups (aqa.groups)

# the numeric columns a group row aggregates (when its members have them)
GROUP_METRICS = ("rho", "l2", "rl2x100", "accuracy", "rho_fz_avg",
                 *(f"{key}_{proto}" for proto in SELECTIONS for _, key, _ in _SELECTED))


def group_rows(rows: list[dict]) -> list[dict]:
    """``rows`` with the member rows of each group folded into one row (at the place of its
    first member); rows in no group pass through unchanged. See :func:`fold_group`."""
    out: list = []
    members: dict[str, list[dict]] = {}
    for r in rows:
        gid = (r.get("group") or {}).get("id")
        if not gid:
            out.append(r)
            continue
        if gid not in members:
            members[gid] = []
            out.append(gid)
        members[gid].append(r)
    return [fold_group(members[r]) if isinstance(r, str) else r for r in out]


def fold_group(members: list[dict]) -> dict:
    """One row for a group's member rows (``run_row`` rows carrying ``group``).

    Only finished members count (``status`` "finished"); the row says how many of the group's
    ``size`` runs that is (``runs``: "3/5"). Each metric of :data:`GROUP_METRICS` is the mean of
    the finished members' values (rho and the rho-like columns: the Fisher-z mean, tanh of the
    mean of atanh, when the group's ``aggregate`` is ``fisher_z``), with ``<metric>_std`` the
    sample standard deviation (ddof=1) of the members' values (None for a single value). The
    member rows are kept in ``members``; a ``classes`` group lists each member's rho by class in
    ``per_class``. Several runs of one member label (a member run again after a crash) count
    once: the last finished of them."""
    info = members[0]["group"]
    gid, kind = info["id"], info.get("kind") or "runs"
    aggregate = info.get("aggregate") or "mean"
    latest = _latest_per_member(members)
    size = max(int(info.get("size") or 0), len(latest))
    done = [m for m in latest if m.get("status") == "finished"]
    how = "Fisher-z mean" if aggregate == "fisher_z" else "mean"
    texts = list(dict.fromkeys(m.get("protocol") for m in members if m.get("protocol")))
    row = {"label": f"group {gid} · {info.get('protocol') or kind} · {len(done)}/{size} finished",
           "kind": "group", "group_id": gid,
           "group": {k: v for k, v in info.items() if k != "member"},
           "method": _one_of(m.get("method") for m in members),
           "dataset": _one_of(m.get("dataset") for m in members),
           "protocol": "; ".join(texts + [f"{how} ± std over {len(done)} {kind}"]),
           "epoch": None, "runs": f"{len(done)}/{size}", "n_runs": len(done), "size": size,
           "params": _one_of(m.get("params") for m in members),
           "source": f"{len(done)} finished member runs", "members": members}
    notes = []
    for key in GROUP_METRICS:
        values = [float(m[key]) for m in done
                  if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
        if not values:
            continue
        mean = float(np.mean(values))
        if aggregate == "fisher_z" and key.startswith("rho"):
            if all(abs(v) < 1 for v in values):
                mean = M.fisher_z_mean(values)
            else:
                mean = None
                notes.append(f"{key}: a member's value is ±1, Fisher z is undefined")
        row[key] = mean
        row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    if kind == "classes":
        row["per_class"] = {str(m["group"].get("member")): m.get("rho") for m in done}
    if len(done) < size:
        notes.append(f"{size - len(done)} of {size} runs not finished: not in the numbers")
    if notes:
        row["note"] = "; ".join(notes)
    return row


def _latest_per_member(members: list[dict]) -> list[dict]:
    """One row per member label: a rerun of a member (same ``group.member``) stands in for it,
    the last finished run of that label counting, else its last run."""
    by_label: dict[str, list[dict]] = {}
    for m in members:
        by_label.setdefault(str(m["group"].get("member")), []).append(m)
    return [([r for r in rs if r.get("status") == "finished"] or rs)[-1]
            for rs in by_label.values()]


def _one_of(values) -> object:
    """The one value of ``values`` (None values ignored), or "mixed" when they differ."""
    seen = list(dict.fromkeys(v for v in values if v is not None))
    return seen[0] if len(seen) == 1 else ("mixed" if seen else None)


def group_member_ids(runs: Iterable[dict], group_id: str) -> list[str]:
    """Ids of the index rows (``runs``) whose config puts them in ``group_id``, oldest first
    (the order they were submitted in: the members' order)."""
    members = [r for r in runs if (group_of(r.get("config")) or {}).get("id") == group_id]
    return [r["id"] for r in sorted(members, key=lambda r: (r.get("created") or 0, r["id"]))]


def with_members(rows: list[dict]) -> list[dict]:
    """``rows`` (after :func:`group_rows`) with each group row followed by its member rows,
    labelled ``member <seed/fold/class> (<status>): <run label>``."""
    out = []
    for r in rows:
        out.append(r)
        out += [{**m, "label": f"member {m['group'].get('member')} ({m.get('status')}): "
                                f"{m['label']}"} for m in r.get("members") or []]
    return out


# ---------------------------------------------------------------- the reproducibility ledger

# the columns of our rows in the ledger: both protocols, never one "ρ" that hides its choice
_LEDGER_KEYS = ("label", "kind", "method", "dataset", "protocol", "runs", "rho_official",
                "rho_honest", "honest_epoch", "rl2x100_official", "rl2x100_honest", "source",
                "provenance", "note")


def gap_row(gap: papers.ReproductionGap) -> dict:
    """A known public reproduction gap (``aqa.papers.GAPS``) as a comparison row."""
    return {"label": f"{gap.provenance}: {gap.method}", "kind": "gap", "method": gap.method,
            "dataset": papers.BENCHMARKS[gap.benchmark][0], "protocol": gap.protocol,
            "reproduced_rho": gap.reproduced_rho, "paper_rho": gap.paper_rho,
            "rl2x100": gap.rl2x100, "setup": gap.setup, "source": gap.source,
            "provenance": gap.provenance, "note": gap.reported}


def ledger_rows(benchmark: str, ours: Iterable[dict] = ()) -> list[dict]:
    """The reproducibility ledger of ``benchmark``: every published row with its source and
    provenance, each method's known public reproduction gaps right after its last published row,
    then ``ours`` (run or group rows) with their numbers under both selection protocols
    (``rho_official``, ``rho_honest``) and their protocol text (the ground-truth labels they use
    at test). Our rows keep only those columns: no single "ρ" that hides how it was chosen."""
    refs = reference_rows(benchmark)
    gaps = [gap_row(g) for g in papers.gaps(benchmark)]
    last = {r["method"]: i for i, r in enumerate(refs)}
    out: list[dict] = []
    for i, r in enumerate(refs):
        out.append(r)
        if last[r["method"]] == i:
            out += [g for g in gaps if g["method"] == r["method"]]
    out += [g for g in gaps if g["method"] not in last]
    for r in ours:
        spread = {f"{k}_std": r[f"{k}_std"] for k in _LEDGER_KEYS if r.get(f"{k}_std") is not None}
        out.append({k: r.get(k) for k in _LEDGER_KEYS} | spread)
    return out


# ---------------------------------------------------------------- tables

def table_columns(rows: list[dict], std: bool = False) -> list[tuple[str, str]]:
    """(key, header) of the columns that have a value in any row, in display order; ``std``:
    with a ``<key>_std`` column after each column a group row aggregates (the CSV's; the other
    formats print "mean ± std" in one cell)."""
    cols = [("label", "run / reference"), ("method", "method"), ("dataset", "dataset"),
            ("protocol", "protocol"), ("runs", "runs (finished / group)"), ("epoch", "epoch"),
            ("rho", "ρ"), ("rho_ci", "ρ 95% CI"), ("l2", "L2"),
            ("rl2x100", "RL2 (×100)"), ("accuracy", "accuracy"),
            ("rho_official", "ρ official (best on test)"),
            ("rho_honest", "ρ honest (held-out / last)"),
            ("honest_epoch", "honest epoch"), ("l2_official", "L2 official"),
            ("l2_honest", "L2 honest"), ("rl2x100_official", "RL2 (×100) official"),
            ("rl2x100_honest", "RL2 (×100) honest"), ("accuracy_official", "accuracy official"),
            ("accuracy_honest", "accuracy honest"), ("reproduced_rho", "reproduced ρ"),
            ("paper_rho", "paper ρ (as the thread states)"), ("setup", "setup"),
            ("params", "parameters"), ("train_time_s", "training time (s)")]
    classes = [c for c in AQA7_CLASSES if any(c in (r.get("per_class") or {}) for r in rows)]
    extra = sorted({c for r in rows for c in (r.get("per_class") or {})} - set(classes))
    cols += [(f"class:{c}", f"ρ {c}") for c in classes + extra]
    if classes or extra:
        cols.append(("rho_fz_avg", "ρ avg (Fisher-z)"))
    cols += [("source", "source"), ("provenance", "provenance"), ("note", "note")]
    flat = [flatten(r) for r in rows]
    cols = [(k, h) for k, h in cols if k == "label" or any(f.get(k) not in (None, "") for f in flat)]
    if std:  # beside each aggregated column, its std (group rows)
        cols = [c for k, h in cols for c in [(k, h)] + ([(f"{k}_std", f"{h} std")] if any(
            f.get(f"{k}_std") is not None for f in flat) else [])]
    return cols


def flatten(row: dict) -> dict:
    """A row with ``per_class`` spread into ``class:<name>`` keys and the CI as one string."""
    out = {k: v for k, v in row.items() if k != "per_class"}
    for c, v in (row.get("per_class") or {}).items():
        out[f"class:{c}"] = v
    if row.get("kind") == "paper" and row.get("per_class"):
        out.setdefault("rho_fz_avg", row.get("rho"))
    if row.get("rho_lo") is not None and row.get("rho_hi") is not None:
        out["rho_ci"] = f"[{row['rho_lo']:.4f}, {row['rho_hi']:.4f}]"
    return out


_FORMATS = {"rho": "{:.4f}", "l2": "{:.2f}", "rl2x100": "{:.4f}", "accuracy": "{:.4f}",
            "rho_fz_avg": "{:.4f}", "train_time_s": "{:.0f}", "params": "{:,}"}


def _base_key(key: str) -> str:
    """``rho_official_std`` -> ``rho``: the key whose format a derived column uses."""
    for suffix in ("_std", "_official", "_honest"):
        key = key.removesuffix(suffix)
    return "rho" if key in ("reproduced_rho", "paper_rho") else key


def format_value(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    fmt = _FORMATS.get(_base_key(key)) or ("{:.4f}" if key.startswith("class:") else None)
    if fmt and isinstance(value, (int, float)):
        return fmt.format(value)
    return str(value)


def format_cell(key: str, flat: dict) -> str:
    """The printed cell of ``key``: the value, and "± std" where the row has ``<key>_std``."""
    text = format_value(key, flat.get(key))
    if flat.get(f"{key}_std") is not None and flat.get(key) is not None:
        text += f" ± {format_value(key, flat[f'{key}_std'])}"
    return text


def to_records(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    cols = table_columns(rows)
    body = [[format_cell(k, flatten(r)) for k, _ in cols] for r in rows]
    return [h for _, h in cols], body


def to_csv(rows: list[dict]) -> str:
    """Raw (unrounded) values, one column per key (a group's std in its own column)."""
    cols = table_columns(rows, std=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([h for _, h in cols])
    for r in rows:
        f = flatten(r)
        w.writerow(["" if f.get(k) is None else f.get(k) for k, _ in cols])
    return buf.getvalue()


def to_markdown(rows: list[dict]) -> str:
    header, body = to_records(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPE = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "\\": r"\textbackslash{}", "ρ": r"$\rho$", "×": r"$\times$", "–": "--",
                 "§": r"\S{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPE.get(ch, ch) for ch in text)


# columns where the best value is the largest / the smallest (bold in LaTeX)
_HIGHER = ("rho", "accuracy", "rho_fz_avg", *(f"{k}_{p}" for k in ("rho", "accuracy")
                                              for p in SELECTIONS))
_LOWER = ("l2", "rl2x100", *(f"{k}_{p}" for k in ("l2", "rl2x100") for p in SELECTIONS))


def best_values(rows: list[dict]) -> dict[str, float]:
    """Per numeric column, the best value over ``rows`` (ρ-like: max; errors: min)."""
    flat = [flatten(r) for r in rows]
    out = {}
    keys = set(_HIGHER) | set(_LOWER) | {k for f in flat for k in f if k.startswith("class:")}
    for key in keys:
        vals = [f[key] for f in flat if isinstance(f.get(key), (int, float))
                and not (isinstance(f[key], float) and math.isnan(f[key]))]
        if vals:
            out[key] = min(vals) if key in _LOWER else max(vals)
    return out


def to_latex(rows: list[dict], caption: str = "Comparison of runs and published results.") -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``): the best value of each numeric
    column in bold (ties all bold; compared at the printed precision), ρ with its 95% CI."""
    cols = [(k, h) for k, h in table_columns(rows) if k != "rho_ci"]
    best = best_values(rows)
    body = []
    for r in rows:
        f = flatten(r)
        cells = []
        for k, _ in cols:
            text = latex_escape(format_cell(k, f)).replace("±", r"$\pm$")
            if k in best and isinstance(f.get(k), (int, float)) \
                    and format_value(k, f[k]) == format_value(k, best[k]):
                text = f"\\textbf{{{text}}}"
            if k == "rho" and f.get("rho_ci"):
                text += f" {{\\scriptsize {latex_escape(f['rho_ci'])}}}"
            cells.append(text)
        body.append(cells)
    numeric = set(_HIGHER) | set(_LOWER) | {"epoch", "params", "train_time_s", "reproduced_rho",
                                            "paper_rho"}
    spec = "".join("r" if k in numeric or k.startswith("class:") else "l" for k, _ in cols)
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption)}}}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for _, h in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(cells) + r" \\" for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def checkpoint_metrics(ckpt_row: dict) -> dict:
    """The metrics dict stored (as JSON) in an index ``checkpoints`` row."""
    try:
        return json.loads(ckpt_row.get("metrics") or "{}")
    except ValueError:
        return {}
