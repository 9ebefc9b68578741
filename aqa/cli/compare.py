"""``python -m aqa compare``: the Compare page's table from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

from aqa.cli import common

FORMATS = ("md", "csv", "tex", "json")


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="compare runs (and the published numbers) as a table")
    p.add_argument("run_ids", nargs="*", metavar="RUN",
                   help="run ids (or unique prefixes/suffixes) or group ids (g-...); a run of a "
                        "group brings its whole group, shown as one row (mean ± std of the "
                        "finished members); none: only --paper rows")
    p.add_argument("--epoch", default="best",
                   help="which checkpoint of each run: best (default: best.pt's epoch, chosen on "
                        "held-out data where the run has a validation split), last, or an epoch "
                        "number")
    p.add_argument("--paper", action="append", default=[], metavar="BENCHMARK",
                   help="add the published rows of a benchmark (mtl_aqa, aqa7, finediving, fisv, "
                        "rg; a dataset name works too); repeatable")
    p.add_argument("--members", action="store_true",
                   help="list each group's member runs under its row")
    p.add_argument("--ledger", action="store_true",
                   help="the reproducibility ledger instead: the published rows of each --paper "
                        "benchmark (default: the runs' benchmarks) with their sources, the known "
                        "public reproduction gaps beside them, and the runs' numbers under both "
                        "selection protocols")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--out", default=None, help="write the table to this file instead of stdout")
    p.add_argument("--boot", type=int, default=1000,
                   help="bootstrap resamples for rho's 95%% CI (0: no CI)")
    common.add_runs_dir(p)


def cmd_compare(args) -> int:
    from aqa import compare, papers
    from aqa.errors import ConfigError, RunError
    from aqa.runs import index

    if not args.run_ids and not args.paper:
        raise ConfigError("nothing to compare: give run ids and/or --paper BENCHMARK")
    root = common.runs_dir(args)
    rows = []
    for run_id in _run_ids(root, args.run_ids):
        run = index.get_run(root, run_id)
        if run is None:
            raise RunError(f"run {run_id} is not in the index; run `python -m aqa index`")
        # test and val rows in one read (the honest protocol chooses its epoch on val)
        evaluated = index.run_metrics(root, run_id, split=("test", "val"))
        epoch = _epoch(args.epoch, run, [m for m in evaluated if m["split"] == "test"])
        rows.append(compare.run_row(run, epoch, evaluated, n_boot=args.boot))
    rows = compare.group_rows(rows)
    if args.members:
        rows = compare.with_members(rows)
    benches = []
    for name in args.paper:
        bench = name if name in papers.BENCHMARKS else papers.benchmark_of(name)
        if bench is None:
            raise ConfigError(f"--paper {name!r}: no published rows; choose one of "
                              f"{', '.join(papers.BENCHMARKS)}")
        benches.append(bench)
    if args.ledger:
        rows = _ledger(rows, benches)
    else:
        rows += [r for bench in benches for r in compare.reference_rows(bench)]
    if args.format == "json":
        import json
        text = json.dumps(rows, indent=2, default=str) + "\n"
    else:
        text = {"md": compare.to_markdown, "csv": compare.to_csv, "tex": compare.to_latex}[
            args.format](rows)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({len(rows)} rows)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _run_ids(root, refs: list[str]) -> list[str]:
    """The runs to compare: each RUN, a group id's members, and the other members of the group
    of each run named (a group is compared whole); each once, in the order given."""
    from aqa import compare
    from aqa.errors import RunError
    from aqa.runs import index, store

    if not refs:
        return []
    runs = index.list_runs(root)  # ingests what the runs wrote since the last look
    by_id = {r["id"]: r for r in runs}
    out: list[str] = []
    for ref in refs:
        if ref.startswith("g-"):
            ids = compare.group_member_ids(runs, ref)
            if not ids:
                raise RunError(f"no run of group {ref} in {root}; `python -m aqa runs ls` lists "
                               "the runs (a member's config names its group)")
        else:
            run_id = store.find_run(root, ref).name
            group = compare.group_of((by_id.get(run_id) or {}).get("config"))
            ids = compare.group_member_ids(runs, group["id"]) if group else [run_id]
        out += [i for i in ids if i not in out]
    return out


def _ledger(rows: list[dict], benches: list[str]) -> list[dict]:
    from aqa import compare
    from aqa.errors import ConfigError

    if not benches:
        found = (compare.benchmark_of(r.get("dataset") or "") for r in rows)
        benches = list(dict.fromkeys(b for b in found if b))
    if not benches:
        raise ConfigError("--ledger: which benchmark? the runs are on none of the published "
                          "benchmarks; add --paper BENCHMARK")
    out = []
    for bench in benches:
        ours = [r for r in rows if compare.benchmark_of(r.get("dataset") or "") == bench]
        if len(benches) == 1:  # runs on another dataset are still our numbers: keep them
            ours = rows
        out += compare.ledger_rows(bench, ours)
    return out


def _epoch(choice: str, run: dict, metrics: list[dict]) -> int | None:
    from aqa.errors import ConfigError

    epochs = sorted({m["epoch"] for m in metrics if m.get("epoch") is not None})
    if choice == "best":
        return None  # run_row takes the run's best epoch
    if choice == "last":
        return epochs[-1] if epochs else None
    try:
        epoch = int(choice)
    except ValueError:
        raise ConfigError(f"--epoch {choice!r}: expected best, last or an epoch number") from None
    if epoch not in epochs:
        raise ConfigError(f"run {run['id']} has no test metrics at epoch {epoch}; it has "
                          f"{', '.join(map(str, epochs)) or 'none'}")
    return epoch


COMMANDS = {"compare": cmd_compare}
