"""The Slurm executor: the same run, submitted with ``submitit`` to a Slurm cluster.

The run directory must be on a filesystem the nodes share. ``submit_run`` sbatches a
``aqa.jobs.launch.TrainJob`` (submitit's files go to ``<run>/slurm/``), which runs the same argv
as the local executor (``python -m aqa.train RUN_DIR``, or torchrun for several processes) as a
child.

State is never taken from submitit (``job.result()`` can block forever, and ``job.state``
needs ``sacct``): ``aqa.runs.slurm_state`` polls ``squeue`` itself and ``aqa.runs.status``
merges it with the run's events. Stop is ``scancel``: Slurm sends SIGTERM to the job step, the
trainer writes ``last.pt`` and ends ``stopped`` (within the cluster's ``KillWait``). On a
timeout signal (USR2) or preemption the job is requeued and resumes from ``last.pt``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from aqa.errors import JobError
from aqa.jobs import workspace
from aqa.jobs.process import PROJECT_ROOT
from aqa.runs import slurm_state as squeue
from aqa.runs import store
from aqa.runs.slurm_state import slurm_state  # noqa: F401  (the old import path)
from aqa.runs.status import run_status

SLURM_ACTIVE = squeue.ACTIVE


def __getattr__(name: str):
    if name == "TrainJob":  # submitit pickles of jobs sbatched before it moved to aqa.jobs.launch
        from aqa.jobs.launch import TrainJob
        return TrainJob
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available() -> bool:
    """True when this machine can submit to Slurm (``sbatch`` on the PATH): the launch form
    offers the executor then."""
    return shutil.which("sbatch") is not None


def parse_time(text) -> int | None:
    """Slurm time ("90", "2:00:00", "1-12:00:00", "30:00") to whole minutes."""
    if text in (None, ""):
        return None
    text = str(text).strip()
    try:
        days, _, rest = text.rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        elif len(parts) == 3:
            h, m, s = parts
        else:
            raise ValueError
        return int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)
    except ValueError:
        raise JobError(f"--time {text!r}: expected minutes, MM:SS, H:MM:SS or D-H:MM:SS") from None


def options(runs_dir: Path, given: dict, gpus: int = 0) -> dict:
    """The Slurm options of a submit: ``given`` over ``[slurm]`` in workspace.toml."""
    opts = {k: v for k, v in workspace.load(runs_dir)["slurm"].items() if v is not None}
    opts.update({k: v for k, v in given.items() if v is not None})
    if gpus and not opts.get("gpus_per_node"):
        opts["gpus_per_node"] = gpus
    parse_time(opts.get("time"))  # fail before anything is written
    try:
        nodes = int(opts.get("nodes", 1))
    except (TypeError, ValueError):
        nodes = 0
    if nodes < 1:
        raise JobError(f"--nodes {opts.get('nodes')!r}: expected a whole number, 1 or more")
    return opts


def submit_run(run_path: Path, opts: dict) -> dict:
    """sbatch the run's job; write ``job.json``. A rejected submit raises with sbatch's words
    and, for a new run, removes the run directory (nothing half-made is left)."""
    import submitit

    from aqa.jobs.launch import TrainJob  # not at import: `python -m aqa.jobs.launch` runs it

    run_path = Path(run_path).resolve()
    spec = store.read_run(run_path)
    nproc = int(opts.get("gpus_per_node") or (spec.get("resources") or {}).get("nproc") or 1)
    nnodes = int(opts.get("nodes") or 1)
    old = store.read_job(run_path) or {}
    minutes = parse_time(opts.get("time"))
    params = {"job_name": f"aqa-{spec['id']}", "nodes": nnodes,
              "ntasks_per_node": 1, "cpus_per_task": opts.get("cpus_per_task") or nproc,
              "gpus_per_node": opts.get("gpus_per_node"), "partition": opts.get("partition"),
              "account": opts.get("account"), "qos": opts.get("qos"), "mem": opts.get("mem"),
              "constraint": opts.get("constraint"), "stderr_to_stdout": True,
              "setup": [f"export PYTHONPATH={PROJECT_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]}
    if minutes:
        params["time"] = minutes
    executor = submitit.SlurmExecutor(folder=str(run_path / "slurm"), max_num_timeout=3)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    try:
        job = executor.submit(TrainJob(str(run_path), nproc, nnodes))
    except Exception as exc:  # submitit's FailedJobError carries sbatch's stderr
        if not old and not (run_path / "events.jsonl").exists():
            shutil.rmtree(run_path, ignore_errors=True)
        msg = " ".join(str(exc).split())
        raise JobError(f"Slurm refused the job: {msg[-500:]}") from None
    now = time.time()
    record = {"executor": "slurm", "state": "submitted", "slurm_job_id": str(job.job_id),
              "submitted_at": now, "started": now, "slurm_options": opts,
              "slurm_folder": str(run_path / "slurm"), "host": None, "pid": None,
              "gpus": [], "nproc": nproc, "nnodes": nnodes,
              "attempts": old.get("attempts", []) + [{"slurm_job_id": str(job.job_id),
                                                      "submitted": now}]}
    store.write_job(run_path, record)
    squeue.invalidate()
    return record


def stop(run_path: Path, grace_s: float = 30.0, wait: bool = True) -> str:
    """``scancel`` the run's job; wait (up to ``grace_s`` + a margin) for Slurm to end it."""
    job = store.read_job(run_path) or {}
    job_id = job.get("slurm_job_id")
    exe = shutil.which("scancel")
    if not exe:
        raise JobError("scancel is not on the PATH: stop Slurm runs from a machine of the cluster")
    out = subprocess.run([exe, str(job_id)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise JobError(f"scancel {job_id}: {out.stderr.strip()}")
    squeue.invalidate()
    if not wait:
        return "stopping"
    deadline = time.time() + grace_s + 10
    while time.time() < deadline:
        squeue.invalidate()
        if squeue.slurm_state(job_id) not in squeue.ACTIVE + ("PENDING",):
            break
        time.sleep(0.25)
    return run_status(run_path)
