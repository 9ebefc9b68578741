"""The README's "Python API" section, run as written: its code blocks, in order, in one
namespace, in a fresh folder (as a notebook would)."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import ROOT


def readme_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.slow
def test_the_readme_python_api_runs(tmp_path, monkeypatch, synthetic_root, capsys):
    blocks = readme_blocks("Python API")
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AQA_RUNS_DIR", raising=False)
    shutil.copy(next(synthetic_root.glob("**/*.mp4")), tmp_path / "clip.mp4")
    ns: dict = {}
    exec(compile(blocks[0], "README: submit", "exec"), ns)
    assert ns["read_status"](ns["run"]).status == "finished"
    assert ns["run"].parent == tmp_path / "runs"
    exec(compile(blocks[1], "README: frames", "exec"), ns)
    assert list(ns["runs"]["id"]) == [ns["run"].name]
    assert list(ns["runs"]["status"]) == ["finished"]
    assert {("test", "rho"), ("train", "epoch_loss")} <= set(ns["metrics"][["split", "name"]].itertuples(index=False))
    exec(compile(blocks[2], "README: score", "exec"), ns)
    assert isinstance(ns["result"].score, float) and ns["result"].frames_used == 8
    assert "from 8 frames" in capsys.readouterr().out
