"""Write checkpoints the way the official implementations' files were written (2020-2023):
numpy 1.x, whose scalars pickle as ``numpy.core.multiarray.scalar`` (numpy 2 says
``numpy._core``), and storages saved from a GPU, tagged ``cuda:0``; zip or legacy serialisation.

The tests cannot install numpy 1.x, so :func:`save_as_numpy1` writes those bytes with a pickler
that names numpy's globals by their numpy-1 path. That this is what numpy 1.x really writes is
itself tested: ``tests/fixtures/np1_cuda_zip.pth`` and ``np1_cuda_legacy.pth`` were written by
numpy 1.26.4 itself (see ``tests/fixtures/README.md``), and ``test_parity_core`` checks that this
writer reproduces their pickle byte for byte.
"""

from __future__ import annotations

import contextlib
import pickle
import types

import numpy as np
import torch

_OLD_NAMES = {np._core.multiarray.scalar: ("numpy.core.multiarray", "scalar"),
              np._core.multiarray._reconstruct: ("numpy.core.multiarray", "_reconstruct")}


class _Numpy1Pickler(pickle._Pickler):
    """The pure-Python pickler, naming numpy's reconstruction functions by their numpy-1 path."""

    def save_global(self, obj, name=None):
        old = _OLD_NAMES.get(obj) if callable(obj) else None
        if old is None:
            return super().save_global(obj, name)
        module, qualname = old
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


def dump_as_numpy1(obj, f, protocol=2):
    """``pickle.dump`` as under numpy 1.x (a plain pickle, e.g. an annotation file)."""
    _Numpy1Pickler(f, protocol).dump(obj)


_dump = dump_as_numpy1


_numpy1_pickle = types.ModuleType("numpy1_pickle")
_numpy1_pickle.Pickler, _numpy1_pickle.Unpickler = _Numpy1Pickler, pickle.Unpickler
_numpy1_pickle.load, _numpy1_pickle.dump = pickle.load, _dump


@contextlib.contextmanager
def cuda_tagged():
    """While active, torch.save tags CPU storages ``cuda:0``, as a file saved from a GPU is."""
    def tag(obj):
        return "cuda:0" if getattr(obj, "device", None) is not None and obj.device.type == "cpu" else None

    # registered with the highest priority: the first tagger that answers wins
    entry = (-1000, tag, lambda obj, location: None)
    torch.serialization._package_registry.append(entry)
    torch.serialization._package_registry.sort(key=lambda e: e[0])
    try:
        yield
    finally:
        torch.serialization._package_registry.remove(entry)


def save_as_numpy1(obj, path, legacy: bool = False) -> None:
    """``torch.save(obj, path)`` as a numpy-1.x, GPU-trained script wrote it."""
    with cuda_tagged():
        torch.save(obj, path, pickle_module=_numpy1_pickle,
                   _use_new_zipfile_serialization=not legacy)
