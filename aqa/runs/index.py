"""The SQLite index of a workspace: ``<runs-dir>/index.db``, filled from the run directories.

The run directories are the truth; this file is a cache that makes listing and comparing fast.
It is filled by ingesting each run's ``events.jsonl`` from the byte offset where the last ingest
stopped (cost O(new bytes)); rows are keyed by (run id, byte offset of the event), so ingesting
the same bytes twice changes nothing. ``rebuild`` recreates the file from the run directories.

Opened with WAL and a busy timeout so the app, the CLI and the scheduler can read and write it
at the same time. Open it for one operation and close it (``with open_index(d) as db:``): no
long-lived shared connection. Schema changes are numbered migrations (``MIGRATIONS``).

All of the workspace's SQL lives in this module: the app and the CLI call the query functions at
the bottom (dicts out). A reader that needs several answers at once (a live chart's tick) gets
them on one connection (``follow_run``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import sqlite_utils

from aqa.metrics import HIGHER_IS_BETTER
from aqa.runs import meta, store
from aqa.runs import events as ev
from aqa.runs.events import EVENTS_FILE, tail
from aqa.runs.status import status_of

INDEX_FILE = "index.db"
INGEST_BYTES = 8 * 1024 * 1024  # of a run's log read and ingested at once
BUSY_TIMEOUT_MS = 10_000


def _m1_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create({
        "id": str, "run_dir": str, "method": str, "dataset": str, "status": str, "message": str,
        "created": float, "started": float, "ended": float, "last_t": float,
        "epoch": int, "epochs": int, "step": int, "total_steps": int, "eta_s": float,
        "best_metric": str, "best_value": float, "best_epoch": int, "best_rho": float,
        "params": int, "attempts": int, "executor": str, "host": str, "pid": int, "gpus": str,
        "last_status": str, "last_status_t": float, "offset": int, "config": str,
    }, pk="id")
    db["metrics"].create({
        "run_id": str, "offset": int, "t": float, "epoch": int, "step": int, "split": str,
        "name": str, "value": float,
    }, pk=("run_id", "offset"))
    db["metrics"].create_index(["run_id", "name", "split", "epoch"])
    db["checkpoints"].create({
        "run_id": str, "path": str, "name": str, "epoch": int, "step": int, "t": float,
        "metrics": str,
    }, pk=("run_id", "path"))


def _m2_status_note(db: sqlite_utils.Database) -> None:
    db["runs"].add_column("status_note", str)  # e.g. "slurm unreachable: ..." (aqa.runs.status)


def _m3_meta(db: sqlite_utils.Database) -> None:
    # a copy of <run>/meta.json (aqa.runs.meta): display name, tags (JSON list), note, archived;
    # meta_sig tells ingest when the file changed (rows of older indexes re-read it once)
    for name, kind in (("name", str), ("tags", str), ("note", str), ("archived", int),
                       ("meta_sig", str)):
        db["runs"].add_column(name, kind)


BLOCK_BYTES = 64 * 1024  # a metric series' rows are summarised per this many bytes of the log


def _m5_app_reads(db: sqlite_utils.Database) -> None:
    """Per-series reads in log order (charts, the run page's test rows); a summary of each
    series per block of the log (its lowest and highest point), so that a chart of a run with
    a million points opens from a few thousand rows (``series_summary``); and the run folder's
    mtime when its status settled, so that a sync skips it (``_sync``)."""
    db["runs"].add_column("folder_mtime_ns", int)
    db.execute("CREATE INDEX IF NOT EXISTS metrics_series ON metrics (run_id, split, name, offset)")
    db.execute("""CREATE TABLE IF NOT EXISTS metric_blocks (
        run_id TEXT, split TEXT, name TEXT, block INTEGER, count INTEGER,
        lo_value REAL, lo_offset INTEGER, lo_step INTEGER, lo_epoch INTEGER,
        hi_value REAL, hi_offset INTEGER, hi_step INTEGER, hi_epoch INTEGER,
        PRIMARY KEY (run_id, split, name, block))""")
    for (run_id,) in db.execute("SELECT DISTINCT run_id FROM metrics").fetchall():
        _rebuild_blocks(db, run_id)


MIGRATIONS: list[tuple[int, Callable[[sqlite_utils.Database], None]]] = [
    (1, _m1_initial),
    (2, _m2_status_note),
    (3, _m3_meta),
    (5, _m5_app_reads),
]


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db = sqlite_utils.Database(conn)
    if db.journal_mode != "wal":
        db.enable_wal()
    conn.execute("PRAGMA synchronous=NORMAL")
    # the resume rule, callable from SQL: the same function effective_metrics uses
    conn.create_function("superseded", 2, ev.superseded, deterministic=True)
    return db


def migrate(db: sqlite_utils.Database) -> int:
    """Apply the migrations not yet applied, in order; returns the schema version."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, applied REAL)")
    done = {r[0] for r in db.execute("SELECT version FROM _migrations").fetchall()}
    for version, fn in MIGRATIONS:
        if version in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # another process may have applied it while we waited for the lock
            if not db.execute("SELECT 1 FROM _migrations WHERE version=?", [version]).fetchone():
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", [version, time.time()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return max(v for v, _ in MIGRATIONS)


@contextmanager
def open_index(runs_dir: str | os.PathLike) -> Iterator[sqlite_utils.Database]:
    """A short-lived connection to the workspace index, migrated; closed on exit."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    db = _connect(runs_dir / INDEX_FILE)
    try:
        migrate(db)
        yield db
    finally:
        db.conn.close()


# ---------------------------------------------------------------- ingest

def ingest_run(db: sqlite_utils.Database, run_path: Path) -> int:
    """Ingest the new bytes of one run's event log and refresh its status; returns events read."""
    run_path = Path(run_path)
    spec = store.read_run(run_path)
    run_id = spec["id"]
    existing = db.execute("SELECT * FROM runs WHERE id=?", [run_id]).fetchone()
    row = dict(zip([d[0] for d in db.execute("SELECT * FROM runs LIMIT 0").description],
                   existing)) if existing else _new_row(spec, run_path)
    offset = row.get("offset") or 0
    events_path = run_path / EVENTS_FILE
    size = events_path.stat().st_size if events_path.exists() else 0
    if size < offset:  # the log was replaced: start over for this run
        db.execute("DELETE FROM metrics WHERE run_id=?", [run_id])
        db.execute("DELETE FROM metric_blocks WHERE run_id=?", [run_id])
        db.execute("DELETE FROM checkpoints WHERE run_id=?", [run_id])
        row, offset = _new_row(spec, run_path), 0
    if size == offset and existing:  # no new events: only liveness and meta.json can have changed
        before = row["status"], row.get("status_note")
        _refresh_status(row, run_path)
        if _refresh_meta(row, run_path) or (row["status"], row["status_note"]) != before:
            db["runs"].upsert(row, pk="id")
        return 0
    read = 0
    while True:  # a part of the log at a time: memory stays bounded on a long first ingest
        events, new_offset = tail(events_path, offset, INGEST_BYTES) if size > offset \
            else ([], offset)
        db.execute("BEGIN IMMEDIATE")
        try:
            best_dirty = _apply_events(db, row, run_id, events)
            row["offset"] = new_offset
            if best_dirty:
                _refresh_best(db, row, spec)
            _refresh_status(row, run_path)
            _refresh_meta(row, run_path)
            db["runs"].upsert(row, pk="id")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        read += len(events)
        if new_offset >= size or new_offset == offset:  # all read, or only a torn line left
            return read
        offset = new_offset


def _new_row(spec: dict, run_path: Path) -> dict:
    cfg = spec.get("config", {})
    return {"id": spec["id"], "run_dir": str(run_path.resolve()), "method": spec.get("method"),
            "dataset": spec.get("dataset"), "created": spec.get("created"), "status": "queued",
            "epoch": 0, "step": 0, "epochs": cfg.get("train", {}).get("epochs"),
            "best_metric": cfg.get("train", {}).get("best_metric", "rho"), "attempts": 0,
            "offset": 0, "config": json.dumps(cfg)}


def _apply_events(db: sqlite_utils.Database, row: dict, run_id: str,
                  events: list[tuple[int, dict]]) -> bool:
    pending: list[tuple] = []
    best_dirty = False

    def flush() -> None:
        if pending:
            db.conn.executemany("INSERT OR IGNORE INTO metrics VALUES (?,?,?,?,?,?,?,?)", pending)
            _add_to_blocks(db, run_id, pending)
            pending.clear()

    for off, e in events:
        kind, t = e.get("type"), e.get("t")
        row["last_t"] = t
        if kind == "metric":
            pending.append((run_id, off, t, e.get("epoch"), e.get("step"), e.get("split"),
                            e.get("name"), e.get("value")))
            if e.get("name") in ("rho", row.get("best_metric")):
                best_dirty = True
        elif kind == "start":
            row["started"] = row.get("started") or t
            row["attempts"] = (row.get("attempts") or 0) + 1
            for key in ("epochs", "total_steps", "params"):
                if e.get(key) is not None:
                    row[key] = e[key]
            resumed = ev.resumed_step(e)
            if resumed is not None:  # lost work after the checkpoint is superseded
                flush()
                db.execute("DELETE FROM metrics WHERE run_id=? AND offset<? "
                           "AND superseded(step, ?)", [run_id, off, resumed])
                _rebuild_blocks(db, run_id)
                row["step"], row["epoch"] = resumed, e.get("resumed_epoch", 0)
                best_dirty = True
        elif kind == "status":
            row["last_status"], row["last_status_t"] = e.get("status"), t
            row["message"] = e.get("message")
            if e.get("status") in store.TERMINAL:
                row["ended"] = t
        elif kind == "heartbeat":
            for key in ("epoch", "step", "total_steps", "eta_s"):
                if e.get(key) is not None:
                    row[key] = e[key]
        elif kind == "checkpoint":
            path = e.get("path", "")
            db["checkpoints"].upsert({"run_id": run_id, "path": path, "name": Path(path).name,
                                      "epoch": e.get("epoch"), "step": e.get("step"), "t": t,
                                      "metrics": json.dumps(e.get("metrics") or {})},
                                     pk=("run_id", "path"))
        if kind in ("metric", "checkpoint") and e.get("epoch") is not None:
            row["epoch"] = max(row.get("epoch") or 0, e["epoch"])
            row["step"] = max(row.get("step") or 0, e.get("step") or 0)
    flush()
    return best_dirty


def _add_to_blocks(db: sqlite_utils.Database, run_id: str, rows) -> None:
    """Fold metric rows ``(run_id, offset, t, epoch, step, split, name, value)`` into their
    series' blocks: the row count, and the lowest and highest point (value, offset, step, epoch)
    of each (split, name, offset // BLOCK_BYTES). A missing split or name is stored as ''."""
    acc: dict[tuple, list] = {}
    for _, off, _, epoch, step, split, name, value in rows:
        key = (split or "", name or "", off // BLOCK_BYTES)
        b = acc.get(key)
        if b is None:
            b = acc[key] = [0, None, None]
        b[0] += 1
        if value is not None:
            if b[1] is None or value < b[1][0]:
                b[1] = (value, off, step, epoch)
            if b[2] is None or value > b[2][0]:
                b[2] = (value, off, step, epoch)
    none = (None, None, None, None)
    for (split, name, block), (count, lo, hi) in acc.items():
        old = db.execute("SELECT count, lo_value, lo_offset, lo_step, lo_epoch, hi_value, "
                         "hi_offset, hi_step, hi_epoch FROM metric_blocks WHERE run_id=? AND "
                         "split=? AND name=? AND block=?", [run_id, split, name, block]).fetchone()
        if old is not None:
            count += old[0]
            old_lo, old_hi = old[1:5], old[5:9]
            if old_lo[0] is not None and (lo is None or old_lo[0] <= lo[0]):
                lo = old_lo  # the earlier point wins a tie, as in log order
            if old_hi[0] is not None and (hi is None or old_hi[0] >= hi[0]):
                hi = old_hi
        db.execute("INSERT OR REPLACE INTO metric_blocks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   [run_id, split, name, block, count, *(lo or none), *(hi or none)])


def _rebuild_blocks(db: sqlite_utils.Database, run_id: str) -> None:
    """A run's blocks again from its metric rows (after a resume superseded some)."""
    db.execute("DELETE FROM metric_blocks WHERE run_id=?", [run_id])
    cur = db.execute("SELECT * FROM metrics WHERE run_id=? ORDER BY offset", [run_id])
    while True:
        rows = cur.fetchmany(50_000)
        if not rows:
            break
        _add_to_blocks(db, run_id, rows)


def _refresh_best(db: sqlite_utils.Database, row: dict, spec: dict) -> None:
    split = "test"
    name = row.get("best_metric") or "rho"
    order = "DESC" if HIGHER_IS_BETTER.get(name, True) else "ASC"
    best = db.execute(f"SELECT value, epoch FROM metrics WHERE run_id=? AND name=? AND split=? "
                      f"AND value IS NOT NULL ORDER BY value {order}, epoch LIMIT 1",
                      [row["id"], name, split]).fetchone()
    row["best_value"], row["best_epoch"] = best if best else (None, None)
    rho = db.execute("SELECT max(value) FROM metrics WHERE run_id=? AND name='rho' AND split=?",
                     [row["id"], split]).fetchone()
    row["best_rho"] = rho[0] if rho else None


def _refresh_status(row: dict, run_path: Path) -> None:
    job = store.read_job(run_path)
    if job:
        row["executor"], row["host"] = job.get("executor"), job.get("host")
        row["pid"], row["gpus"] = job.get("pid"), json.dumps(job.get("gpus") or [])
    age = time.time() - row["last_t"] if row.get("last_t") else None
    row["status"], row["status_note"] = status_of(row.get("last_status"),
                                                  row.get("last_status_t") or 0.0, job, age)
    if row["status"] != "running":
        row["eta_s"] = None


def _refresh_meta(row: dict, run_path: Path) -> bool:
    """Copy meta.json into the row when the file changed since the last ingest; True if it did."""
    if row.get("meta_sig") is not None and row["meta_sig"] == meta.meta_signature(run_path):
        return False
    row.update(meta.meta_columns(run_path))
    return True


def _forget(db: sqlite_utils.Database, run_id: str) -> None:
    """Drop every row of a run (its directory is gone)."""
    for table in ("metrics", "metric_blocks", "checkpoints"):
        db.execute(f"DELETE FROM {table} WHERE run_id=?", [run_id])
    db.execute("DELETE FROM runs WHERE id=?", [run_id])


# Runs whose status cannot change while their files do not: a final status (or crashed) of a job
# this host judges by its process or heartbeat. Slurm jobs are asked again (a requeue).
SETTLED = ("finished", "failed", "stopped", "crashed")
SETTLE_NS = 2_000_000_000  # a folder written this recently is read again (coarse mtimes)


def _signature(run_path: Path) -> tuple[int, int] | None:
    """(the run folder's mtime, the size of its event log): the folder's mtime changes with every
    file written in it (atomically, by rename: run.json, job.json), the size with every event."""
    try:
        folder = os.stat(run_path).st_mtime_ns
    except OSError:
        return None
    try:
        return folder, os.stat(run_path / EVENTS_FILE).st_size
    except OSError:
        return folder, 0


def _sync(db: sqlite_utils.Database, runs_dir: Path) -> dict:
    """``sync`` on an open connection. A run whose status is settled and whose folder mtime and
    log size are those recorded when it settled (``folder_mtime_ns``) is not read again."""
    rows = {r[0]: r[1:] for r in db.execute(
        "SELECT id, offset, status, executor, folder_mtime_ns FROM runs")}
    seen, read = set(), 0
    for path in store.list_run_dirs(runs_dir):
        sig, row = _signature(path), rows.get(path.name)
        if sig is not None and row is not None and row[3] == sig[0] and row[0] == sig[1] \
                and row[1] in SETTLED and row[2] != "slurm":
            seen.add(path.name)
            continue
        try:
            read += ingest_run(db, path)
        except (ValueError, KeyError, store.RunError):
            continue  # a run.json being written or damaged: the next sync tries again
        seen.add(path.name)
        after = db.execute("SELECT offset, status, executor, folder_mtime_ns FROM runs "
                           "WHERE id=?", [path.name]).fetchone()
        settled = sig is not None and after is not None and after[0] == sig[1] \
            and after[1] in SETTLED and after[2] != "slurm" and time.time_ns() - sig[0] > SETTLE_NS
        if after is not None and after[3] != (sig[0] if settled else None):
            db.execute("UPDATE runs SET folder_mtime_ns=? WHERE id=?",
                       [sig[0] if settled else None, path.name])
    gone = [r for r in rows if r not in seen]
    for run_id in gone:
        _forget(db, run_id)
    return {"runs": len(seen), "events": read, "removed": len(gone)}


def sync(runs_dir: str | os.PathLike) -> dict:
    """Ingest every run directory of the workspace; drop rows whose directory is gone."""
    with open_index(runs_dir) as db:
        return _sync(db, Path(runs_dir))


def rebuild(runs_dir: str | os.PathLike) -> dict:
    """Delete the index file and ingest every run directory again."""
    runs_dir = Path(runs_dir)
    for suffix in ("", "-wal", "-shm"):
        (runs_dir / (INDEX_FILE + suffix)).unlink(missing_ok=True)
    return sync(runs_dir)


def delete_run(runs_dir: str | os.PathLike, run_path: str | os.PathLike) -> None:
    """Delete a run: its directory with every file (``meta.delete_run_dir``: refused while it is
    running or queued), then its index rows. Groups or comparisons that named it just lose it."""
    run_path = Path(run_path)
    meta.delete_run_dir(run_path)
    with open_index(runs_dir) as db:
        _forget(db, run_path.name)


def update_meta(runs_dir: str | os.PathLike, run_path: str | os.PathLike, **changes) -> dict:
    """``meta.update_meta`` then the run's index row at once (no wait for the next sync)."""
    result = meta.update_meta(run_path, **changes)
    with open_index(runs_dir) as db:
        ingest_run(db, Path(run_path))
    return result


# ---------------------------------------------------------------- queries (dicts out)

def _decoded(row: dict) -> dict:
    """An index row as the app and the CLI use it: ``tags`` a list, ``archived`` a bool."""
    try:
        tags = json.loads(row.get("tags") or "[]")
    except ValueError:
        tags = []
    row["tags"] = tags if isinstance(tags, list) else []
    row["archived"] = bool(row.get("archived"))
    return row


def list_runs(runs_dir: str | os.PathLike, sync_first: bool = True,
              archived: bool = True) -> list[dict]:
    """Every run's row, newest first, after a sync when ``sync_first`` (one connection);
    ``archived=False`` leaves the archived ones out."""
    where = "" if archived else " WHERE NOT coalesce(archived, 0)"
    with open_index(runs_dir) as db:
        if sync_first:
            _sync(db, Path(runs_dir))
        return [_decoded(r) for r in db.query(f"SELECT * FROM runs{where} ORDER BY created DESC")]


def best_test_metrics(runs_dir: str | os.PathLike, run_ids: list[str]) -> dict[str, dict]:
    """``{run id: {metric name: its best test value}}`` (the largest, or the smallest for
    ``HIGHER_IS_BETTER[name] is False``: l2, rl2) over the runs' test epochs."""
    if not run_ids:
        return {}
    few = len(run_ids) <= 500  # else every run's (one pass; no SQL variable limit)
    where = f" AND r.id IN ({','.join('?' * len(run_ids))})" if few else ""
    # runs first (CROSS JOIN keeps that order): each run's test rows are then one seek in the
    # (run_id, split, ...) index; grouping the metrics table itself scanned every row of it,
    # a million training rows of one long run included (0.09-0.13 s against 0.015 s)
    with open_index(runs_dir) as db:
        rows = db.execute(f"SELECT r.id, m.name, max(m.value), min(m.value) FROM runs r "
                          f"CROSS JOIN metrics m WHERE m.run_id = r.id AND m.split = 'test' "
                          f"AND m.value IS NOT NULL{where} GROUP BY r.id, m.name",
                          run_ids if few else []).fetchall()
    out: dict[str, dict] = {r: {} for r in run_ids}
    for run_id, name, hi, lo in rows:
        if run_id in out:
            out[run_id][name] = hi if HIGHER_IS_BETTER.get(name, True) else lo
    return out


def get_run(runs_dir: str | os.PathLike, run_id: str) -> dict | None:
    with open_index(runs_dir) as db:
        return run_row(db, run_id)


def run_metrics(runs_dir: str | os.PathLike, run_id: str, after_offset: int = -1,
                split: str | tuple[str, ...] | None = None,
                name: str | None = None) -> list[dict]:
    """Metric rows of a run in log order: only those after ``after_offset`` if given, only one
    split (or those of a tuple of splits) / one metric if given."""
    with open_index(runs_dir) as db:
        return metric_rows(db, run_id, after_offset, split, name)


def metric_names(runs_dir: str | os.PathLike, run_ids: list[str]) -> list[tuple[str, str]]:
    """The sorted (split, name) pairs logged by any of ``run_ids``."""
    if not run_ids:
        return []
    marks = ",".join("?" * len(run_ids))
    with open_index(runs_dir) as db:
        rows = db.execute(f"SELECT DISTINCT split, name FROM metrics WHERE run_id IN ({marks})",
                          run_ids).fetchall()
    return sorted((s, n) for s, n in rows)


def run_checkpoints(runs_dir: str | os.PathLike, run_id: str) -> list[dict]:
    with open_index(runs_dir) as db:
        return list(db.query("SELECT * FROM checkpoints WHERE run_id=? ORDER BY epoch, name",
                             [run_id]))


def workspace_checkpoints(runs_dir: str | os.PathLike) -> list[dict]:
    """Every checkpoint row of the workspace with its run's ``run_dir`` and ``method``: runs
    newest first, then as ``run_checkpoints`` orders them (one query for the whole workspace)."""
    with open_index(runs_dir) as db:
        return list(db.query("SELECT c.*, r.run_dir, r.method FROM checkpoints c JOIN runs r "
                             "ON r.id = c.run_id ORDER BY r.created DESC, r.id, c.epoch, c.name"))


# ---------------------------------------------------------------- queries on an open connection

def run_row(db: sqlite_utils.Database, run_id: str) -> dict | None:
    rows = list(db.query("SELECT * FROM runs WHERE id=?", [run_id]))
    return _decoded(rows[0]) if rows else None


def metric_rows(db: sqlite_utils.Database, run_id: str, after_offset: int = -1,
                split: str | tuple[str, ...] | None = None,
                name: str | None = None) -> list[dict]:
    if isinstance(split, (tuple, list)):  # one indexed read a split, merged in log order
        rows = [r for one in split for r in metric_rows(db, run_id, after_offset, one, name)]
        return sorted(rows, key=lambda r: r["offset"])
    sql, args = "SELECT * FROM metrics WHERE run_id=? AND offset>?", [run_id, after_offset]
    if split:  # the series index, not the log-order key a million train rows would be read by
        sql, args = sql.replace("metrics", "metrics INDEXED BY metrics_series", 1) \
            + " AND split=?", args + [split]
    if name:
        sql, args = sql + " AND name=?", args + [name]
    return list(db.query(sql + " ORDER BY offset", args))


class Cursor(NamedTuple):
    """Where a reader of one run's metric rows stopped: the run's attempts, the last offset."""
    attempts: int = -1
    offset: int = -1


def metrics_since(db: sqlite_utils.Database, run_id: str,
                  cursor: Cursor | None) -> tuple[list[dict], Cursor, bool]:
    """A run's metric rows after ``cursor`` (log order), the new cursor, and ``restart``.

    A new attempt may have superseded rows the reader already holds (the resume rule, applied
    on ingest): then every row the index kept is returned again and ``restart`` is True, so the
    reader drops what it held. No cursor (a first read) is a restart too.
    """
    attempts = _attempts(db, run_id)
    restart = cursor is None or cursor.attempts != attempts
    after = -1 if restart else cursor.offset
    rows = metric_rows(db, run_id, after)
    return rows, Cursor(attempts, max([after] + [r["offset"] for r in rows])), restart


def _attempts(db: sqlite_utils.Database, run_id: str) -> int:
    found = db.execute("SELECT attempts FROM runs WHERE id=?", [run_id]).fetchone()
    return (found[0] or 0) if found else 0


def series_summary(db: sqlite_utils.Database, run_id: str,
                   raw_limit: int) -> tuple[dict[tuple, dict], Cursor]:
    """Every metric series of a run and the cursor after them, read in one snapshot.

    ``{(split, name): {"count": rows, "step": [...], "epoch": [...], "value": [...]}}`` in log
    order: every row of a series of at most ``raw_limit`` rows; of a longer one, the lowest and
    the highest point of each ``BLOCK_BYTES`` of the log (``count`` stays the series' row
    count). Costs O(blocks + raw_limit) whatever the run's length.
    """
    db.execute("BEGIN")  # one snapshot: a writer appending meanwhile is seen by the next tick
    try:
        attempts = _attempts(db, run_id)
        last = db.execute("SELECT max(offset) FROM metrics WHERE run_id=?", [run_id]).fetchone()
        blocks: dict[tuple, list] = {}
        for b in db.execute("SELECT split, name, count, lo_value, lo_offset, lo_step, lo_epoch, "
                            "hi_value, hi_offset, hi_step, hi_epoch FROM metric_blocks "
                            "WHERE run_id=? ORDER BY split, name, block", [run_id]):
            blocks.setdefault((b[0] or None, b[1] or None), []).append(b[2:])
        series = {}
        for (split, name), parts in blocks.items():
            count = sum(p[0] for p in parts)
            if count <= raw_limit:
                points = db.execute("SELECT offset, step, epoch, value FROM metrics WHERE "
                                    "run_id=? AND split IS ? AND name IS ? ORDER BY offset",
                                    [run_id, split, name]).fetchall()
            else:
                points = sorted({(p[o + 1], p[o + 2], p[o + 3], p[o]) for p in parts
                                 for o in (1, 5) if p[o + 1] is not None})
            series[(split, name)] = {"count": count, "step": [p[1] for p in points],
                                     "epoch": [p[2] for p in points],
                                     "value": [p[3] for p in points]}
    finally:
        db.execute("COMMIT")
    return series, Cursor(attempts, last[0] if last and last[0] is not None else -1)


class Follow(NamedTuple):
    row: dict | None    # the run's index row, after ingesting its new events
    metrics: list[dict]  # its metric rows after the cursor (all of them when restart)
    cursor: Cursor
    restart: bool
    series: dict | None = None  # instead of ``metrics`` on a restart: ``series_summary``


def follow_run(runs_dir: str | os.PathLike, run_id: str, run_path: str | os.PathLike,
               cursor: Cursor | None = None, summary_limit: int | None = None) -> Follow:
    """One tick of a live view, on one connection: ingest the run's new bytes, read its row and
    its metric rows after ``cursor`` (see ``metrics_since``). With ``summary_limit``, a restart
    (a first read, or a new attempt) returns ``series_summary(..., summary_limit)`` in
    ``series`` instead of every row."""
    with open_index(runs_dir) as db:
        ingest_run(db, Path(run_path))
        if summary_limit is not None and (cursor is None
                                          or cursor.attempts != _attempts(db, run_id)):
            series, cursor = series_summary(db, run_id, summary_limit)
            return Follow(run_row(db, run_id), [], cursor, True, series)
        rows, cursor, restart = metrics_since(db, run_id, cursor)
        return Follow(run_row(db, run_id), rows, cursor, restart)
