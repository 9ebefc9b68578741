"""The command line, run as a user would: `python -m aqa ...` in a subprocess."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, wait_for

COMMANDS = [["demo"], ["train"], ["runs"], ["runs", "ls"], ["runs", "show"], ["runs", "stop"],
            ["runs", "resume"], ["runs", "logs"], ["index"], ["methods"], ["score"], ["eval"],
            ["pretrain"], ["export-backbone"], ["plan"], ["features", "extract"],
            ["config"], ["config", "show"], ["app"]]


def aqa(*args, runs_dir=None, check=True):
    argv = [sys.executable, "-m", "aqa", *args]
    if runs_dir is not None:
        argv += ["--runs-dir", str(runs_dir)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help(cmd):
    out = aqa(*cmd, "--help").stdout
    assert out.startswith("usage: python -m aqa")
    touches_workspace = cmd[0] in ("demo", "train", "pretrain", "export-backbone", "index", "eval", "app") or len(cmd) == 2
    assert ("--runs-dir" in out) == touches_workspace


def test_every_family_module_wires_its_commands():
    """Each command of the parser is served by one family module of aqa/cli/, and only one."""
    import argparse

    from aqa import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    served = [name for family in cli.FAMILIES for name in family.COMMANDS]
    assert sorted(served) == sorted(sub.choices) == sorted(set(served))
    assert cli.COMMANDS["plan"].__module__ == "aqa.cli.methods"


def test_methods_json_lists_the_registries():
    info = json.loads(aqa("methods", "--json").stdout)
    assert "regression" in [m["name"] for m in info["methods"]]
    assert "tiny3d" in [b["name"] for b in info["backbones"]]
    assert {"folder", "synthetic"} <= {d["name"] for d in info["datasets"]}


def test_errors_are_one_line_and_exit_2(tmp_path):
    proc = aqa("train", "--method", "regression", "--dataset", "synthetic", "--set",
               "train.epoch=3", runs_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: unknown config key")
    proc = aqa("train", "--method", "regression", "--dataset", "folder", runs_dir=tmp_path,
               check=False)
    assert proc.returncode == 2 and "--data-root" in proc.stderr
    proc = aqa("runs", "show", "nope", runs_dir=tmp_path, check=False)
    assert proc.returncode == 2 and "no run 'nope'" in proc.stderr
    assert not any(p.name.startswith("2") for p in tmp_path.iterdir())  # nothing was created


def test_empty_workspace(tmp_path):
    assert json.loads(aqa("runs", "ls", "--json", runs_dir=tmp_path).stdout) == []
    assert "no runs" in aqa("runs", "ls", runs_dir=tmp_path).stdout
    result = json.loads(aqa("index", "--rebuild", "--json", runs_dir=tmp_path).stdout)
    assert result["runs"] == 0


@pytest.mark.slow
def test_train_then_manage_from_the_cli(tmp_path, fast_overrides):
    sets = [a for o in fast_overrides + ["train.epochs=40"] for a in ("--set", o)]
    started = json.loads(aqa("train", "--method", "regression", "--dataset", "synthetic", *sets,
                             "--json", runs_dir=tmp_path).stdout)
    run_id = started["run_id"]
    wait_for(lambda: json.loads(aqa("runs", "show", run_id, "--json", runs_dir=tmp_path).stdout)
             ["run"]["epoch"] >= 1, what="first epoch")
    listed = json.loads(aqa("runs", "ls", "--json", runs_dir=tmp_path).stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "running")]
    stopped = json.loads(aqa("runs", "stop", run_id, "--json", runs_dir=tmp_path).stdout)
    assert stopped == {"run_id": run_id, "status": "stopped"}
    assert "run stopped" in aqa("runs", "logs", run_id, "-n", "5", runs_dir=tmp_path).stdout
    resumed = json.loads(aqa("runs", "resume", run_id, "--json", runs_dir=tmp_path).stdout)
    assert resumed["pid"] > 0
    from aqa.runs.events import read_events
    log = tmp_path / run_id / "events.jsonl"
    wait_for(lambda: sum(e["type"] == "start" for e in read_events(log)) == 2, what="resumed")
    aqa("runs", "stop", run_id, runs_dir=tmp_path)
    show = json.loads(aqa("runs", "show", run_id, "--json", runs_dir=tmp_path).stdout)
    assert show["run"]["status"] == "stopped" and show["run"]["attempts"] == 2
    assert show["spec"]["config"]["train"]["epochs"] == 40
    assert len(show["job"]["attempts"]) == 2
    rebuilt = json.loads(aqa("index", "--rebuild", "--json", runs_dir=tmp_path).stdout)
    assert rebuilt["runs"] == 1 and rebuilt["events"] > 0
