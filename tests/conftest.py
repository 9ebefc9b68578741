"""Shared fixtures: a temporary workspace, and a small synthetic dataset rendered once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Settings that make a real training subprocess take seconds on two CPU cores.
FAST = ["train.epochs=2", "train.batch_size=4", "data.num_frames=8", "data.frame_size=32",
        "train.log_every=2", "train.heartbeat_s=1"]
SMALL_CLIPS = 24


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("AQA_RUNS_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """24 rendered synthetic dives (18 train / 6 test), shared by every test of the session."""
    from aqa.data.synthetic import render_dataset

    root = tmp_path_factory.mktemp("synthetic")
    render_dataset(root, num_clips=SMALL_CLIPS, seed=0)
    return root


@pytest.fixture
def fast_overrides(synthetic_root) -> list[str]:
    return FAST + [f"data.root={synthetic_root}", f"data.num_clips={SMALL_CLIPS}"]


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def shared_clip() -> Path:
    path = SHARED_DATA / "clips" / "mtlaqa_diving_sample_500x280.mp4"
    if not path.exists():
        pytest.skip(f"the real dive clip is not at {path} (../shared/data is absent)")
    return path


os.environ.setdefault("PYTHONUNBUFFERED", "1")


def finish_task(at, key: str, timeout: float = 120.0):
    """AppTest: wait for the session's background task ``key`` (``ui.tasks``) to end, then run
    the script again so its result is drawn (a browser's polling fragment does this itself)."""
    task = at.session_state[f"_task_{key}"] if f"_task_{key}" in at.session_state else None
    if task is not None:
        wait_for(lambda: task.future.done(), timeout=timeout, what=f"the {key} task")
    return at.run()
