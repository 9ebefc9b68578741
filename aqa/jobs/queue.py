"""The local queue of a workspace: which runs wait, in what order, and starting them.

The truth is each run's ``job.json``: ``state`` is ``queued`` (waiting, with ``order``),
``starting`` (a claim written just before the process is spawned), ``started``, or
``cancelled``. Every change happens under ``<runs-dir>/.queue/lock`` (``fcntl.flock``), so the
scheduler, a submit from the CLI and the app never interleave.

Never twice: a run is claimed (``starting``) before its process is spawned, and the process
inherits an flock on ``<run>/.job.lock`` that lives exactly as long as it does
(``aqa.jobs.process``). Whoever finds a ``starting`` claim later (its claimer was killed) looks
for the process in ``/proc/*/cmdline``, then at the lock, then for events written after the
claim, and only when all three say "never ran" puts the run back in the queue. ``spawn`` itself
refuses while the lock is held.

Starting the workspace's scheduler process is not this module's business (``aqa.jobs.scheduler``
sits above it): nothing here starts a process but ``schedule_once``, which starts runs.

Order: strict first-come-first-served per pool (GPU runs, CPU runs): a run that does not fit
holds back the runs behind it in its pool; ``move`` changes the order.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from aqa.errors import JobError, RunError
from aqa.jobs import workspace
from aqa.jobs.gpus import allocate, mark_foreign, parse_gpus, probe_compute_apps, probe_gpus
from aqa.jobs.process import (find_job_process, job_lock_held, pids_of_groups, record_started,
                              spawn)
from aqa.runs import store
from aqa.runs.events import EVENTS_FILE, read_events
from aqa.runs.status import job_alive, run_status

QUEUE_DIR = ".queue"
CLAIM_GRACE_S = 5.0  # a claim younger than this with no process yet may still be exec'ing


def queue_dir(runs_dir: Path) -> Path:
    d = Path(runs_dir) / QUEUE_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def queue_lock(runs_dir: Path):
    """Exclusive lock for every change to the queue of ``runs_dir``."""
    fd = os.open(queue_dir(runs_dir) / "lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_paused(runs_dir: Path) -> bool:
    return (Path(runs_dir) / QUEUE_DIR / "paused").exists()


# ---------------------------------------------------------------- pure planning

def plan(waiting: list[dict], inventory: list[dict], held: set[int], cpu_free: int,
         busy_threshold_mb: float) -> list[tuple[str, list[int]]]:
    """Which waiting runs start now, and on which GPUs.

    ``waiting``: [{id, gpus: "2" | "0,2" | None}] in queue order. A CPU run takes one slot of
    ``cpu_free``; a GPU run takes what ``allocate`` gives it. First come first served per pool:
    once a run of a pool must wait, the runs behind it in that pool wait too.
    """
    held, out, blocked = set(held), [], {"cpu": False, "gpu": False}
    for w in waiting:
        request = parse_gpus(w.get("gpus"))
        pool = "gpu" if request[1] else "cpu"
        if blocked[pool]:
            continue
        if pool == "cpu":
            if cpu_free <= 0:
                blocked["cpu"] = True
                continue
            cpu_free -= 1
            out.append((w["id"], []))
            continue
        got = allocate(inventory, held, request, busy_threshold_mb)
        if got is None:
            blocked["gpu"] = True
            continue
        held |= set(got)
        out.append((w["id"], got))
    return out


# ---------------------------------------------------------------- queue records

def enqueue(run_path: Path, gpus: str | None = None, nproc: int | None = None) -> dict:
    """Put a run (new, or stopped/crashed for a resume) at the end of the queue."""
    run_path = Path(run_path).resolve()
    spec = store.read_run(run_path)
    res = spec.get("resources") or {}
    if gpus is None:
        gpus = res.get("request")
        if gpus is None and res.get("gpus"):
            gpus = ",".join(str(g) for g in res["gpus"])
    with queue_lock(run_path.parent):
        job = store.read_job(run_path) or {}
        if job.get("state") in ("queued", "starting"):
            return job
        if job_alive(job):
            raise JobError(f"run {spec['id']} is already running (pid {job.get('pid')})")
        now = time.time()
        job.update({"executor": "local", "state": "queued", "queued_at": now, "order": now,
                    "requested_gpus": gpus or None, "nproc": nproc or res.get("nproc") or 1,
                    "pid": None, "pgid": None, "start_time": None, "gpus": [],
                    "attempts": job.get("attempts", [])})
        store.write_job(run_path, job)
        return job


def _adopt(path: Path) -> dict | None:
    """The queue record of a run that ``submit`` created to be queued but whose submitter died
    before writing ``job.json`` (call under the queue lock)."""
    try:
        spec = store.read_run(path)
    except (RunError, ValueError):
        return None
    if not spec.get("enqueue") or (path / EVENTS_FILE).exists():
        return None
    res = spec.get("resources") or {}
    job = {"executor": "local", "state": "queued", "queued_at": spec["created"],
           "order": spec["created"], "requested_gpus": res.get("request"),
           "nproc": res.get("nproc") or 1, "gpus": [], "attempts": []}
    store.write_job(path, job)
    return job


def local_jobs(runs_dir: Path, adopt: bool = False) -> list[tuple[Path, dict]]:
    """[(run dir, job)] of the workspace's local runs that are queued, starting or started;
    ``adopt``: give a queue record to runs whose submitter died before writing one."""
    out = []
    for path in store.list_run_dirs(runs_dir):
        job = store.read_job(path)
        if job is None and adopt:
            job = _adopt(path)
        if job and job.get("executor", "local") == "local" and \
                job.get("state") in ("queued", "starting", "started"):
            out.append((path, job))
    return out


def waiting(runs_dir: Path) -> list[tuple[Path, dict]]:
    """Queued runs of the workspace in queue order: [(run dir, job)]."""
    jobs = [(p, j) for p, j in local_jobs(runs_dir) if j.get("state") in ("queued", "starting")]
    return sorted(jobs, key=lambda pj: (pj[1].get("order") or 0.0, pj[0].name))


def positions(runs_dir: str | os.PathLike) -> dict[str, int]:
    """{run id: 1-based position} for every waiting run (what the Runs page shows). A read:
    it starts nothing (``aqa.jobs.scheduler.revive`` starts a scheduler where one is missing)."""
    runs_dir = store.resolve_runs_dir(runs_dir)
    return {p.name: i + 1 for i, (p, _) in enumerate(waiting(runs_dir))}


def cancel(run_path: Path) -> dict:
    """Take a queued run out of the queue; its status becomes ``stopped``."""
    run_path = Path(run_path).resolve()
    with queue_lock(run_path.parent):
        job = store.read_job(run_path) or {}
        if job.get("state") != "queued":
            raise JobError(f"run {run_path.name} is not queued "
                           f"(status {run_status(run_path)}); stop it with `aqa runs stop`")
        job.update({"state": "cancelled", "cancelled_at": time.time()})
        store.write_job(run_path, job)
        return job


def move(runs_dir: Path, run_path: Path, to: int) -> list[str]:
    """Move a queued run to 1-based position ``to``; returns the new order of run ids."""
    with queue_lock(runs_dir):
        order = [p for p, j in waiting(runs_dir) if j.get("state") == "queued"]
        names = [p.name for p in order]
        if run_path.name not in names:
            raise JobError(f"run {run_path.name} is not queued; see `python -m aqa queue ls`")
        if to < 1:
            raise JobError(f"--to {to}: positions start at 1")
        order.pop(names.index(run_path.name))
        order.insert(min(to, len(order) + 1) - 1, run_path)
        base = min((store.read_job(p) or {}).get("order") or time.time() for p in order)
        for i, p in enumerate(order):
            job = store.read_job(p)
            job["order"] = base + i * 1e-3
            store.write_job(p, job)
        return [p.name for p in order]


def set_paused(runs_dir: Path, paused: bool) -> None:
    """Pause (no queued run starts; the scheduler exits) or resume the queue."""
    flag = queue_dir(runs_dir) / "paused"
    with queue_lock(runs_dir):  # orders it against a scheduler deciding to exit
        if paused:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)


# ---------------------------------------------------------------- starting runs

def recover(run_path: Path, job: dict) -> str:
    """Settle a ``starting`` claim whose claimer is gone. Returns the state it now has."""
    pid = find_job_process(run_path)
    if pid:
        record_started(run_path, job, pid, recovered=True)
        return "started"
    if job_lock_held(run_path) or time.time() - (job.get("claimed_at") or 0) < CLAIM_GRACE_S:
        return "starting"  # between fork and exec: look again later
    claimed = job.get("claimed_at") or 0
    ran = [e for e in read_events(run_path / EVENTS_FILE) if e.get("t", 0) >= claimed]
    if ran:  # it ran and is gone already: record the attempt, never start it again
        record_started(run_path, job, None, recovered=True)
        return "started"
    job["state"] = "queued"
    store.write_job(run_path, job)
    return "queued"


def schedule_once(runs_dir: Path) -> dict:
    """One pass, under the queue lock: settle stale claims, start what fits.

    Returns {"started": [run ids], "waiting": n, "running": n}.
    """
    runs_dir = Path(runs_dir)
    with queue_lock(runs_dir):
        cfg = workspace.load(runs_dir)
        jobs = local_jobs(runs_dir, adopt=True)
        for path, job in jobs:
            if job["state"] == "starting":
                job["state"] = recover(path, job)
        host = socket.gethostname()
        running = [(p, j) for p, j in jobs if j["state"] in ("started", "starting") and
                   j.get("host", host) == host and
                   (j["state"] == "starting" or job_alive(j))]
        queue = sorted(((p, j) for p, j in jobs if j["state"] == "queued"),
                       key=lambda pj: (pj[1].get("order") or 0.0, pj[0].name))
        result = {"started": [], "waiting": len(queue), "running": len(running)}
        if not queue or is_paused(runs_dir):
            return result
        held = {g for _, j in running for g in j.get("gpus") or []}
        cpu_used = sum(1 for _, j in running if not j.get("gpus"))
        inventory = []
        if any(parse_gpus(j.get("requested_gpus"))[1] for _, j in queue):
            ours = pids_of_groups({j["pgid"] for _, j in running if j.get("pgid")})
            inventory = mark_foreign(probe_gpus(), probe_compute_apps(), ours)
        by_id = {p.name: (p, j) for p, j in queue}
        decisions = plan([{"id": p.name, "gpus": j.get("requested_gpus")} for p, j in queue],
                         inventory, held, cfg["queue"]["cpu_slots"] - cpu_used,
                         cfg["gpus"]["busy_threshold_mb"])
        for run_id, gpus in decisions:
            path, job = by_id[run_id]
            job.update({"state": "starting", "claimed_at": time.time(), "claimed_by": os.getpid(),
                        "gpus": gpus, "host": host})
            store.write_job(path, job)  # the claim, before the process exists
            try:
                spawn(path, job)
            except (JobError, RunError) as exc:
                # e.g. processes of its previous attempt still hold the run's lock: retry later
                job.update({"state": "queued", "error": str(exc)})
                store.write_job(path, job)
                continue
            result["started"].append(run_id)
        result["waiting"] -= len(result["started"])
        return result
