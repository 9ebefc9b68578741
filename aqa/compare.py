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
    """Rows ``{id, true, pred[, class]}`` of a predictions CSV (numbers as floats)."""
    with open(path, newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            out = {"id": row["id"], "true": float(row["true"]), "pred": float(row["pred"])}
            if row.get("class"):
                out["class"] = row["class"]
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
    out = evaluate_predictions([r["true"] for r in preds], [r["pred"] for r in preds],
                               n_boot=n_boot, seed=seed)
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

    ``metric_rows`` are the run's index ``metrics`` rows; the predictions CSV of that epoch, when
    present, gives the bootstrap CI, L2 and RL2 recomputed from the raw predictions.
    """
    test_epochs = sorted({r["epoch"] for r in metric_rows if r["split"] == "test"})
    if epoch is None:
        epoch = run.get("best_epoch") or (test_epochs[-1] if test_epochs else None)
    logged = _metrics_at(metric_rows, epoch) if epoch is not None else {}
    row = {"label": label or f"{run['id']} @ epoch {epoch}", "kind": "run", "run_id": run["id"],
           "method": run.get("method"), "dataset": run.get("dataset"), "epoch": epoch,
           "protocol": run_protocol(run.get("config")),
           "rho": logged.get("rho"), "rho_lo": None, "rho_hi": None, "l2": logged.get("l2"),
           "rl2x100": 100.0 * logged["rl2"] if logged.get("rl2") is not None else None,
           "accuracy": logged.get("accuracy"), "params": run.get("params"),
           "train_time_s": _train_time(run), "n": None, "source": "index"}
    path = predictions_path(run["run_dir"], epoch) if epoch is not None else None
    if path is not None and path.is_file():
        recomputed = predictions_metrics(path, n_boot=n_boot)
        if recomputed:
            row.update(recomputed)
            row["source"] = path.name
    return row


def run_protocol(config: dict | str | None) -> str:
    """How a run's test numbers were obtained, from its config: the ground-truth labels its
    evaluation uses (difficulty with DD, the exemplars' group: difficulty, dive number, class)
    and how its best epoch is chosen (held-out validation, or the test split as the papers do)."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            config = {}
    config = config or {}
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


# ---------------------------------------------------------------- tables

def table_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(key, header) of the columns that have a value in any row, in display order."""
    cols = [("label", "run / reference"), ("method", "method"), ("dataset", "dataset"),
            ("protocol", "protocol"), ("epoch", "epoch"), ("rho", "ρ"), ("rho_ci", "ρ 95% CI"), ("l2", "L2"),
            ("rl2x100", "RL2 (×100)"), ("accuracy", "accuracy"), ("params", "parameters"),
            ("train_time_s", "training time (s)")]
    classes = [c for c in AQA7_CLASSES if any(c in (r.get("per_class") or {}) for r in rows)]
    extra = sorted({c for r in rows for c in (r.get("per_class") or {})} - set(classes))
    cols += [(f"class:{c}", f"ρ {c}") for c in classes + extra]
    if classes or extra:
        cols.append(("rho_fz_avg", "ρ avg (Fisher-z)"))
    cols += [("source", "source"), ("provenance", "provenance"), ("note", "note")]
    flat = [flatten(r) for r in rows]
    return [(k, h) for k, h in cols if k == "label" or any(f.get(k) not in (None, "") for f in flat)]


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


def format_value(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    fmt = _FORMATS.get(key) or ("{:.4f}" if key.startswith("class:") else None)
    if fmt and isinstance(value, (int, float)):
        return fmt.format(value)
    return str(value)


def to_records(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    cols = table_columns(rows)
    body = [[format_value(k, flatten(r).get(k)) for k, _ in cols] for r in rows]
    return [h for _, h in cols], body


def to_csv(rows: list[dict]) -> str:
    """Raw (unrounded) values, one column per key."""
    cols = table_columns(rows)
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
_HIGHER = ("rho", "accuracy", "rho_fz_avg")
_LOWER = ("l2", "rl2x100")


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
            text = latex_escape(format_value(k, f.get(k)))
            if k in best and isinstance(f.get(k), (int, float)) \
                    and format_value(k, f[k]) == format_value(k, best[k]):
                text = f"\\textbf{{{text}}}"
            if k == "rho" and f.get("rho_ci"):
                text += f" {{\\scriptsize {latex_escape(f['rho_ci'])}}}"
            cells.append(text)
        body.append(cells)
    numeric = set(_HIGHER) | set(_LOWER) | {"epoch", "params", "train_time_s"}
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
