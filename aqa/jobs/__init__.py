"""Jobs: processes that execute runs. ``submit`` is the one entry the app and the CLI use."""

from aqa.jobs.local import resume, start, stop, submit  # noqa: F401
