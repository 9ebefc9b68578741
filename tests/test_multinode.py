"""Multi-node runs (aqa.jobs.launch): the argv of one node, the rendezvous file, and a real
2-node run on this machine: the per-node launcher started twice with the environment Slurm
gives a task (SLURM_NODEID 0 and 1, SLURM_NNODES 2), one gloo CPU process a node; two such
jobs at once to show their rendezvous ports cannot clash."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from aqa.errors import JobError
from aqa.jobs import launch, local, slurm
from aqa.runs.events import read_events
from conftest import ROOT, wait_for


def test_node_argv_for_n_nodes(tmp_path):
    argv = launch.node_argv(tmp_path, 4, 3, "node17:40123", "aqa-r-99-0")
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nnodes=3" in argv and "--nproc-per-node=4" in argv
    assert "--rdzv-backend=c10d" in argv and "--rdzv-endpoint=node17:40123" in argv
    assert "--rdzv-id=aqa-r-99-0" in argv
    assert any(a.startswith("--rdzv-conf=is_host=false") for a in argv)  # node 0's task hosts
    assert "--standalone" not in argv and "--max-restarts=0" in argv
    assert argv[-3:] == ["-m", "aqa.train", str(tmp_path)]
    # single-node runs keep --standalone (its rendezvous binds port 0 on the node itself)
    assert "--standalone" in local.train_argv(tmp_path, 2)


def test_node_run_reads_the_slurm_environment(tmp_path):
    env = {"SLURM_JOB_ID": "77", "SLURM_NODEID": "1", "SLURM_NNODES": "2",
           "SLURM_RESTART_COUNT": "3"}
    node = launch.NodeRun(tmp_path, 2, 2, environ=env)
    assert (node.node, node.job_id, node.restart) == (1, "77", 3)
    argv = node.argv("h:1")
    assert f"--rdzv-id=aqa-{tmp_path.name}-77-3" in argv  # a requeued attempt is a new rendezvous
    with pytest.raises(JobError, match="SLURM_NNODES"):
        launch.NodeRun(tmp_path, 1, 4, environ=env)
    with pytest.raises(JobError, match="SLURM_JOB_ID"):
        launch.NodeRun(tmp_path, 1, 2, environ={"SLURM_NODEID": "0", "SLURM_NNODES": "2"})


def test_waiting_for_node_0_times_out_with_a_clear_error(tmp_path):
    path = launch.rendezvous_file(tmp_path, "5", 0)
    t0 = time.time()
    with pytest.raises(JobError, match="did not publish the rendezvous endpoint.*shares"):
        launch.wait_endpoint(path, 0.3, poll_s=0.05)
    assert time.time() - t0 < 5
    launch.publish_endpoint(path, "nodeA", 41000)
    assert launch.wait_endpoint(path, 1) == "nodeA:41000"
    assert not list(path.parent.glob("*.tmp*"))  # the atomic write left no temp file


def test_nodes_option_is_checked_before_anything_is_written(runs_dir):
    with pytest.raises(JobError, match="--nodes"):
        slurm.options(runs_dir, {"nodes": 0})
    assert slurm.options(runs_dir, {"nodes": 2})["nodes"] == 2


def _start_nodes(path, job_id, restart=0):
    procs = []
    for node in (0, 1):
        env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_NODEID": str(node),
               "SLURM_NNODES": "2", "SLURM_RESTART_COUNT": str(restart), "AQA_RDZV_WAIT_S": "60",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "aqa.jobs.launch", str(path), "--nnodes", "2",
             "--nproc-per-node", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    return procs


def test_two_two_node_runs_at_once(runs_dir, fast_overrides):
    epochs = 2
    paths = [local.submit(runs_dir, "regression", "synthetic", start_now=False,
                          overrides=fast_overrides + [f"train.epochs={epochs}"])
             for _ in range(2)]
    jobs = {p: _start_nodes(p, f"t{uuid.uuid4().hex[:8]}") for p in paths}
    outputs = {}
    for p, procs in jobs.items():
        outs = []
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                pytest.fail(f"2-node run {p.name} did not end:\n{(p / 'stdout.log').read_text()}")
            outs.append(out)
        outputs[p] = (procs, outs)
    ports = set()
    for p, (procs, outs) in outputs.items():
        log = (p / "stdout.log").read_text()
        assert [q.returncode for q in procs] == [0, 0], log + "\n".join(outs)
        assert "address already in use" not in log.lower()
        evs = read_events(p / "events.jsonl")
        starts = [e for e in evs if e["type"] == "start"]
        assert len(starts) == 1 and starts[0]["rank_count"] == 2  # one job, world size 2
        final = [e["status"] for e in evs if e["type"] == "status"]
        assert final[-1] == "finished" and final.count("finished") == 1
        keys = [(e["epoch"], e["step"], e["split"], e["name"]) for e in evs
                if e["type"] == "metric"]
        assert len(keys) == len(set(keys))  # one writer: no metric twice
        assert sorted(e["epoch"] for e in evs
                      if e["type"] == "metric" and e["name"] == "rho") == list(range(1, epochs + 1))
        # both ranks evaluated their shard, rank 0 wrote every test clip's prediction
        rows = (p / "predictions" / f"test_epoch_{epochs:03d}.csv").read_text().splitlines()
        assert len(rows) - 1 == 6
        published = list((p / "slurm").glob("rendezvous_*_0.json"))
        assert len(published) == 1
        ports.add(json.loads(published[0].read_text())["port"])
        assert log.count("node 0/2 of job") == 1 and log.count("node 1/2 of job") == 1
    assert len(ports) == 2


@pytest.mark.slow
def test_two_node_run_stops_on_node_0s_sigterm_and_a_requeue_resumes(runs_dir, fast_overrides):
    """The timeout path of a 2-node job: submitit's handler runs in task 0 only and SIGTERMs
    its torchrun; the ranks agree to stop, rank 0 writes last.pt and `stopped`, both tasks
    end. The requeued job (same id, restart count 1: a new rendezvous file) resumes."""
    import signal

    epochs = 6
    path = local.submit(runs_dir, "regression", "synthetic", start_now=False,
                        overrides=fast_overrides + [f"train.epochs={epochs}"])
    job_id = f"t{uuid.uuid4().hex[:8]}"
    procs = _start_nodes(path, job_id)
    try:
        wait_for(lambda: any(e["type"] == "checkpoint" for e in read_events(path / "events.jsonl")),
                 timeout=120, what="the first checkpoint")
        procs[0].send_signal(signal.SIGTERM)  # node 0's task only, as submitit's handler does
        for proc in procs:
            proc.communicate(timeout=90)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    evs = read_events(path / "events.jsonl")
    status = [e for e in evs if e["type"] == "status"][-1]
    assert status["status"] == "stopped" and status["signal"] == "SIGTERM", \
        (path / "stdout.log").read_text()
    assert (path / "checkpoints" / "last.pt").exists()
    procs = _start_nodes(path, job_id, restart=1)
    outs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert [p.returncode for p in procs] == [0, 0], (path / "stdout.log").read_text() + "".join(outs)
    evs = read_events(path / "events.jsonl")
    starts = [e for e in evs if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_step"] > 0 and starts[1]["rank_count"] == 2
    assert [e["status"] for e in evs if e["type"] == "status"][-1] == "finished"
    rho = sorted(e["epoch"] for e in evs if e["type"] == "metric" and e["name"] == "rho")
    assert rho == list(range(1, epochs + 1))
    assert len(list((path / "slurm").glob(f"rendezvous_{job_id}_*.json"))) == 2
