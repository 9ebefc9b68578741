"""What every command family shares: the ``--runs-dir`` and ``--json`` flags and their use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RUNS_DIR_HELP = "workspace folder (default: $AQA_RUNS_DIR, else ./runs)"
JSON_HELP = "print machine-readable JSON"


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)


def add_json(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    p.add_argument("--json", action="store_true", help=help)


def runs_dir(args) -> Path:
    """The workspace of ``--runs-dir`` (default: $AQA_RUNS_DIR, else ./runs), resolved."""
    from aqa.runs.store import resolve_runs_dir
    return resolve_runs_dir(args.runs_dir)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
