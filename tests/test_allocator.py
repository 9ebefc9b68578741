"""aqa.allocator: while a context is open, the memory a tensor frees is reused by the next one
(no fresh pages to fault in); the defaults come back when the last context closes; nothing
changes with ``AQA_ALLOCATOR=system``. Each case runs in a fresh interpreter: the setting is the
process's. docs/performance.md measures what it changes for scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from aqa import allocator

PROBE = textwrap.dedent("""
    import json, resource, threading
    import torch
    from aqa.allocator import reuse_freed_memory, active

    def faults(sizes=(64, 56, 48, 40)):
        # minor page faults of tensors of these sizes (MB), each written then freed; each one
        # fits in the block the one before freed (aligned blocks of the same size may not)
        out = []
        for mb in sizes:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            x = torch.empty(mb * 2 ** 18)  # float32: mb MB
            x.fill_(1.0)
            del x
            out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return out

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2 ** 20

    report = {"outside": faults()}
    with reuse_freed_memory() as on:
        report["on"] = on
        report["inside"] = faults()
        # a second context from another thread; closing it leaves the first one in effect
        done = threading.Event()
        def other():
            with reuse_freed_memory():
                pass
            done.set()
        threading.Thread(target=other).start()
        done.wait()
        report["still_active"] = active()
        report["inside_after_other"] = faults()
        report["rss_inside"] = rss_mb()  # the freed blocks are still the process's
    report["rss_after"] = rss_mb()
    report["active_after"] = active()
    report["after"] = faults()
    print(json.dumps(report))
""")


def _probe(env_value: str | None) -> dict:
    env = dict(os.environ)
    env.pop("AQA_ALLOCATOR", None)
    if env_value is not None:
        env["AQA_ALLOCATOR"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PAGES = 40 * 2 ** 20 // 4096  # the smallest tensor's 4 KiB pages


@pytest.mark.skipif(not allocator.available(), reason="glibc's malloc only (Linux)")
def test_freed_memory_is_reused_inside_and_handed_back_after():
    r = _probe(None)
    assert r["on"] is True
    # the default: every 64 MB block is a fresh mapping, each of its pages faulted in again
    assert min(r["outside"]) > PAGES // 2, r
    # inside: the first block faults its pages in, the next ones reuse them
    assert max(r["inside"][1:]) < PAGES // 20, r
    assert r["still_active"] is True and max(r["inside_after_other"][1:]) < PAGES // 20, r
    # the last context closed: the freed memory handed back, the defaults back
    assert r["rss_inside"] - r["rss_after"] > 40, r
    assert r["active_after"] is False and min(r["after"]) > PAGES // 2, r


def test_switched_off_by_the_environment():
    r = _probe("system")
    assert r["on"] is False
    assert min(r["inside"]) > PAGES // 2, r


def test_evaluation_predicts_with_freed_memory_reused():
    """``aqa.evaluate.predict_rows`` (``aqa eval`` and the training loop's evaluation) runs its
    batches inside the context and closes it after."""
    import torch

    from aqa.evaluate import predict_rows

    seen = []

    class Method:
        def predict(self, model, batch):
            seen.append(allocator.active())
            return batch["x"].sum(dim=1)

    data = [{"id": str(i), "score": torch.tensor(float(i)), "x": torch.ones(3) * i}
            for i in range(5)]
    rows = predict_rows(Method(), torch.nn.Identity(), data, torch.device("cpu"), batch_size=2)
    assert [r[2] for r in rows] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert seen == [allocator.available()] * 3 and not allocator.active()
