"""A run's job on this machine: starting its process, finding it again, ending its group.

The job is ``python -m aqa.train RUN_DIR`` (an argv list, never a shell string) in its own
session, with stdout and stderr appended to ``stdout.log``. More than one process (GPUs, or
``nproc`` on the CPU with gloo) goes through torchrun in standalone mode: its rendezvous store
binds port 0, so the kernel hands out a free port and two runs can never both ask for 29500.
``job.json`` records pid, process group, the pid's start time (to tell a recycled pid apart),
host, GPUs and every attempt.

Never twice: the process inherits an exclusive flock on ``<run>/.job.lock`` that lives exactly
as long as it does; ``spawn`` refuses while it is held.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aqa
from aqa.errors import JobError
from aqa.runs import store
from aqa.runs.status import process_alive, process_start_time, process_state

PROJECT_ROOT = Path(aqa.__file__).resolve().parents[1]
JOB_LOCK = ".job.lock"


def train_argv(run_path: Path, nproc: int) -> list[str]:
    """The trainer's argv: ``python -m aqa.train RUN_DIR``, under torchrun for ``nproc`` > 1."""
    if nproc <= 1:
        return [sys.executable, "-m", "aqa.train", str(run_path)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc-per-node={nproc}", "-m", "aqa.train", str(run_path)]


def child_env(gpus: list[int]) -> dict[str, str]:
    """The environment of a job (or scheduler) process: this one's, unbuffered, with the project
    on ``PYTHONPATH`` and only ``gpus`` visible ([] hides every GPU), numbered in PCI bus order
    as nvidia-smi numbers them (``CUDA_DEVICE_ORDER=PCI_BUS_ID``)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)  # "" hides every GPU
    # the indices are nvidia-smi's/NVML's (PCI bus order); CUDA's default order is fastest first
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


def spawn(run_path: Path, job: dict) -> dict:
    """Start the process of a claimed run (``job`` has state "starting", gpus and nproc).

    The process inherits an exclusive flock on ``<run>/.job.lock``: while it lives, no second
    process of the run can be spawned. Records it in ``job.json`` and returns the record."""
    run_path = Path(run_path).resolve()
    gpus, nproc = job.get("gpus") or [], job.get("nproc") or 1
    argv = train_argv(run_path, nproc)
    lock = os.open(run_path / JOB_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError(f"run {run_path.name} already has a live process") from None
        with open(run_path / store.STDOUT_LOG, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} attempt "
                      f"{len(job.get('attempts', [])) + 1}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=str(run_path),
                                        env=child_env(gpus), start_new_session=True,
                                        pass_fds=(lock,))
            except OSError as exc:
                raise JobError(f"could not start {argv[0]}: {exc}") from exc
    finally:
        os.close(lock)  # the child keeps its inherited copy of the lock
    # Reap the child when it exits, so a long-lived parent (the app) collects no zombies.
    threading.Thread(target=proc.wait, daemon=True).start()
    job["argv"] = argv
    return record_started(run_path, job, proc.pid)


def record_started(run_path: Path, job: dict, pid: int | None, recovered: bool = False) -> dict:
    """Write ``job.json`` for a started process (``pid`` None: it ran and is gone already)."""
    now = time.time()
    start_time = process_start_time(pid) if pid else None
    attempt = {"pid": pid, "start_time": start_time, "started": now}
    if recovered:
        attempt["recovered"] = True
    job.pop("error", None)
    job.update({"executor": "local", "pid": pid, "pgid": pid, "start_time": start_time,
                "host": socket.gethostname(), "gpus": job.get("gpus") or [],
                "nproc": job.get("nproc") or 1,
                "argv": job.get("argv") or train_argv(Path(run_path), job.get("nproc") or 1),
                "started": job.get("claimed_at") or now, "state": "started",
                "attempts": job.get("attempts", []) + [attempt]})
    store.write_job(run_path, job)
    return job


def terminate_group(job: dict, grace_s: float = 30.0, wait: bool = True) -> bool:
    """SIGTERM the job's process group; SIGKILL after ``grace_s``. False if it was gone already.

    ``wait=False`` returns right after the SIGTERM."""
    if not process_alive(job.get("pid"), job.get("start_time")):
        return False
    try:
        os.killpg(job["pgid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    if not wait:
        return True
    deadline = time.time() + grace_s
    while time.time() < deadline:
        if not process_alive(job["pid"], job.get("start_time")):
            return True
        time.sleep(0.1)
    try:
        os.killpg(job["pgid"], signal.SIGKILL)
    except ProcessLookupError:
        pass
    while process_alive(job["pid"], job.get("start_time")):
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- finding processes

def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def find_job_process(run_path: Path) -> int | None:
    """The pid of a live ``aqa.train`` process of this run (the session leader when torchrun
    runs several), found by scanning ``/proc/*/cmdline``; None if there is none."""
    target, found = str(Path(run_path).resolve()), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        args = _cmdline(entry.name)
        if "aqa.train" in args and target in args and process_state(int(entry.name)) \
                not in (None, "Z", "X"):
            found.append(int(entry.name))
    leaders = [p for p in found if _pgid(p) == p]
    return (leaders or sorted(found) or [None])[0]


def pids_of_groups(pgids: set[int]) -> set[int]:
    """Every live pid whose process group is one of ``pgids`` (our jobs' processes)."""
    out = set()
    if not pgids:
        return out
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _pgid(int(entry.name)) in pgids:
            out.add(int(entry.name))
    return out


def job_lock_held(run_path: Path) -> bool:
    """True while a process started for this run (it inherited the lock) is alive."""
    fd = os.open(Path(run_path) / JOB_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
