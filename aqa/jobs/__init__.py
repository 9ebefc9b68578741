"""Jobs: processes that execute runs. ``submit`` is the one entry the app and the CLI use."""

from aqa.jobs.local import rerun, resume, start, stop, submit  # noqa: F401
from aqa.jobs.queue import positions as queue_positions  # noqa: F401
from aqa.jobs.slurm import available as slurm_available  # noqa: F401
