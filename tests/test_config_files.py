"""Config files: `aqa config show RUN` writes TOML/YAML/JSON that `aqa train --config` reads
back to the same resolved config; --set applies on top; a file's unknown key is --set's error."""

from __future__ import annotations

import json

import pytest

from aqa import cli
from aqa.config import build_run_config, to_dict
from aqa.config_files import dump_config, read_config_file
from aqa.errors import ConfigError
from aqa.jobs import control
from aqa.official_config import import_config
from aqa.registry import METHODS
from aqa.runs.store import read_run


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_every_methods_default_config_survives_a_file(tmp_path, fmt):
    for method in METHODS.names():
        cfg = build_run_config(method, "synthetic")
        path = tmp_path / f"{method}.{fmt}"
        path.write_text(dump_config(to_dict(cfg), fmt, header=["a comment"]))
        assert read_config_file(path) == json.loads(json.dumps(to_dict(cfg)))
        assert build_run_config(method, "synthetic", values=read_config_file(path)) == cfg


def test_toml_writes_floats_strings_and_lists_exactly(tmp_path):
    values = {"method": "regression", "train": {"epochs": 3, "val_fraction": 1e-05},
              "optim": {"lr": 3.0, "name": 'a "quoted"\\ name\n'}, "model": {"xs": [0, 10]},
              "data": {"root": "/tmp/é"}}
    text = dump_config(values, "toml")
    assert "epochs = 3\n" in text and "lr = 3.0\n" in text and "[model]\nxs = [0, 10]\n" in text
    (tmp_path / "c.toml").write_text(text)
    assert read_config_file(tmp_path / "c.toml") == values
    with pytest.raises(ConfigError, match="null, which TOML cannot write: use --format yaml"):
        dump_config({"train": {"x": None}}, "toml")


@pytest.fixture
def no_start(monkeypatch, runs_dir):
    """`aqa train` creates its run without starting it (the config is what is tested here)."""
    monkeypatch.setattr(control, "start", lambda *a, **k: {"state": "queued"})
    return runs_dir


def _train(capsys, *argv) -> dict:
    assert cli.main(["train", *argv, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    return read_run(control.store.resolve_runs_dir(None) / run_id)


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_config_show_then_train_config_gives_the_same_resolved_config(no_start, capsys, tmp_path, fmt):
    first = _train(capsys, "--method", "core", "--dataset", "synthetic", "--set", "train.epochs=3",
                   "--set", "optim.lr=0.0003", "--set", "model.clip_starts=[0,8]")
    assert cli.main(["config", "show", first["id"][-12:], "--format", fmt]) == 0
    path = tmp_path / f"run.{fmt}"
    path.write_text(capsys.readouterr().out)
    second = _train(capsys, "--config", str(path))
    assert second["id"] != first["id"]
    assert second["config"] == first["config"]
    assert second["config"]["model"]["clip_starts"] == [0, 8]


def test_set_applies_on_top_of_the_file(no_start, capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('method = "regression"\ndataset = "synthetic"\n[train]\nepochs = 4\n'
                    'batch_size = 2\n[optim]\nlr = 0.01\n')
    run = _train(capsys, "--config", str(path), "--set", "train.epochs=7")
    assert run["method"] == "regression"
    assert (run["config"]["train"]["epochs"], run["config"]["train"]["batch_size"]) == (7, 2)
    assert run["config"]["optim"]["lr"] == 0.01


def test_a_files_unknown_key_is_sets_error_naming_the_file(no_start, capsys, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: regression\ndataset: synthetic\ntrain:\n  epochz: 3\n")
    assert cli.main(["train", "--config", str(path)]) == 2
    from_file = capsys.readouterr().err
    assert cli.main(["train", "--method", "regression", "--dataset", "synthetic",
                     "--set", "train.epochz=3"]) == 2
    from_set = capsys.readouterr().err
    assert from_set.startswith("error: unknown config key 'train.epochz'; valid keys here: epochs")
    assert from_file == from_set.replace("error: ", f"error: {path}: ")
    assert list(no_start.iterdir()) == []  # nothing was created


def test_file_errors_say_what_to_do(no_start, capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('method = "core"\n')
    assert cli.main(["train", "--config", str(path), "--method", "tpt", "--dataset", "synthetic"]) == 2
    assert "--method tpt but" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(path)]) == 2
    assert "give --dataset or a 'dataset' key in" in capsys.readouterr().err
    path.write_text("method = [")
    assert cli.main(["train", "--config", str(path)]) == 2
    assert f"{path} is not valid TOML" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "run.ini")]) == 2
    assert "ends in .toml, .yaml, .yml or .json" in capsys.readouterr().err


def test_pretrain_takes_its_method_from_the_file(no_start, capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('method = "regression"\ndataset = "synthetic"\n')
    assert cli.main(["pretrain", "--config", str(path)]) == 2
    assert "'regression' is not a pretext task" in capsys.readouterr().err


def test_import_config_writes_a_file_train_config_reads(tmp_path, capsys):
    out = tmp_path / "tpt.toml"
    assert cli.main(["import-config", "tpt", "-o", str(out), "--", "--epoch_num=250"]) == 0
    text = out.read_text()
    assert text.startswith("# tpt options as this project's config; run it: aqa train --config")
    values = read_config_file(out)
    assert (values["method"], values["train"]["epochs"]) == ("tpt", 250)
    result = import_config("tpt", None, ["--epoch_num=250"])
    expected = build_run_config("tpt", result["dataset"], overrides=result["overrides"])
    assert build_run_config("tpt", values["dataset"], values=values) == expected
