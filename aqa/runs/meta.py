"""A run's hygiene: its display name, tags, note and archived flag, kept in ``<run>/meta.json``;
and deleting a run directory.

``run.json`` is immutable, so what a person says about a run after the fact lives beside it:

    meta.json   {"name": str | null, "tags": [str, ...], "note": str, "archived": bool,
                 "updated": unix seconds}

Written atomically (``store.write_json_atomic``) under an exclusive ``flock`` on
``<run>/.meta.lock``, so the app and the CLI changing the same run at once both land. A missing
file means the defaults (no name, no tags, no note, not archived). The index copies these fields
into its ``runs`` rows on ingest, so ``aqa index --rebuild`` keeps them (the run directory is the
truth).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from aqa.errors import RunError
from aqa.runs import store
from aqa.runs.status import read_status

META_JSON, META_LOCK = "meta.json", ".meta.lock"
TRASH = ".trash"  # <runs-dir>/.trash/: where a run being deleted is moved first
DEFAULTS = {"name": None, "tags": [], "note": "", "archived": False}
MAX_NAME, MAX_TAG, MAX_NOTE = 200, 64, 10_000
_TAG_RE = re.compile(r"^[^\s,\"'()]+$")
ACTIVE = ("running", "queued")


def read_meta(path: str | os.PathLike) -> dict:
    """The run's name, tags, note and archived flag (the defaults where ``meta.json`` is absent).
    A damaged file raises ``RunError`` saying which file and what to do."""
    file = Path(path) / META_JSON
    try:
        data = store.read_json(file)
    except FileNotFoundError:
        return dict(DEFAULTS, tags=[])
    except (ValueError, OSError) as exc:
        raise RunError(f"{file} is damaged ({exc}); fix it or delete it (the run loses only its "
                       "name, tags, note and archived flag)") from None
    if not isinstance(data, dict):
        raise RunError(f"{file} is not a JSON object; fix it or delete it")
    out = dict(DEFAULTS, tags=[])
    out.update({k: data[k] for k in DEFAULTS if k in data})
    out["tags"] = [str(t) for t in out["tags"]] if isinstance(out["tags"], list) else []
    out["archived"] = bool(out["archived"])
    out["note"] = str(out["note"] or "")
    return out


def meta_signature(path: str | os.PathLike) -> str:
    """What changes whenever ``meta.json`` is replaced ("" when there is none): the index
    re-reads the file only when this differs from the one it stored."""
    try:
        st = os.stat(Path(path) / META_JSON)
    except FileNotFoundError:
        return ""
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path / META_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_meta(path: str | os.PathLike, **changes) -> dict:
    """Read, change and write ``meta.json`` under the run's meta lock; returns the new meta.
    ``changes`` are fields of ``DEFAULTS``, or ``add_tag`` / ``remove_tag``."""
    path = Path(path)
    store.read_run(path)  # a run directory, or a RunError saying it is not one
    with _locked(path):
        meta = read_meta(path)
        if "add_tag" in changes:
            tag = check_tag(changes.pop("add_tag"))
            if tag not in meta["tags"]:
                meta["tags"].append(tag)
        if "remove_tag" in changes:
            tag = str(changes.pop("remove_tag")).strip()
            if tag not in meta["tags"]:
                raise RunError(f"run {path.name} has no tag {tag!r}; its tags: "
                               f"{', '.join(meta['tags']) or 'none'}")
            meta["tags"].remove(tag)
        unknown = set(changes) - set(DEFAULTS)
        if unknown:
            raise RunError(f"unknown run meta field(s) {sorted(unknown)}; known: {list(DEFAULTS)}")
        if "name" in changes:
            meta["name"] = check_name(changes["name"])
        if "note" in changes:
            meta["note"] = check_note(changes["note"])
        if "archived" in changes:
            meta["archived"] = bool(changes["archived"])
        if "tags" in changes:
            meta["tags"] = list(dict.fromkeys(check_tag(t) for t in changes["tags"]))
        store.write_json_atomic(path / META_JSON, {**meta, "updated": time.time()})
    return meta


def check_tag(tag) -> str:
    tag = str(tag).strip()
    if not tag or len(tag) > MAX_TAG or not _TAG_RE.match(tag):
        raise RunError(f"{tag!r} is not a tag: use 1 to {MAX_TAG} characters without spaces, "
                       "commas, quotes or parentheses (e.g. fav, baseline, lr-sweep)")
    return tag


def check_name(name) -> str | None:
    """A display name (stripped); empty or None clears it (the run id is shown instead)."""
    name = " ".join(str(name or "").split())
    if len(name) > MAX_NAME:
        raise RunError(f"a run name has at most {MAX_NAME} characters (this one has {len(name)})")
    return name or None


def check_note(note) -> str:
    note = str(note or "").strip()
    if len(note) > MAX_NOTE:
        raise RunError(f"a run note has at most {MAX_NOTE} characters (this one has {len(note)})")
    return note


def display_name(row: dict) -> str:
    """How a run is called to a person: its name, else its id."""
    return row.get("name") or row["id"]


def delete_run_dir(path: str | os.PathLike) -> None:
    """Delete a run directory with all its files, unless the run is running or queued.

    The directory is first renamed into ``<runs-dir>/.trash/`` (one atomic step: no reader ever
    sees half a run), then removed. The caller drops the run's index rows
    (``aqa.runs.index.delete_run`` does both).
    """
    path = Path(path)
    store.read_run(path)
    status = read_status(path).status
    if status in ACTIVE:
        raise RunError(f"run {path.name} is {status}: stop it first (`python -m aqa runs stop "
                       f"{path.name}`, or Stop on its page), then delete it")
    trash = path.parent / TRASH
    trash.mkdir(exist_ok=True)
    target = trash / f"{path.name}.{uuid.uuid4().hex[:8]}"
    os.rename(path, target)
    shutil.rmtree(target, ignore_errors=True)
    try:
        trash.rmdir()  # only when empty: another delete may be under way
    except OSError:
        pass
    if target.exists():  # a file that could not be removed: say where it is
        raise RunError(f"run {path.name} is deleted from the workspace, but some of its files "
                       f"could not be removed; delete {target} by hand")


def meta_columns(path: str | os.PathLike) -> dict:
    """The index's columns for the run's meta (tags as JSON text)."""
    sig = meta_signature(path)  # before reading: a change in between is read next time
    try:
        meta = read_meta(path)
    except RunError:  # a damaged meta.json: the run is still listed, with the defaults
        meta = dict(DEFAULTS, tags=[])
    return {"name": meta["name"], "tags": json.dumps(meta["tags"]), "note": meta["note"],
            "archived": int(meta["archived"]), "meta_sig": sig}
