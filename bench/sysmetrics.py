"""Bench: what the trainer's system metrics (aqa.train.sysmetrics, ``train.system_metrics``) cost.

    .venv/bin/python bench/sysmetrics.py [--clips 48] [--rounds 4] [--log-every 5] [--device cpu]

Two measurements on the demo's model and settings (tiny3d + linear head on the synthetic dives,
``aqa demo``'s overrides):

- **end to end**: one Trainer, set up once; a warm-up epoch, then whole training epochs
  alternately with the system metrics on and off (a busy machine's drift hits both alike),
  events written to a real run directory. Per-step time, median over the rounds, both ways.
  ``--log-every 5`` logs once in each 5-step epoch of 36 training clips: twice the demo's rate
  (``train.log_every=10``), so an upper bound.
- **the added work alone**: the step timer (wrapping the loader, marking each step) over 100,000
  steps of an empty loop, and one ``sample`` plus its metric events (what a log step adds), in
  microseconds; their per-step share at the demo's ``log_every`` = 10 is the overhead whatever
  the machine's load.

Progress goes to stderr; stdout ends with one JSON object.
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from aqa.cli.train import DEMO_DATASET, DEMO_METHOD, DEMO_OVERRIDES  # noqa: E402
from aqa.config import build_run_config, to_dict  # noqa: E402
from aqa.data.synthetic import render_dataset  # noqa: E402
from aqa.runs import store  # noqa: E402
from aqa.runs.events import EventWriter  # noqa: E402
from aqa.train.distributed import DistContext  # noqa: E402
from aqa.train.loop import Trainer  # noqa: E402
from aqa.train.sysmetrics import SPLIT, SystemMetrics  # noqa: E402


def end_to_end(root: Path, clips: int, rounds: int, device: str, log_every: int) -> dict:
    cfg = build_run_config(DEMO_METHOD, DEMO_DATASET, overrides=DEMO_OVERRIDES + [
        f"data.root={root / 'data'}", f"data.num_clips={clips}", f"train.device={device}",
        f"train.log_every={log_every}",
        f"train.epochs={2 * rounds + 1}"])
    path = store.create_run(root / "runs", to_dict(cfg))
    trainer = Trainer(path, cfg, DistContext())
    trainer.setup()
    times: dict[str, list[float]] = {}
    with contextlib.redirect_stdout(sys.stderr):  # the loop's progress lines
        for epoch in range(1, 2 * rounds + 2):  # epoch 1 warms up (imports, allocator)
            mode = "warm-up" if epoch == 1 else "on" if epoch % 2 == 0 else "off"
            trainer.sysmetrics = SystemMetrics(trainer.device) if mode != "off" else None
            trainer.batch_in_epoch = 0
            before = trainer.step
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.train_epoch(epoch)
            steps = trainer.step - before
            per_step = (time.perf_counter() - t0) / steps
            cpu = (time.process_time() - c0) / steps
            times.setdefault(mode, []).append(per_step)
            times.setdefault(f"cpu-{mode}", []).append(cpu)
            print(f"epoch {epoch} system metrics {mode}: {per_step * 1000:.1f} ms/step, "
                  f"{cpu * 1000:.1f} CPU ms/step", file=sys.stderr, flush=True)
    trainer.events.close()
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    con, coff = statistics.median(times["cpu-on"]), statistics.median(times["cpu-off"])
    if cfg.train.log_every != trainer.steps_per_epoch:
        print(f"note: log_every {cfg.train.log_every} != {trainer.steps_per_epoch} steps an epoch: "
              "the epochs with and without do not log alike", file=sys.stderr)
    return {"steps_per_epoch": trainer.steps_per_epoch, "batch_size": cfg.train.batch_size,
            "log_every": cfg.train.log_every, "step_s_on": times["on"], "step_s_off": times["off"],
            "median_step_s_on": round(on, 5), "median_step_s_off": round(off, 5),
            "median_diff_pct": round(100 * (on - off) / off, 2),
            "cpu_s_per_step_on": times["cpu-on"], "cpu_s_per_step_off": times["cpu-off"],
            "median_cpu_s_on": round(con, 5), "median_cpu_s_off": round(coff, 5),
            "median_cpu_diff_pct": round(100 * (con - coff) / coff, 2)}


def added_work(root: Path, device: str, log_every: int, step_s: float) -> dict:
    m = SystemMetrics(torch.device(device))
    n = 100_000
    t0 = time.perf_counter()
    for _ in m.batches(range(n)):
        m.step_done()
    timer_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):  # the same loop without the timer
        pass
    timer_us -= (time.perf_counter() - t0) / n * 1e6
    opt = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "name": "head"},
                            {"params": [torch.nn.Parameter(torch.zeros(1))], "name": "backbone"}])
    writer = EventWriter(root / "bench-events.jsonl")
    k = 2000
    t0 = time.perf_counter()
    for i in range(k):
        m.step_done()
        sampled = m.sample(opt)
        for name, v in sampled.items():
            writer.metric(name, v, epoch=1, step=i, split=SPLIT)
    sample_us = (time.perf_counter() - t0) / k * 1e6
    writer.close()
    per_step_us = timer_us + sample_us / log_every
    return {"timer_us_per_step": round(timer_us, 3), "sample_and_events_us_per_log": round(sample_us, 1),
            "sys_events_per_log": len(sampled),
            "added_us_per_step": round(per_step_us, 2),
            "added_pct_of_step": round(100 * per_step_us * 1e-6 / step_s, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48, help="synthetic dives to render")
    ap.add_argument("--rounds", type=int, default=4, help="epochs with, and as many without")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--log-every", type=int, default=5,
                    help="train.log_every of the end-to-end part; 5 = one log in each of the 5 "
                         "steps of an epoch of 36 clips (twice the demo's rate: an upper bound)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        render_dataset(root / "data", num_clips=args.clips, seed=0)
        e2e = end_to_end(root, args.clips, args.rounds, args.device, args.log_every)
        work = added_work(root, args.device, 10, e2e["median_step_s_off"])
    info = {"bench": "sysmetrics", "device": args.device, "threads": torch.get_num_threads(),
            "model": f"{DEMO_METHOD} on {DEMO_DATASET} (aqa demo's settings)",
            "demo_overrides": DEMO_OVERRIDES, "clips": args.clips, "end_to_end": e2e,
            "added_work": {**work, "log_every": 10},
            "note": "wall time per step (step_s_*) swings with other processes' load; CPU time "
                    "per step (cpu_s_*, this process, all threads) much less; added_work is the "
                    "cost of the logging itself"}
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
