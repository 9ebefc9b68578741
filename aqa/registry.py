"""Name -> builder registries for methods, backbones and datasets.

A registry maps a name to an entry. Entries are registered by decorating a function or class
in the module that defines them; ``load_builtins()`` imports those modules once, so that
``METHODS.get("regression")`` works from anywhere. Tests iterate the registries, so a new entry
is tested the day it lands.

Plugins: an installed package adds entries through the entry-point groups ``aqa.methods``,
``aqa.backbones`` and ``aqa.datasets``. An entry point's value is a module whose import registers
(``toy = "aqa_toy"``) or a callable to call once (``toy = "aqa_toy:register"``). They are loaded
with the built-ins (lazily, once, in every process: the CLI, the app and ``python -m aqa.train``),
and a plugin that fails to load is a ``PluginError`` naming it, never skipped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from typing import Any, Callable, Generic, TypeVar

from aqa.errors import ConfigError, PluginError

T = TypeVar("T")

# Modules whose import registers the built-in entries.
_BUILTIN_MODULES = (
    "aqa.models.tiny3d",
    "aqa.models.i3d",
    "aqa.models.regression",
    "aqa.models.core",
    "aqa.models.usdl",
    "aqa.models.tpt",
    "aqa.models.pecop",
    "aqa.models.tsa",
    "aqa.models.gdlt",
    "aqa.models.cofinal",
    "aqa.models.fdtsa",
    "aqa.data.folder",
    "aqa.data.mtl_aqa",
    "aqa.data.aqa7",
    "aqa.data.frfs",
    "aqa.data.fisv",
    "aqa.data.rg",
    "aqa.data.jigsaws",
    "aqa.data.pd4t",
    "aqa.data.finediving",
)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry
        return deco

    def get(self, name: str) -> T:
        load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


METHODS: Registry[Any] = Registry("method")
BACKBONES: Registry[Any] = Registry("backbone")
DATASETS: Registry[Any] = Registry("dataset")

PLUGIN_GROUPS = ("aqa.methods", "aqa.backbones", "aqa.datasets")

_loaded = False
_lock = threading.RLock()
_plugins: list[dict] = []


def load_builtins() -> None:
    """Import the modules that register the built-in entries, once, thread-safely (the app runs
    scripts in several threads; a second thread must wait, not see half-filled registries)."""
    global _loaded
    if _loaded:
        return
    with _lock:  # re-entrant: a module being imported may itself call get()
        if _loaded:
            return
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        loaded = [_load_plugin(group, ep) for group in PLUGIN_GROUPS
                  for ep in importlib.metadata.entry_points(group=group)]
        _plugins[:] = loaded
        _loaded = True


def plugins() -> list[dict]:
    """The plugins loaded: {"group", "name", "value", "distribution", "version"} each."""
    load_builtins()
    return list(_plugins)


def _load_plugin(group: str, ep: importlib.metadata.EntryPoint) -> dict:
    dist = getattr(ep, "dist", None)
    info = {"group": group, "name": ep.name, "value": ep.value,
            "distribution": dist.name if dist else None, "version": dist.version if dist else None}
    origin = f"plugin {ep.name!r} ({group} = {ep.value!r}" + \
        (f", from {dist.name} {dist.version})" if dist else ")")
    try:
        target = ep.load()  # a module: importing it registered its entries
        if callable(target) and not isinstance(target, type):  # a function: it registers
            target()
    except Exception as exc:  # whatever the plugin raised: the user must see it, with its name
        fix = f"pip uninstall {dist.name}" if dist else "uninstall it"
        raise PluginError(f"{origin} failed to load: {type(exc).__name__}: {exc}; fix the plugin "
                          f"or remove it ({fix})") from exc
    return info
