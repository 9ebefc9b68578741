"""The index under the app's load: a sync reads again only the runs that can have changed; a
chart tick reads only the new rows."""

from __future__ import annotations

import os
import time

import pytest

from aqa.runs import index, store
from aqa.runs.events import EventWriter
from test_index import make_run, write_epochs


def age(path, seconds: float = 60.0) -> None:
    """Make the run folder look written ``seconds`` ago (a settled run is an old one)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def counted(monkeypatch):
    """The run ids ``ingest_run`` is called for, sync by sync."""
    calls: list[str] = []
    real = index.ingest_run
    monkeypatch.setattr(index, "ingest_run", lambda db, path: calls.append(path.name)
                        or real(db, path))
    return calls


def finished_run(runs_dir):
    path = make_run(runs_dir)
    write_epochs(path, [0.2, 0.4])
    w = EventWriter(path / "events.jsonl")
    w.emit("status", status="finished")
    w.close()
    store.write_job(path, {"executor": "local", "pid": 0, "state": "started", "started": 0})
    age(path)
    return path


def test_a_settled_run_is_not_read_again_until_its_files_change(tmp_path, counted):
    done, live = finished_run(tmp_path), make_run(tmp_path)
    write_epochs(live, [0.1])
    store.write_job(live, {"executor": "local", "pid": os.getpid(), "state": "started",
                           "started": time.time()})
    index.sync(tmp_path)
    assert sorted(counted) == sorted([done.name, live.name])
    counted.clear()
    rows = {r["id"]: r for r in index.list_runs(tmp_path)}  # sync + rows on one connection
    assert counted == [live.name]  # the running run is always read, the finished one not
    assert rows[done.name]["status"] == "finished" and rows[live.name]["status"] == "running"

    # a resume rewrites job.json (atomically: the folder's mtime moves): read again, running
    counted.clear()
    store.write_job(done, {"executor": "local", "pid": os.getpid(), "state": "started",
                           "started": time.time() + 1})
    assert index.get_run(tmp_path, done.name)["status"] == "finished"
    assert {r["id"]: r for r in index.list_runs(tmp_path)}[done.name]["status"] == "running"
    assert done.name in counted


def test_new_events_of_a_settled_run_are_ingested(tmp_path, counted):
    done = finished_run(tmp_path)
    index.sync(tmp_path)
    w = EventWriter(done / "events.jsonl")  # appending does not move the folder's mtime
    w.metric("rho", 0.9, epoch=3, step=30, split="test")
    w.close()
    counted.clear()
    assert index.sync(tmp_path)["events"] == 1 and counted == [done.name]
    assert index.get_run(tmp_path, done.name)["best_rho"] == 0.9


def test_a_recently_written_run_is_read_again_and_a_deleted_one_dropped(tmp_path, counted):
    done = finished_run(tmp_path)
    os.utime(done)  # written just now: a coarse mtime could hide the next write
    index.sync(tmp_path)
    counted.clear()
    index.sync(tmp_path)
    assert counted == [done.name]
    import shutil

    shutil.rmtree(done)
    assert index.sync(tmp_path)["removed"] == 1 and index.list_runs(tmp_path) == []
