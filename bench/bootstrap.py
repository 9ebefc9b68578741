"""Bench: the bootstrap CI of rho, the per-resample loop it replaced against the vectorised one,
and a predictions file's metrics read again (the cache). JSON out.

    .venv/bin/python bench/bootstrap.py [--clips 300] [--boot 1000] [--repeat 5] [--out FILE]

``before_s``: the loop (one ``rng.integers`` and one Spearman a resample), kept as the reference
in tests/test_appload_bootstrap.py; ``after_s``: ``aqa.metrics.bootstrap_ci``. Both draw the
same resamples, so ``same_numbers`` must be true. ``cached_file_s``: ``compare.predictions_metrics``
of a predictions CSV already seen (median of ``--repeat``), against ``first_file_s``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/queue.py
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(1, str(_HERE.parent / "tests"))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402

from aqa import compare  # noqa: E402
from aqa import metrics as M  # noqa: E402
from test_appload_bootstrap import loop_bootstrap_ci  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=300)  # MTL-AQA's test split has 353
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    true = np.round(rng.uniform(20, 100, args.clips), 1)
    pred = np.round(true + rng.normal(0, 8, args.clips), 1)

    def before():
        return loop_bootstrap_ci(pred, true, n=args.boot)

    def after():
        return M.bootstrap_ci(pred, true, n=args.boot)

    before_s, after_s = (statistics.median(timeit.repeat(f, number=1, repeat=args.repeat))
                         for f in (before, after))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test_epoch_001.csv"
        path.write_text("id,true,pred\n" + "".join(f"c{i},{t},{p}\n"
                                                   for i, (t, p) in enumerate(zip(true, pred))))
        t0 = time.perf_counter()
        compare.predictions_metrics(path, n_boot=args.boot)
        first_s = time.perf_counter() - t0
        cached_s = statistics.median(timeit.repeat(
            lambda: compare.predictions_metrics(path, n_boot=args.boot), number=1,
            repeat=args.repeat))

    result = {"clips": args.clips, "resamples": args.boot,
              "before_s": round(before_s, 4), "after_s": round(after_s, 4),
              "speedup": round(before_s / after_s, 2), "same_numbers": before() == after(),
              "ci": list(after()), "first_file_s": round(first_s, 4),
              "cached_file_s": round(cached_s, 6)}
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
