"""Workspace, sidebar, formatting and navigation helpers shared by every page.

Run state is read from the run directories through the index on every script run (short
connections, ``aqa.runs.index``); nothing about runs is kept in ``st.session_state``.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from pathlib import Path

import streamlit as st

from aqa.runs import index, store

# The page files, registered with st.navigation by app.py. The folder is not named ``pages/``:
# that name would switch on Streamlit's legacy multipage mode (a page URL opened first on a fresh
# server would run the page file without app.py).
PAGES = {
    "home": "app_pages/home.py",
    "launch": "app_pages/launch.py",
    "runs": "app_pages/runs.py",
    "compare": "app_pages/compare.py",
    "score": "app_pages/score.py",
    "data": "app_pages/data.py",
}

STATUS_ICON = {"running": "●", "queued": "○", "finished": "✓", "failed": "✗",
               "stopped": "■", "crashed": "⚠"}


def runs_dir() -> Path:
    """The workspace: ``$AQA_RUNS_DIR`` or ``./runs`` (resolved)."""
    return store.resolve_runs_dir(None)


def list_runs(sync: bool = False) -> list[dict]:
    """Rows of the index (the sidebar syncs it once at the top of every script run)."""
    return index.list_runs(runs_dir(), sync_first=sync)


BEST_RHO_HELP = ("official protocol: the highest test ρ of any epoch, as the papers report it. "
                 "A run's page shows the honest number too: one epoch chosen on a validation "
                 "split (train.val_fraction)")
WARM_AFTER_S = 1.0  # after the first page has been served
_warm_started = threading.Event()


def _warm_imports() -> None:
    try:
        from aqa.registry import BACKBONES, DATASETS, METHODS  # torch and every method module
        for registry in (METHODS, DATASETS, BACKBONES):
            for name in registry.names():
                registry.get(name)
    except Exception:  # a page that needs them reports the problem itself
        pass


def warm_up() -> None:
    """Once per server process, import torch and the method registry in a background thread:
    the first visit to Launch, Score or Data then does not wait seconds for the imports (a
    page importing them meanwhile waits for the same import, never does it twice)."""
    if not _warm_started.is_set():
        _warm_started.set()
        timer = threading.Timer(WARM_AFTER_S, _warm_imports)
        timer.daemon = True
        timer.start()


def sidebar() -> None:
    """Workspace path and the counts of running and queued jobs."""
    warm_up()
    rows = list_runs(sync=True)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in store.STATUSES}
    with st.sidebar:
        # inline code in a caption: st.code would load the front end's syntax highlighter
        # (1.5 MB of JavaScript) on every page for one path
        st.caption(f"Workspace  \n`{runs_dir()}`")
        c1, c2 = st.columns(2)
        c1.metric("running", counts["running"])
        c2.metric("queued", counts["queued"])
        st.caption(f"{len(rows)} run(s) · {counts['finished']} finished · "
                   f"{counts['crashed']} crashed · {counts['failed']} failed")


@contextlib.contextmanager
def lazy_expander(label: str, key: str):
    """An expander whose content the page builds only while it is open (``with ... as open_:
    if open_: ...``): opening or closing it reruns the script. For sections whose widgets are
    costly to send and draw (pickers over every run) and that most visits never open."""
    box = st.expander(label, key=key, on_change="rerun")
    with box:
        yield bool(box.open)


def plain_block(text: str) -> None:
    """Preformatted text (a log tail, a table's Markdown or LaTeX source), drawn by Streamlit's
    Markdown as a ``stMarkdownPre`` block. Not ``st.code``: that element loads the front end's
    syntax highlighter (1.5 MB of JavaScript, parsed on every page load that shows one), which
    held back the whole page's first paint on two cores (docs/performance.md). The text is
    escaped: nothing in it is read as HTML or Markdown."""
    st.markdown(f"<pre>{html.escape(text)}</pre>", unsafe_allow_html=True)


def status_label(status: str | None) -> str:
    return f"{STATUS_ICON.get(status or '', '')} {status or '?'}".strip()


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(max(0, seconds))
    h, m, s = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_time(t: float | None) -> str:
    if not t:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def fmt_float(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run_duration(row: dict) -> float | None:
    start = row.get("started")
    if not start:
        return None
    end = row.get("ended") or (time.time() if row.get("status") == "running" else row.get("last_t"))
    return (end - start) if end else None


def open_run(run_id: str) -> None:
    """Go to the run's page."""
    st.switch_page(PAGES["runs"], query_params={"run": run_id})


def show_error(exc: BaseException) -> None:
    """An AQAError's message, as the user should see it (no traceback)."""
    st.error(str(exc), icon=":material/error:")
