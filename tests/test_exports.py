"""aqa export: a run with a resume, read back with TensorBoard's EventAccumulator and MLflow's
client on a local SQLite store; the values and steps are the run's effective metric events."""

import json
import math
import sys

import pytest

from aqa import exports
from aqa.cli import main
from aqa.errors import ExportError
from aqa.runs import store
from aqa.runs.events import EventWriter

CONFIG = {"method": "regression", "dataset": "synthetic",
          "train": {"lr": 0.001, "epochs": 2, "amp": False},
          "data": {"root": None, "mean": [0.4, 0.5]}}

# (tag, step, epoch, value) the export must hold: the first attempt's loss at step 6 and rho at
# step 8 were superseded by the resume from step 4; rl2 was NaN (written as null).
EFFECTIVE = [("train/loss", 2, 1, 3.0), ("train/loss", 4, 1, 2.0), ("test/rho", 4, 1, 0.25),
             ("train/loss", 6, 2, 1.5), ("test/rho", 8, 2, 0.75), ("test/rl2", 8, 2, math.nan)]


@pytest.fixture
def run(runs_dir):
    path = store.create_run(runs_dir, CONFIG)
    w = EventWriter(path / "events.jsonl")
    w.emit("start", resumed_step=None)
    w.metric("loss", 3.0, epoch=1, step=2, split="train")
    w.metric("loss", 2.0, epoch=1, step=4, split="train")
    w.metric("rho", 0.25, epoch=1, step=4, split="test")
    w.emit("checkpoint", path="checkpoints/last.pt", epoch=1, step=4)
    w.metric("loss", 9.0, epoch=2, step=6, split="train")  # superseded
    w.metric("rho", 0.1, epoch=2, step=8, split="test")  # superseded
    w.emit("status", status="stopped", signal="SIGTERM")
    w.emit("start", resumed_step=4, resumed_epoch=1)
    w.metric("loss", 1.5, epoch=2, step=6, split="train")
    w.metric("rho", 0.75, epoch=2, step=8, split="test")
    w.metric("rl2", float("nan"), epoch=2, step=8, split="test")
    w.emit("status", status="finished")
    w.close()
    (path / "checkpoints" / "last.pt").write_bytes(b"\x80checkpoint")
    (path / "checkpoints" / ".last.pt.tmp").write_bytes(b"half")  # a temp file: not exported
    (path / "predictions" / "test_epoch_002.csv").write_text("id,true,pred\na,1.0,0.9\n")
    (path / "stdout.log").write_text("--- attempt 1\n")
    return path


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_metric_points_are_the_effective_events(run):
    got = [(p["tag"], p["step"], p["epoch"], p["value"]) for p in exports.metric_points(run)]
    assert len(got) == len(EFFECTIVE)
    assert all(g[:3] == e[:3] and _same(g[3], e[3]) for g, e in zip(got, EFFECTIVE))
    assert [(p["step"], p["value"]) for p in exports.epoch_points(exports.metric_points(run))] == \
        [(2, 1.0), (4, 1.0), (6, 2.0), (8, 2.0)]


def test_flatten_config():
    assert exports.flatten_config(CONFIG) == {
        "method": "regression", "dataset": "synthetic", "train.lr": 0.001, "train.epochs": 2,
        "train.amp": False, "data.root": "None", "data.mean": "[0.4, 0.5]"}


def test_tensorboard_export_reads_back(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    logdir = tmp_path / "tb"
    [done] = exports.to_tensorboard([run], logdir)
    dest = logdir / run.name
    assert done.where == str(dest) and done.metrics == 6 and done.files == 4
    acc = EventAccumulator(str(dest), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in ("train/loss", "test/rho", "test/rl2"):
        want = [(s, v) for t, s, _, v in EFFECTIVE if t == tag]
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(_same(g, w) for (_, g), (_, w) in zip(got, want))
    assert [(e.step, e.value) for e in acc.Scalars("epoch")] == [(2, 1), (4, 1), (6, 2), (8, 2)]
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hp["train.lr"].number_value == 0.001 and hp["data.mean"].string_value == "[0.4, 0.5]"
    assert acc.Tags()["tensors"] == ["run.json/text_summary"]  # the text plugin
    files = dest / exports.FILES_DIR
    assert (files / "checkpoints" / "last.pt").read_bytes() == b"\x80checkpoint"
    assert sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()) == [
        "checkpoints/last.pt", "predictions/test_epoch_002.csv", "run.json", "stdout.log"]

    with pytest.raises(ExportError, match="already exported.*--replace"):
        exports.to_tensorboard([run], logdir)
    exports.to_tensorboard([run], logdir, replace=True, checkpoints=False)
    acc = EventAccumulator(str(dest), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(acc.Scalars("test/rho")) == 2  # replaced, not appended
    assert not (files / "checkpoints").exists()


def test_mlflow_export_reads_back(run, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [done] = exports.to_mlflow([run], uri, experiment="exp")
    client = MlflowClient(tracking_uri=uri)
    ml = client.get_run(done.where)
    assert ml.info.run_name == run.name and ml.info.status == "FINISHED"
    assert ml.data.tags[exports.RUN_TAG] == run.name
    for tag in ("train/loss", "test/rho", "test/rl2"):
        want = [(s, v) for t, s, _, v in EFFECTIVE if t == tag]
        got = sorted((m.step, m.value) for m in client.get_metric_history(done.where, tag))
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(_same(g, w) for (_, g), (_, w) in zip(got, want))
    epochs = sorted((m.step, m.value) for m in client.get_metric_history(done.where, "epoch"))
    assert epochs == [(2, 1.0), (4, 1.0), (6, 2.0), (8, 2.0)]
    assert ml.data.params["train.lr"] == "0.001" and ml.data.params["data.root"] == "None"
    assert len(ml.data.params) == 7
    assert sorted(f.path for f in client.list_artifacts(done.where)) == [
        "checkpoints", "predictions", "run.json", "stdout.log"]
    local = client.download_artifacts(done.where, "checkpoints/last.pt", str(tmp_path / "dl"))
    assert open(local, "rb").read() == b"\x80checkpoint"
    assert str(tmp_path / "mlartifacts") in client.get_experiment(ml.info.experiment_id) \
        .artifact_location

    with pytest.raises(ExportError, match="already exported.*--replace"):
        exports.to_mlflow([run], uri, experiment="exp")
    [again] = exports.to_mlflow([run], uri, experiment="exp", replace=True)
    assert exports.exported_runs(client, ml.info.experiment_id, run.name) == [again.where]


def test_cli_export_refuses_a_second_time(run, runs_dir, capsys):
    assert main(["export", "tensorboard", run.name[-12:], "--json"]) == 0
    assert (runs_dir / "tensorboard" / run.name / exports.FILES_DIR / "run.json").is_file()
    capsys.readouterr()
    assert main(["export", "tensorboard", run.name]) == 2
    assert "already exported" in capsys.readouterr().err


@pytest.mark.parametrize("target, module", [("mlflow", "mlflow"),
                                            ("tensorboard", "torch.utils.tensorboard")])
def test_cli_says_how_to_install_a_missing_library(run, monkeypatch, capsys, target, module):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` does when it is absent
    assert main(["export", target, run.name]) == 2
    assert "pip install 'aqa-studio[exports]'" in capsys.readouterr().err


def test_cli_mlflow_defaults_to_a_sqlite_store_in_the_workspace(run, runs_dir, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["export", "mlflow", run.name, "--no-checkpoints", "--json"]) == 0
    [done] = json.loads(capsys.readouterr().out)
    client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
    ml = client.get_run(done["where"])
    assert client.get_experiment(ml.info.experiment_id).name == "aqa"
    assert sorted(f.path for f in client.list_artifacts(done["where"])) == [
        "predictions", "run.json", "stdout.log"]
    assert (runs_dir / "mlartifacts").is_dir()
