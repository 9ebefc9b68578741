"""Submitting, stopping and resuming runs: what the app and the CLI call (``aqa.jobs.submit``...).

A submission is one ``SubmitRequest``. ``submit`` checks it (config, data root, GPUs, Slurm
options) before anything is written, creates the run directory, then hands the run to its
executor: the local queue (``aqa.jobs.queue``; the run starts at once when its GPUs or CPU slot
are free, else the workspace's scheduler starts it later) or Slurm (``aqa.jobs.slurm``).
``stop`` and ``resume`` dispatch on the executor recorded in ``job.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from aqa.config import build_run_config, to_dict
from aqa.errors import JobError, RunError
from aqa.jobs import queue, scheduler
from aqa.jobs import slurm as slurm_executor
from aqa.jobs.gpus import check_request, parse_gpus, probe_gpus
from aqa.jobs.process import terminate_group
from aqa.registry import DATASETS
from aqa.runs import store
from aqa.runs.status import run_status

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class SubmitRequest:
    """One run to create and start."""
    method: str                              # a name in the METHODS registry
    dataset: str                             # a name in the DATASETS registry
    data_root: str | None = None             # shorthand for the override data.root=...
    overrides: list[str] = field(default_factory=list)  # "key=value" config overrides
    values: dict | None = None               # a resolved config to start from (rerun), before overrides
    gpus: str | None = None                  # "2" = any two, "0,2" = those, None = CPU
    nproc: int | None = None                 # processes (default: one per GPU, else 1)
    executor: str = "local"                  # local (this machine's queue) or slurm
    slurm: dict | None = None                # Slurm options over the workspace's [slurm] defaults
    argv: list[str] | None = None            # the command line that asked, kept in run.json
    submission_id: str | None = None         # a second submit with this id returns the first run
    start_now: bool = True                   # False: only create the run directory
    queue_run: bool = True                   # False: raise instead of waiting for resources


def submit(runs_dir: str | os.PathLike, request: SubmitRequest | str,
           dataset: str | None = None, **options) -> Path:
    """Create the run of ``request`` and start (or queue) its job; returns the run directory.

    Config errors (unknown key, bad value, missing data root, GPUs this machine does not have,
    bad Slurm options) raise before anything is written. ``submission_id`` makes a submit
    idempotent: a second submit with the same id (a form sent twice) returns the run of the
    first instead of starting a copy.

    ``submit(runs_dir, method, dataset, **options)`` is the same as
    ``submit(runs_dir, SubmitRequest(method, dataset, **options))``.
    """
    if not isinstance(request, SubmitRequest):
        request = SubmitRequest(request, dataset, **options)
    elif dataset is not None or options:
        raise TypeError("submit(runs_dir, SubmitRequest) takes no other arguments")
    runs_dir = store.resolve_runs_dir(runs_dir)
    overrides = list(request.overrides or [])
    if request.data_root:
        overrides.append(f"data.root={request.data_root}")
    cfg = build_run_config(request.method, request.dataset, overrides=overrides,
                           values=request.values)
    entry = DATASETS.get(request.dataset)
    cfg = replace(cfg, data=entry.resolve(cfg.data, runs_dir))
    if getattr(cfg.backbone, "weights", ""):  # a run id/dir -> its checkpoint's absolute path
        from aqa.models.i3d import resolve_weights_ref
        cfg = replace(cfg, backbone=replace(cfg.backbone, weights=resolve_weights_ref(cfg.backbone.weights, runs_dir)))
    executor = request.executor
    if executor not in EXECUTORS:
        raise JobError(f"--executor {executor!r}: expected local or slurm")
    explicit, count = parse_gpus(request.gpus)
    if count and executor == "local":
        check_request((explicit, count), probe_gpus())
    procs = request.nproc or max(1, count)
    if count and procs != count:
        raise JobError(f"--nproc {procs} does not match the {count} GPU(s) asked for; "
                       "one process per GPU")
    resources = {"gpus": explicit or [], "gpu_count": count,
                 "request": request.gpus if count else None, "nproc": procs}
    slurm_opts = None
    if executor == "slurm":
        slurm_opts = slurm_executor.options(runs_dir, request.slurm or {}, gpus=count)
    # "enqueue": a scheduler pass queues this run even if this process dies before it does
    extra = {"resources": resources, "submission_id": request.submission_id, "executor": executor,
             "enqueue": bool(request.start_now and executor == "local")}
    if request.submission_id:
        claimed = store.claim_submission(runs_dir, request.submission_id)
        if claimed is not None:
            return claimed
    path = None
    try:
        path = store.create_run(runs_dir, to_dict(cfg), argv=request.argv, extra=extra)
    finally:
        if request.submission_id:
            store.record_submission(runs_dir, request.submission_id, path)
    if not request.start_now:
        return path
    if executor == "slurm":
        slurm_executor.submit_run(path, slurm_opts)
        return path
    start(path, queue_run=request.queue_run)
    return path


def rerun(run_path: str | os.PathLike, overrides: list[str] | None = None, *,
          gpus: str | None = None, nproc: int | None = None, argv: list[str] | None = None,
          executor: str | None = None, slurm: dict | None = None,
          submission_id: str | None = None) -> Path:
    """Queue a copy of a run's spec with ``overrides`` (the app's "duplicate with changes").

    Resources and executor default to the original's; returns the new run's directory."""
    run_path = Path(run_path)
    spec = store.read_run(run_path)
    if spec.get("kind") == "features":
        raise RunError(f"run {run_path.name} is a feature extraction; run `python -m aqa features "
                       "extract` again (or `runs resume` it: finished files are kept)")
    res = spec.get("resources") or {}
    if gpus is None:
        gpus = res.get("request") or (",".join(map(str, res["gpus"])) if res.get("gpus") else None)
        nproc = nproc or res.get("nproc")
    job = store.read_job(run_path) or {}
    executor = executor or spec.get("executor") or job.get("executor") or "local"
    if executor == "slurm" and not slurm:
        slurm = job.get("slurm_options")
    return submit(run_path.parent, SubmitRequest(
        spec["method"], spec["dataset"], overrides=list(overrides or []), values=spec["config"],
        gpus=gpus, nproc=nproc, argv=argv, executor=executor, slurm=slurm,
        submission_id=submission_id))


def start(run_path: str | os.PathLike, queue_run: bool = True) -> dict:
    """Queue a local run (new, or a resume) and start it now if its resources are free.

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


def stop(run_path: str | os.PathLike, grace_s: float = 30.0, wait: bool = True) -> str:
    """SIGTERM the run's process group; SIGKILL after ``grace_s``. Returns the status after.

    A queued run is taken out of the queue (status ``stopped``); a Slurm run gets ``scancel``.
    """
    run_path = Path(run_path)
    job = store.read_job(run_path)
    if job and job.get("executor") == "slurm":
        return slurm_executor.stop(run_path, grace_s=grace_s, wait=wait)
    if job and job.get("state") == "queued":
        queue.cancel(run_path)
        return run_status(run_path)
    if job and terminate_group(job, grace_s=grace_s, wait=wait) and not wait:
        return "stopping"
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
        return slurm_executor.submit_run(run_path, job.get("slurm_options") or {})
    return start(run_path)
