"""The Slurm executor against a real one-node cluster started by scripts/slurm_cluster.sh
(munge + slurmctld + slurmd from Debian's packages). Skipped, with the reason, where Slurm is
not installed or the tests do not run as root. The status table is tested without a cluster."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from aqa.jobs import local, slurm
from aqa.runs import index, store
from aqa.runs.events import read_events
from aqa.runs.status import derive_status
from conftest import ROOT, wait_for

SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"


@pytest.mark.parametrize("last, slurm_state, alive, want", [
    (None, "PENDING", False, "queued"),
    (None, "RUNNING", True, "running"),
    ("running", "RUNNING", True, "running"),
    ("finished", "COMPLETING", True, "finished"),
    ("stopped", "CANCELLED", False, "stopped"),
    ("stopped", "PENDING", False, "queued"),        # preempted or requeued: waits to resume
    ("stopped", "RUNNING", True, "running"),
    (None, "CANCELLED", False, "stopped"),          # cancelled while pending
    ("running", "GONE", False, "crashed"),
    ("running", None, None, "running"),             # no squeue here: cannot tell
])
def test_slurm_status_merges_slurm_state_and_events(last, slurm_state, alive, want):
    job = {"executor": "slurm", "slurm_job_id": "7", "state": "submitted", "submitted_at": 10.0,
           "slurm_state": slurm_state}
    assert derive_status(last, job, alive, 20.0 if last else 0.0) == want


@pytest.mark.parametrize("text, minutes", [("90", 90), ("2:00:00", 120), ("30:30", 31),
                                           ("1-00:00:00", 1440), (None, None)])
def test_parse_time(text, minutes):
    assert slurm.parse_time(text) == minutes


def _why_no_slurm() -> str | None:
    missing = [e for e in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(e)]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing): apt-get install -y "
                "--no-install-recommends slurm-wlm munge")
    if os.geteuid() != 0:
        return "the one-node Slurm cluster needs root (munged, slurmd)"
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    reason = _why_no_slurm()
    if reason:
        print(f"\nskipping Slurm tests: {reason}")
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CLUSTER_PORT": str(17000 + os.getpid() % 500 * 2)}
    out = subprocess.run(["bash", str(SCRIPT), "start", str(d)], capture_output=True, text=True,
                         env=env, timeout=60)
    if out.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], env=env, timeout=60)
        pytest.fail(f"the Slurm cluster did not start:\n{out.stdout}\n{out.stderr}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    yield d
    subprocess.run(["bash", str(SCRIPT), "stop", str(d)], env=env, timeout=60)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def _events(path):
    return read_events(path / "events.jsonl")


def _log(path):
    text = (path / "stdout.log").read_text() if (path / "stdout.log").exists() else ""
    for f in sorted((path / "slurm").glob("*.out")) if (path / "slurm").exists() else []:
        text += f"\n--- {f.name}\n" + f.read_text()
    return text


def _release_begin_time(job_id):
    """A requeued job is held until a begin time ~2 minutes on (Slurm sets it once the old
    attempt has completed); move it to a few seconds from now. Called while polling, since an
    update sent before Slurm sets that begin time is overwritten by it. Not "now": slurmd
    refuses a relaunch whose credential dates from the same second as the old attempt's kill
    ("Job credential revoked"), and the job then fails instead of running."""
    import datetime as dt

    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r %S"], capture_output=True,
                         text=True, timeout=30)
    fields = out.stdout.split()
    if fields[:2] != ["PENDING", "BeginTime"] or len(fields) < 3:
        return
    try:
        begin = dt.datetime.fromisoformat(fields[2])
    except ValueError:
        return
    if begin > dt.datetime.now() + dt.timedelta(seconds=10):  # Slurm's hold, not ours
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+3"],
                       capture_output=True, timeout=30)


def _final(path):
    s = local.run_status(path)
    return s if s in ("finished", "failed", "crashed", "stopped") else None


@pytest.mark.slow
def test_slurm_run_finishes_and_is_indexed(cluster, tmp_path, fast_overrides):
    runs_dir = tmp_path / "runs"
    sets = [a for o in fast_overrides + ["train.epochs=1"] for a in ("--set", o)]
    out = subprocess.run([sys.executable, "-m", "aqa", "train", "--method", "regression",
                          "--dataset", "synthetic", *sets, "--executor", "slurm", "--time", "10",
                          "--json", "--runs-dir", str(runs_dir)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    path = runs_dir / json.loads(out.stdout)["run_id"]
    job = store.read_job(path)
    assert job["executor"] == "slurm" and job["slurm_job_id"]
    assert wait_for(lambda: _final(path), timeout=180, what="the Slurm run; log:\n" + _log(path)) \
        == "finished", _log(path)
    index.sync(runs_dir)
    row = index.get_run(runs_dir, path.name)
    assert (row["status"], row["executor"], row["epoch"]) == ("finished", "slurm", 1)
    assert row["best_rho"] is not None


@pytest.mark.slow
def test_scancel_stops_with_a_checkpoint(cluster, runs_dir, fast_overrides):
    path = local.submit(runs_dir, "regression", "synthetic", executor="slurm",
                        overrides=fast_overrides + ["train.epochs=50"])
    wait_for(lambda: any(e["type"] == "metric" for e in _events(path)), timeout=120,
             what="the first metric; log:\n" + _log(path))
    assert local.run_status(path) == "running"
    assert local.stop(path, grace_s=30) == "stopped", _log(path)
    last = [e for e in _events(path) if e["type"] == "status"][-1]
    assert last["status"] == "stopped" and last["signal"] == "SIGTERM"
    assert (path / "checkpoints" / "last.pt").exists()
    index.sync(runs_dir)
    assert index.get_run(runs_dir, path.name)["status"] == "stopped"


@pytest.mark.slow
def test_requeued_job_resumes_from_last_pt(cluster, runs_dir, fast_overrides):
    path = local.submit(runs_dir, "regression", "synthetic", executor="slurm",
                        overrides=fast_overrides + ["train.epochs=50"])
    job_id = store.read_job(path)["slurm_job_id"]
    wait_for(lambda: any(e["type"] == "checkpoint" for e in _events(path)), timeout=120,
             what="the first checkpoint; log:\n" + _log(path))
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    wait_for(lambda: local.run_status(path) == "queued", timeout=60, what="requeued -> queued")

    def second_start():
        _release_begin_time(job_id)  # a requeued job waits for its begin time; let it go now
        return [e for e in _events(path) if e["type"] == "start"][1:]

    starts = wait_for(second_start, timeout=120, interval=0.5,
                      what="the second attempt; log:\n" + _log(path))
    assert starts[0]["resumed_step"] is not None and starts[0]["resumed_step"] > 0
    assert local.stop(path, grace_s=30) == "stopped"


@pytest.mark.slow
def test_a_request_slurm_rejects_is_an_error_and_leaves_nothing(cluster, runs_dir,
                                                                fast_overrides):
    from aqa.errors import JobError
    with pytest.raises(JobError, match="Slurm refused the job"):
        local.submit(runs_dir, "regression", "synthetic", executor="slurm",
                     overrides=fast_overrides, slurm={"cpus_per_task": 512})
    assert store.list_run_dirs(runs_dir) == []


@pytest.mark.slow
def test_timeout_signal_checkpoints_requeues_and_resumes(cluster, runs_dir, fast_overrides):
    """Slurm's timeout warning (sbatch --signal=USR2@90, sent to the job's steps, not the batch
    shell) reaches submitit's handler: TrainJob.checkpoint SIGTERMs the trainer (last.pt,
    "stopped"), submitit requeues the job, the new attempt resumes from last.pt and the run
    finishes once with every epoch's metrics once."""
    epochs = 6
    path = local.submit(runs_dir, "regression", "synthetic", executor="slurm",
                        overrides=fast_overrides + [f"train.epochs={epochs}"],
                        slurm={"time": "10"})
    job_id = store.read_job(path)["slurm_job_id"]
    wait_for(lambda: any(e["type"] == "checkpoint" for e in _events(path)), timeout=120,
             what="the first checkpoint; log:\n" + _log(path))
    # what Slurm does at --signal=USR2@90: signal every step of the job, not the batch step
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    wait_for(lambda: "Requeued job" in _log(path), timeout=90,
             what="submitit's requeue; log:\n" + _log(path))
    assert "this job is timed-out" in _log(path)
    stopped = [e for e in _events(path) if e["type"] == "status" and e["status"] == "stopped"]
    assert stopped and stopped[0]["signal"] == "SIGTERM", _log(path)
    seen = []  # (derived status, Slurm state) while it resumes, for the failure message

    def ended():
        _release_begin_time(job_id)
        seen.append((local.run_status(path), slurm.slurm_state(job_id)))
        return any(e["type"] == "status" and e["status"] in ("finished", "failed")
                   for e in _events(path))

    try:
        wait_for(ended, timeout=150, interval=0.5, what="the resumed run to end")
    except AssertionError as exc:  # say what Slurm and the run were doing meanwhile
        queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r %S"],
                               capture_output=True, text=True, timeout=30).stdout
        raise AssertionError(f"{exc}\nseen (status, Slurm state): {sorted(set(seen))}\n"
                             f"squeue: {queue}\nlog:\n{_log(path)}") from None
    assert wait_for(lambda: _final(path), timeout=30, what="a final status") == "finished", \
        f"{_log(path)}\nseen: {sorted(set(seen))}"
    assert {s for s, _ in seen} <= {"queued", "running", "finished"}, sorted(set(seen))
    evs = _events(path)
    starts = [e for e in evs if e["type"] == "start"]
    assert len(starts) == 2 and starts[0]["resumed_step"] is None
    assert starts[1]["resumed_step"] > 0 and starts[1]["resumed_epoch"] is not None
    statuses = [e["status"] for e in evs if e["type"] == "status"]
    assert statuses.count("finished") == 1 and statuses[-1] == "finished"
    rho = sorted(e["epoch"] for e in evs if e["type"] == "metric" and e["name"] == "rho")
    assert rho == list(range(1, epochs + 1))  # every epoch evaluated exactly once
    ckpt = [e["epoch"] for e in evs if e["type"] == "checkpoint"]
    assert ckpt == sorted(ckpt) and ckpt[-1] == epochs
    job = store.read_job(path)
    assert job["slurm_job_id"] == job_id and len(job["attempts"]) == 1  # requeued, not resubmitted
