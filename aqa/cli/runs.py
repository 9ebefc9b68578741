"""``python -m aqa runs ...`` and ``python -m aqa index``: list (with filters and config columns),
show, stop, resume, rerun and follow runs; tag, note, rename, archive, delete and diff them;
ingest the run directories into the index."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aqa.cli import common
from aqa.cli import jobs as cli_jobs
from aqa.cli.common import print_json as _print_json
from aqa.cli.common import runs_dir as _runs_dir


def add_parsers(sub) -> None:
    runs = sub.add_parser("runs", help="list and manage runs").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION")
    p = runs.add_parser("ls", help="list runs")
    p.add_argument("--status", default=None, help="only runs with this status")
    p.add_argument("--where", default=None, metavar="EXPR",
                   help="only runs matching a filter on config keys, metrics and fields, such as "
                        "'optim.lr<1e-3 and rho>0.9', 'method==core', 'tags contains fav' "
                        "(see docs/runs.md, Run hygiene)")
    p.add_argument("--columns", default=None, metavar="A,B",
                   help="config keys / metrics to show as columns, comma-separated; patterns "
                        "allowed (optim.lr,train.batch_size,model.*)")
    p.add_argument("--all", action="store_true", help="archived runs too")
    common.add_runs_dir(p)
    common.add_json(p)
    for name, text in (("show", "show one run"), ("stop", "stop a run (SIGTERM, then SIGKILL)"),
                       ("resume", "resume a stopped or crashed run from its last checkpoint"),
                       ("logs", "print a run's output")):
        p = runs.add_parser(name, help=text)
        p.add_argument("run_id", help="run id (or a unique prefix/suffix of it)")
        common.add_runs_dir(p)
        if name in ("show", "stop", "resume"):
            common.add_json(p)
        if name == "stop":
            p.add_argument("--grace", type=float, default=30.0,
                           help="seconds to wait for the checkpoint before SIGKILL")
            p.add_argument("--no-wait", action="store_true", help="send SIGTERM and return")
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
            p.add_argument("--lines", "-n", type=int, default=0, help="only the last N lines")
    p = runs.add_parser("rerun", help="queue a copy of a run's spec, with changes")
    p.add_argument("run_id", help="run id (or a unique prefix/suffix of it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config change for the copy, such as train.epochs=5 (repeatable)")
    cli_jobs.add_executor_args(p)
    common.add_runs_dir(p)
    common.add_json(p)

    add_hygiene_parsers(runs)

    p = sub.add_parser("index", help="ingest run directories into the SQLite index")
    p.add_argument("--rebuild", action="store_true", help="recreate the index from scratch")
    common.add_runs_dir(p)
    common.add_json(p)


def add_hygiene_parsers(runs) -> None:
    """``runs tag/note/rename/archive/delete/diff``: what a person says about runs, stored in
    each run's meta.json (aqa.runs.meta)."""
    ref = "run id (or a unique prefix/suffix of it)"
    p = runs.add_parser("tag", help="add a tag to a run (or remove it with --remove)")
    p.add_argument("run_id", help=ref)
    p.add_argument("tag", help="a word without spaces or commas, such as fav")
    p.add_argument("--remove", action="store_true", help="remove the tag instead")
    p = runs.add_parser("note", help="set a run's note ('' clears it)")
    p.add_argument("run_id", help=ref)
    p.add_argument("text", help="the note")
    p = runs.add_parser("rename", help="set a run's display name ('' clears it; the id stays)")
    p.add_argument("run_id", help=ref)
    p.add_argument("name", help="the display name")
    p = runs.add_parser("archive", help="archive a run (hidden from lists unless --all)")
    p.add_argument("run_id", help=ref)
    p.add_argument("--undo", action="store_true", help="unarchive it")
    p = runs.add_parser("delete", help="delete a run's directory with all its files")
    p.add_argument("run_id", help=ref)
    p.add_argument("--yes", action="store_true", help="really delete (required)")
    p = runs.add_parser("diff", help="the config keys two runs differ in")
    p.add_argument("run_a", help=ref)
    p.add_argument("run_b", help=ref)
    for p in (runs.choices[n] for n in ("tag", "note", "rename", "archive", "delete", "diff")):
        common.add_runs_dir(p)
        common.add_json(p)


def follow(path: Path, lines: int = 0) -> int:
    """Print stdout.log as it grows until the run's process is gone; exit 0 if it finished."""
    from aqa.runs.status import run_status
    from aqa.runs.store import STDOUT_LOG

    log = path / STDOUT_LOG
    offset = _print_log(log, lines)
    while True:
        status = run_status(path)
        if log.exists():
            offset = _print_log(log, 0, offset)
        if status not in ("running", "queued"):
            print(f"[run {path.name}: {status}]")
            return 0 if status == "finished" else 1
        time.sleep(0.5)


def _print_log(log: Path, lines: int = 0, offset: int = 0) -> int:
    """Write the log after ``offset`` (only its last ``lines`` lines when given) to stdout, a
    block at a time (a log of any size is never read whole); the offset reached."""
    import codecs

    from aqa.runs import logtail

    if not log.exists():
        return offset
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None)
    if out is not None:
        write = out.write
    else:  # a text-only stdout: decode, a character split between blocks kept whole
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        write = lambda b: sys.stdout.write(decoder.decode(b))  # noqa: E731
    if lines:
        data, offset = logtail.tail_lines(log, lines)
        write(data if not data or data.endswith(b"\n") else data + b"\n")
    else:
        for chunk in logtail.chunks(log, offset):
            write(chunk)
            offset += len(chunk)
    (out or sys.stdout).flush()
    return offset


_follow = follow  # the name the command bodies use


def _fmt_duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def cmd_runs(args) -> int:
    from aqa import jobs
    from aqa.runs import index, store

    runs_dir = _runs_dir(args)
    action = args.runs_command
    if action == "ls":
        return _ls(args, runs_dir)
    if action in HYGIENE:
        return HYGIENE[action](args, runs_dir)
    path = store.find_run(runs_dir, args.run_id)
    if action == "show":
        index.sync(runs_dir)
        row = index.get_run(runs_dir, path.name) or {}
        from aqa.metrics import summarize
        info = {"run": {k: v for k, v in row.items() if k not in ("config", "meta_sig")},
                "spec": store.read_run(path), "job": store.read_job(path),
                "checkpoints": index.run_checkpoints(runs_dir, path.name),
                "results": summarize(index.run_metrics(runs_dir, path.name),
                                     row.get("best_metric") or "rho", path / "predictions")}
        if args.json:
            _print_json(info)
        else:
            r = info["run"]
            print(f"run       {path.name}\nstatus    {r.get('status')}"
                  f"{' (' + r['message'] + ')' if r.get('message') else ''}"
                  f"{'  [' + r['status_note'] + ']' if r.get('status_note') else ''}\n"
                  f"method    {r.get('method')}\ndataset   {r.get('dataset')}\n"
                  f"epoch     {r.get('epoch')}/{r.get('epochs')}\n"
                  f"best      {r.get('best_metric')} = {r.get('best_value')} "
                  f"(epoch {r.get('best_epoch')}; official protocol: best on test)\n"
                  f"directory {path}")
            for label, value in (("name", r.get("name")), ("tags", ", ".join(r.get("tags") or [])),
                                 ("note", r.get("note")), ("archived", r.get("archived") or None)):
                if value:
                    print(f"{label:<9} {value}")
            off, hon = info["results"]["official"], info["results"]["honest"]
            if off:
                print("official  (best of each test metric, as the papers report): " + "  ".join(
                    f"{k} {off[k]:.4f} (epoch {off[k + '_epoch']})"
                    for k in ("rho", "l2", "rl2") if k in off))
            if hon:
                print(f"honest    (epoch {hon['epoch']}, chosen on {hon['selected_on']}): " +
                      "  ".join(f"{k} {hon[k]:.4f}" for k in ("rho", "l2", "rl2") if k in hon))
            for c in info["checkpoints"]:
                print(f"  {c['name']:<16} epoch {c['epoch']}  {c['metrics']}")
        return 0
    if action == "stop":
        status = jobs.stop(path, grace_s=args.grace, wait=not args.no_wait)
        index.sync(runs_dir)
        if args.json:
            _print_json({"run_id": path.name, "status": status})
        else:
            print(f"{path.name}: {status}")
        return 0
    if action == "resume":
        job = jobs.resume(path)
        if args.json:
            _print_json({"run_id": path.name, "pid": job.get("pid"), "state": job.get("state")})
        elif job.get("pid"):
            print(f"{path.name}: resumed (pid {job['pid']})")
        else:
            print(f"{path.name}: resumed, {job.get('state')} "
                  f"(slurm job {job['slurm_job_id']})" if job.get("slurm_job_id") else
                  f"{path.name}: queued to resume (see `python -m aqa queue ls`)")
        return 0
    if action == "rerun":
        new = jobs.rerun(path, overrides=args.overrides, gpus=args.gpus, nproc=args.nproc,
                          argv=["aqa", "runs", *sys.argv[2:]], executor=args.executor,
                          slurm=cli_jobs.slurm_args(args))
        if args.json:
            _print_json({"run_id": new.name, "run_dir": str(new), "from": path.name})
        else:
            print(new.name)
        return 0
    if action == "logs":
        if args.follow:
            return _follow(path, args.lines)
        _print_log(path / store.STDOUT_LOG, args.lines)
        return 0
    return 2


def _ls(args, runs_dir: Path) -> int:
    from aqa.runs import index, query

    query.parse(args.where) if args.where else None  # a bad filter fails before the index is read
    rows = index.list_runs(runs_dir, archived=args.all)
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    best = index.best_test_metrics(runs_dir, [r["id"] for r in rows]) if rows else {}
    view = query.view(rows, best, args.where, query.split_columns(args.columns))
    if args.json:
        _print_json([{**{k: v for k, v in r.items() if k not in ("config", "meta_sig")},
                      **({"columns": {c: rec.get(c) for c in view.columns}} if view.columns else {})}
                     for r, rec in zip(view.rows, view.records)])
        return 0
    if not view.rows:
        hidden = "" if args.all else " (archived runs are hidden: --all shows them)"
        print(f"no runs match in {runs_dir}{hidden}" if rows or args.where else
              f"no runs in {runs_dir}{hidden}; start one with `python -m aqa demo`")
        return 0
    widths = [max(len(c), 10) for c in view.columns]
    print("BEST RHO: the highest test rho of any epoch (official protocol); `aqa compare RUN` "
          "gives the honest number too", file=sys.stderr)  # the table alone on stdout
    print(f"{'RUN':<48} {'STATUS':<9} {'EPOCH':>7} {'BEST RHO':>8} {'ETA':>8}"
          + "".join(f" {c:>{w}}" for c, w in zip(view.columns, widths)))
    for r, rec in zip(view.rows, view.records):
        rho = "-" if r["best_rho"] is None else f"{r['best_rho']:.4f}"
        eta = _fmt_duration(r["eta_s"]) if r["status"] == "running" else "-"
        cells = "".join(f" {_cell(rec.get(c)):>{w}}" for c, w in zip(view.columns, widths))
        extra = "".join(f"  {x}" for x in (
            f"\"{r['name']}\"" if r.get("name") else "", "#" + " #".join(r["tags"]) if r["tags"] else "",
            "[archived]" if r["archived"] else "", f"({r['status_note']})" if r.get("status_note") else "")
            if x)
        print(f"{r['id']:<48} {r['status']:<9} {r['epoch'] or 0:>3}/{r['epochs'] or '?':<3} "
              f"{rho:>8} {eta:>8}{cells}{extra}")
    return 0


def _cell(value) -> str:
    from aqa.runs.query import as_text

    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return as_text(value)


def _meta_change(args, runs_dir: Path) -> int:
    from aqa.runs import index, store

    path = store.find_run(runs_dir, args.run_id)
    action = args.runs_command
    change = {"tag": lambda: {"remove_tag" if args.remove else "add_tag": args.tag},
              "note": lambda: {"note": args.text}, "rename": lambda: {"name": args.name},
              "archive": lambda: {"archived": not args.undo}}[action]()
    meta = index.update_meta(runs_dir, path, **change)
    if args.json:
        _print_json({"run_id": path.name, **meta})
    else:
        said = {"tag": f"tags: {', '.join(meta['tags']) or 'none'}",
                "note": "note set" if meta["note"] else "note cleared",
                "rename": f"name: {meta['name']}" if meta["name"] else "name cleared",
                "archive": "archived" if meta["archived"] else "unarchived"}[action]
        print(f"{path.name}: {said}")
    return 0


def _delete(args, runs_dir: Path) -> int:
    from aqa.runs import index, store

    path = store.find_run(runs_dir, args.run_id)
    if not args.yes:
        print(f"error: `runs delete` removes {path} with all its files (checkpoints, predictions, "
              f"logs); run it again with --yes to delete it", file=sys.stderr)
        return 2
    index.delete_run(runs_dir, path)
    if args.json:
        _print_json({"run_id": path.name, "deleted": True})
    else:
        print(f"{path.name}: deleted")
    return 0


def _diff(args, runs_dir: Path) -> int:
    from aqa.runs import query, store

    a, b = store.find_run(runs_dir, args.run_a), store.find_run(runs_dir, args.run_b)
    diff = query.config_diff(store.read_run(a).get("config", {}), store.read_run(b).get("config", {}))
    if args.json:
        _print_json({"a": a.name, "b": b.name, "differences": [
            {"key": k, "a": None if va is query.MISSING else va, "b": None if vb is query.MISSING else vb,
             "in_a": va is not query.MISSING, "in_b": vb is not query.MISSING} for k, va, vb in diff]})
        return 0
    if not diff:
        print(f"{a.name} and {b.name} have the same config")
        return 0
    width = max(len(k) for k, _, _ in diff)
    print(f"{'KEY':<{width}}  A = {a.name}\n{'':<{width}}  B = {b.name}")
    for k, va, vb in diff:
        print(f"{k:<{width}}  A: {query.as_text(va)}\n{'':<{width}}  B: {query.as_text(vb)}")
    return 0


HYGIENE = {"tag": _meta_change, "note": _meta_change, "rename": _meta_change,
           "archive": _meta_change, "delete": _delete, "diff": _diff}


def cmd_index(args) -> int:
    from aqa.runs import index

    runs_dir = _runs_dir(args)
    t0 = time.time()
    result = index.rebuild(runs_dir) if args.rebuild else index.sync(runs_dir)
    result["seconds"] = round(time.time() - t0, 3)
    if args.json:
        _print_json(result)
    else:
        print(f"{'rebuilt' if args.rebuild else 'synced'} {runs_dir / index.INDEX_FILE}: "
              f"{result['runs']} runs, {result['events']} new events, "
              f"{result['removed']} removed, {result['seconds']} s")
    return 0


COMMANDS = {"runs": cmd_runs, "index": cmd_index}
