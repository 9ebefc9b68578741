"""aqa.allocator: while a context is open, the memory a tensor frees is reused by the next one
(no fresh pages to fault in), in the main thread and, with one malloc arena (``server_env``), in
a worker thread; the memory is handed back when the last context closes; nothing changes with
``AQA_ALLOCATOR=system`` or where the user set malloc's parameters. Each case runs in a fresh
interpreter: the setting is the process's. docs/performance.md measures what it changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from aqa import allocator

linux_glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc (Linux) only")

PROBE = textwrap.dedent("""
    import json, resource, sys, threading
    from concurrent.futures import ThreadPoolExecutor
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

    def in_thread(fn):
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(fn).result()

    run = in_thread if sys.argv[1] == "thread" else (lambda fn: fn())
    report = {"outside": run(faults)}
    with reuse_freed_memory() as on:
        report["on"] = on
        report["inside"] = run(faults)
        # a second context from another thread; closing it leaves the first one in effect
        done = threading.Event()
        def other():
            with reuse_freed_memory():
                pass
            done.set()
        threading.Thread(target=other).start()
        done.wait()
        report["still_active"] = active()
        report["inside_after_other"] = run(faults)
        report["rss_inside"] = rss_mb()  # the freed blocks are still the process's
    report["rss_after"] = rss_mb()
    report["active_after"] = active()
    report["after"] = run(faults)
    print(json.dumps(report))
""")


def _probe(where: str = "main", **env_values: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AQA_ALLOCATOR", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    env.update(env_values)
    out = subprocess.run([sys.executable, "-c", PROBE, where], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reused(r: dict) -> None:
    # the default: every block a fresh mapping, its pages faulted in again each time; inside,
    # the first block faults its pages in and the next ones reuse them (ratios, not page
    # counts: with transparent huge pages a mapping faults in 2 MiB at a time)
    fresh = min(r["outside"])
    assert fresh > 0 and max(r["inside"][1:]) * 20 < fresh, r
    assert r["still_active"] is True and max(r["inside_after_other"][1:]) * 20 < fresh, r
    # the last context closed: the freed memory handed back (the next block faults its pages
    # in again, wherever glibc finds room for it)
    assert r["rss_inside"] - r["rss_after"] > 40, r
    assert r["active_after"] is False and r["after"][0] * 20 > fresh, r


@linux_glibc
def test_freed_memory_is_reused_inside_and_handed_back_after():
    r = _probe()
    assert r["on"] is True
    _reused(r)


@linux_glibc
def test_in_a_worker_thread_with_one_arena():
    """A thread's own arena maps its large blocks afresh (what the app's scoring threads would
    get); with the one arena of ``server_env`` they are reused as in the main thread."""
    r = _probe("thread", **{k: v for k, v in allocator.server_env({}).items()})
    assert r["on"] is True
    _reused(r)


@linux_glibc
@pytest.mark.parametrize("env", [{"AQA_ALLOCATOR": "system"}, {"MALLOC_MMAP_MAX_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}])
def test_switched_off_by_the_environment(env):
    r = _probe(**env)
    assert r["on"] is False
    assert min(r["inside"][1:]) * 20 > min(r["outside"]), r


def test_server_env():
    base = {"PATH": "/bin"}
    got = allocator.server_env(base)
    assert base == {"PATH": "/bin"}  # a copy
    if allocator._glibc() is None:
        assert got == base
        return
    assert got["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=1"
    other = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
    assert allocator.server_env(other)["GLIBC_TUNABLES"] == \
        "glibc.pthread.rseq=0:glibc.malloc.arena_max=1"
    for kept in ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, {"MALLOC_ARENA_MAX": "2"},
                 {"AQA_ALLOCATOR": "system"}, {"MALLOC_TRIM_THRESHOLD_": "1"}):
        assert allocator.server_env(kept) == kept


@linux_glibc
def test_evaluation_runs_with_freed_memory_reused(tmp_path, monkeypatch, synthetic_root):
    """``aqa eval`` (``evaluate_checkpoint``) predicts inside the context and closes it after;
    the training loop's own evaluation does not use it (docs/performance.md)."""
    from aqa import evaluate
    from aqa.config import build_run_config, to_dict
    from aqa.registry import METHODS
    from aqa.train.checkpoint import save_checkpoint

    monkeypatch.delenv("AQA_ALLOCATOR", raising=False)
    cfg = build_run_config("regression", "synthetic", overrides=[
        "data.num_frames=8", "data.frame_size=32", f"data.root={synthetic_root}"])
    model = METHODS.get("regression")(cfg).build_model()
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"method": "regression", "config": to_dict(cfg),
                           "model": model.state_dict()})
    seen = []
    predict = evaluate.predict_rows

    def recording(*args, **kwargs):
        seen.append(allocator.active())
        return predict(*args, **kwargs)

    monkeypatch.setattr(evaluate, "predict_rows", recording)
    out = evaluate.evaluate_checkpoint(ckpt, out=tmp_path / "pred.csv")
    assert out["samples"] > 0 and seen == [True] and not allocator.active()
