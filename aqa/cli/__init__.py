"""``python -m aqa ...``: the command line. Every command has --help; listing commands have --json.

One module a command family, each with ``add_parsers(subparsers)`` and ``COMMANDS`` (name ->
``cmd_*(args) -> exit status``); the flags every family shares (``--runs-dir``, ``--json``) and
the JSON printer live in ``common``:

    train     demo, train                     runs      runs ls/show/stop/resume/rerun/logs, index
    score     score, eval                     methods   methods, plan
    jobs      queue ..., gpus                 data      doctor, data ...
    pretrain  pretrain, export-backbone       history   import-checkpoint, import-config, import-log
    compare   compare (runs and published rows as md / csv / tex / json)
    protocol  protocol list/run/show (cross-validation protocols as groups of runs)
    features  features extract, features recipe
    export    export tensorboard / mlflow (metrics, config, checkpoints, predictions)
    app       app (the Streamlit app of this checkout)

A new command goes into its family's module (``add_parsers`` and ``COMMANDS``); a new family is
one more module listed in ``FAMILIES``.

Errors a user can fix print one line (``error: ...``) on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from aqa.cli import (app, compare, data, export, features, history, jobs, methods, pretrain, protocol,
                     runs, score, train)
from aqa.cli.train import DEMO_DATASET, DEMO_METHOD, DEMO_OVERRIDES  # noqa: F401 (the app's demo)
from aqa.errors import AQAError
from aqa.log import log_to_stdout

# In the order of ``python -m aqa --help``; pretrain comes after train (it inherits its options).
FAMILIES = [train, runs, score, compare, protocol, export, methods, jobs, data, features, pretrain,
            history, app]
COMMANDS = {name: cmd for family in FAMILIES for name, cmd in family.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aqa",
                                     description="AQA Studio: train, track and compare action "
                                                 "quality assessment models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in FAMILIES:
        family.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stdout()  # the library's messages (logging.getLogger("aqa")) as plain stdout lines
    try:
        return COMMANDS[args.command](args)
    except AQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
