"""The local queue: order on supplied inventories (pure), queue records, and real tiny runs
started by the detached scheduler: one after another, surviving kill -9, and torchrun twice."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aqa.errors import ConfigError, JobError
from aqa.jobs import local, queue, scheduler, workspace
from aqa.runs import index, status, store
from aqa.runs.events import read_events
from conftest import ROOT, wait_for

TWO = [{"index": 0, "uuid": "u0", "free_mb": 100}, {"index": 1, "uuid": "u1", "free_mb": 100}]


def q(*gpus):
    return [{"id": f"r{i + 1}", "gpus": g} for i, g in enumerate(gpus)]


# ---------------------------------------------------------------- pure order

def test_five_one_gpu_runs_on_two_gpus_two_start():
    assert queue.plan(q("1", "1", "1", "1", "1"), TWO, set(), 1, 1024) == [("r1", [0]),
                                                                          ("r2", [1])]
    assert queue.plan(q("1", "1", "1"), TWO, {0}, 1, 1024) == [("r1", [1])]
    assert queue.plan(q("1", "1", "1"), TWO, {0, 1}, 1, 1024) == []


def test_order_is_first_come_first_served_per_pool():
    # r1 needs both GPUs and waits; r2 (one GPU) may not overtake it; the CPU run goes on
    assert queue.plan(q("2", "1", None), TWO, {0}, 1, 1024) == [("r3", [])]
    assert queue.plan(q(None, None, None), [], set(), 2, 1024) == [("r1", []), ("r2", [])]
    assert queue.plan(q("0,1", "1"), TWO, set(), 0, 1024) == [("r1", [0, 1])]
    busy = [dict(TWO[0], foreign_mb=5000), TWO[1]]
    assert queue.plan(q("1", "1"), busy, set(), 0, 1024) == [("r1", [1])]


# ---------------------------------------------------------------- workspace config

def test_workspace_config(runs_dir, monkeypatch):
    monkeypatch.delenv("AQA_CPU_SLOTS", raising=False)
    assert workspace.load(runs_dir)["queue"]["cpu_slots"] == 1
    (runs_dir / "workspace.toml").write_text('[queue]\ncpu_slots = 3\n[slurm]\npartition = "p"\n')
    cfg = workspace.load(runs_dir)
    assert cfg["queue"]["cpu_slots"] == 3 and cfg["slurm"]["partition"] == "p"
    monkeypatch.setenv("AQA_CPU_SLOTS", "2")
    assert workspace.load(runs_dir)["queue"]["cpu_slots"] == 2
    (runs_dir / "workspace.toml").write_text("[queue]\ncpu_slot = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'cpu_slot'"):
        workspace.load(runs_dir)


# ---------------------------------------------------------------- queue records (no training)

def _created(runs_dir, synthetic_root, n):
    return [local.submit(runs_dir, "regression", "synthetic", start_now=False,
                         overrides=[f"data.root={synthetic_root}"]) for _ in range(n)]


def test_paused_queue_move_and_cancel(runs_dir, synthetic_root):
    queue.set_paused(runs_dir, True)
    paths = _created(runs_dir, synthetic_root, 3)
    for p in paths:
        assert local.start(p)["state"] == "queued"
    names = [p.name for p in paths]
    assert queue.positions(runs_dir) == {names[0]: 1, names[1]: 2, names[2]: 3}
    assert queue.move(runs_dir, paths[2], 1) == [names[2], names[0], names[1]]
    assert local.run_status(paths[0]) == "queued"
    queue.cancel(paths[0])
    assert local.run_status(paths[0]) == "stopped"
    assert queue.positions(runs_dir) == {names[2]: 1, names[1]: 2}
    assert local.stop(paths[1]) == "stopped"  # stopping a queued run takes it off the queue
    with pytest.raises(JobError, match="not queued"):
        queue.cancel(paths[1])
    index.sync(runs_dir)
    assert index.get_run(runs_dir, names[2])["status"] == "queued"
    queue.set_paused(runs_dir, False)
    queue.cancel(paths[2])
    wait_for(lambda: scheduler.running(runs_dir) is None, timeout=30, what="scheduler exit")


def test_stale_claim_without_process_goes_back_to_the_queue(runs_dir, synthetic_root):
    (path,) = _created(runs_dir, synthetic_root, 1)
    job = {"executor": "local", "state": "starting", "claimed_at": time.time() - 60,
           "order": 1.0, "nproc": 1, "gpus": []}
    store.write_job(path, job)
    assert local.run_status(path) == "queued"
    assert queue.recover(path, dict(job)) == "queued"
    assert store.read_job(path)["state"] == "queued"


def test_stale_claim_with_a_live_process_is_recorded_not_restarted(runs_dir, synthetic_root):
    (path,) = _created(runs_dir, synthetic_root, 1)
    store.write_job(path, {"executor": "local", "state": "starting", "claimed_at": time.time(),
                           "order": 1.0, "nproc": 1, "gpus": []})
    # a process that looks like the run's trainer (what a killed claimer may leave behind)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m",
                             "aqa.train", str(path.resolve())], start_new_session=True)
    try:
        wait_for(lambda: queue.find_job_process(path), timeout=10, what="the exec")
        assert queue.recover(path, store.read_job(path)) == "started"
        job = store.read_job(path)
        assert job["pid"] == proc.pid and job["attempts"][-1]["recovered"]
        assert local.run_status(path) == "running"
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- real runs



def _starts(path):
    return [e for e in read_events(path / "events.jsonl") if e["type"] == "start"]


def _span(path):
    evs = read_events(path / "events.jsonl")
    return (min(e["t"] for e in evs), max(e["t"] for e in evs))


def _aqa_train(runs_dir, overrides, *extra):
    sets = [a for o in overrides for a in ("--set", o)]
    out = subprocess.run([sys.executable, "-m", "aqa", "train", "--method", "regression",
                          "--dataset", "synthetic", *sets, *extra, "--json",
                          "--runs-dir", str(runs_dir)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, env={**os.environ, "AQA_CPU_SLOTS": "1"})
    assert out.returncode == 0, out.stderr
    return runs_dir / json.loads(out.stdout)["run_id"]


def _all_finished(paths):
    return all(local.run_status(p) == "finished" for p in paths)


def _logs(paths):
    return "\n".join((p / "stdout.log").read_text() for p in paths if (p / "stdout.log").exists())


@pytest.mark.slow
def test_one_slot_three_runs_one_after_another(runs_dir, fast_overrides):
    over = fast_overrides + ["train.epochs=1"]
    paths = [_aqa_train(runs_dir, over) for _ in range(3)]  # three CLI processes, then none
    # a snapshot: one slot, so at most one runs; the waiting ones are queued in submit order
    # (the first run may already have finished on an idle machine: the spans below are the proof)
    pos = queue.positions(runs_dir)
    statuses = [local.run_status(p) for p in paths]
    assert statuses.count("running") <= 1, statuses
    assert statuses[2] in ("queued", "running"), statuses
    order = [p.name for p in paths if p.name in pos]
    assert [pos[name] for name in order] == list(range(1, len(order) + 1)), (pos, order)
    wait_for(lambda: _all_finished(paths), timeout=240,
             what="three runs to finish; logs:\n" + _logs(paths))
    spans = [_span(p) for p in paths]
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]  # never two at once
    assert [len(_starts(p)) for p in paths] == [1, 1, 1]
    wait_for(lambda: scheduler.running(runs_dir) is None, timeout=30, what="scheduler exit")
    index.sync(runs_dir)
    assert {r["status"] for r in index.list_runs(runs_dir)} == {"finished"}


@pytest.mark.slow
def test_kill_9_scheduler_mid_queue_then_submit_every_run_once(runs_dir, fast_overrides):
    over = fast_overrides + ["train.epochs=1"]
    paths = [_aqa_train(runs_dir, over) for _ in range(3)]
    sched = wait_for(lambda: scheduler.running(runs_dir), timeout=30, what="a scheduler")
    os.kill(sched["pid"], signal.SIGKILL)
    wait_for(lambda: status.process_state(sched["pid"]) in (None, "Z"), what="scheduler gone")
    # its lock is free once no copy of it is left: a run the scheduler was forking at the kill
    # holds one until it execs (milliseconds)
    wait_for(lambda: scheduler.running(runs_dir) is None, timeout=10, what="the lock freed")
    paths.append(_aqa_train(runs_dir, over))  # a new submit starts a new scheduler
    wait_for(lambda: _all_finished(paths), timeout=300,
             what="four runs to finish; logs:\n" + _logs(paths))
    assert [len(_starts(p)) for p in paths] == [1, 1, 1, 1]
    assert [len(store.read_job(p)["attempts"]) for p in paths] == [1, 1, 1, 1]
    spans = sorted(_span(p) for p in paths)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.slow
def test_two_torchrun_gloo_runs_at_once(runs_dir, fast_overrides, monkeypatch):
    monkeypatch.delenv("AQA_CPU_SLOTS", raising=False)
    (runs_dir / "workspace.toml").write_text("[queue]\ncpu_slots = 2\n")
    over = fast_overrides + ["train.epochs=1"]
    paths = [local.submit(runs_dir, "regression", "synthetic", overrides=over, nproc=2)
             for _ in range(2)]
    jobs = [store.read_job(p) for p in paths]
    assert [j["state"] for j in jobs] == ["started", "started"]
    assert all("--standalone" in j["argv"] and "--nproc-per-node=2" in j["argv"] for j in jobs)
    assert all(status.process_alive(j["pid"], j["start_time"]) for j in jobs)  # both at once
    wait_for(lambda: all(local.run_status(p) in ("finished", "failed", "crashed") for p in paths),
             timeout=300, what="two torchrun runs")
    assert [local.run_status(p) for p in paths] == ["finished", "finished"], _logs(paths)
    assert [s[0]["rank_count"] for s in map(_starts, paths)] == [2, 2]
    assert "EADDRINUSE" not in _logs(paths) and "address already in use" not in _logs(paths)


# ---------------------------------------------------------------- the command line

def _cli(*args, runs_dir):
    out = subprocess.run([sys.executable, "-m", "aqa", *args, "--runs-dir", str(runs_dir)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("cmd", [["queue"], ["queue", "ls"], ["queue", "cancel"],
                                 ["queue", "move"], ["queue", "pause"], ["queue", "resume"],
                                 ["gpus"], ["runs", "rerun"]], ids=" ".join)
def test_job_commands_have_help(cmd):
    out = subprocess.run([sys.executable, "-m", "aqa", *cmd, "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60).stdout
    assert out.startswith("usage: python -m aqa")
    assert ("--runs-dir" in out) == (cmd != ["queue"])


def test_rerun_queues_a_copy_with_changes_and_queue_cli(runs_dir, synthetic_root):
    (path,) = _created(runs_dir, synthetic_root, 1)
    _cli("queue", "pause", runs_dir=runs_dir)
    first = json.loads(_cli("runs", "rerun", path.name, "--set", "train.epochs=3", "--json",
                            runs_dir=runs_dir))
    second = json.loads(_cli("runs", "rerun", path.name, "--json", runs_dir=runs_dir))
    assert store.read_run(runs_dir / first["run_id"])["config"]["train"]["epochs"] == 3
    assert store.read_run(runs_dir / first["run_id"])["config"]["data"]["root"] == \
        str(synthetic_root)
    listed = json.loads(_cli("queue", "ls", "--json", runs_dir=runs_dir))
    assert listed["paused"] and [r["run_id"] for r in listed["queued"]] == [first["run_id"],
                                                                             second["run_id"]]
    moved = json.loads(_cli("queue", "move", second["run_id"], "--to", "1", "--json",
                            runs_dir=runs_dir))
    assert moved["order"] == [second["run_id"], first["run_id"]]
    for r in (first, second):
        _cli("queue", "cancel", r["run_id"], runs_dir=runs_dir)
    assert json.loads(_cli("queue", "ls", "--json", runs_dir=runs_dir))["queued"] == []
    _cli("queue", "resume", runs_dir=runs_dir)
    assert local.run_status(runs_dir / first["run_id"]) == "stopped"


def test_a_run_whose_submitter_died_before_queueing_it_is_adopted(runs_dir, synthetic_root):
    queue.set_paused(runs_dir, True)
    path = store.create_run(runs_dir, {"method": "regression", "dataset": "synthetic"},
                            extra={"resources": {"gpus": [], "nproc": 1, "request": None},
                                   "enqueue": True})
    assert store.read_job(path) is None
    queue.schedule_once(runs_dir)
    assert store.read_job(path)["state"] == "queued" and queue.positions(runs_dir) == {path.name: 1}
    queue.cancel(path)
