"""Run configs as files: TOML, YAML or JSON, read for ``aqa train --config FILE`` and written by
``aqa config show RUN`` and ``aqa import-config ... --out FILE``.

A config file is the nested dict of a run's config (``run.json``'s ``config``), whole or in part:

    method = "regression"      # optional: `--method` on the command line does the same
    dataset = "synthetic"
    [train]
    epochs = 20
    [optim]
    lr = 3e-4

Reading checks nothing but the file's syntax; the keys are checked by ``build_run_config`` like
``--set`` overrides (an unknown key is the same ``ConfigError``, here prefixed with the file).
The format follows the file's suffix: ``.toml``, ``.yaml``/``.yml`` or ``.json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from aqa.errors import ConfigError

FORMATS = ("toml", "yaml", "json")
_SUFFIXES = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def format_of(path: str | Path) -> str:
    """The format a file's suffix names; a ConfigError for any other suffix."""
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: a config file ends in .toml, .yaml, .yml or .json")
    return fmt


def read_config_file(path: str | Path) -> dict:
    """The nested dict a TOML, YAML or JSON config file holds (syntax errors name the file)."""
    path = Path(path).expanduser()
    fmt = format_of(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    try:
        if fmt == "toml":
            import tomllib
            data = tomllib.loads(text)
        elif fmt == "yaml":
            data = _yaml().safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # each parser has its own error class; all are the file's fault
        raise ConfigError(f"{path} is not valid {fmt.upper()}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    return data


def dump_config(values: dict, fmt: str, header: list[str] | None = None) -> str:
    """``values`` (a run's config dict) as the text of a ``fmt`` file that ``read_config_file``
    reads back to the same dict; ``header``: comment lines put first (TOML and YAML only)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    values = json.loads(json.dumps(values))  # tuples -> lists; plain JSON types only
    comments = "".join(f"# {line}\n" for line in header or []) if fmt != "json" else ""
    if fmt == "json":
        return json.dumps(values, indent=2) + "\n"
    if fmt == "yaml":
        return comments + _yaml().safe_dump(values, sort_keys=False, default_flow_style=None)
    return comments + _toml_table(values, [])


def write_config_file(values: dict, path: str | Path, header: list[str] | None = None) -> Path:
    path = Path(path).expanduser()
    text = dump_config(values, format_of(path), header)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _yaml():
    try:
        import yaml
    except ImportError:
        raise ConfigError("YAML config files need PyYAML: pip install pyyaml (a dependency of "
                          "aqa-studio), or use a .toml file") from None
    return yaml


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (JSON's escapes are TOML's)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v, where)}"
                               for k, v in value.items()) + "}"
    if value is None:
        raise ConfigError(f"{where} is null, which TOML cannot write: use --format yaml or json")
    raise ConfigError(f"{where}: cannot write a {type(value).__name__} to TOML")


def _toml_table(values: dict, path: list[str]) -> str:
    """Scalars first, then one ``[a.b]`` table per nested dict (TOML's order)."""
    lines, tables = [], []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join(path + [key]))}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        sub = path + [key]
        text += f"\n[{'.'.join(_toml_key(k) for k in sub)}]\n" + _toml_table(value, sub)
    return text
