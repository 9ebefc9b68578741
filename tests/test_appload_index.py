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


def long_run(runs_dir, n=600):
    path = make_run(runs_dir)
    w = EventWriter(path / "events.jsonl")
    w.emit("start", epochs=2, total_steps=n)
    for step in range(1, n + 1):
        w.metric("loss", ((step * 7919) % 101) / 100, epoch=1 + step * 2 // (n + 1), step=step,
                 split="train")
        if step % 300 == 0:
            w.metric("rho", step / n, epoch=step // 300, step=step, split="test")
        if step % 250 == 0:  # ingested in three parts, blocks straddling them
            w.sync()
            index.sync(runs_dir)
    w.close()
    return path


def expected_summary(rows, block_bytes):
    """The lowest and highest point (the first in log order on a tie) of each block, by hand."""
    blocks: dict[int, list] = {}
    for r in rows:
        blocks.setdefault(r["offset"] // block_bytes, []).append(r)
    keep = set()
    for part in blocks.values():
        keep.add(min(part, key=lambda r: (r["value"], r["offset"]))["offset"])
        keep.add(max(part, key=lambda r: (r["value"], -r["offset"]))["offset"])
    return [(r["step"], r["value"]) for r in rows if r["offset"] in keep]


def test_a_long_series_opens_from_its_block_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "BLOCK_BYTES", 2048)
    path = long_run(tmp_path)
    index.sync(tmp_path)
    rows = index.run_metrics(tmp_path, path.name, split="train", name="loss")
    first = index.follow_run(tmp_path, path.name, path, None, summary_limit=100)
    assert first.restart and first.metrics == []
    loss, rho = first.series[("train", "loss")], first.series[("test", "rho")]
    assert loss["count"] == 600 and len(loss["value"]) < 600
    assert list(zip(loss["step"], loss["value"])) == expected_summary(rows, 2048)
    assert rho == {"count": 2, "step": [300, 600], "epoch": [1, 2], "value": [0.5, 1.0]}  # raw

    # the blocks are the same from three ingests as from one (a rebuild)
    index.rebuild(tmp_path)
    assert index.follow_run(tmp_path, path.name, path, None, 100).series == first.series

    # a tick after the summary reads only the new rows
    w = EventWriter(path / "events.jsonl")
    w.metric("loss", 5.0, epoch=2, step=601, split="train")
    w.close()
    tick = index.follow_run(tmp_path, path.name, path, first.cursor, 100)
    assert not tick.restart and [(r["step"], r["value"]) for r in tick.metrics] == [(601, 5.0)]


def test_blocks_follow_appends_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "BLOCK_BYTES", 1024)
    path = make_run(tmp_path)
    write_epochs(path, [0.1, 0.5, 0.3])
    index.sync(tmp_path)
    write_epochs(path, [0.2, 0.9], start_step=0, resumed=(10, 1))  # epochs 2-3 superseded
    index.sync(tmp_path)
    summary = index.follow_run(tmp_path, path.name, path, None, summary_limit=0).series
    for (split, name), s in summary.items():
        rows = index.run_metrics(tmp_path, path.name, split=split, name=name)
        assert s["count"] == len(rows)
        assert list(zip(s["step"], s["value"])) == expected_summary(rows, 1024)
    assert summary[("test", "rho")]["count"] == 3  # 0.1, then the resumed attempt's 0.2, 0.9


def test_test_and_val_rows_in_log_order(tmp_path):
    path = make_run(tmp_path)
    w = EventWriter(path / "events.jsonl")
    for e in (1, 2):
        w.metric("loss", 1.0, epoch=e, step=e, split="train")
        w.metric("rho", 0.5, epoch=e, step=e, split="val")
        w.metric("rho", 0.4, epoch=e, step=e, split="test")
    w.close()
    index.sync(tmp_path)
    rows = index.run_metrics(tmp_path, path.name, split=("val", "test"))
    assert [(r["epoch"], r["split"]) for r in rows] == [(1, "val"), (1, "test"), (2, "val"),
                                                        (2, "test")]


def test_a_long_log_is_ingested_in_parts_with_the_same_rows(tmp_path, monkeypatch):
    path = long_run(tmp_path / "whole")
    index.sync(tmp_path / "whole")
    whole = index.run_metrics(tmp_path / "whole", path.name)
    assert len(whole) == 602
    monkeypatch.setattr(index, "INGEST_BYTES", 1000)  # a few lines a part, cut mid-line
    reads = []
    real = index.tail
    monkeypatch.setattr(index, "tail", lambda *a: reads.append(a) or real(*a))
    index.rebuild(tmp_path / "whole")
    assert len(reads) > 50  # about 60 KB of log, 1000 bytes at a time
    parts = index.run_metrics(tmp_path / "whole", path.name)
    assert [(r["offset"], r["value"]) for r in parts] == [(r["offset"], r["value"]) for r in whole]
    assert index.get_run(tmp_path / "whole", path.name)["offset"] == \
        (path / "events.jsonl").stat().st_size
