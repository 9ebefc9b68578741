"""The append-only event log of a run: ``events.jsonl``, one JSON object a line.

Every event has ``t`` (unix seconds) and ``type``:
    start       the training process began (or resumed: ``resumed_step``/``resumed_epoch``)
    metric      epoch, step, split, name, value
    checkpoint  path, epoch, step, metrics
    status      status (running, finished, failed, stopped) and, on failure, message
    heartbeat   epoch, step, total_steps, eta_s: the process is alive

Only the training process writes it (rank 0). The writer is line-buffered and fsyncs on request
(each epoch end and checkpoint). Readers tolerate a torn last line (a crash mid-write): a line is
only consumed once its newline is on disk. A resumed run re-does the steps after its checkpoint;
metric events logged before the resume with a step after ``resumed_step`` are superseded: that
rule is written once, in :func:`resumed_step` and :func:`superseded` (the index applies it with
them on ingest, the charts read what the index kept, :func:`effective_metrics` applies it to a
whole log).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

EVENTS_FILE = "events.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class EventWriter:
    """Append events to ``path``; thread-safe (the heartbeat thread writes too)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        needs_newline = self.path.exists() and self.path.stat().st_size > 0 and \
            _last_byte(self.path) != b"\n"
        self._f = open(self.path, "a", buffering=1, encoding="utf-8")
        if needs_newline:  # a torn line from a crash: end it, so our first event stays whole
            self._f.write("\n")

    def emit(self, type: str, **fields: Any) -> dict:
        event = {"t": round(time.time(), 3), "type": type, **_clean(fields)}
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._f.write(line)
        return event

    def metric(self, name: str, value: float, *, epoch: int, step: int, split: str) -> dict:
        return self.emit("metric", epoch=epoch, step=step, split=split, name=name,
                         value=float(value))

    def sync(self) -> None:
        """Flush and fsync: called at each epoch end and after each checkpoint."""
        with self._lock:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def tail(path: str | os.PathLike, offset: int = 0,
         max_bytes: int | None = None) -> tuple[list[tuple[int, dict]], int]:
    """Events after byte ``offset``: ([(line offset, event), ...], new offset).

    Reads only the bytes after ``offset`` (cost O(new bytes)); with ``max_bytes``, about that
    many (to the end of the line the limit falls in), so a long log is read in parts. A last
    line without its newline is not consumed: the new offset stays at its start, so the next
    call reads it whole. Lines that are not valid JSON objects (a torn fragment ended by a
    later writer) are skipped.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], offset
    with f:
        f.seek(offset)
        data = f.read() if max_bytes is None else f.read(max_bytes)
        if max_bytes is not None and len(data) == max_bytes and not data.endswith(b"\n"):
            data += f.readline()  # the rest of the line the limit cut
    end = data.rfind(b"\n") + 1
    out = []
    pos = 0
    while pos < end:
        nl = data.index(b"\n", pos)
        line = data[pos:nl]
        if line.strip():
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "type" in event:
                out.append((offset + pos, event))
        pos = nl + 1
    return out, offset + end


def read_events(path: str | os.PathLike) -> list[dict]:
    """All whole events of a log (a torn last line is left out)."""
    return [e for _, e in tail(path, 0)[0]]


# ---------------------------------------------------------------- the resume rule
# "A resumed attempt supersedes the metrics after its checkpoint": written here once; the index
# (aqa.runs.index, on ingest) and effective_metrics both go through these two functions.

def resumed_step(event: dict) -> int | None:
    """S when ``event`` starts an attempt resumed from the checkpoint at step S, else None."""
    if event.get("type") != "start":
        return None
    return event.get("resumed_step")


def superseded(metric_step: int | None, resumed_step: int) -> bool:
    """Whether a metric logged before a resume from step ``resumed_step`` is superseded.

    Everything the earlier attempt logged after step S was lost work that the resumed attempt
    does again; a metric without a step counts as step 0.
    """
    return (metric_step or 0) > resumed_step


def effective_metrics(events: Iterable[dict]) -> Iterator[dict]:
    """Metric events with the ones superseded by a later resume removed."""
    kept: list[dict] = []
    for e in events:
        s = resumed_step(e)
        if s is not None:
            kept = [m for m in kept if not superseded(m.get("step"), s)]
        elif e.get("type") == "metric":
            kept.append(e)
    return iter(kept)
