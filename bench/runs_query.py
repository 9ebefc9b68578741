"""Bench: the Runs page's and ``runs ls --where``'s work on a workspace of N runs (default
1,000, each with a config, 20 test epochs of rho/l2 and a meta.json on half of them): a sync
that finds nothing new (one stat of meta.json a run on top of the events file's), the best test
metrics of every run, and filtering + column extraction. Prints one JSON object.

    python bench/runs_query.py [--runs 1000] [--repeat 5]
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from aqa.runs import index, meta, query, store  # noqa: E402
from aqa.runs.events import EVENTS_FILE, EventWriter  # noqa: E402


def make_workspace(root: Path, n: int) -> None:
    for i in range(n):
        cfg = {"method": ["core", "tpt", "usdl"][i % 3], "dataset": "mtl_aqa",
               "optim": {"lr": 10 ** -(2 + i % 4), "weight_decay": 1e-4},
               "train": {"batch_size": 2 ** (i % 5), "epochs": 20},
               "model": {"backbone": "i3d", "dropout": 0.1 * (i % 5)}}
        path = store.create_run(root, cfg)
        w = EventWriter(path / EVENTS_FILE)
        w.emit("start", epochs=20)
        for e in range(1, 21):
            w.metric("rho", 0.5 + 0.02 * e - 0.001 * (i % 50), epoch=e, step=e, split="test")
            w.metric("l2", 100.0 / e, epoch=e, step=e, split="test")
        w.emit("status", status="finished")
        w.close()
        if i % 2:
            meta.update_meta(path, add_tag="fav" if i % 4 == 1 else "other", name=f"run {i}")


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        make_workspace(root, args.runs)
        made = time.perf_counter() - t0
        index.sync(root)
        rows = index.list_runs(root, sync_first=False)
        ids = [r["id"] for r in rows]
        where = "optim.lr<1e-3 and rho>0.85 and (tags contains other or method==core)"
        cols = ["optim.lr", "train.batch_size", "model.*"]
        best = index.best_test_metrics(root, ids)
        view = query.view(rows, best, where, cols)
        out = {
            "runs": args.runs, "make_s": round(made, 2),
            "sync_nothing_new_s": round(best_of(lambda: index.sync(root), args.repeat), 4),
            "list_runs_s": round(best_of(lambda: index.list_runs(root, sync_first=False),
                                         args.repeat), 4),
            "best_test_metrics_s": round(best_of(lambda: index.best_test_metrics(root, ids),
                                                 args.repeat), 4),
            "filter_and_columns_s": round(best_of(lambda: query.view(rows, best, where, cols),
                                                  args.repeat), 4),
            "matched": len(view.rows), "columns": view.columns, "where": where,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
