"""Training pairs for pair methods (CoRe, TPT), on top of ``aqa.data.exemplars``.

Training: each query gets one exemplar from its group of the training split (the rule of
``exemplars.choose_exemplars``), drawn from a generator seeded by numpy's global RNG, whose state
the training checkpoint saves: a resumed run draws what an uninterrupted one would.
Test and scoring: ``voters`` gives a query the same exemplars every time (seeded by its id).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from aqa.data.base import Sample
from aqa.data.exemplars import ExemplarPool, Exemplars, choose_exemplars, pool_by


def voters(query: Sample, pool: ExemplarPool, k: int, seed: int = 0,
           pad: bool = False) -> Exemplars:
    """Up to ``k`` exemplars for ``query``, the same every time for the same id and seed."""
    digest = hashlib.sha1(f"{seed}:{query.id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return choose_exemplars(query, pool, k, rng, exclude_self=True, pad=pad)


class PairDataset(Dataset):
    """Items of ``clips`` with one training exemplar each (``exemplar_video``, ``_score``,
    ``_difficulty``, and ``exemplar_<k>`` for every extra key ``k`` of ``clips``, e.g.
    FineDiving's ``exemplar_transits``); the exemplar is decoded through ``clips`` too (same
    transform)."""

    def __init__(self, clips: Dataset, key: str):
        self.clips = clips
        self.pool = pool_by(clips.samples, key)
        self._index = {s.id: i for i, s in enumerate(clips.samples)}

    @property
    def samples(self) -> Sequence[Sample]:
        return self.clips.samples

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.clips[i])
        rng = np.random.default_rng(np.random.randint(2**31))
        (exemplar,) = choose_exemplars(self.clips.samples[i], self.pool, 1, rng).samples
        ex = self.clips[self._index[exemplar.id]]
        item.update(exemplar_video=ex["video"], exemplar_score=ex["score"],
                    exemplar_difficulty=ex["difficulty"],
                    completeness=_completeness(self.clips.samples[i]),
                    exemplar_completeness=_completeness(exemplar))
        for k in getattr(self.clips, "extra_keys", ()):
            item[f"exemplar_{k}"] = ex[k]
        return item


def _completeness(s: Sample):
    """score / difficulty divided in double precision, then float32: what the official loaders
    hand the model (a Python float collated and cast). Dividing the float32 score instead lands
    an ulp away, on the other side of a bin edge when the difference is one (bin edges *are*
    training-pair differences, so this is common)."""
    import torch

    return torch.tensor(s.score / s.difficulty, dtype=torch.float32)
