"""Plugins: a package installed with an `aqa.methods` entry point adds a method that `aqa
methods` lists and `aqa train` trains (the training process loads it too); a plugin that fails
to load is an error naming it, never skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FAST, ROOT, SMALL_CLIPS

PYPROJECT = """
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "aqa-toy"
version = "0.1"

[project.entry-points."aqa.methods"]
toy = "aqa_toy"

[project.entry-points."aqa.backbones"]
{backbones}

[tool.setuptools]
py-modules = ["aqa_toy"]
"""

# The regression pattern (aqa/models/regression.py), in a module outside this repository.
TOY = '''
"""toy: backbone -> linear head, from a plugin package."""
from dataclasses import dataclass

from torch import nn
from torch.nn import functional as F

from aqa.models.base import Method
from aqa.registry import BACKBONES, METHODS


@dataclass
class ToyConfig:
    score_scale: float = 100.0  # training targets are score / score_scale


@METHODS.register("toy")
class Toy(Method):
    name = "toy"
    config_cls = ToyConfig
    description = "a plugin's method: backbone + linear head"

    def build_model(self):
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        return nn.ModuleDict({"backbone": backbone, "head": nn.Linear(backbone.out_dim, 1)})

    def _score(self, model, video):
        return model["head"](model["backbone"](video)).squeeze(-1)  # (B,)

    def losses(self, model, batch):
        target = batch["score"].float() / self.cfg.model.score_scale
        return {"loss": F.mse_loss(self._score(model, batch["video"]).float(), target)}

    def predict(self, model, batch):
        return self._score(model, batch["video"]).float() * self.cfg.model.score_scale
'''


def _install(tmp_path: Path, backbones: str = "") -> Path:
    """`pip install --target` of the plugin package: the directory to put on PYTHONPATH."""
    src, target = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT.format(backbones=backbones))
    (src / "aqa_toy.py").write_text(textwrap.dedent(TOY))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def _aqa(site: Path, runs_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "AQA_RUNS_DIR": str(runs_dir)}
    return subprocess.run([sys.executable, "-m", "aqa", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_plugins_method_is_listed_and_trains(tmp_path, synthetic_root):
    site, runs = _install(tmp_path), tmp_path / "runs"
    info = json.loads(_aqa(site, runs, "methods", "--json").stdout)
    toy = next(m for m in info["methods"] if m["name"] == "toy")
    assert toy["description"] == "a plugin's method: backbone + linear head"
    assert info["plugins"] == [{"group": "aqa.methods", "name": "toy", "value": "aqa_toy",
                                "distribution": "aqa-toy", "version": "0.1"}]
    assert "plugin toy (aqa.methods) from aqa-toy 0.1" in _aqa(site, runs, "methods").stdout
    sets = [a for o in FAST + ["train.epochs=1", f"data.root={synthetic_root}",
                               f"data.num_clips={SMALL_CLIPS}"] for a in ("--set", o)]
    res = _aqa(site, runs, "train", "--method", "toy", "--dataset", "synthetic", *sets, "--follow")
    assert res.returncode == 0, res.stdout + res.stderr
    (run,) = [p for p in runs.iterdir() if p.name.endswith("-toy-synthetic")]
    show = json.loads(_aqa(site, runs, "runs", "show", run.name, "--json").stdout)
    assert show["run"]["status"] == "finished" and show["run"]["epoch"] == 1
    assert (run / "checkpoints" / "best.pt").is_file()


def test_a_plugin_that_fails_to_load_is_an_error_naming_it(tmp_path):
    site = _install(tmp_path, backbones='broken = "aqa_toy_missing_module"')
    res = _aqa(site, tmp_path / "runs", "methods")
    assert res.returncode == 2
    assert res.stderr.startswith("error: plugin 'broken' (aqa.backbones = 'aqa_toy_missing_module', "
                                 "from aqa-toy 0.1) failed to load: ModuleNotFoundError")
    assert "pip uninstall aqa-toy" in res.stderr and res.stderr.count("\n") == 1


def test_a_plugin_registering_a_builtin_name_is_an_error(tmp_path):
    site = _install(tmp_path, backbones='clash = "aqa_toy:clash"')
    with open(site / "aqa_toy.py", "a") as f:
        f.write("\n\ndef clash():\n    BACKBONES.register('tiny3d')(object())\n")
    res = _aqa(site, tmp_path / "runs", "methods")
    assert res.returncode == 2
    assert "plugin 'clash'" in res.stderr and "backbone 'tiny3d' is registered twice" in res.stderr


LAUNCH_FORM = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=90)
at.run()
at.switch_page("app_pages/launch.py")
at.run()
method = at.selectbox(key="method")
print(json.dumps({"options": method.options, "exceptions": [e.value for e in at.exception]}))
"""


def test_a_plugins_method_is_in_the_launch_form(tmp_path):
    site, runs = _install(tmp_path), tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "AQA_RUNS_DIR": str(runs)}
    res = subprocess.run([sys.executable, "-c", LAUNCH_FORM, str(ROOT / "app.py")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    form = json.loads(res.stdout.strip().splitlines()[-1])
    assert form["exceptions"] == []
    assert "toy — a plugin's method: backbone + linear head" in form["options"]
