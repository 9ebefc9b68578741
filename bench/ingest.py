"""Bench: ingest of a run with 1,000,000 metric events, and tailing 1,000 new events from a
1,000,000-event file. Prints one JSON object.

    python bench/ingest.py [--events 1000000] [--new 1000]

Tailing costs O(new bytes): it seeks to the stored byte offset and reads only what follows,
so it is compared against a full read of the file to show the difference.
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])



import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


from aqa.runs import index, store  # noqa: E402
from aqa.runs.events import EventWriter, read_events, tail  # noqa: E402


def write_events(path: Path, n: int, start: int = 0) -> None:
    w = EventWriter(path)
    for i in range(start, start + n):
        w.metric("loss", 1.0 / (i + 1), epoch=i // 1000 + 1, step=i + 1, split="train")
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--new", type=int, default=1_000)
    args = ap.parse_args()
    out: dict = {"events": args.events, "new_events": args.new}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        path = store.create_run(runs, {"method": "regression", "dataset": "synthetic"})
        log = path / "events.jsonl"
        t0 = time.perf_counter()
        write_events(log, args.events)
        out["write_s"] = round(time.perf_counter() - t0, 3)
        out["file_mb"] = round(log.stat().st_size / 2**20, 1)

        t0 = time.perf_counter()
        result = index.sync(runs)
        dt = time.perf_counter() - t0
        assert result["events"] == args.events, result
        out["ingest_s"] = round(dt, 3)
        out["ingest_events_per_s"] = round(args.events / dt)

        offset = log.stat().st_size
        write_events(log, args.new, start=args.events)
        t0 = time.perf_counter()
        new, _ = tail(log, offset)
        dt = time.perf_counter() - t0
        assert len(new) == args.new
        out["tail_s"] = round(dt, 6)
        out["tail_events_per_s"] = round(args.new / dt)

        t0 = time.perf_counter()
        result = index.sync(runs)
        dt = time.perf_counter() - t0
        assert result["events"] == args.new, result
        out["incremental_ingest_s"] = round(dt, 4)

        t0 = time.perf_counter()
        everything = read_events(log)
        out["full_read_s"] = round(time.perf_counter() - t0, 3)
        assert len(everything) == args.events + args.new
        out["tail_vs_full_read_speedup"] = round(out["full_read_s"] / max(out["tail_s"], 1e-9))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
