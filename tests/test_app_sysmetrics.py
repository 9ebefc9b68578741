"""AppTest of one run's page: the System section charts the trainer's system metrics, the
artifacts download, and the predictions charts follow the chosen file (a confusion matrix when
the file has predicted classes)."""

from __future__ import annotations

from aqa.evaluate import write_predictions
from aqa.runs import index, store
from aqa.runs.events import EVENTS_FILE, EventWriter
from test_app import app, no_exception, seed_run

SYS = {"lr": 1e-3, "lr/backbone": 1e-4, "step_time": 0.5, "data_wait": 0.05, "cpu_rss": 900.0}


def _charts(at) -> dict[str, object]:
    return {c.proto.id: c for c in at.get("plotly_chart")}


def _titles(at) -> list[str]:
    import json
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_run_page_shows_system_section_downloads_and_prediction_charts(runs_dir, synthetic_root):
    path = seed_run(runs_dir, "finished", synthetic_root)
    ev = EventWriter(path / EVENTS_FILE)  # appends, as a resumed trainer would
    for step in (10, 20):
        for name, value in SYS.items():
            ev.metric(name, value * step / 10, epoch=step // 10, step=step, split="sys")
    ev.close()
    write_predictions(path / "predictions" / "test_eval_best.csv",
                      [("a", 0.0, 0.2), ("b", 1.0, 0.8), ("c", 1.0, 0.3)], [0, 1, 0])
    index.sync(runs_dir)

    at = app("runs", run=path.name)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any(m.value == "**System**" for m in at.markdown)
    titles = _titles(at)
    assert "learning rate" in titles and "CPU RSS of the training process (MiB)" in titles
    assert any(t.startswith("seconds per step") for t in titles)
    assert not any(t.startswith("GPU") for t in titles)  # none logged: no empty GPU chart
    assert not any("(sys," in t for t in titles)  # not drawn again among the losses
    downloads = at.get("download_button")
    labels = [d.proto.label for d in downloads]
    for name in (store.RUN_JSON, store.JOB_JSON, store.STDOUT_LOG, EVENTS_FILE, "Download CSV"):
        assert name in labels, labels
    assert not next(d for d in downloads if d.proto.label == store.RUN_JSON).proto.disabled
    # the best epoch's test predictions are chosen: scatter and error histogram, no confusion
    pick = at.selectbox(key="pred_pick")
    assert pick.value == "test_epoch_002.csv"
    assert pick.options == ["test, epoch 1", "test, epoch 2 (best)", "test, aqa eval of best.pt"]
    assert any(t.startswith("predicted vs true · test, epoch 2") for t in _titles(at))
    assert any(t.startswith("error · test, epoch 2") for t in _titles(at))
    assert not any(t.startswith("confusion") for t in _titles(at))
    # a file with predicted classes: the confusion matrix too
    at = pick.set_value("test_eval_best.csv").run()
    no_exception(at)
    assert "confusion matrix · test, aqa eval of best.pt" in _titles(at)


def test_run_without_system_metrics_says_why_and_a_large_log_gives_its_tail(
        runs_dir, synthetic_root, monkeypatch):
    from ui import runview
    path = seed_run(runs_dir, "crashed", synthetic_root)
    (path / store.JOB_JSON).unlink()  # an old or odd run: no job.json to download
    index.sync(runs_dir)
    monkeypatch.setattr(runview, "FULL_DOWNLOAD_BYTES", 40)  # stdout.log is 51 bytes
    at = app("runs", run=path.name)
    no_exception(at)
    assert any("No system metrics" in c.value for c in at.caption)
    labels = {d.proto.label: d.proto for d in at.get("download_button")}
    assert labels[store.JOB_JSON].disabled
    assert "stdout.log (last 40 bytes)" in labels
    note = next(c.value for c in at.caption if c.value.startswith("stdout.log is 51 bytes"))
    assert str(path / store.STDOUT_LOG) in note
