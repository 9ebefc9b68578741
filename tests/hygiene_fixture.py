"""Small run directories for the run-hygiene tests: a config with hyperparameters, test metrics
and a final status written by hand (no model, no torch), optionally a live job (this process)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from aqa.runs import status, store
from aqa.runs.events import EVENTS_FILE, EventWriter


def seed(runs_dir: Path, method: str = "core", lr: float = 1e-4, rho: float = 0.9,
         batch_size: int = 4, backbone: str = "i3d", running: bool = False) -> Path:
    """A finished run (``running=True``: one whose job is this live process) with test rho and
    l2 at two epochs (the best rho is ``rho``)."""
    config = {"method": method, "dataset": "mtl_aqa", "optim": {"lr": lr, "name": "adam"},
              "train": {"batch_size": batch_size, "epochs": 2, "amp": False},
              "model": {"backbone": backbone, "dropout": 0.5}}
    path = store.create_run(runs_dir, config)
    ev = EventWriter(path / EVENTS_FILE)
    ev.emit("start", epochs=2, total_steps=4)
    ev.emit("status", status="running")
    for epoch, (r, l2) in enumerate(((rho - 0.1, 9.0), (rho, 7.0)), start=1):
        ev.metric("rho", r, epoch=epoch, step=2 * epoch, split="test")
        ev.metric("l2", l2, epoch=epoch, step=2 * epoch, split="test")
    if not running:
        ev.emit("status", status="finished", epoch=2, step=4)
    ev.close()
    if running:
        pid = os.getpid()
        store.write_job(path, {"executor": "local", "pid": pid, "pgid": pid,
                               "start_time": status.process_start_time(pid),
                               "host": socket.gethostname(), "gpus": [], "nproc": 1,
                               "started": time.time() - 5, "state": "started", "attempts": []})
    return path
