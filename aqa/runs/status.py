"""A run's status: derived from its last ``status`` event, its ``job.json`` and whether its job lives.

Status is never stored as truth. A local job is alive while its process is: a pid alone can lie
(zombies, recycled pids), so liveness compares the process start time recorded in ``job.json``
with the one the kernel reports now. A Slurm job is alive while ``squeue`` reports it active
(``aqa.runs.slurm_state``, one cached poll for the whole workspace). A job this machine cannot
see (another host's process, a cluster whose ``squeue`` cannot be asked from here) is judged by
its heartbeat, and a final status event wins over that guess; when Slurm cannot be asked the
status carries a ``note`` saying so (shown by ``aqa runs ls``/``show`` and kept in the index).

    read_status(run_dir) -> RunStatus(status, note)     straight from the run directory
    status_of(last, last_t, job, heartbeat_age)         the same from parts (the index uses it)
    derive_status(last, job, alive, last_t)             the pure table (documented below)
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import NamedTuple

from aqa.runs import slurm_state as slurm
from aqa.runs.events import EVENTS_FILE, read_events
from aqa.runs.store import TERMINAL, read_job

HEARTBEAT_STALE_S = 3 * 60  # a job not seen by this machine is alive while it wrote this recently


class RunStatus(NamedTuple):
    status: str              # one of aqa.runs.store.STATUSES
    note: str | None = None  # why the status may be a guess, e.g. "slurm unreachable: ..."


class Liveness(NamedTuple):
    alive: bool | None              # None: this machine cannot tell
    slurm_state: str | None = None  # what squeue said (Slurm jobs)
    note: str | None = None         # why it cannot tell, when that matters to the user


# ---------------------------------------------------------------- process liveness

def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, ...), None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if there is no such process."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None  # field 22 of proc(5): starttime


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far, None if there is no such process."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (R, S, D, Z, ...), None if there is no such process."""
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """True only for a live (not zombie) process whose start time matches the recorded one."""
    if not pid:
        return False
    if not Path("/proc").is_dir():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    state = process_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return start_time is None or process_start_time(pid) == start_time


# ---------------------------------------------------------------- job liveness

def probe(job: dict | None, heartbeat_age: float | None = None) -> Liveness:
    """Is the job's process alive, as far as this machine can tell?

    A Slurm job: what ``squeue`` says; when Slurm cannot be asked, its heartbeat (and a note).
    Another host's local job: its heartbeat. A local job: its process (pid + start time).
    """
    if not job or job.get("state") in ("queued", "starting", "cancelled"):
        return Liveness(False)
    by_heartbeat = None if heartbeat_age is None else heartbeat_age < HEARTBEAT_STALE_S
    if job.get("executor") == "slurm":
        state, error = slurm.state_of(job.get("slurm_job_id"))
        if state is not None:
            return Liveness(state in slurm.ACTIVE, state)
        return Liveness(by_heartbeat, None, f"slurm unreachable: {error}" if error else None)
    if job.get("host") not in (None, socket.gethostname()):
        return Liveness(by_heartbeat)
    return Liveness(process_alive(job.get("pid"), job.get("start_time")))


def job_alive(job: dict | None, heartbeat_age: float | None = None) -> bool | None:
    """Is the job's process alive? None when this host cannot tell (see ``probe``)."""
    return probe(job, heartbeat_age).alive


# ---------------------------------------------------------------- status

def _slurm_status(last_status: str | None, job: dict, alive: bool | None,
                  last_status_t: float, slurm_state: str | None) -> str:
    """A Slurm job: Slurm's state merged with the run's events. ``stopped`` can be followed by
    a requeue (preemption), so only finished/failed after the submit are final while Slurm can
    be asked; when it cannot (``slurm_state`` None), every final event after the last submit
    wins (the trainer writes ``running`` when a later attempt starts)."""
    submitted = job.get("submitted_at") or 0
    if last_status in ("finished", "failed") and submitted <= last_status_t:
        return last_status
    if slurm_state in slurm.PENDING:
        return "queued"
    if slurm_state is None and last_status in TERMINAL and submitted <= last_status_t:
        return last_status
    if alive or (alive is None and last_status not in TERMINAL):
        return "running"
    if last_status in TERMINAL:
        return last_status
    return "stopped" if slurm_state == "CANCELLED" else "crashed"


def derive_status(last_status: str | None, job: dict | None, alive: bool | None,
                  last_status_t: float = 0.0, slurm_state: str | None = None) -> str:
    """Status from the last status event, the job record and liveness.

    | last status event       | job.json        | alive | status                        |
    | finished/failed/stopped | any             | no    | that                          |
    | finished/failed/stopped | started after it| yes   | running (a resumed attempt)   |
    | none or running         | none, or queued | any   | queued                        |
    | any, older than queued  | queued/starting | any   | queued (a resume waiting)     |
    | any, older than cancel  | cancelled       | any   | stopped (taken off the queue) |
    | none or running         | started         | yes   | running                       |
    | none or running         | started         | no    | crashed                       |
    (alive None, i.e. this host cannot tell, counts as alive.) Slurm jobs: ``_slurm_status``,
    with ``slurm_state`` what squeue said (default: ``job["slurm_state"]``; None: not asked).
    """
    state = (job or {}).get("state")
    if job and job.get("executor") == "slurm" and job.get("slurm_job_id"):
        return _slurm_status(last_status, job, alive, last_status_t,
                             slurm_state if slurm_state is not None else job.get("slurm_state"))
    if state in ("queued", "starting", "cancelled"):
        since = job.get("cancelled_at" if state == "cancelled" else "queued_at") or 0.0
        if last_status in TERMINAL and since <= last_status_t:
            return last_status
        return "stopped" if state == "cancelled" else "queued"
    started = (job or {}).get("started") or 0.0
    if last_status in TERMINAL and not (alive is not False and job and started > last_status_t):
        return last_status
    if not job or job.get("state") == "queued":
        return "queued"
    if alive is False:
        return "crashed"
    return "running"


def status_of(last_status: str | None, last_status_t: float, job: dict | None,
              heartbeat_age: float | None) -> RunStatus:
    """The status of a run from its last status event (and its time), its job record and the
    age of its newest event, with a note when it is a guess."""
    live = probe(job, heartbeat_age)
    status = derive_status(last_status, job, live.alive, last_status_t or 0.0, live.slurm_state)
    return RunStatus(status, live.note)


def read_status(run_path: str | os.PathLike) -> RunStatus:
    """The status of one run, straight from its directory (no index needed)."""
    run_path = Path(run_path)
    events = read_events(run_path / EVENTS_FILE)
    last = next((e for e in reversed(events) if e.get("type") == "status"), None)
    age = time.time() - events[-1]["t"] if events else None
    return status_of(last and last.get("status"), last["t"] if last else 0.0,
                     read_job(run_path), age)


def run_status(run_path: str | os.PathLike) -> str:
    """The derived status of one run, straight from its directory (no index needed)."""
    return read_status(run_path).status
