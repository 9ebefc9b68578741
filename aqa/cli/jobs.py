"""``python -m aqa queue ...`` and ``python -m aqa gpus``: the local queue and the GPUs.

Also the executor options that ``train`` and ``runs rerun`` share (``add_executor_args``).
"""

from __future__ import annotations

import argparse

from aqa.cli import common
from aqa.cli.common import print_json as _print_json


def _common(p: argparse.ArgumentParser) -> None:
    common.add_runs_dir(p)
    common.add_json(p)


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """Executor options shared by ``train`` and ``runs rerun``."""
    p.add_argument("--gpus", default=None,
                   help="GPUs: a count (2 = any two) or indices (0,1); default: CPU")
    p.add_argument("--nproc", type=int, default=None,
                   help="processes (default: one per GPU, else 1; >1 on the CPU uses gloo)")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local (queued on this machine) or slurm (sbatch via submitit)")
    g = p.add_argument_group("slurm (defaults: [slurm] in <runs-dir>/workspace.toml)")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--time", default=None, help="time limit, e.g. 2:00:00 or 90 (minutes)")
    g.add_argument("--account", default=None, help="Slurm account")
    g.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per node")
    g.add_argument("--nodes", type=int, default=None, help="nodes")


def slurm_args(args) -> dict:
    return {k: getattr(args, k, None) for k in ("partition", "time", "account", "gpus_per_node",
                                                  "nodes") if getattr(args, k, None) is not None}


def add_parsers(sub) -> None:
    q = sub.add_parser("queue", help="list and manage the runs waiting for a GPU or CPU slot")
    qs = q.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    p = qs.add_parser("ls", help="list waiting runs in order, and the scheduler")
    _common(p)
    p = qs.add_parser("cancel", help="take a queued run off the queue (status stopped)")
    p.add_argument("run_id", help="run id (or a unique prefix/suffix of it)")
    _common(p)
    p = qs.add_parser("move", help="move a queued run to another position")
    p.add_argument("run_id", help="run id (or a unique prefix/suffix of it)")
    p.add_argument("--to", type=int, required=True, help="new 1-based position")
    _common(p)
    p = qs.add_parser("pause", help="start no more queued runs (running ones go on)")
    _common(p)
    p = qs.add_parser("resume", help="start queued runs again")
    _common(p)

    p = sub.add_parser("gpus", help="the machine's GPUs: memory, utilisation, foreign processes")
    _common(p)


def cmd_queue(args) -> int:
    from aqa.jobs import queue, scheduler
    from aqa.runs import store

    runs_dir = store.resolve_runs_dir(args.runs_dir)
    action = args.queue_command
    if action == "ls":
        rows = [{"position": i + 1, "run_id": p.name, "state": j.get("state"),
                 "gpus": j.get("requested_gpus"), "nproc": j.get("nproc"),
                 "queued_at": j.get("queued_at")}
                for i, (p, j) in enumerate(queue.waiting(runs_dir))]
        if rows and not queue.is_paused(runs_dir):
            scheduler.ensure(runs_dir)  # runs wait but their scheduler was killed: start one
        info = {"paused": queue.is_paused(runs_dir), "scheduler": scheduler.running(runs_dir),
                "queued": rows}
        if args.json:
            _print_json(info)
            return 0
        sched = info["scheduler"]
        print(f"queue of {runs_dir}: {len(rows)} waiting"
              f"{', paused' if info['paused'] else ''}; scheduler "
              f"{'pid ' + str(sched.get('pid')) if sched else 'not running'}")
        for r in rows:
            print(f"  {r['position']:>3}  {r['run_id']:<48} gpus {r['gpus'] or '-':<5} "
                  f"nproc {r['nproc']}")
        return 0
    if action in ("pause", "resume"):
        queue.set_paused(runs_dir, action == "pause")
        if action == "resume":
            scheduler.ensure(runs_dir)
        if args.json:
            _print_json({"paused": action == "pause"})
        else:
            print(f"queue {'paused' if action == 'pause' else 'resumed'}")
        return 0
    path = store.find_run(runs_dir, args.run_id)
    if action == "cancel":
        queue.cancel(path)
        out = {"run_id": path.name, "status": "stopped"}
    else:
        order = queue.move(runs_dir, path, args.to)
        out = {"run_id": path.name, "position": order.index(path.name) + 1, "order": order}
    if args.json:
        _print_json(out)
    else:
        print(f"{path.name}: " + (f"position {out['position']}" if "position" in out
                                  else "cancelled"))
    return 0


def cmd_gpus(args) -> int:
    from aqa.jobs import queue, workspace
    from aqa.jobs.gpus import mark_foreign, probe_compute_apps, probe_gpus
    from aqa.runs import status, store

    runs_dir = store.resolve_runs_dir(args.runs_dir)
    threshold = workspace.load(runs_dir)["gpus"]["busy_threshold_mb"]
    jobs = [j for _, j in queue.local_jobs(runs_dir) if j.get("state") == "started"
            and status.job_alive(j)]
    ours = queue.pids_of_groups({j["pgid"] for j in jobs if j.get("pgid")})
    held = {g: p.get("pid") for p in jobs for g in p.get("gpus") or []}
    gpus = mark_foreign(probe_gpus(), probe_compute_apps(), ours)
    for g in gpus:
        g["foreign_busy"] = g["foreign_mb"] > threshold
        g["held_by_workspace"] = g["index"] in held
    if args.json:
        _print_json({"gpus": gpus, "busy_threshold_mb": threshold})
        return 0
    if not gpus:
        print("no GPUs (nvidia-smi absent or reports none); runs use CPU slots "
              "([queue] cpu_slots in workspace.toml, or AQA_CPU_SLOTS)")
        return 0
    print(f"{'GPU':>3}  {'NAME':<28} {'TOTAL MB':>9} {'FREE MB':>9} {'UTIL':>5}  FOREIGN")
    for g in gpus:
        foreign = (f"{g['foreign_mb']:.0f} MB by pid {','.join(map(str, g['foreign_pids']))}"
                   + (" (busy)" if g["foreign_busy"] else "")) if g["foreign_pids"] else "-"
        print(f"{g['index']:>3}  {g['name'][:28]:<28} {g['total_mb']:>9.0f} {g['free_mb']:>9.0f} "
              f"{g['util']:>4.0f}%  {foreign}{'  [ours]' if g['held_by_workspace'] else ''}")
    return 0


COMMANDS = {"queue": cmd_queue, "gpus": cmd_gpus}
