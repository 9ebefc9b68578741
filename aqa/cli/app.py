"""``aqa app``: serve the Streamlit app (``app.py``, ``app_pages/``, ``ui/``) of this checkout.

The app is not part of the wheel: it runs from a clone, where ``pip install -e ".[app]"`` (or
``scripts/app.sh``) installs it. ``aqa app`` finds ``app.py`` beside the ``aqa`` package and runs
``streamlit run`` on it with this interpreter, bound to 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from aqa.allocator import server_env
from aqa.cli import common
from aqa.errors import AQAError


def add_parsers(sub) -> None:
    p = sub.add_parser("app", help="serve the Streamlit app on http://127.0.0.1:PORT "
                                   "(from a clone: pip install -e \".[app]\")")
    p.add_argument("--port", type=int, default=8501, help="the port (default 8501)")
    common.add_runs_dir(p)


def app_script() -> Path:
    """The ``app.py`` of the checkout the ``aqa`` package was imported from."""
    import aqa

    script = Path(aqa.__file__).resolve().parent.parent / "app.py"
    if not script.is_file():
        raise AQAError(f"no app.py beside the aqa package ({script.parent}): the app runs from a "
                       "clone of the repository; clone it and run `pip install -e \".[app]\"` "
                       "there (or scripts/app.sh)")
    return script


def app_command(port: int) -> list[str]:
    script = app_script()
    if importlib.util.find_spec("streamlit") is None:
        raise AQAError("streamlit is not installed: pip install -e \".[app]\" (the app extra)")
    return [sys.executable, "-m", "streamlit", "run", str(script),
            "--server.address", "127.0.0.1", "--server.port", str(port)]


def cmd_app(args) -> int:
    """Become streamlit (exec): a signal to ``aqa app`` reaches the server, no orphan is left."""
    cmd = app_command(args.port)
    # one malloc arena: scoring threads then reuse freed memory as the main thread does
    env = server_env({**os.environ, "AQA_RUNS_DIR": str(common.runs_dir(args))})
    os.chdir(app_script().parent)
    os.execve(cmd[0], cmd, env)
    return 0  # not reached


COMMANDS = {"app": cmd_app}
