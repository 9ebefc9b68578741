import json

from aqa.runs.events import EventWriter, effective_metrics, read_events, tail


def test_writer_and_reader(tmp_path):
    w = EventWriter(tmp_path / "events.jsonl")
    w.emit("start", epochs=2)
    w.metric("rho", 0.5, epoch=1, step=10, split="test")
    w.emit("status", status="finished")
    w.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["type"] for e in events] == ["start", "metric", "status"]
    assert events[1] == {**events[1], "name": "rho", "value": 0.5, "epoch": 1, "step": 10,
                         "split": "test"}
    assert all(isinstance(e["t"], float) for e in events)


def test_nan_is_written_as_null(tmp_path):
    w = EventWriter(tmp_path / "e.jsonl")
    w.metric("rho", float("nan"), epoch=1, step=1, split="test")
    w.close()
    assert read_events(tmp_path / "e.jsonl")[0]["value"] is None


def test_torn_last_line_is_not_consumed(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"t":1,"type":"start"}\n{"t":2,"type":"metric","na')
    events, offset = tail(path, 0)
    assert [e["type"] for _, e in events] == ["start"]
    assert offset == len('{"t":1,"type":"start"}\n')
    # the line completes later: the next tail reads it whole
    with open(path, "a") as f:
        f.write('me":"rho","value":1}\n')
    events, offset2 = tail(path, offset)
    assert [(o, e["name"]) for o, e in events] == [(offset, "rho")]
    assert offset2 == path.stat().st_size


def test_writer_after_a_crash_ends_the_torn_line(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"t":1,"type":"start"}\n{"t":2,"type":"met')
    w = EventWriter(path)
    w.emit("status", status="running")
    w.close()
    assert [e["type"] for e in read_events(path)] == ["start", "status"]


def test_tail_reads_only_new_bytes(tmp_path):
    path = tmp_path / "e.jsonl"
    w = EventWriter(path)
    for i in range(5):
        w.metric("loss", i, epoch=1, step=i, split="train")
    w.sync()
    events, offset = tail(path, 0)
    assert len(events) == 5
    w.metric("loss", 9, epoch=1, step=9, split="train")
    w.close()
    new, _ = tail(path, offset)
    assert [e["value"] for _, e in new] == [9.0]
    assert tail(path, path.stat().st_size) == ([], path.stat().st_size)


def test_missing_file_is_empty(tmp_path):
    assert tail(tmp_path / "none.jsonl", 0) == ([], 0)


def test_effective_metrics_drop_what_a_resume_redoes():
    events = [
        {"type": "start"},
        {"type": "metric", "name": "loss", "step": 5, "epoch": 1},
        {"type": "metric", "name": "rho", "step": 10, "epoch": 1},   # checkpoint at step 10
        {"type": "metric", "name": "loss", "step": 15, "epoch": 2},  # lost in the crash
        {"type": "start", "resumed_step": 10, "resumed_epoch": 1},
        {"type": "metric", "name": "loss", "step": 15, "epoch": 2},
        {"type": "metric", "name": "rho", "step": 20, "epoch": 2},
    ]
    kept = [(m["name"], m["step"]) for m in effective_metrics(events)]
    assert kept == [("loss", 5), ("rho", 10), ("loss", 15), ("rho", 20)]


def test_lines_are_compact_json(tmp_path):
    w = EventWriter(tmp_path / "e.jsonl")
    w.emit("heartbeat", step=1)
    w.close()
    line = (tmp_path / "e.jsonl").read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line)["type"] == "heartbeat"
