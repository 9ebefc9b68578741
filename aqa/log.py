"""The library's logger, ``logging.getLogger("aqa")`` (modules log to ``aqa.<module>``).

The library never configures logging for you: in a notebook, warnings reach stderr through
Python's last-resort handler and info messages are dropped until you configure them, e.g.
``logging.basicConfig(level=logging.INFO)``; ``logging.getLogger("aqa").setLevel(logging.ERROR)``
silences the library. The command line and the training process (whose stdout is the run's
``stdout.log``) print the library's messages on stdout, one line each, as they always have:
``log_to_stdout()``.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("aqa")


class StdoutHandler(logging.Handler):
    """Writes each record's message to the *current* ``sys.stdout`` (a redirected or captured
    stdout gets it too), flushed: the CLI's and the trainer's output format."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # pragma: no cover - logging's own contract
            self.handleError(record)


def log_to_stdout(level: int = logging.INFO) -> None:
    """Print the ``aqa`` logger's records of ``level`` and above on stdout (once per process)."""
    if not any(isinstance(h, StdoutHandler) for h in logger.handlers):
        handler = StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
