"""What a Slurm task executes (``TrainJob``), and one node's share of a multi-node run:
torchrun joined to a c10d rendezvous on node 0.

A Slurm run with ``--nodes N`` (N > 1) is one distributed job: Slurm starts one task a node
(submitit ``nodes=N``, ``tasks_per_node=1``) and each task runs ``NodeRun``, which starts

    python -m torch.distributed.run --nnodes=N --nproc-per-node=G --rdzv-backend=c10d
        --rdzv-endpoint=HOST:PORT --rdzv-id=ID --rdzv-conf=is_host=false,... -m aqa.train RUN_DIR

The rendezvous port is clash-free by construction: the task of node 0 (``SLURM_NODEID`` 0)
creates the c10d rendezvous store itself, a ``TCPStore`` server bound to port 0 (the kernel
picks a free port, and the socket stays bound by this process for the whole attempt, so nothing
else can take it between choosing and using it), then publishes ``HOST:PORT`` in
``<run>/slurm/rendezvous_<job id>_<restart>.json`` (written to a temp file and renamed, so a
reader never sees half of it). Every node's torchrun, node 0's included, joins that store as a
client (``is_host=false``). The other nodes wait for the file of their own job id and restart
count (a requeued job never reads the endpoint of an earlier attempt), up to
``AQA_RDZV_WAIT_S`` seconds (default 300), then fail with a message that says what to check.
torchrun's own bootstrap store for the workers (MASTER_PORT) also binds port 0 (torch shares
the agent's store; no ``get_free_port`` race). Node ranks are assigned by the rendezvous, so
``--node-rank`` is not passed (torchrun ignores it for c10d and warns).

The file name and the host published come from the environment Slurm gives a task:
``SLURM_JOB_ID``, ``SLURM_RESTART_COUNT``, ``SLURM_NODEID``, ``SLURM_NNODES``; the host is
``AQA_RDZV_HOST`` when set (e.g. the address of a fast interface), else this machine's hostname.

``python -m aqa.jobs.launch RUN_DIR --nnodes N --nproc-per-node G`` runs one node's share by
hand (the tests start it twice on one machine as two "nodes").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from aqa.errors import JobError
from aqa.jobs.process import child_env, train_argv
from aqa.runs import store

DEFAULT_WAIT_S = 300.0
JOIN_TIMEOUT_S = 600  # how long torchrun waits for every node to join the rendezvous


def rendezvous_file(run_path: Path, job_id: str, restart: int) -> Path:
    return Path(run_path) / "slurm" / f"rendezvous_{job_id}_{restart}.json"


def node_argv(run_path: Path, nproc: int, nnodes: int, endpoint: str, rdzv_id: str) -> list[str]:
    """torchrun's argv for one node of an ``nnodes``-node run, ``nproc`` processes a node."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
            f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={rdzv_id}",
            f"--rdzv-conf=is_host=false,join_timeout={JOIN_TIMEOUT_S}", "--max-restarts=0",
            "-m", "aqa.train", str(run_path)]


def publish_endpoint(path: Path, host: str, port: int, **extra) -> None:
    """Write ``{"endpoint": "HOST:PORT", ...}`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json_atomic(path, {"endpoint": f"{host}:{port}", "host": host, "port": port,
                                   "t": time.time(), **extra})


def wait_endpoint(path: Path, timeout_s: float, poll_s: float = 0.2) -> str:
    """The endpoint node 0 published in ``path``; a ``JobError`` after ``timeout_s``."""
    deadline = time.time() + timeout_s
    while True:
        try:
            return json.loads(path.read_text())["endpoint"]
        except (OSError, ValueError, KeyError):
            pass
        if time.time() >= deadline:
            raise JobError(
                f"node 0 did not publish the rendezvous endpoint in {path} within "
                f"{timeout_s:.0f} s: check that node 0's task started (its log in "
                f"{path.parent}) and that the run directory is on a filesystem every node "
                "shares; AQA_RDZV_WAIT_S sets the wait")
        time.sleep(poll_s)


def _slurm_env(environ) -> tuple[int, int, str, int]:
    try:
        node = int(environ.get("SLURM_NODEID", 0))
        nnodes = int(environ.get("SLURM_NNODES", 1))
        restart = int(environ.get("SLURM_RESTART_COUNT", 0) or 0)
    except ValueError as exc:
        raise JobError(f"unreadable Slurm environment ({exc}): SLURM_NODEID, SLURM_NNODES and "
                       "SLURM_RESTART_COUNT must be integers") from None
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        raise JobError("SLURM_JOB_ID is not set: a multi-node run starts inside a Slurm job "
                       "(submit it with --executor slurm --nodes N)")
    return node, nnodes, job_id, restart


class Child:
    """A child process waited on by a thread, so that a signal handler running in the main
    thread (submitit's) can wait for it too without contending for Popen's wait lock."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self._done = proc, threading.Event()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        self.proc.wait()
        self._done.set()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if it is still running after ``timeout``."""
        self._done.wait(timeout)
        return self.proc.returncode if self._done.is_set() else None

    def terminate(self, grace_s: float = 60.0) -> None:
        """SIGTERM (torchrun passes it on to the trainers, which write last.pt); wait."""
        if not self._done.is_set():
            self.proc.send_signal(signal.SIGTERM)
            self._done.wait(grace_s)


class NodeRun:
    """This node's torchrun, with node 0 hosting the rendezvous store while it lives."""

    def __init__(self, run_dir: str | os.PathLike, nproc: int, nnodes: int, environ=None):
        self.run_path = Path(run_dir).resolve()
        self.nproc, self.nnodes = int(nproc), int(nnodes)
        self.environ = dict(os.environ if environ is None else environ)
        self.node, env_nodes, self.job_id, self.restart = _slurm_env(self.environ)
        if env_nodes != self.nnodes:
            raise JobError(f"the run asks for {self.nnodes} nodes but Slurm gave the job "
                           f"{env_nodes} (SLURM_NNODES); submit it again with --nodes "
                           f"{env_nodes} or ask for {self.nnodes}")
        self.store = None  # node 0: the rendezvous TCPStore server, held until the end
        self.child: Child | None = None

    def endpoint(self) -> str:
        path = rendezvous_file(self.run_path, self.job_id, self.restart)
        if self.node == 0:
            import torch.distributed as dist

            self.store = dist.TCPStore("0.0.0.0", 0, is_master=True, multi_tenant=True,
                                       wait_for_workers=False, timeout=timedelta(seconds=60))
            host = self.environ.get("AQA_RDZV_HOST") or socket.gethostname()
            publish_endpoint(path, host, self.store.port, job_id=self.job_id,
                             restart=self.restart)
            return f"{host}:{self.store.port}"
        wait_s = float(self.environ.get("AQA_RDZV_WAIT_S") or DEFAULT_WAIT_S)
        return wait_endpoint(path, wait_s)

    def argv(self, endpoint: str) -> list[str]:
        rdzv_id = f"aqa-{self.run_path.name}-{self.job_id}-{self.restart}"
        return node_argv(self.run_path, self.nproc, self.nnodes, endpoint, rdzv_id)

    def start(self, env: dict, log, preexec_fn=None) -> Child:
        """Find (or host) the rendezvous, then start torchrun with stdout/stderr to ``log``."""
        argv = self.argv(self.endpoint())
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} node {self.node}/{self.nnodes} "
                  f"of job {self.job_id} (restart {self.restart}) on {socket.gethostname()}: "
                  f"{' '.join(argv)}\n".encode())
        log.flush()
        self.child = Child(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=str(self.run_path),
                                            env=env, preexec_fn=preexec_fn))
        return self.child

    def wait(self, timeout: float | None = None) -> int | None:
        return self.child.wait(timeout)

    def terminate(self, grace_s: float = 60.0) -> None:
        if self.child is not None:
            self.child.terminate(grace_s)


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
        env = child_env([])
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aqa.jobs.launch",
                                description="Run one node's share of a multi-node run "
                                "(inside a Slurm task: SLURM_JOB_ID, SLURM_NODEID, SLURM_NNODES).")
    p.add_argument("run_dir")
    p.add_argument("--nnodes", type=int, required=True, help="nodes in the job")
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes on this node")
    args = p.parse_args(argv)
    job = TrainJob(str(Path(args.run_dir).resolve()), args.nproc_per_node, args.nnodes)
    # what Slurm's scancel does to a task: SIGTERM, passed on to torchrun and the trainers
    signal.signal(signal.SIGTERM, lambda *_: job.node is not None and job.node.terminate())
    try:
        return job()  # exactly what a Slurm task of a multi-node run executes
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
