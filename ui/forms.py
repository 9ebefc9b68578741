"""A config form generated from a run config's dataclasses (``aqa.config.flat_fields``).

Every leaf field becomes a widget labelled with its dotted key, its default from the method's
config (the paper's settings), and its ``# comment`` as help text. The form returns the values
as override strings (``key=value``) for the fields that differ from the defaults; validation is
the library's (``build_run_config`` raises ConfigError with the reason).
"""

from __future__ import annotations

import typing
from typing import Any

import streamlit as st

from aqa.config import choices as config_choices, flat_fields

SECTION_TITLES = {"model": "Method", "backbone": "Backbone", "data": "Data", "optim": "Optimizer",
                  "train": "Training"}


def as_text(value: Any) -> str:
    """The override-string form of a config value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(as_text(v) for v in value)
    return str(value)


def flatten_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _widget(key: str, value: Any, typ: Any, help_text: str, wkey: str) -> str:
    section, _, name = key.rpartition(".")
    choices = config_choices(section, name)
    if choices:
        index = choices.index(value) if value in choices else 0
        return st.selectbox(key, choices, index=index, help=help_text, key=wkey)
    if typ is bool:
        return as_text(st.checkbox(key, value=bool(value), help=help_text, key=wkey))
    if typ is int and isinstance(value, int):
        return as_text(st.number_input(key, value=value, step=1, help=help_text, key=wkey))
    if typing.get_origin(typ) in (list, tuple):
        help_text = f"{help_text} (comma-separated)"
    return st.text_input(key, value=as_text(value), help=help_text, key=wkey)


def config_form(cfg: Any, prefill: dict[str, Any], skip: set[str], key_prefix: str) -> list[str]:
    """Widgets for every field of ``cfg`` (inside an ``st.form``); returns the overrides."""
    fields = [f for f in flat_fields(cfg) if f[0] not in skip]
    sections: dict[str, list] = {}
    for f in fields:
        sections.setdefault(f[0].split(".")[0], []).append(f)
    overrides = []
    tabs = st.tabs([SECTION_TITLES.get(s, s) for s in sections])
    for tab, (section, items) in zip(tabs, sections.items()):
        with tab:
            cols = st.columns(3)
            for i, (key, default, typ, help_text) in enumerate(items):
                start = prefill.get(key, default)
                with cols[i % 3]:
                    text = _widget(key, start, typ, help_text, f"{key_prefix}:{key}")
                if text != as_text(default):
                    overrides.append(f"{key}={text}")
    return overrides
