"""The data doctor as the app uses it: ``check`` (the checks of ``aqa.data.checks``, which the
``python -m aqa doctor`` command runs too) and ``prepare_command`` (how to make a dataset's data).
"""

from __future__ import annotations

import shlex
from pathlib import Path


from aqa.data.checks import CheckReport, check_dataset

DoctorReport = CheckReport  # one report type for the CLI's doctor and the app's Data page


def prepare_command(dataset: str, root: str) -> str:
    """The command that makes ``dataset``'s data at ``root`` (or how to get it)."""
    if dataset == "synthetic":
        code = (f"from aqa.data.synthetic import render_dataset; "
                f"render_dataset({str(root)!r})")
        return f"python -c {shlex.quote(code)}"
    if dataset == "folder":
        return (f"put your clips under {root} with a scores.csv (header video,score"
                "[,difficulty,split]) next to them")
    return f"download {dataset} and pass its folder as the data root (see docs/datasets.md)"


def check(dataset: str, data_root: str | None, runs_dir: str | Path, probe_videos: bool = True,
          max_probe: int | None = None, progress=None) -> CheckReport:
    """Examine ``dataset`` at ``data_root`` (None/"" = the dataset's default location): the
    same checks as ``python -m aqa doctor`` (``aqa.data.checks``); ``progress(done, total)``
    after each sample."""
    return check_dataset(dataset, data_root, runs_dir, probe=probe_videos, max_probe=max_probe,
                         progress=progress)
