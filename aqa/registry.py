"""Name -> builder registries for methods, backbones and datasets.

A registry maps a name to an entry. Entries are registered by decorating a function or class
in the module that defines them; ``load_builtins()`` imports those modules once, so that
``METHODS.get("regression")`` works from anywhere. Tests iterate the registries, so a new entry
is tested the day it lands.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable, Generic, TypeVar

from aqa.errors import ConfigError

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
    "aqa.models.fdtsa",
    "aqa.data.folder",
    "aqa.data.mtl_aqa",
    "aqa.data.aqa7",
    "aqa.data.frfs",
    "aqa.data.fisv",
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

_loaded = False
_lock = threading.RLock()


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
        _loaded = True
