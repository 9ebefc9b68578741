"""The scheduler: one small process per workspace that starts queued runs as resources free up.

``python -m aqa.jobs.scheduler RUNS_DIR``. Started detached (its own session) by ``ensure``,
which every submit calls when a run has to wait. It holds ``.queue/scheduler.lock``
(``fcntl.flock``) for its whole life, so a second one exits at once; it exits by itself when
no run is queued or the queue is paused. All it knows is on disk, so killing it at any moment
loses nothing: the next submit starts another, which settles any claim the dead one left
(``queue.recover``).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aqa.jobs import queue
from aqa.jobs.process import child_env
from aqa.runs import store
from aqa.runs.status import process_start_time

POLL_S = 0.5


def _lock_path(runs_dir: Path) -> Path:
    return queue.queue_dir(runs_dir) / "scheduler.lock"


def running(runs_dir: Path) -> dict | None:
    """{pid, start_time, started} of this workspace's live scheduler, or None."""
    fd = os.open(_lock_path(runs_dir), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    try:
        return json.loads((Path(runs_dir) / queue.QUEUE_DIR / "scheduler.json").read_text())
    except (OSError, ValueError):
        return {"pid": None}


def ensure(runs_dir: str | os.PathLike) -> bool:
    """Start the workspace's scheduler unless one is running. True if one was started.

    Call it after the run is recorded as queued: a scheduler that is exiting releases its lock
    while it still holds the queue lock, so a queued run is always seen by some scheduler."""
    runs_dir = Path(runs_dir)
    # Take the scheduler lock here and hand it to the child: from this moment one scheduler owns
    # the workspace, so two submits cannot both start one while the first is still booting.
    fd = os.open(_lock_path(runs_dir), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    log = open(queue.queue_dir(runs_dir) / "scheduler.log", "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "aqa.jobs.scheduler", str(runs_dir),
                                 str(fd)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env([]),
                                start_new_session=True, close_fds=True, pass_fds=(fd,))
        # recorded now (the child records itself again when it is up), so a reader never sees
        # the lock held without knowing by whom
        store.write_json_atomic(runs_dir / queue.QUEUE_DIR / "scheduler.json",
                                {"pid": proc.pid, "start_time": process_start_time(proc.pid),
                                 "started": time.time()})
    finally:
        log.close()
        os.close(fd)  # the child holds the lock now
    import threading
    threading.Thread(target=proc.wait, daemon=True).start()  # no zombie in a long-lived caller
    return True


def revive(runs_dir: str | os.PathLike) -> bool:
    """Runs wait, the queue is not paused, yet no scheduler lives (its starter was killed before
    starting it): start one. True if one was started. For commands that act on the queue
    (``aqa queue ls``/``resume``); drawing a queue position never calls it."""
    runs_dir = Path(runs_dir)
    if queue.is_paused(runs_dir) or not queue.waiting(runs_dir):
        return False
    return ensure(runs_dir)


def serve(runs_dir: Path, poll_s: float = POLL_S, lock_fd: int | None = None) -> int:
    """Run the queue of ``runs_dir`` until it is empty. 0 = done, 3 = another scheduler runs.
    ``lock_fd``: the scheduler lock, already taken by :func:`ensure` and inherited."""
    runs_dir = store.resolve_runs_dir(runs_dir)
    fd = lock_fd
    if fd is None:
        fd = os.open(_lock_path(runs_dir), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return 3
    os.set_inheritable(fd, False)  # the runs it starts must not hold the workspace's lock
    info = runs_dir / queue.QUEUE_DIR / "scheduler.json"
    store.write_json_atomic(info, {"pid": os.getpid(), "start_time":
                                   process_start_time(os.getpid()), "started": time.time()})
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(f"{time.strftime('%H:%M:%S')} scheduler {os.getpid()} up", flush=True)
    try:
        while not stop:
            result = queue.schedule_once(runs_dir)
            if result["started"]:
                print(f"{time.strftime('%H:%M:%S')} started {', '.join(result['started'])}",
                      flush=True)
            if result["waiting"] == 0 or queue.is_paused(runs_dir):
                # Exit under the queue lock: a submit that queues a run after this point (or
                # `queue resume`) finds the scheduler lock free and starts a new scheduler.
                with queue.queue_lock(runs_dir):
                    if queue.is_paused(runs_dir) or not any(
                            j["state"] in ("queued", "starting")
                            for _, j in queue.local_jobs(runs_dir)):
                        info.unlink(missing_ok=True)
                        os.close(fd)
                        fd = None
                        break
            time.sleep(poll_s)
    finally:
        if fd is not None:
            info.unlink(missing_ok=True)
            os.close(fd)
    print(f"{time.strftime('%H:%M:%S')} scheduler {os.getpid()} idle, exiting", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), lock_fd=int(sys.argv[2]) if len(sys.argv) > 2 else None))
