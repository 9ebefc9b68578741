"""Long computations off the script thread, with a progress bar instead of a spinner.

``start(key, fn, label)`` runs ``fn(report)`` in a small thread pool shared by every session and
keeps the task in the session's state; ``fn`` calls ``report(fraction, text)`` as it goes (a plain
function: worker threads never touch Streamlit). ``show(key, render)`` draws the task: while it
runs, a progress bar in a fragment that polls twice a second (the rest of the page, other pages
and other sessions stay usable); when it is over, ``render(value)``, or its error as a message.
The task stays in the session until another one replaces it, so a result survives reruns.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from aqa.errors import AQAError

WORKERS = 2  # tasks of all sessions running at once; more wait for a free worker (and say so)
POLL_S = 0.5


@dataclass
class Task:
    label: str
    future: Future | None = None
    fraction: float = 0.0
    text: str = "waiting for a free worker…"
    meta: dict = field(default_factory=dict)  # what the task was started for (shown with it)
    started: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, fraction: float, text: str) -> None:
        with self.lock:
            self.fraction, self.text = max(0.0, min(1.0, float(fraction))), text

    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done()


@st.cache_resource
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="aqa-task")


def _key(key: str) -> str:
    return f"_task_{key}"


def start(key: str, fn: Callable[[Callable[[float, str], None]], Any], label: str,
          **meta) -> Task:
    """Run ``fn(report)`` in the background as this session's task ``key`` (replacing a finished
    one; a running one is left alone and returned)."""
    task = get(key)
    if task is not None and task.running:
        return task
    task = Task(label=label, meta=meta)

    def run():
        task.report(0.0, f"{label}: starting")
        return fn(task.report)

    task.future = _pool().submit(run)
    st.session_state[_key(key)] = task
    return task


def get(key: str) -> Task | None:
    return st.session_state.get(_key(key))


def clear(key: str) -> None:
    st.session_state.pop(_key(key), None)


def progress_text(done: int, total: int, what: str) -> tuple[float, str]:
    """(fraction, text) for ``done`` of ``total`` ``what``."""
    return done / max(1, total), f"{done} of {total} {what}"


def show(key: str, render: Callable[[Any], None], error_hint: str = "") -> None:
    """The task ``key`` of this session: its progress while it runs (polled in a fragment), then
    ``render(value)`` once, on the full rerun the fragment asks for when the task ends."""
    task = get(key)
    if task is None:
        return
    if task.running:
        _poll(key)
        return
    try:
        value = task.future.result()
    except AQAError as exc:
        from ui import common

        common.show_error(exc)
    except Exception as exc:  # an error we do not know yet: a message, not a traceback
        st.error(f"{task.label} failed ({type(exc).__name__}: {str(exc)[:300]}). {error_hint}",
                 icon=":material/error:")
    else:
        render(value)


@st.fragment(run_every=POLL_S)
def _poll(key: str) -> None:
    task = get(key)
    if task is None:
        return
    if not task.running:
        st.rerun()  # the whole page again: the result is drawn outside this fragment
    with task.lock:
        fraction, text = task.fraction, task.text
    st.progress(fraction, text=f"{task.label} — {text} ({time.time() - task.started:.0f} s)")
