"""Exemplar selection for pair methods (CoRe, TPT): pure functions, seeded, no dataset I/O.

The exemplar pool is always the *training* split. A pool groups its samples by a key:

    key            group of a sample                 used by
    difficulty     its difficulty degree (DD)        CoRe / TPT on MTL-AQA with DD (default)
    dive_number    ``sample.meta["dive_number"]``    CoRe's ``dive_number_choosing``, FineDiving
    class          ``sample.meta["class"]``          AQA-7 (pairs only within a sport)
    none           one group holding every sample    CoRe on MTL-AQA without DD

:func:`choose_exemplars` follows CoRe (docs/methods.md, CoRe): candidates are the query's group,
the query itself excluded unless it is its group's only member; a seeded permutation of them is
taken and the first ``k`` kept (k = 1 at train, 10 voters at test), fewer when the group is
small. With ``pad=True`` (TPT, docs/methods.md, TPT) a short list is padded with samples from the
nearest groups (by numeric distance of the key) and the padded voters get weight 0; the real
ones share weight 1. A query whose group is absent from the pool (a test DD never seen in
training) falls back to the nearest group for numeric keys, and to the whole pool otherwise.

Determinism: every random choice comes from the ``numpy.random.Generator`` passed in, so the
same seed gives the same exemplars whatever the DataLoader worker count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, NamedTuple, Sequence

import numpy as np

from aqa.data.base import Sample

KEYS = ("difficulty", "dive_number", "class", "none")


def pool_key(sample: Sample, key: str) -> Hashable:
    """The group value of ``sample`` under ``key`` (one of :data:`KEYS`)."""
    if key == "difficulty":
        return round(float(sample.difficulty), 4)
    if key == "none":
        return None
    if key in ("dive_number", "class"):
        try:
            return sample.meta[key]
        except KeyError:
            raise ValueError(f"sample {sample.id} has no {key!r}; this dataset cannot group "
                             f"exemplars by {key} (choose one of {', '.join(KEYS)})") from None
    raise ValueError(f"unknown exemplar key {key!r}; choose one of {', '.join(KEYS)}")


@dataclass(frozen=True)
class ExemplarPool:
    """Training samples grouped by ``key``; groups keep the order of the samples given."""

    key: str
    groups: dict  # group value -> list[Sample]

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def group_of(self, sample: Sample) -> list[Sample]:
        return self.groups.get(pool_key(sample, self.key), [])

    def pair_count(self) -> int:
        """Unordered same-group pairs (MTL-AQA train, by DD: 67,562)."""
        return sum(len(g) * (len(g) - 1) // 2 for g in self.groups.values())


class Exemplars(NamedTuple):
    samples: list  # list[Sample], the chosen exemplars (real ones first, then padding)
    weights: np.ndarray  # (k,) float32: 1/n_real for real voters, 0 for padded ones


def pool_by(samples: Sequence[Sample], key: str = "difficulty") -> ExemplarPool:
    """Group the training ``samples`` by ``key`` (``difficulty``, ``dive_number``, ``class``, ``none``)."""
    if key not in KEYS:
        raise ValueError(f"unknown exemplar key {key!r}; choose one of {', '.join(KEYS)}")
    groups: dict = {}
    for s in samples:
        groups.setdefault(pool_key(s, key), []).append(s)
    return ExemplarPool(key=key, groups=groups)


def choose_exemplars(query: Sample, pool: ExemplarPool, k: int, rng: np.random.Generator,
                     exclude_self: bool = True, pad: bool = False) -> Exemplars:
    """Up to ``k`` exemplars for ``query`` from its group in ``pool`` (see the module docstring).

    ``exclude_self`` drops the query (matched by id) unless it is the only member of its group.
    ``pad`` fills a short list to exactly ``k`` from the nearest groups, with weight 0.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not len(pool):
        raise ValueError("the exemplar pool is empty: the training split has no samples")
    group = pool.group_of(query) or _fallback_group(query, pool)
    candidates = [s for s in group if not (exclude_self and s.id == query.id)] or list(group)
    order = rng.permutation(len(candidates))
    chosen = [candidates[j] for j in order[:k]]
    n_real = len(chosen)
    if pad and n_real < k:
        chosen += _padding(query, pool, k - n_real, {s.id for s in chosen}, rng, exclude_self)
    weights = np.zeros(len(chosen), dtype=np.float32)
    weights[:n_real] = 1.0 / n_real
    return Exemplars(chosen, weights)


def _numeric(value: Hashable) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _groups_by_distance(query: Sample, pool: ExemplarPool) -> list:
    """Group values of ``pool`` ordered by distance to the query's value (numeric keys), else by
    their first appearance; ties broken by the smaller value first."""
    q = _numeric(pool_key(query, pool.key))
    values = list(pool.groups)
    if q is None or any(_numeric(v) is None for v in values):
        return values
    return sorted(values, key=lambda v: (abs(_numeric(v) - q), _numeric(v)))


def _fallback_group(query: Sample, pool: ExemplarPool) -> list[Sample]:
    """The nearest group for numeric keys; the whole pool for categorical ones."""
    q = _numeric(pool_key(query, pool.key))
    if q is not None and all(_numeric(v) is not None for v in pool.groups):
        return pool.groups[_groups_by_distance(query, pool)[0]]
    return [s for g in pool.groups.values() for s in g]


def _padding(query: Sample, pool: ExemplarPool, n: int, taken: set, rng: np.random.Generator,
             exclude_self: bool) -> list[Sample]:
    """``n`` more samples from the nearest other groups (each group in seeded random order);
    repeats padded samples when the pool is smaller than ``k``."""
    out: list[Sample] = []
    for value in _groups_by_distance(query, pool):
        group = [s for s in pool.groups[value] if s.id not in taken
                 and not (exclude_self and s.id == query.id)]
        for j in rng.permutation(len(group)):
            if len(out) == n:
                return out
            out.append(group[j])
            taken.add(group[j].id)
    everyone = [s for g in pool.groups.values() for s in g]
    while len(out) < n:  # a pool smaller than k: repeat (weight 0 anyway)
        out.append(everyone[len(out) % len(everyone)])
    return out
