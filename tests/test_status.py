"""A run's status when Slurm cannot be asked: the final status event wins, and a note says why
the status is not Slurm's word (aqa.runs.status, the index, `aqa runs ls` / `show`)."""

import json
import os
import subprocess
import sys
import time

import pytest

from aqa.runs import index, slurm_state, store
from aqa.runs.events import EventWriter
from aqa.runs.status import read_status
from conftest import ROOT


@pytest.fixture(autouse=True)
def fresh_squeue_answer():
    slurm_state.invalidate()
    yield
    slurm_state.invalidate()


def fake_squeue(tmp_path, monkeypatch, script: str | None):
    """A PATH whose squeue runs ``script`` (None: no squeue at all)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if script is not None:
        (bin_dir / "squeue").write_text("#!/bin/sh\n" + script + "\n")
        (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return str(bin_dir)


def slurm_run(runs_dir, last="stopped"):
    """A Slurm run whose events (seconds old, so its heartbeat still looks fresh) end in ``last``."""
    path = store.create_run(runs_dir, {"method": "regression", "dataset": "synthetic"})
    now = time.time()
    store.write_job(path, {"executor": "slurm", "state": "submitted", "slurm_job_id": "4242",
                           "submitted_at": now - 60, "started": now - 60})
    w = EventWriter(path / "events.jsonl")
    w.emit("start", epochs=3)
    w.emit("status", status="running")
    w.emit("heartbeat", epoch=1, step=10)
    w.emit("status", status=last)
    w.close()
    return path


NOT_ON_PATH = "slurm unreachable: squeue is not on the PATH"
NO_CONFIG = "squeue: fatal: Could not establish a configuration source"


def test_stopped_without_squeue_is_stopped_with_a_note(runs_dir, tmp_path, monkeypatch):
    path = slurm_run(runs_dir)
    fake_squeue(tmp_path, monkeypatch, None)
    assert read_status(path) == ("stopped", NOT_ON_PATH)
    row = index.list_runs(runs_dir)[0]
    assert (row["status"], row["status_note"]) == ("stopped", NOT_ON_PATH)


def test_a_failing_squeue_is_named_in_the_note(runs_dir, tmp_path, monkeypatch):
    path = slurm_run(runs_dir, last="finished")
    fake_squeue(tmp_path, monkeypatch, f"echo '{NO_CONFIG}' >&2; exit 1")
    assert read_status(path) == ("finished", f"slurm unreachable: squeue failed: {NO_CONFIG}")


def test_a_later_submit_is_not_hidden_by_the_old_final_event(runs_dir, tmp_path, monkeypatch):
    path = slurm_run(runs_dir)
    job = store.read_job(path)
    store.write_job(path, {**job, "submitted_at": time.time() + 1})  # resubmitted after it stopped
    fake_squeue(tmp_path, monkeypatch, None)
    assert read_status(path) == ("running", NOT_ON_PATH)  # judged by its fresh heartbeat


def test_with_squeue_answering_there_is_no_note(runs_dir, tmp_path, monkeypatch):
    path = slurm_run(runs_dir)
    fake_squeue(tmp_path, monkeypatch, "echo '4242 CANCELLED'")
    assert read_status(path) == ("stopped", None)
    fake_squeue(tmp_path, monkeypatch, "echo '4242 PENDING'")  # requeued after a preemption
    slurm_state.invalidate()
    assert read_status(path) == ("queued", None)


def test_a_failure_is_cached_like_an_answer(tmp_path, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, f"echo x >> {tmp_path / 'calls'}; exit 1")
    for _ in range(5):
        assert slurm_state.state_of("1")[0] is None
    assert (tmp_path / "calls").read_text() == "x\n"


def test_runs_ls_and_show_print_the_note(runs_dir, tmp_path, monkeypatch):
    path = slurm_run(runs_dir)
    bin_dir = fake_squeue(tmp_path, monkeypatch, None)
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "aqa", "runs", *a, "--runs-dir", str(runs_dir)], cwd=ROOT,
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": bin_dir})
    out = run("ls")
    assert out.returncode == 0, out.stderr
    assert " stopped " in out.stdout and f"({NOT_ON_PATH})" in out.stdout
    shown = run("show", path.name)
    assert f"status    stopped  [{NOT_ON_PATH}]" in shown.stdout, shown.stderr
    listed = json.loads(run("ls", "--json").stdout)
    assert (listed[0]["status"], listed[0]["status_note"]) == ("stopped", NOT_ON_PATH)
