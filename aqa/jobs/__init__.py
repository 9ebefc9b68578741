"""Jobs: processes that execute runs. ``submit`` is the one entry the app and the CLI use.

    gpus, workspace   leaves: the machine's GPUs, the workspace's settings file
    process           a run's process on this machine: argv, environment, spawn, stop a group
    queue             the local queue (records in job.json) and one scheduling pass
    scheduler         the per-workspace process that runs scheduling passes while runs wait
    launch            what a Slurm task executes (TrainJob), a multi-node run's node share
    slurm             the Slurm executor: sbatch / scancel through submitit
    control           submit(SubmitRequest), rerun, start, stop, resume (this package's API)

Everything here sits above ``aqa.runs`` (run directories, events, index, status).
"""

from aqa.jobs.control import SubmitRequest, rerun, resume, start, stop, submit  # noqa: F401
from aqa.jobs.queue import positions as queue_positions  # noqa: F401
from aqa.jobs.slurm import available as slurm_available  # noqa: F401
from aqa.runs.status import run_status  # noqa: F401
