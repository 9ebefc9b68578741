"""Old import paths of the jobs layer, kept so existing callers and scripts go on working.

This module has no code of its own and nothing in ``aqa`` imports it. New code imports:
``aqa.jobs`` (``submit``, ``SubmitRequest``, ``stop``, ``resume``, ``rerun``, ``start``),
``aqa.runs.status`` (``run_status``, ``read_status``) and ``aqa.jobs.process`` (``spawn``,
``train_argv``, ``child_env``, ``record_started``).
"""

from aqa.jobs.control import SubmitRequest, rerun, resume, start, stop, submit  # noqa: F401
from aqa.jobs.process import (PROJECT_ROOT, child_env, record_started, spawn,  # noqa: F401
                              train_argv)
from aqa.runs.status import read_status, run_status  # noqa: F401
