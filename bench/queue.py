"""Bench: how fast a queued run follows a freed CPU slot, and what the scheduler costs.

    python bench/queue.py [--runs 4] [--waiting 20] [--seconds 10] [--out FILE]

1. ``--runs`` tiny real runs (tiny3d, synthetic dives, 1 epoch) submitted at once with one CPU
   slot: for each hand-over, the time from the previous run's process exiting (polled every
   5 ms) to the next run's process being spawned by the scheduler, and to its first event
   (which includes Python + torch start-up of the trainer).
2. ``--waiting`` runs queued behind a slot held by a sleeping process: the scheduler's CPU time
   (utime + stime from /proc) over ``--seconds``.

Prints one JSON object (and writes it to ``--out`` if given).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's ``queue`` (which torch imports): take its folder off the
# import path before anything else is imported.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from aqa.data.synthetic import render_dataset  # noqa: E402
from aqa.jobs import local, queue, scheduler  # noqa: E402
from aqa.runs import status, store  # noqa: E402
from aqa.runs.events import read_events  # noqa: E402

FAST = ["train.epochs=1", "train.batch_size=4", "data.num_frames=8", "data.frame_size=32",
        "train.log_every=2", "train.heartbeat_s=1", "data.num_clips=24"]


def _wait(pred, timeout=300.0, interval=0.005):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("bench: timed out")


def handover(tmp: Path, n: int) -> dict:
    runs = tmp / "handover"
    runs.mkdir()
    (runs / "workspace.toml").write_text("[queue]\ncpu_slots = 1\n")
    data = tmp / "synthetic"
    render_dataset(data, num_clips=24, seed=0)
    paths = [local.submit(runs, "regression", "synthetic", overrides=FAST + [f"data.root={data}"])
             for _ in range(n)]
    to_spawn, to_event = [], []
    for prev, nxt in zip(paths, paths[1:]):
        job = _wait(lambda: (store.read_job(prev) or {}).get("pid") and store.read_job(prev))
        _wait(lambda: not status.process_alive(job["pid"], job["start_time"]))
        freed = time.time()
        nj = _wait(lambda: (store.read_job(nxt) or {}).get("state") == "started"
                   and store.read_job(nxt))
        first = _wait(lambda: read_events(nxt / "events.jsonl"), interval=0.01)[0]["t"]
        to_spawn.append(nj["attempts"][-1]["started"] - freed)
        to_event.append(first - freed)
    _wait(lambda: all(local.run_status(p) == "finished" for p in paths))
    return {"runs": n, "handovers": len(to_spawn),
            "slot_free_to_spawn_s": {"median": round(statistics.median(to_spawn), 3),
                                     "max": round(max(to_spawn), 3)},
            "slot_free_to_first_event_s": {"median": round(statistics.median(to_event), 3),
                                           "max": round(max(to_event), 3)}}


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def idle_cost(tmp: Path, waiting: int, seconds: float) -> dict:
    runs = tmp / "idle"
    runs.mkdir()
    holder = subprocess.Popen(["sleep", "600"])
    try:
        # a started job holding the one CPU slot, so every queued run has to wait
        held = store.create_run(runs, {"method": "regression", "dataset": "synthetic"},
                                extra={"resources": {"gpus": [], "nproc": 1}})
        store.write_job(held, {"executor": "local", "state": "started", "pid": holder.pid,
                               "pgid": holder.pid, "start_time":
                               status.process_start_time(holder.pid), "gpus": [], "nproc": 1,
                               "started": time.time(), "attempts": []})
        paths = [store.create_run(runs, {"method": "regression", "dataset": "synthetic"},
                                  extra={"resources": {"gpus": [], "nproc": 1}})
                 for _ in range(waiting)]
        for p in paths:
            queue.enqueue(p)
        scheduler.ensure(runs)
        info = _wait(lambda: scheduler.running(runs) and scheduler.running(runs).get("pid"),
                     timeout=30) and scheduler.running(runs)
        time.sleep(1.0)  # past its start-up
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0 = time.time(), _cpu_ticks(info["pid"])
        time.sleep(seconds)
        used = (_cpu_ticks(info["pid"]) - c0) / hz
        wall = time.time() - t0
        assert len(queue.positions(runs)) == waiting
        for p in paths:
            queue.cancel(p)
        _wait(lambda: scheduler.running(runs) is None, timeout=30, interval=0.1)
    finally:
        holder.kill()
        holder.wait()
    return {"waiting": waiting, "seconds": round(wall, 2), "scheduler_cpu_s": round(used, 3),
            "scheduler_cpu_percent": round(100 * used / wall, 2),
            "poll_interval_s": scheduler.POLL_S}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--waiting", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.pop("AQA_CPU_SLOTS", None)
    with tempfile.TemporaryDirectory() as tmp:
        out = {"handover": handover(Path(tmp), args.runs),
               "idle": idle_cost(Path(tmp), args.waiting, args.seconds),
               "cpus": os.cpu_count()}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
