"""What Slurm says about jobs: one cached ``squeue`` call answers every run of a workspace.

``squeue -h -t all -o "%i %T"`` lists every job the cluster still remembers (finished ones too,
for ``MinJobAge``). The answer is cached for ``CACHE_S`` seconds, so listing a hundred Slurm
runs asks Slurm once. When Slurm cannot be asked (no ``squeue`` on the PATH, no ``SLURM_CONF``
on a login node set up differently, a laptop reading a shared filesystem, ``squeue`` failing or
hanging), ``query`` says why instead of guessing: ``aqa.runs.status`` shows that reason beside
the run's status. A failure is cached like an answer, so a broken ``squeue`` is not retried
(and waited for) once per run.

State is never taken from submitit (``job.result()`` can block forever, and ``job.state`` needs
``sacct``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

# Slurm job states (squeue %T) in which the job's processes exist or are about to.
ACTIVE = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "CONFIGURING")
# States of a job waiting to (re)start: submitted, requeued after preemption, held.
PENDING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
           "RESV_DEL_HOLD", "SUSPENDED")
GONE = "GONE"  # squeue works but has forgotten the job (finished longer than MinJobAge ago)
CACHE_S = 1.5
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """One ``squeue`` poll: ``states`` {job id: state}, or None and ``error`` saying why."""
    states: dict[str, str] | None
    error: str | None = None
    t: float = 0.0


_cache: Answer | None = None


def invalidate() -> None:
    """Forget the cached answer: the next ``query`` asks Slurm (after sbatch / scancel)."""
    global _cache
    _cache = None


def _poll() -> Answer:
    exe = shutil.which("squeue")
    if not exe:
        return Answer(None, "squeue is not on the PATH", time.time())
    try:
        out = subprocess.run([exe, "-h", "-t", "all", "-o", "%i %T"], capture_output=True,
                             text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Answer(None, f"squeue did not answer within {TIMEOUT_S:.0f} s", time.time())
    except (OSError, subprocess.SubprocessError) as exc:
        return Answer(None, f"squeue could not run ({exc})", time.time())
    if out.returncode != 0:
        lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {out.returncode}"
        return Answer(None, f"squeue failed: {why[:200]}", time.time())
    states = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)
    return Answer({k.strip(): v.strip() for k, v in states.items()}, None, time.time())


def query() -> Answer:
    """Every job squeue knows, cached for ``CACHE_S`` seconds (failures too)."""
    global _cache
    if _cache is None or time.time() - _cache.t >= CACHE_S:
        _cache = _poll()
    return _cache


def state_of(job_id) -> tuple[str | None, str | None]:
    """(Slurm's state of the job, None) — PENDING, RUNNING, COMPLETED, CANCELLED, ..., or
    ``GONE`` once squeue has forgotten it — or (None, why Slurm cannot be asked)."""
    if not job_id:
        return None, None
    answer = query()
    if answer.states is None:
        return None, answer.error
    return answer.states.get(str(job_id), GONE), None


def slurm_state(job_id) -> str | None:
    """Slurm's state of a job, ``GONE`` once squeue has forgotten it, None when Slurm cannot be
    asked from here."""
    return state_of(job_id)[0]
