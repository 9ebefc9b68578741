"""The local executor: a run's job is a subprocess in its own session.

``submit`` writes ``run.json`` and queues the run (``aqa.jobs.queue``); when its GPUs or CPU slot
are free it starts at once, else the workspace's scheduler starts it later. The job is
``python -m aqa.train RUN_DIR`` (an argv list, never a shell string) with stdout and stderr
appended to ``stdout.log``. More than one process (GPUs, or ``nproc`` on the CPU with gloo) goes
through torchrun in standalone mode: its rendezvous store binds port 0, so the kernel hands out
a free port and two runs can never both ask for 29500. ``job.json`` records pid, process group,
the pid's start time (to tell a recycled pid apart), host, GPUs and every attempt.
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
from dataclasses import replace
from pathlib import Path

import aqa
from aqa.config import build_run_config, to_dict
from aqa.errors import JobError, RunError
from aqa.jobs import queue, scheduler
from aqa.jobs.gpus import check_request, parse_gpus, probe_gpus
from aqa.registry import DATASETS
from aqa.runs import store
from aqa.runs.events import EVENTS_FILE, read_events

PROJECT_ROOT = Path(aqa.__file__).resolve().parents[1]


def submit(runs_dir: str | os.PathLike, method: str, dataset: str, *,
           data_root: str | None = None, overrides: list[str] | None = None,
           gpus: str | None = None, nproc: int | None = None, argv: list[str] | None = None,
           start_now: bool = True, submission_id: str | None = None,
           executor: str = "local", queue_run: bool = True, slurm: dict | None = None,
           values: dict | None = None) -> Path:
    """Create a run for ``method`` on ``dataset`` and queue its job; returns the run directory.

    Config errors (unknown key, bad value, missing data root, GPUs this machine does not have)
    raise before anything is written. ``submission_id`` makes a submit idempotent: a second
    submit with the same id (a form sent twice) returns the run of the first instead of
    starting a copy. The run starts at once when its resources are free (``queue_run=False``:
    raise instead of waiting); ``start_now=False`` only creates it. ``executor="slurm"`` submits
    it to Slurm instead, with ``slurm`` options over the workspace's ``[slurm]`` defaults.
    ``values`` is a resolved config to start from (``rerun``), before ``overrides``.
    """
    runs_dir = store.resolve_runs_dir(runs_dir)
    overrides = list(overrides or [])
    if data_root:
        overrides.append(f"data.root={data_root}")
    cfg = build_run_config(method, dataset, overrides=overrides, values=values)
    entry = DATASETS.get(dataset)
    cfg = replace(cfg, data=entry.resolve(cfg.data, runs_dir))
    if getattr(cfg.backbone, "weights", ""):  # a run id/dir -> its checkpoint's absolute path
        from aqa.models.i3d import resolve_weights_ref
        cfg = replace(cfg, backbone=replace(cfg.backbone, weights=resolve_weights_ref(cfg.backbone.weights, runs_dir)))
    if executor not in ("local", "slurm"):
        raise JobError(f"--executor {executor!r}: expected local or slurm")
    explicit, count = parse_gpus(gpus)
    if count and executor == "local":
        check_request((explicit, count), probe_gpus())
    procs = nproc or max(1, count)
    if count and procs != count:
        raise JobError(f"--nproc {procs} does not match the {count} GPU(s) asked for; "
                       "one process per GPU")
    resources = {"gpus": explicit or [], "gpu_count": count, "request": gpus if count else None,
                 "nproc": procs}
    slurm_opts = None
    if executor == "slurm":
        from aqa.jobs import slurm as slurm_executor
        slurm_opts = slurm_executor.options(runs_dir, slurm or {}, gpus=count)
    # "enqueue": a scheduler pass queues this run even if this process dies before it does
    extra = {"resources": resources, "submission_id": submission_id, "executor": executor,
             "enqueue": bool(start_now and executor == "local")}
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
    if not start_now:
        return path
    if executor == "slurm":
        slurm_executor.submit_run(path, slurm_opts)
        return path
    start(path, queue_run=queue_run)
    return path


def rerun(run_path: str | os.PathLike, overrides: list[str] | None = None, *,
          gpus: str | None = None, nproc: int | None = None, argv: list[str] | None = None,
          executor: str | None = None, slurm: dict | None = None,
          submission_id: str | None = None) -> Path:
    """Queue a copy of a run's spec with ``overrides`` (the app's "duplicate with changes").

    Resources and executor default to the original's; returns the new run's directory."""
    run_path = Path(run_path)
    spec = store.read_run(run_path)
    res = spec.get("resources") or {}
    if gpus is None:
        gpus = res.get("request") or (",".join(map(str, res["gpus"])) if res.get("gpus") else None)
        nproc = nproc or res.get("nproc")
    job = store.read_job(run_path) or {}
    executor = executor or spec.get("executor") or job.get("executor") or "local"
    if executor == "slurm" and not slurm:
        slurm = job.get("slurm_options")
    return submit(run_path.parent, spec["method"], spec["dataset"], overrides=overrides,
                  values=spec["config"], gpus=gpus, nproc=nproc, argv=argv, executor=executor,
                  slurm=slurm, submission_id=submission_id)


def train_argv(run_path: Path, nproc: int) -> list[str]:
    if nproc <= 1:
        return [sys.executable, "-m", "aqa.train", str(run_path)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc-per-node={nproc}", "-m", "aqa.train", str(run_path)]


_train_argv = train_argv


def _env(gpus: list[int]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)  # "" hides every GPU
    return env


def start(run_path: str | os.PathLike, queue_run: bool = True) -> dict:
    """Queue a run (new, or a resume) and start it now if its resources are free.

    Returns its job record: ``state`` "started" with a pid, or "queued" (the workspace's
    scheduler starts it later). ``queue_run=False`` raises instead of leaving it queued.
    """
    run_path = Path(run_path).resolve()
    queue.enqueue(run_path)
    result = queue.schedule_once(run_path.parent)
    job = store.read_job(run_path)
    if job.get("state") == "queued":
        if not queue_run:
            queue.cancel(run_path)
            raise JobError(f"no free {'GPU' if job.get('requested_gpus') else 'CPU slot'} for "
                           f"run {run_path.name} now; submit it queued, or see "
                           "`python -m aqa queue ls`")
    if result["waiting"] and not queue.is_paused(run_path.parent):
        scheduler.ensure(run_path.parent)
    return job


def spawn(run_path: Path, job: dict) -> dict:
    """Start the process of a claimed run (``job`` has state "starting", gpus and nproc).

    The process inherits an exclusive flock on ``<run>/.job.lock``: while it lives, no second
    process of the run can be spawned. Records it in ``job.json`` and returns the record."""
    run_path = Path(run_path).resolve()
    gpus, nproc = job.get("gpus") or [], job.get("nproc") or 1
    argv = train_argv(run_path, nproc)
    lock = os.open(run_path / queue.JOB_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
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
                                        env=_env(gpus), start_new_session=True,
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
    start_time = store.process_start_time(pid) if pid else None
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


def stop(run_path: str | os.PathLike, grace_s: float = 30.0, wait: bool = True) -> str:
    """SIGTERM the run's process group; SIGKILL after ``grace_s``. Returns the status after.

    A queued run is taken out of the queue (status ``stopped``); a Slurm run gets ``scancel``.
    """
    run_path = Path(run_path)
    job = store.read_job(run_path)
    if job and job.get("executor") == "slurm":
        from aqa.jobs import slurm
        return slurm.stop(run_path, grace_s=grace_s, wait=wait)
    if job and job.get("state") == "queued":
        queue.cancel(run_path)
        return run_status(run_path)
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
    """Start a stopped, crashed or failed run again; training continues from ``last.pt``.

    A local run goes through the queue (it starts at once if its resources are free); a Slurm
    run is submitted to Slurm again."""
    run_path = Path(run_path)
    status = run_status(run_path)
    if status in ("running", "queued"):
        raise RunError(f"run {run_path.name} is {status}; only stopped, crashed or failed runs "
                       "can be resumed")
    if status == "finished":
        raise RunError(f"run {run_path.name} has finished; start a new run to train further")
    job = store.read_job(run_path) or {}
    if job.get("executor") == "slurm":
        from aqa.jobs import slurm
        return slurm.submit_run(run_path, job.get("slurm_options") or {})
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
