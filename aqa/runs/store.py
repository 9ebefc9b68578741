"""Run directories: creation, ids, ``run.json`` and ``job.json``.

    <runs-dir>/<run_id>/
      run.json       immutable spec: id, method, dataset, resolved config, argv, code version, created
      job.json       how it executes: executor, pid, pgid, pid start time, host, gpus, attempts
      events.jsonl   the event log (aqa.runs.events)
      stdout.log     the process's stdout + stderr
      checkpoints/   last.pt, best.pt, epoch_NNN.pt
      predictions/   <split>_epoch_NNN.csv

A run's status is derived from these files, never stored: ``aqa.runs.status``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from aqa.errors import RunError

RUN_JSON, JOB_JSON, STDOUT_LOG = "run.json", "job.json", "stdout.log"
STATUSES = ("queued", "running", "finished", "failed", "stopped", "crashed")
TERMINAL = ("finished", "failed", "stopped")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def resolve_runs_dir(arg: str | os.PathLike | None = None) -> Path:
    """``--runs-dir`` if given, else ``$AQA_RUNS_DIR``, else ``runs/`` in the current folder."""
    path = Path(arg or os.environ.get("AQA_RUNS_DIR") or "runs").expanduser()
    return path.resolve()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def new_run_id(method: str, dataset: str, now: float | None = None) -> str:
    """Sortable id: ``YYYYmmdd-HHMMSS-mmm-<method>-<dataset>``."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{int(now * 1000) % 1000:03d}-{method}-{dataset}"


def run_dir(runs_dir: Path, run_id: str) -> Path:
    """The directory of run ``run_id``; refuses ids that are not plain names (no path escape)."""
    if not _ID_RE.match(run_id or ""):
        raise RunError(f"{run_id!r} is not a run id; list runs with `python -m aqa runs ls`")
    path = Path(runs_dir) / run_id
    if not (path / RUN_JSON).is_file():
        raise RunError(f"no run {run_id!r} in {runs_dir}; list runs with `python -m aqa runs ls`")
    return path


def find_run(runs_dir: Path, ref: str) -> Path:
    """A run by full id or a unique prefix/suffix of it."""
    runs_dir = Path(runs_dir)
    if _ID_RE.match(ref or "") and (runs_dir / ref / RUN_JSON).is_file():
        return runs_dir / ref
    matches = [p for p in list_run_dirs(runs_dir) if p.name.startswith(ref) or p.name.endswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RunError(f"{ref!r} matches {len(matches)} runs; give more of the id")
    return run_dir(runs_dir, ref)


def list_run_dirs(runs_dir: Path) -> list[Path]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if (p / RUN_JSON).is_file())


def _submission_marker(runs_dir: Path, submission_id: str) -> Path:
    import hashlib
    digest = hashlib.sha1(submission_id.encode()).hexdigest()[:20]
    return Path(runs_dir) / ".submissions" / digest


def claim_submission(runs_dir: Path, submission_id: str, wait_s: float = 30.0) -> Path | None:
    """Claim ``submission_id`` atomically. None: this caller goes on to create the run. A path:
    an earlier submit with this id created that run (waits for it while it is being made)."""
    marker = _submission_marker(runs_dir, submission_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return None
    except FileExistsError:
        pass
    deadline = time.time() + wait_s
    while time.time() < deadline:
        text = marker.read_text().strip()
        if text:
            return Path(runs_dir) / text if text != "-" else None
        time.sleep(0.05)
    raise RunError(f"an earlier submit with the same id is still being created in {runs_dir}")


def record_submission(runs_dir: Path, submission_id: str, path: Path | None) -> None:
    """Record the run a claimed submission created ("-" when it failed, so it may be retried)."""
    marker = _submission_marker(runs_dir, submission_id)
    if path is None:
        marker.unlink(missing_ok=True)
        return
    marker.write_text(Path(path).name)


def code_version() -> str:
    import aqa

    root = Path(aqa.__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{aqa.__version__}+{sha}" if sha else aqa.__version__


def create_run(runs_dir: Path, config: dict, argv: list[str] | None = None,
               extra: dict | None = None) -> Path:
    """Make ``<runs-dir>/<new id>/`` with its ``run.json``; returns the directory."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for attempt in range(1000):
        run_id = new_run_id(config["method"], config["dataset"], now + attempt / 1000)
        path = runs_dir / run_id
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - a thousand runs in one second
        raise RunError(f"could not create a new run directory in {runs_dir}")
    (path / "checkpoints").mkdir()
    (path / "predictions").mkdir()
    spec = {"id": run_id, "method": config["method"], "dataset": config["dataset"],
            "config": config, "argv": list(argv or []), "code_version": code_version(),
            "created": now, **(extra or {})}
    write_json_atomic(path / RUN_JSON, spec)
    return path


def read_run(path: Path) -> dict:
    try:
        return read_json(Path(path) / RUN_JSON)
    except FileNotFoundError:
        raise RunError(f"{path} is not a run directory (no {RUN_JSON})") from None


def read_job(path: Path) -> dict | None:
    try:
        return read_json(Path(path) / JOB_JSON)
    except (FileNotFoundError, ValueError):
        return None


def write_job(path: Path, job: dict) -> None:
    write_json_atomic(Path(path) / JOB_JSON, job)


def resolve_checkpoint(ref: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A checkpoint file, or a run (directory or id) whose ``best.pt`` (else ``last.pt``) is used."""
    path = Path(ref)
    if path.is_file():
        return path
    if not path.is_dir() and runs_dir is not None:
        path = find_run(Path(runs_dir), str(ref))
    for name in ("best.pt", "last.pt"):
        if (path / "checkpoints" / name).is_file():
            return path / "checkpoints" / name
    raise RunError(f"{ref}: neither a checkpoint file nor a run with checkpoints/best.pt")
