"""``python -m aqa ...``: the command line. Every command has --help; listing commands have --json.

Errors a user can fix print one line (``error: ...``) on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from aqa import cli_data, cli_history, cli_jobs, cli_pretrain
from aqa.errors import AQAError

# The demo: tiny3d + linear head on the synthetic dives, sized to finish in a few minutes on
# two CPU cores and reach Spearman rho >= 0.7 on the held-out clips.
DEMO_METHOD, DEMO_DATASET = "regression", "synthetic"
DEMO_OVERRIDES = ["train.epochs=6", "train.batch_size=8", "optim.lr=0.002",
                  "optim.schedule=cosine", "train.log_every=10"]


def _runs_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default=None,
                   help="workspace folder (default: $AQA_RUNS_DIR, else ./runs)")


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aqa",
                                     description="AQA Studio: train, track and compare action "
                                                 "quality assessment models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="render the synthetic dives and start a demo training run")
    _runs_dir_arg(p)
    _json_arg(p)
    p.add_argument("--follow", action="store_true", help="print the run's output until it ends")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config value of the demo run (repeatable)")

    p = sub.add_parser("train", help="start a training run as a detached process")
    p.add_argument("--method", required=True, help="registered method (see `aqa methods`)")
    p.add_argument("--dataset", required=True, help="registered dataset (see `aqa methods`)")
    p.add_argument("--data-root", default=None, help="the dataset's folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as train.epochs=5 (repeatable)")
    p.add_argument("--allow-missing", action="store_true",
                   help="train on the annotated samples that are present; the exclusions are "
                        "recorded in the run (see `aqa doctor`)")
    cli_jobs.add_executor_args(p)
    p.add_argument("--follow", action="store_true", help="print the run's output until it ends")
    _runs_dir_arg(p)
    _json_arg(p)

    runs = sub.add_parser("runs", help="list and manage runs").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION")
    p = runs.add_parser("ls", help="list runs")
    p.add_argument("--status", default=None, help="only runs with this status")
    _runs_dir_arg(p)
    _json_arg(p)
    for name, text in (("show", "show one run"), ("stop", "stop a run (SIGTERM, then SIGKILL)"),
                       ("resume", "resume a stopped or crashed run from its last checkpoint"),
                       ("logs", "print a run's output")):
        p = runs.add_parser(name, help=text)
        p.add_argument("run_id", help="run id (or a unique prefix/suffix of it)")
        _runs_dir_arg(p)
        if name in ("show", "stop", "resume"):
            _json_arg(p)
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
    _runs_dir_arg(p)
    _json_arg(p)

    p = sub.add_parser("index", help="ingest run directories into the SQLite index")
    p.add_argument("--rebuild", action="store_true", help="recreate the index from scratch")
    _runs_dir_arg(p)
    _json_arg(p)

    p = sub.add_parser("score", help="score one clip with a checkpoint")
    p.add_argument("video", help="the clip (mp4, mov, avi, mkv, webm)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file (e.g. RUN/checkpoints/best.pt)")
    p.add_argument("--difficulty", type=float, default=None, help="the dive's difficulty degree")
    p.add_argument("--start", type=int, default=None, help="first frame to use (0-based)")
    p.add_argument("--end", type=int, default=None, help="frame to stop before")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--tube", default=None, choices=["auto", "boxes", "motion", "full"],
                   help="TSA: the athlete's tube (default: the checkpoint's; a clip has no "
                        "boxes, so auto estimates it from motion; full = the whole frame)")
    _json_arg(p)

    p = sub.add_parser("eval", help="evaluate a run's best checkpoint (or a checkpoint file)")
    p.add_argument("ref", help="a run id (best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--data-root", default=None, help="the dataset's folder, if it moved")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", default=None, help="predictions CSV (default: the run's predictions/)")
    _runs_dir_arg(p)
    _json_arg(p)

    p = sub.add_parser("import-checkpoint", help="import an official checkpoint (CoRe's MTL_CoRe.pth, ...)")
    p.add_argument("file", help="the official checkpoint")
    p.add_argument("--method", default=None,
                   help="the method it belongs to (core, tpt, tsa, plain, pecop, usdl, musdl; detected when omitted)")
    p.add_argument("--dataset", default=None, help="dataset whose training split becomes the exemplar bank")
    p.add_argument("--data-root", default=None, help="that dataset's folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the imported model (repeatable)")
    p.add_argument("--out", default=None, help="where to write the checkpoint (default: a new run)")
    p.add_argument("--device", default="cpu", help="device for building the exemplar bank")
    p.add_argument("--bins", default="auto", choices=("auto", "mtl_aqa", "exemplars"),
                   help="CoRe/TPT: the group tree's bins: mtl_aqa (the MTL-AQA training split's, "
                        "which the released checkpoints used), exemplars (the --dataset's "
                        "training split); auto: exemplars for a benchmark dataset (mtl_aqa, "
                        "aqa7, ...), mtl_aqa for a folder of clips or no dataset")
    _runs_dir_arg(p)
    _json_arg(p)

    p = sub.add_parser("methods", help="list registered methods, backbones and datasets")
    _json_arg(p)

    p = sub.add_parser("plan", help="estimate peak memory and step time of a config before "
                                    "launch, with and without each memory option")
    p.add_argument("--method", required=True, help="registered method (see `aqa methods`)")
    p.add_argument("--dataset", default="synthetic", help="registered dataset (shapes only; "
                                                          "no data is read)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as train.batch_size=4 (repeatable)")
    p.add_argument("--gpus", default=None, help="GPUs the run would use: a count or indices "
                                                "(default: CPU)")
    p.add_argument("--steps", type=int, default=3, help="dry-run steps per batch size (the "
                                                        "fastest after the first is timed)")
    _json_arg(p)
    cli_jobs.add_parsers(sub)
    cli_data.add_parsers(sub)
    cli_pretrain.add_parsers(sub)
    cli_history.add_parsers(sub)
    return parser


# ---------------------------------------------------------------- commands

def cmd_demo(args) -> int:
    from aqa.config import build_run_config
    from aqa.jobs import submit
    from aqa.registry import DATASETS
    from aqa.runs.store import resolve_runs_dir

    runs_dir = resolve_runs_dir(args.runs_dir)
    overrides = DEMO_OVERRIDES + list(args.overrides)
    cfg = build_run_config(DEMO_METHOD, DEMO_DATASET, overrides=overrides)
    entry = DATASETS.get(DEMO_DATASET)
    data = entry.resolve(cfg.data, runs_dir)
    if not args.json:
        print(f"rendering the synthetic dives into {data.root} (skipped if already there) ...")
    t0 = time.time()
    entry.prepare(data)
    path = submit(runs_dir, DEMO_METHOD, DEMO_DATASET, overrides=overrides,
                  argv=["aqa", "demo", *sys.argv[2:]])
    if args.json:
        _print_json({"run_id": path.name, "run_dir": str(path), "data_root": data.root})
    else:
        print(f"data ready in {time.time() - t0:.1f} s; started run {path.name}")
        print(f"watch it: python -m aqa runs logs {path.name} --follow")
    if args.follow:
        return _follow(path)
    return 0


def cmd_train(args) -> int:
    from aqa.jobs import submit
    from aqa.runs.store import resolve_runs_dir

    overrides = args.overrides + (["data.allow_missing=true"] if args.allow_missing else [])
    path = submit(resolve_runs_dir(args.runs_dir), args.method, args.dataset,
                  data_root=args.data_root, overrides=overrides, gpus=args.gpus,
                  nproc=args.nproc, argv=["aqa", args.command, *sys.argv[2:]],
                  executor=args.executor, slurm=cli_jobs.slurm_args(args))
    if args.json:
        _print_json({"run_id": path.name, "run_dir": str(path)})
    else:
        print(path.name)
    if args.follow:
        return _follow(path)
    return 0


def _follow(path: Path, lines: int = 0) -> int:
    """Print stdout.log as it grows until the run's process is gone; exit 0 if it finished."""
    from aqa.runs.status import run_status
    from aqa.runs.store import STDOUT_LOG

    log = path / STDOUT_LOG
    offset = 0
    if lines and log.exists():
        text = log.read_bytes()
        tail = b"\n".join(text.splitlines()[-lines:]) + b"\n"
        sys.stdout.write(tail.decode(errors="replace"))
        offset = len(text)
    while True:
        status = run_status(path)
        if log.exists():
            with open(log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if status not in ("running", "queued"):
            print(f"[run {path.name}: {status}]")
            return 0 if status == "finished" else 1
        time.sleep(0.5)


def _runs_dir(args) -> Path:
    from aqa.runs.store import resolve_runs_dir
    return resolve_runs_dir(args.runs_dir)


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
        rows = index.list_runs(runs_dir)
        if args.status:
            rows = [r for r in rows if r["status"] == args.status]
        if args.json:
            _print_json([{k: v for k, v in r.items() if k != "config"} for r in rows])
            return 0
        if not rows:
            print(f"no runs in {runs_dir}; start one with `python -m aqa demo`")
            return 0
        print(f"{'RUN':<48} {'STATUS':<9} {'EPOCH':>7} {'BEST RHO':>8} {'ETA':>8}")
        for r in rows:
            rho = "-" if r["best_rho"] is None else f"{r['best_rho']:.4f}"
            eta = _fmt_duration(r["eta_s"]) if r["status"] == "running" else "-"
            print(f"{r['id']:<48} {r['status']:<9} {r['epoch'] or 0:>3}/{r['epochs'] or '?':<3} "
                  f"{rho:>8} {eta:>8}{'  (' + r['status_note'] + ')' if r.get('status_note') else ''}")
        return 0
    path = store.find_run(runs_dir, args.run_id)
    if action == "show":
        index.sync(runs_dir)
        row = index.get_run(runs_dir, path.name) or {}
        from aqa.evaluate import summarize
        info = {"run": {k: v for k, v in row.items() if k != "config"},
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
                  f"(epoch {r.get('best_epoch')})\ndirectory {path}")
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
        log = path / store.STDOUT_LOG
        text = log.read_text(errors="replace") if log.exists() else ""
        if args.lines:
            text = "\n".join(text.splitlines()[-args.lines:]) + "\n"
        sys.stdout.write(text)
        return 0
    return 2


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


def cmd_methods(args) -> int:
    from aqa.registry import BACKBONES, DATASETS, METHODS

    info = {"methods": [{"name": n, "description": getattr(e, "description", ""),
                         "default_backbone": e.default_backbone} for n, e in METHODS.items()],
            "backbones": [{"name": n, "description": getattr(e, "description", "")}
                          for n, e in BACKBONES.items()],
            "datasets": [{"name": n, "description": getattr(e, "description", "")}
                         for n, e in DATASETS.items()]}
    if args.json:
        from aqa.plan import method_sizes

        for m in info["methods"]:  # parameter counts of each default configuration
            m.update(method_sizes(m["name"]))
        info["module_sizes_note"] = ("each method's default configuration built with "
                                     "backbone.weights=\"\" (random init, nothing loaded): "
                                     "parameter counts do not depend on the weights")
        _print_json(info)
        return 0
    for section, items in info.items():
        print(f"{section}:")
        for it in items:
            print(f"  {it['name']:<14} {it['description']}")
    return 0


def cmd_plan(args) -> int:
    from aqa.config import build_run_config
    from aqa.jobs.gpus import probe_gpus
    from aqa.plan import format_plan, plan_for

    cfg = build_run_config(args.method, args.dataset, overrides=args.overrides)
    result = plan_for(cfg, args.gpus, probe_gpus(), steps=max(1, args.steps))
    if args.json:
        _print_json(result)
    else:
        print(format_plan(result))
    return 0


def cmd_eval(args) -> int:
    from aqa.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.ref, split=args.split, runs_dir=_runs_dir(args),
                                 data_root=args.data_root, device=args.device, out=args.out)
    if args.json:
        _print_json(result)
        return 0
    m, (lo, hi) = result["metrics"], result["rho_ci95"]
    if "l2" not in m:  # a classifier (TSA on FR-FS): accuracy
        print(f"{result['checkpoint']} on {result['split']} ({result['samples']} clips): "
              + "  ".join(f"{k} {v:.4f}" for k, v in m.items())
              + f"\npredictions: {result['predictions']}")
        return 0
    print(f"{result['checkpoint']} on {result['split']} ({result['samples']} clips): "
          f"rho {m['rho']:.4f} [95% CI {lo:.4f}, {hi:.4f}]  L2 {m['l2']:.3f}  "
          f"RL2x100 {result['rl2_x100']:.3f}\npredictions: {result['predictions']}")
    if result.get("protocol"):
        print("protocol: " + result["protocol"]["summary"])
    return 0


def cmd_import(args) -> int:
    from aqa.importers import import_checkpoint

    result = import_checkpoint(args.file, args.method, _runs_dir(args), dataset=args.dataset,
                               data_root=args.data_root, overrides=args.overrides, out=args.out,
                               device=args.device, bins=args.bins)
    if args.json:
        _print_json(result)
        return 0
    print(f"imported {args.file} as run {result['run_id']}: {result['checkpoint']}")
    for note in result["notes"]:
        print(f"  note: {note}")
    return 0


def cmd_score(args) -> int:
    from aqa.scoring import Scorer

    result = Scorer.from_checkpoint(args.checkpoint, device=args.device).score(
        args.video, difficulty=args.difficulty, start=args.start, end=args.end, tube=args.tube)
    if args.json:
        _print_json(result.to_dict())
        return 0
    print(f"score {result.score:.2f}  ({result.method}, {Path(result.checkpoint).name})")
    for note in result.notes:
        print(f"  note: {note}")
    print("  time: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "runs": cmd_runs, "index": cmd_index,
            "methods": cmd_methods, "score": cmd_score, "import-checkpoint": cmd_import, "eval": cmd_eval,
            **cli_jobs.COMMANDS, **cli_data.COMMANDS, **cli_pretrain.COMMANDS,
            **cli_history.COMMANDS}
COMMANDS["plan"] = cmd_plan  # the memory planner (aqa.plan)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
