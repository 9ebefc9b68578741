"""The workspace config file, ``<runs-dir>/workspace.toml``: queue, GPU and Slurm defaults.

    [queue]
    cpu_slots = 1              # CPU runs at once (env AQA_CPU_SLOTS overrides)
    [gpus]
    busy_threshold_mb = 1024   # a GPU whose foreign processes use more is not handed out
    [slurm]
    partition = "gpu"          # any of: partition, account, time, gpus_per_node, nodes,
    account = "myproject"      #         cpus_per_task, mem, qos, constraint
    time = "2:00:00"

A missing file means the defaults; an unknown section or key is an error (a typo must not be
silently ignored).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from aqa.errors import ConfigError

WORKSPACE_FILE = "workspace.toml"
SLURM_KEYS = ("partition", "account", "time", "gpus_per_node", "nodes", "cpus_per_task", "mem",
              "qos", "constraint")
DEFAULTS = {"queue": {"cpu_slots": 1}, "gpus": {"busy_threshold_mb": 1024.0},
            "slurm": {k: None for k in SLURM_KEYS}}


def load(runs_dir: str | os.PathLike) -> dict:
    """The workspace config with defaults filled in and ``AQA_CPU_SLOTS`` applied."""
    path = Path(runs_dir) / WORKSPACE_FILE
    cfg = {k: dict(v) for k, v in DEFAULTS.items()}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        for section, values in data.items():
            if section not in cfg or not isinstance(values, dict):
                raise ConfigError(f"{path}: unknown section [{section}]; expected one of "
                                  f"{', '.join(cfg)}")
            for key, value in values.items():
                if key not in cfg[section]:
                    raise ConfigError(f"{path}: unknown key {key!r} in [{section}]; expected "
                                      f"one of {', '.join(cfg[section])}")
                cfg[section][key] = value
    env = os.environ.get("AQA_CPU_SLOTS")
    if env:
        cfg["queue"]["cpu_slots"] = env
    try:
        cfg["queue"]["cpu_slots"] = int(cfg["queue"]["cpu_slots"])
        if cfg["queue"]["cpu_slots"] < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"cpu_slots must be a whole number >= 1 (AQA_CPU_SLOTS or [queue] in "
                          f"{path}), got {cfg['queue']['cpu_slots']!r}") from None
    cfg["gpus"]["busy_threshold_mb"] = float(cfg["gpus"]["busy_threshold_mb"])
    return cfg
