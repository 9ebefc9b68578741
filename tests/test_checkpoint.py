import errno
import random

import numpy as np
import pytest
import torch

from aqa.errors import CheckpointError
from aqa.train import checkpoint as C


def test_save_is_atomic_and_loads_with_weights_only(tmp_path):
    path = tmp_path / "last.pt"
    size = C.save_checkpoint(path, {"epoch": 3, "model": {"w": torch.ones(2)}, "best": {"v": 0.5}})
    assert size == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    state = torch.load(path, weights_only=True)
    assert state["format"] == C.FORMAT and state["epoch"] == 3
    assert C.load_checkpoint(path)["best"] == {"v": 0.5}


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    C.save_checkpoint(path, {"epoch": 1})

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="disk full.*previous checkpoint is intact"):
        C.save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert C.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    C.save_checkpoint(tmp_path / "c.pt", {"rng": C.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    C.set_rng_state(C.load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_backbone_weights_from_a_run_checkpoint(tmp_path):
    from aqa.registry import BACKBONES
    entry = BACKBONES.get("tiny3d")
    source = entry.build(entry.config_cls())
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    state["head.1.weight"] = torch.zeros(1, 64)
    C.save_checkpoint(tmp_path / "best.pt", {"model": state})
    target = entry.build(entry.config_cls())
    C.load_backbone_weights(target, tmp_path / "best.pt")
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)
    small = entry.build(entry.config_cls(width=8))
    with pytest.raises(CheckpointError, match="does not fit this backbone"):
        C.load_backbone_weights(small, tmp_path / "best.pt")
