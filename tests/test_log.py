"""The library logs through logging.getLogger("aqa"): silent or redirected as a notebook user
configures it; the CLI and the trainer print its messages on stdout as plain lines."""

from __future__ import annotations

import logging
import subprocess
import sys

import torch

from aqa.models.i3d import I3DConfig, I3DEntry

from conftest import ROOT


def _adapted_weights(tmp_path) -> str:
    """A state dict that carries PECoP adapters (random init), as a file."""
    net = I3DEntry.build(I3DConfig(weights="", adapters=True))
    path = tmp_path / "adapted.pt"
    torch.save(net.state_dict(), path)
    return str(path)


def test_library_messages_are_log_records_not_prints(tmp_path, caplog, capsys, monkeypatch):
    logger = logging.getLogger("aqa")
    monkeypatch.setattr(logger, "handlers", [])  # as in a fresh notebook: nothing configured
    weights = _adapted_weights(tmp_path)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="aqa"):
        assert I3DEntry.build(I3DConfig(weights=weights)).adapters
    (record,) = [r for r in caplog.records if "carries PECoP 3D adapters" in r.getMessage()]
    assert (record.name, record.levelno) == ("aqa.models.i3d", logging.WARNING)
    assert capsys.readouterr().out == ""  # the library prints nothing itself
    caplog.clear()
    monkeypatch.setattr(logger, "level", logging.ERROR)  # a notebook user silencing it
    I3DEntry.build(I3DConfig(weights=weights))
    assert not [r for r in caplog.records if "carries" in r.getMessage()]


def test_cli_and_trainer_print_the_loggers_records_as_plain_stdout_lines():
    code = ("from aqa.log import log_to_stdout; import logging; log_to_stdout(); log_to_stdout();"
            "logging.getLogger('aqa.models.i3d').warning('i3d: a'); "
            "logging.getLogger('aqa.models.pecop').info('pecop: b'); "
            "logging.getLogger('aqa').debug('not shown')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert (res.stdout, res.stderr) == ("i3d: a\npecop: b\n", "")
