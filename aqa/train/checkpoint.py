"""Checkpoints: one plain dict of tensors and Python values, readable with weights_only=True.

    format      "aqa-studio/1"
    method, config (the resolved RunConfig as a dict)
    model, optimizer, scheduler, scaler   state dicts
    epoch       epochs completed;  batch_in_epoch: batches of the next epoch already done (a stop
                mid-epoch), 0 at an epoch end
    step        optimizer-loop steps (batches) done in all
    best        {"metric", "value", "epoch"} and the best epoch's metrics
    metrics     the evaluation metrics of this checkpoint's epoch
    rng         python, numpy, torch (and cuda) RNG states

Writes go to a temp file in the same folder, are fsynced, then renamed over the target, so a crash
or a full disk leaves the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import errno
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.errors import CheckpointError

FORMAT = "aqa-studio/1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> int:
    """Atomically write ``state`` to ``path``; returns the file size in bytes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise CheckpointError(f"disk full while writing {path}: free space on "
                                  f"{path.parent} and resume the run; the previous checkpoint "
                                  "is intact") from exc
        raise CheckpointError(f"could not write checkpoint {path}: {exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint of this project (weights_only: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}); "
            "if it comes from an official implementation, import it with "
            "`python -m aqa import-checkpoint`") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an AQA Studio checkpoint (no format tag {FORMAT!r}); "
                              "import official checkpoints with `python -m aqa import-checkpoint`")
    return state


def read_backbone_state(path: str | os.PathLike, what: str = "backbone weights") -> dict:
    """The backbone's state dict from an AQA Studio checkpoint (its ``backbone.*`` keys) or from
    a plain state dict saved with torch.save (weights_only: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {what} {path}: {str(exc)[:300]}") from exc
    if isinstance(state, dict) and state.get("format") == FORMAT:
        state = {k[len("backbone."):]: v for k, v in state["model"].items()
                 if k.startswith("backbone.")}
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_backbone_weights(backbone: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load backbone weights (see ``read_backbone_state``) strictly, with a message naming the
    mismatched keys."""
    state = read_backbone_state(path)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit this backbone: {str(exc)[:500]}") from exc


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                       "cached_gaussian": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
