"""A restricted unpickler for foreign weight files that are plain pickles of numpy arrays.

``pickle.load`` runs whatever callable a file names (``os.system`` included). ``safe_load`` only
resolves the globals of an explicit allowlist: numpy array and scalar reconstruction, ``dtype``,
``collections.OrderedDict`` and a few builtin containers. Any other global raises
:class:`CheckpointError` naming it and the file, before anything is called.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from typing import Any, BinaryIO, Iterable

from aqa.errors import CheckpointError

# (module, name) pairs a file may name. numpy 2 moved numpy.core to numpy._core; files written
# by either version name their own spelling, so both are listed.
DEFAULT_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    # protocol-2 pickles (Python 2 era files, torch.save's default protocol) spell bytes as
    # _codecs.encode(text, "latin1"): numpy arrays and scalars in them need it; it only encodes
    ("_codecs", "encode"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only ``allowed`` (module, name) pairs."""

    def __init__(self, file: BinaryIO, allowed: Iterable[tuple[str, str]], source: str):
        super().__init__(file)
        self.allowed = frozenset(allowed)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise CheckpointError(
                f"{self.source}: refused to unpickle global {module}.{name} (not on the allowlist "
                "of aqa.safe_pickle); this file is not a plain pickle of arrays, do not load it "
                "unless you trust its origin")
        if module.startswith("numpy.core."):  # the numpy>=2 home, without the deprecation shim
            try:
                return getattr(importlib.import_module("numpy._core." + module[11:]), name)
            except (ImportError, AttributeError):
                pass
        return getattr(importlib.import_module(module), name)


def safe_load(path_or_file: str | os.PathLike | BinaryIO,
              extra_allowed: Iterable[tuple[str, str]] = ()) -> Any:
    """Unpickle ``path_or_file`` resolving only ``DEFAULT_ALLOWED`` plus ``extra_allowed``."""
    allowed = DEFAULT_ALLOWED | frozenset(tuple(p) for p in extra_allowed)
    if isinstance(path_or_file, (str, os.PathLike)):
        source = os.fspath(path_or_file)
        try:
            with open(source, "rb") as f:
                return _load(f, allowed, source)
        except OSError as exc:
            raise CheckpointError(f"cannot read {source}: {exc}") from exc
    return _load(path_or_file, allowed, getattr(path_or_file, "name", "<file object>"))


def _load(f: BinaryIO, allowed: frozenset, source: str) -> Any:
    try:
        return RestrictedUnpickler(f, allowed, str(source)).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, io.UnsupportedOperation) as exc:
        raise CheckpointError(f"{source} is not a readable pickle "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from exc
