import json
import os
import subprocess
import sys
import time

from aqa.runs import index, status, store
from aqa.runs.events import EventWriter


def make_run(runs_dir, method="regression", dataset="synthetic", epochs=3):
    cfg = {"method": method, "dataset": dataset, "train": {"epochs": epochs, "best_metric": "rho"}}
    return store.create_run(runs_dir, cfg)


def write_epochs(path, rhos, start_step=0, resumed=None):
    w = EventWriter(path / "events.jsonl")
    w.emit("start", epochs=len(rhos), total_steps=10 * len(rhos),
           resumed_step=resumed[0] if resumed else None,
           resumed_epoch=resumed[1] if resumed else None)
    for i, rho in enumerate(rhos, start=1 + (resumed[1] if resumed else 0)):
        step = start_step + 10 * i
        w.metric("loss", 1.0 / i, epoch=i, step=step - 5, split="train")
        w.metric("rho", rho, epoch=i, step=step, split="test")
    w.close()


def metric_rows(runs_dir, run_id):
    return [(r["epoch"], r["name"], r["value"]) for r in index.run_metrics(runs_dir, run_id)]


def test_ingest_is_idempotent_and_rebuild_gives_the_same_rows(tmp_path):
    path = make_run(tmp_path)
    write_epochs(path, [0.1, 0.5, 0.3])
    store.write_job(path, {"pid": 0, "state": "started", "started": 0})
    index.sync(tmp_path)
    first = metric_rows(tmp_path, path.name)
    index.sync(tmp_path)
    assert metric_rows(tmp_path, path.name) == first
    assert len(first) == 6
    index.rebuild(tmp_path)
    assert metric_rows(tmp_path, path.name) == first
    row = index.get_run(tmp_path, path.name)
    assert (row["best_value"], row["best_epoch"], row["best_rho"]) == (0.5, 2, 0.5)


def test_ingest_reads_only_new_bytes(tmp_path):
    path = make_run(tmp_path)
    w = EventWriter(path / "events.jsonl")
    for i in range(100):
        w.metric("loss", i, epoch=1, step=i, split="train")
    w.sync()
    assert index.sync(tmp_path)["events"] == 100
    size = (path / "events.jsonl").stat().st_size
    assert index.get_run(tmp_path, path.name)["offset"] == size
    w.metric("loss", 100, epoch=1, step=100, split="train")
    w.sync()
    assert index.sync(tmp_path)["events"] == 1
    assert index.sync(tmp_path)["events"] == 0
    w.close()
    assert len(index.run_metrics(tmp_path, path.name)) == 101
    assert [r["value"] for r in index.run_metrics(tmp_path, path.name, after_offset=size - 1)] \
        == [100.0]


def test_torn_line_is_ingested_once_complete(tmp_path):
    path = make_run(tmp_path)
    (path / "events.jsonl").write_text('{"t":1,"type":"metric","epoch":1,"step":1,'
                                       '"split":"test","name":"rho","val')
    index.sync(tmp_path)
    assert index.run_metrics(tmp_path, path.name) == []
    with open(path / "events.jsonl", "a") as f:
        f.write('ue":0.25}\n')
    index.sync(tmp_path)
    assert metric_rows(tmp_path, path.name) == [(1, "rho", 0.25)]


def test_resume_supersedes_the_lost_epochs(tmp_path):
    path = make_run(tmp_path, epochs=3)
    write_epochs(path, [0.1, 0.2])            # epochs 1 and 2 logged, checkpoint only after 1
    write_epochs(path, [0.4, 0.6], resumed=(10, 1))  # resumed at step 10 (epoch 1): redo 2, 3
    index.sync(tmp_path)
    rho = [(e, v) for e, n, v in metric_rows(tmp_path, path.name) if n == "rho"]
    assert rho == [(1, 0.1), (2, 0.4), (3, 0.6)]
    index.rebuild(tmp_path)
    assert [(e, v) for e, n, v in metric_rows(tmp_path, path.name) if n == "rho"] == rho


def test_a_follower_starts_over_when_a_resume_supersedes_what_it_read(tmp_path):
    path = make_run(tmp_path, epochs=3)
    write_epochs(path, [0.1, 0.2])
    first = index.follow_run(tmp_path, path.name, path)
    assert first.restart and [r["value"] for r in first.metrics if r["name"] == "rho"] == [0.1, 0.2]
    assert first.row["id"] == path.name
    again = index.follow_run(tmp_path, path.name, path, first.cursor)
    assert (again.metrics, again.restart, again.cursor) == ([], False, first.cursor)
    write_epochs(path, [0.4, 0.6], resumed=(10, 1))
    resumed = index.follow_run(tmp_path, path.name, path, again.cursor)
    assert resumed.restart
    assert [r["value"] for r in resumed.metrics if r["name"] == "rho"] == [0.1, 0.4, 0.6]


def test_the_index_and_effective_metrics_keep_the_same_rows(tmp_path):
    from aqa.runs.events import effective_metrics, read_events

    path = make_run(tmp_path, epochs=3)
    write_epochs(path, [0.1, 0.2, 0.3])
    write_epochs(path, [0.4, 0.6], resumed=(10, 1))
    index.sync(tmp_path)
    kept = [(m["epoch"], m["name"], m["value"])
            for m in effective_metrics(read_events(path / "events.jsonl"))]
    assert metric_rows(tmp_path, path.name) == kept


def test_status_table():
    job = {"pid": 1, "state": "started", "started": 100.0}
    assert status.derive_status(None, None, False) == "queued"
    assert status.derive_status(None, {"state": "queued"}, False) == "queued"
    assert status.derive_status("running", job, True) == "running"
    assert status.derive_status("running", job, False) == "crashed"
    assert status.derive_status(None, job, False) == "crashed"
    assert status.derive_status("finished", job, False, 200.0) == "finished"
    assert status.derive_status("stopped", job, False, 50.0) == "stopped"
    assert status.derive_status("stopped", job, True, 50.0) == "running"  # resumed attempt
    assert status.derive_status("failed", job, None, 200.0) == "failed"
    assert status.derive_status("running", job, None) == "running"  # another host: unknown


def test_zombie_counts_as_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = status.process_start_time(proc.pid)
    deadline = time.time() + 10
    while status.process_state(proc.pid) != "Z" and time.time() < deadline:
        time.sleep(0.02)
    assert status.process_state(proc.pid) == "Z"  # exited, not yet reaped
    assert not status.process_alive(proc.pid, start)
    proc.wait()


def test_recycled_pid_is_told_apart_by_start_time():
    me = os.getpid()
    start = status.process_start_time(me)
    assert status.process_alive(me, start)
    assert not status.process_alive(me, start - 1)  # same pid, another process's start time
    assert not status.process_alive(None, None)


def test_status_in_index_follows_liveness(tmp_path):
    path = make_run(tmp_path)
    w = EventWriter(path / "events.jsonl")
    w.emit("start")
    w.emit("status", status="running")
    w.close()
    me = os.getpid()
    store.write_job(path, {"pid": me, "start_time": status.process_start_time(me),
                           "state": "started", "started": time.time(), "host": os.uname().nodename})
    index.sync(tmp_path)
    assert index.get_run(tmp_path, path.name)["status"] == "running"
    store.write_job(path, {"pid": me, "start_time": 1, "state": "started", "started": time.time(),
                           "host": os.uname().nodename})
    index.sync(tmp_path)
    assert index.get_run(tmp_path, path.name)["status"] == "crashed"


def test_rows_of_deleted_runs_are_dropped(tmp_path):
    path = make_run(tmp_path)
    write_epochs(path, [0.3])
    index.sync(tmp_path)
    (path / "run.json").unlink()
    assert index.sync(tmp_path)["removed"] == 1
    assert index.get_run(tmp_path, path.name) is None


def test_migrations_are_recorded_once(tmp_path):
    with index.open_index(tmp_path) as db:
        versions = [r[0] for r in db.execute("SELECT version FROM _migrations")]
    with index.open_index(tmp_path) as db:
        again = [r[0] for r in db.execute("SELECT version FROM _migrations")]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == again == [v for v, _ in index.MIGRATIONS]
    assert mode == "wal"


def test_config_is_stored_as_json(tmp_path):
    path = make_run(tmp_path)
    index.sync(tmp_path)
    assert json.loads(index.get_run(tmp_path, path.name)["config"])["method"] == "regression"
