"""The local executor: a run's job is a subprocess in its own session.

``submit`` writes ``run.json`` and starts ``python -m aqa.train RUN_DIR`` (an argv list, never
a shell string) with stdout and stderr appended to ``stdout.log``. More than one process (GPUs,
or ``nproc`` on the CPU with gloo) goes through torchrun in standalone mode: its rendezvous
store binds port 0, so the kernel hands out a free port and two runs can never both ask for
29500. ``job.json`` records pid, process group, the pid's start time (to tell a recycled pid
apart), host, GPUs and every attempt.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import aqa
from aqa.config import build_run_config, to_dict
from aqa.errors import JobError, RunError
from aqa.jobs.gpus import choose_gpus, probe_gpus
from aqa.registry import DATASETS
from aqa.runs import store
from aqa.runs.events import EVENTS_FILE, read_events

PROJECT_ROOT = Path(aqa.__file__).resolve().parents[1]


def submit(runs_dir: str | os.PathLike, method: str, dataset: str, *,
           data_root: str | None = None, overrides: list[str] | None = None,
           gpus: str | None = None, nproc: int | None = None, argv: list[str] | None = None,
           start_now: bool = True, submission_id: str | None = None) -> Path:
    """Create a run for ``method`` on ``dataset`` and start its job; returns the run directory.

    Config errors (unknown key, bad value, missing data root) raise before anything is written.
    ``submission_id`` makes a submit idempotent: a second submit with the same id (a form
    sent twice) returns the run of the first instead of starting a copy.
    """
    runs_dir = store.resolve_runs_dir(runs_dir)
    overrides = list(overrides or [])
    if data_root:
        overrides.append(f"data.root={data_root}")
    cfg = build_run_config(method, dataset, overrides=overrides)
    entry = DATASETS.get(dataset)
    cfg = replace(cfg, data=entry.resolve(cfg.data, runs_dir))
    gpu_list = choose_gpus(gpus, probe_gpus()) if gpus else []
    procs = nproc or max(1, len(gpu_list))
    if gpu_list and procs != len(gpu_list):
        raise JobError(f"--nproc {procs} does not match the {len(gpu_list)} GPU(s) asked for; "
                       "one process per GPU")
    resources = {"gpus": gpu_list, "nproc": procs}
    extra = {"resources": resources, "submission_id": submission_id}
    if submission_id:
        claimed = store.claim_submission(runs_dir, submission_id)
        if claimed is not None:
            return claimed
    path = None
    try:
        path = store.create_run(runs_dir, to_dict(cfg), argv=argv, extra=extra)
    finally:
        if submission_id:
            store.record_submission(runs_dir, submission_id, path)
    if start_now:
        start(path)
    return path


def _train_argv(run_path: Path, nproc: int) -> list[str]:
    if nproc <= 1:
        return [sys.executable, "-m", "aqa.train", str(run_path)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc-per-node={nproc}", "-m", "aqa.train", str(run_path)]


def _env(gpus: list[int]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)  # "" hides every GPU
    return env


def start(run_path: str | os.PathLike) -> dict:
    """Start (or restart, for a resume) the job of a run; returns the new job record."""
    run_path = Path(run_path).resolve()
    spec = store.read_run(run_path)
    job = store.read_job(run_path) or {}
    if store.process_alive(job.get("pid"), job.get("start_time")):
        raise JobError(f"run {spec['id']} is already running (pid {job['pid']})")
    resources = spec.get("resources", {"gpus": [], "nproc": 1})
    argv = _train_argv(run_path, resources["nproc"])
    with open(run_path / store.STDOUT_LOG, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} attempt "
                  f"{len(job.get('attempts', [])) + 1}: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=str(run_path),
                                    env=_env(resources["gpus"]), start_new_session=True)
        except OSError as exc:
            raise JobError(f"could not start {argv[0]}: {exc}") from exc
    # Reap the child when it exits, so a long-lived parent (the app) collects no zombies.
    threading.Thread(target=proc.wait, daemon=True).start()
    now = time.time()
    attempt = {"pid": proc.pid, "start_time": store.process_start_time(proc.pid), "started": now}
    job = {"executor": "local", "pid": proc.pid, "pgid": proc.pid,
           "start_time": attempt["start_time"], "host": socket.gethostname(),
           "gpus": resources["gpus"], "nproc": resources["nproc"], "argv": argv,
           "started": now, "state": "started",
           "attempts": job.get("attempts", []) + [attempt]}
    store.write_job(run_path, job)
    return job


def stop(run_path: str | os.PathLike, grace_s: float = 30.0, wait: bool = True) -> str:
    """SIGTERM the run's process group; SIGKILL after ``grace_s``. Returns the status after."""
    run_path = Path(run_path)
    job = store.read_job(run_path)
    if job and job.get("state") == "queued":
        raise JobError("the run is queued, not running; nothing to stop")
    if not job or not store.process_alive(job.get("pid"), job.get("start_time")):
        return run_status(run_path)
    try:
        os.killpg(job["pgid"], signal.SIGTERM)
    except ProcessLookupError:
        return run_status(run_path)
    if not wait:
        return "stopping"
    deadline = time.time() + grace_s
    while time.time() < deadline:
        if not store.process_alive(job["pid"], job.get("start_time")):
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(job["pgid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        while store.process_alive(job["pid"], job.get("start_time")):
            time.sleep(0.05)
    return run_status(run_path)


def resume(run_path: str | os.PathLike) -> dict:
    """Start a stopped, crashed or failed run again; training continues from ``last.pt``."""
    run_path = Path(run_path)
    status = run_status(run_path)
    if status in ("running", "queued"):
        raise RunError(f"run {run_path.name} is {status}; only stopped, crashed or failed runs "
                       "can be resumed")
    if status == "finished":
        raise RunError(f"run {run_path.name} has finished; start a new run to train further")
    return start(run_path)


def run_status(run_path: str | os.PathLike) -> str:
    """The derived status of one run, straight from its directory (no index needed)."""
    run_path = Path(run_path)
    events = read_events(run_path / EVENTS_FILE)
    last = next((e for e in reversed(events) if e.get("type") == "status"), None)
    job = store.read_job(run_path)
    age = time.time() - events[-1]["t"] if events else None
    alive = store.job_alive(job, age)
    return store.derive_status(last and last.get("status"), job, alive, last["t"] if last else 0.0)
