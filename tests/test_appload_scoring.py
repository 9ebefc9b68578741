"""The app's model cache under several sessions: one load and one copy per checkpoint file."""

from __future__ import annotations

import os
import threading
import time
import types

import pytest

from ui import scoring


@pytest.fixture
def loads(monkeypatch):
    """Checkpoint loads, counted; each takes a moment so that concurrent callers overlap."""
    from aqa.scoring import Scorer

    calls: list[str] = []

    def fake(path, device="cpu"):
        calls.append(path)
        time.sleep(0.3)
        return types.SimpleNamespace(load_s=0.3)

    monkeypatch.setattr(Scorer, "from_checkpoint", staticmethod(fake))
    monkeypatch.setattr(scoring, "_models", type(scoring._models)())
    monkeypatch.setattr(scoring, "_loading", {})
    return calls


def checkpoint(tmp_path, name="best.pt", data=b"weights"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_sessions_asking_at_once_share_one_load(tmp_path, loads):
    path = checkpoint(tmp_path)
    got, start = [], threading.Barrier(5)

    def session():
        start.wait()
        got.append(scoring.scorer(path))

    threads = [threading.Thread(target=session) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(got) == 5 and all(m is got[0] for m in got)


def test_a_rewritten_checkpoint_replaces_its_copy_and_the_cache_is_bounded(tmp_path, loads):
    path = checkpoint(tmp_path)
    first = scoring.scorer(path)
    assert scoring.scorer(path) is first and len(loads) == 1
    path.write_bytes(b"better weights")  # best.pt after a better epoch
    t = time.time() + 5
    os.utime(path, (t, t))
    second = scoring.scorer(path)
    assert second is not first and len(loads) == 2
    assert list(scoring.loaded_models()) == [str(path.resolve())]  # one copy of best.pt

    others = [checkpoint(tmp_path, f"epoch_{i}.pt") for i in range(scoring.MAX_MODELS)]
    for p in others:
        scoring.scorer(p)
    held = scoring.loaded_models()
    assert len(held) == scoring.MAX_MODELS and str(path.resolve()) not in held  # oldest dropped
    assert set(scoring._loading) == set(held)  # no load lock left behind for a dropped model


def test_a_checkpoints_dataset_comes_from_its_own_runs_row(tmp_path):
    from aqa.runs import index, store

    runs_dir = tmp_path / "runs"
    config = {"method": "usdl", "dataset": "aqa7", "data": {"class_name": "diving"}}
    run = store.create_run(runs_dir, config)
    other = store.create_run(runs_dir, {"method": "core", "dataset": "mtl_aqa"})
    index.sync(runs_dir)
    ckpt = run / "checkpoints" / "best.pt"
    assert scoring.checkpoint_dataset(runs_dir, str(ckpt)) == ("aqa7", "diving")
    assert scoring.checkpoint_dataset(runs_dir, str(other / "checkpoints" / "last.pt")) == (
        "mtl_aqa", None)
    assert scoring.checkpoint_dataset(runs_dir, str(tmp_path / "elsewhere.pt")) == ("", None)
    assert scoring.checkpoint_dataset(runs_dir, str(runs_dir / "no-such-run" / "x.pt")) == ("", None)
    # a run folder that is a link to another disk: the index holds the link's target
    moved = store.create_run(tmp_path / "disk2", {"method": "tpt", "dataset": "finediving"})
    (runs_dir / moved.name).symlink_to(moved)
    index.sync(runs_dir)
    for held in (runs_dir / moved.name / "checkpoints" / "best.pt", moved / "checkpoints" / "best.pt"):
        assert scoring.checkpoint_dataset(runs_dir, str(held)) == ("finediving", None)
