"""The Slurm executor: the same run, submitted with ``submitit`` to a Slurm cluster.

The run directory must be on a filesystem the nodes share. ``submit_run`` sbatches a
``TrainJob`` (submitit's files go to ``<run>/slurm/``), which runs the same argv as the local
executor (``python -m aqa.train RUN_DIR``, or torchrun for several processes) as a child.

State is never taken from submitit (``job.result()`` can block forever, and ``job.state``
needs ``sacct``): ``slurm_state`` polls ``squeue`` itself and ``aqa.runs.store.derive_status``
merges it with the run's events. Stop is ``scancel``: Slurm sends SIGTERM to the job step, the
trainer writes ``last.pt`` and ends ``stopped`` (within the cluster's ``KillWait``). On a
timeout signal (USR2) or preemption the job is requeued and resumes from ``last.pt``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import aqa
from aqa.errors import JobError
from aqa.jobs import workspace
from aqa.runs import store

SLURM_ACTIVE = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "CONFIGURING")
PROJECT_ROOT = Path(aqa.__file__).resolve().parents[1]
_CACHE: dict = {"t": 0.0, "states": None}
CACHE_S = 1.5


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


class TrainJob:
    """What the Slurm job executes (pickled by submitit): the trainer as a child process.

    One node: ``python -m aqa.train RUN_DIR`` (torchrun ``--standalone`` for several
    processes). Several nodes: one task a node, each a ``aqa.jobs.launch.NodeRun`` (torchrun
    joined to a c10d rendezvous that node 0 hosts on a port the kernel picked)."""

    def __init__(self, run_dir: str, nproc: int, nnodes: int = 1):
        self.run_dir, self.nproc, self.nnodes = run_dir, nproc, nnodes
        self.node = None

    def __setstate__(self, state):  # pickles of submitit jobs made before nnodes existed
        self.__dict__.update({"nnodes": 1, "node": None, **state})

    def __getstate__(self):
        return {"run_dir": self.run_dir, "nproc": self.nproc, "nnodes": self.nnodes}

    def __call__(self) -> int:
        from aqa.jobs.launch import Child, NodeRun
        from aqa.jobs.local import _env, train_argv

        env = _env([])
        env.pop("CUDA_VISIBLE_DEVICES")  # Slurm sets it for the GPUs it gave the job
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        # USR2 is submitit's timeout signal; Slurm sends it to every process of the step.
        # The trainer ignores it and is stopped by checkpoint() below with SIGTERM instead.
        ignore_usr2 = lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # noqa: E731
        with open(Path(self.run_dir) / store.STDOUT_LOG, "ab") as log:
            if self.nnodes > 1:
                self.node = NodeRun(self.run_dir, self.nproc, self.nnodes)
                self.node.start(env, log, preexec_fn=ignore_usr2)
            else:
                argv = train_argv(Path(self.run_dir), self.nproc)
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} slurm job "
                          f"{os.environ.get('SLURM_JOB_ID')} on {os.uname().nodename} "
                          f"(restart {os.environ.get('SLURM_RESTART_COUNT', 0)}): "
                          f"{' '.join(argv)}\n".encode())
                log.flush()
                self.node = Child(subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.run_dir, env=env, preexec_fn=ignore_usr2))
            # Poll, never block in wait(): submitit's USR2 handler runs in this thread and
            # calls checkpoint(), which must be able to see the child end.
            while (code := self.node.wait(0.5)) is None:
                pass
            return code

    def checkpoint(self):
        """Timeout or preemption: let the trainer write last.pt, then requeue this job."""
        import submitit

        if self.node is not None:
            self.node.terminate(grace_s=60)
        return submitit.helpers.DelayedSubmission(TrainJob(self.run_dir, self.nproc,
                                                           self.nnodes))


def submit_run(run_path: Path, opts: dict) -> dict:
    """sbatch the run's job; write ``job.json``. A rejected submit raises with sbatch's words
    and, for a new run, removes the run directory (nothing half-made is left)."""
    import submitit

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
    _CACHE["t"] = 0.0
    return record


def _squeue() -> dict[str, str] | None:
    """{job id: state} of every job squeue knows (finished ones too); None if it cannot tell."""
    if time.time() - _CACHE["t"] < CACHE_S and _CACHE["states"] is not None:
        return _CACHE["states"]
    exe = shutil.which("squeue")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-h", "-t", "all", "-o", "%i %T"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    states = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)
    _CACHE.update(t=time.time(), states={k: v.strip() for k, v in states.items()})
    return _CACHE["states"]


def slurm_state(job_id) -> str | None:
    """Slurm's state of a job (PENDING, RUNNING, COMPLETED, CANCELLED, ...), "GONE" once squeue
    has forgotten it, None when there is no squeue to ask (another machine)."""
    if not job_id:
        return None
    states = _squeue()
    if states is None:
        return None
    return states.get(str(job_id), "GONE")


def stop(run_path: Path, grace_s: float = 30.0, wait: bool = True) -> str:
    """``scancel`` the run's job; wait (up to ``grace_s`` + a margin) for Slurm to end it."""
    from aqa.jobs.local import run_status

    job = store.read_job(run_path) or {}
    job_id = job.get("slurm_job_id")
    exe = shutil.which("scancel")
    if not exe:
        raise JobError("scancel is not on the PATH: stop Slurm runs from a machine of the cluster")
    out = subprocess.run([exe, str(job_id)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise JobError(f"scancel {job_id}: {out.stderr.strip()}")
    _CACHE["t"] = 0.0
    if not wait:
        return "stopping"
    deadline = time.time() + grace_s + 10
    while time.time() < deadline:
        _CACHE["t"] = 0.0
        if slurm_state(job_id) not in SLURM_ACTIVE + ("PENDING",):
            break
        time.sleep(0.25)
    return run_status(run_path)
