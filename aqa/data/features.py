"""Datasets of per-clip features: one ``<name>.npy`` of shape (T, D) per program, as the
long-program methods read them (GDLT, CVPR 2022, ``xuangch/CVPR22_GDLT``; CoFInAl, IJCAI 2024).

A program is T feature rows (one a clip window of the video, in order) of dimension D. Every item
of a :class:`FeatureDataset` is::

    features: float32 (T, D)    train: a window of ``clip_num`` consecutive rows, zero-padded
                                when the program is shorter; test: every row of the program
    length:   int64 scalar      rows that are real (the rest is padding)
    score:    float32 scalar    the chosen target, in the dataset's raw points
    <column>: float32 scalar    every other score column of the dataset (rg: difficulty,
                                execution, total; fisv: tes, pcs), raw points
    id:       str

``Sample.meta["features"]`` is the ``.npy`` path. The training window follows the official GDLT
loader: a program longer than ``clip_num`` rows gives a window at a random start, a shorter one is
zero-padded to ``clip_num``, one of exactly ``clip_num`` rows is used whole. The official start is
drawn from ``0 .. T - clip_num - 1``, so the window that ends on the last row is never drawn;
``data.official_window=true`` reproduces that, the default draws ``0 .. T - clip_num``. The start
comes from a seeded stream per sample and draw (deterministic by ``train.seed``), not from numpy's
global RNG. At test a batch of programs of different lengths is zero-padded to the longest by
:func:`aqa.data.base.collate`, with ``length`` saying how many rows are real; a batch of one is
the official test loader exactly.

The feature folder may hold ``recipe.json`` (written by ``aqa features extract``): how the
features were made. :func:`recipe_of` reads it and :func:`check_recipe` refuses features of
another recipe than the one a model expects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from aqa.errors import DatasetError

RECIPE_FILE = "recipe.json"
SHOW_FIRST = 5  # files named in an error; the count covers all
# The fields of a recipe that decide what a feature row means; two folders whose recipes agree
# on these hold features one model may read (code_version and the like may differ).
RECIPE_IDENTITY = ("backbone", "weights", "clip_len", "stride", "fps", "frame_size", "frames",
                   "normalisation", "pooling", "align", "dim")


@dataclass
class FeatureOptions:
    """The fields every feature dataset's config has (mixed into each dataset's dataclass)."""

    clip_num: int = 68  # training window in feature rows (the official GDLT --clip-num default)
    official_window: bool = False  # draw the window start as the official loader does (0..T-clip_num-1: the last window never drawn); false: 0..T-clip_num


def uses_features(data_cfg) -> bool:
    """Whether a dataset config reads feature files (rg, folder_features, fisv with
    data.features set) rather than videos."""
    return isinstance(data_cfg, FeatureOptions) and bool(getattr(data_cfg, "features", ""))


# ----------------------------------------------------------------- the window rule

def window_start(rng: np.random.Generator, length: int, clip_num: int, official: bool = False) -> int:
    """The start row of a training window of ``clip_num`` rows in a program of ``length`` rows:
    0 when the program is not longer than the window; else uniform over ``0 .. length - clip_num``
    (``official``: ``0 .. length - clip_num - 1``, as the official loader draws it). ``rng`` is
    a ``np.random.Generator``, or a legacy ``RandomState`` (numpy's global RNG, which the
    official loader draws from with ``randint``: the same call, the same starts)."""
    if length <= clip_num:
        return 0
    high = length - clip_num if official else length - clip_num + 1
    draw = rng.integers if hasattr(rng, "integers") else rng.randint
    return int(draw(0, high))


def crop_or_pad(feat: np.ndarray, clip_num: int, start: int) -> tuple[np.ndarray, int]:
    """``(window, real rows)``: rows ``start .. start + clip_num - 1`` of a longer program, the
    program followed by zero rows when it is shorter, the program itself when it has exactly
    ``clip_num`` rows. float32."""
    n = len(feat)
    if n > clip_num:
        return np.array(feat[start:start + clip_num], dtype=np.float32), clip_num  # a copy
    if n < clip_num:
        out = np.zeros((clip_num, feat.shape[1]), dtype=np.float32)
        out[:n] = feat
        return out, n
    return np.array(feat, dtype=np.float32), n  # a copy: the caller may own the array


# ----------------------------------------------------------------- label files

def read_label_file(path: Path, columns: Mapping[str, int], what: str) -> list[tuple[str, dict[str, float]]]:
    """``(name, {column name: value})`` for each line of an official label file: whitespace
    separated, ``name`` first, the scores at the positions ``columns`` gives. The first line is a
    header (the official readers always skip it); a first line whose score columns are numbers is
    read as data instead (a list written without one)."""
    if not path.is_file():
        raise DatasetError(f"no {what} label file at {path}; expected a header line, then "
                           f"'name {' '.join(columns)}' lines (set the file with data.train_labels"
                           "/data.test_labels or the dataset's list options)")
    out = []
    need = max(columns.values())
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            scores = {k: float(parts[i]) for k, i in columns.items()} if len(parts) > need else None
        except ValueError:
            scores = None
        if scores is None:
            if n == 1:
                continue  # the header
            raise DatasetError(f"{path} line {n}: expected 'name {' '.join(columns)}' "
                               f"(whitespace separated numbers after the name), got {line!r}")
        out.append((parts[0], scores))
    return out


# ----------------------------------------------------------------- recipes

def recipe_of(folder: str | os.PathLike) -> dict | None:
    """The recipe a feature folder was made with (its ``recipe.json``), or None when it has none
    (an official release, or features made elsewhere)."""
    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        recipe = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable recipe ({exc}); extract the features again "
                           "(python -m aqa features extract) or delete the file") from None
    if not isinstance(recipe, dict):
        raise DatasetError(f"{path}: a recipe is a JSON object; extract the features again")
    return recipe


def recipe_identity(recipe: Mapping | None) -> dict:
    """The fields of ``recipe`` that decide what a feature row means (:data:`RECIPE_IDENTITY`)."""
    return {k: (recipe or {}).get(k) for k in RECIPE_IDENTITY}


def recipe_differences(expected: Mapping | None, found: Mapping | None) -> list[str]:
    """``"field: expected X, found Y"`` for each identity field where two recipes disagree.
    A missing recipe (None) differs from any recorded one; two missing recipes agree."""
    if expected is None and found is None:
        return []
    if expected is None or found is None:
        return ["recipe: " + ("expected none (features without recipe.json), found one"
                              if expected is None else "expected one, the folder has no recipe.json")]
    a, b = recipe_identity(expected), recipe_identity(found)
    return [f"{k}: expected {a[k]!r}, found {b[k]!r}" for k in RECIPE_IDENTITY if a[k] != b[k]]


def check_recipe(expected: Mapping | None, folder: str | os.PathLike) -> dict | None:
    """Refuse the features in ``folder`` unless they were made with the recipe ``expected`` (the
    one a model or checkpoint was trained on); returns the folder's recipe. ``expected=None``
    accepts only a folder without a recipe (an official release)."""
    found = recipe_of(folder)
    diff = recipe_differences(expected, found)
    if diff:
        raise DatasetError(
            f"the features in {folder} were made with another recipe than the model expects ("
            + "; ".join(diff) + "). Extract them with the model's recipe (python -m aqa features "
            "extract ... with the same backbone, weights, --clip-len, --stride and --fps) into "
            "another folder and point data.features at it")
    return found


# ----------------------------------------------------------------- files

def feature_shape(path: Path) -> tuple[int, ...]:
    """The array shape of a ``.npy`` file from its header (the data is not read)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npy array ({str(exc)[:80]}); extract the "
                           "features again (python -m aqa features extract)") from None
    return tuple(arr.shape)


def feature_problem(path: Path, dim: int | None) -> str | None:
    """Why the feature file cannot be used (missing, unreadable, not T x D, empty, another D),
    or None."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        shape = feature_shape(path)
    except DatasetError as exc:
        return str(exc).split("; ")[0].removeprefix(f"{path}: ")
    if len(shape) != 2:
        return f"shape {shape}, expected (T, D): one row a clip"
    if shape[0] == 0:
        return "no rows (T = 0)"
    if dim is not None and shape[1] != dim:
        return f"D = {shape[1]}, the other programs have D = {dim}"
    return None


def check_feature_files(samples: Sequence, what: str, dim: int | None = None) -> int:
    """The common D of every sample's feature file; a DatasetError naming the first few files that
    are missing, unreadable, not (T, D), empty or of another D (the most common D wins)."""
    shapes, bad = {}, []
    for s in samples:
        path = Path(s.meta["features"])
        problem = feature_problem(path, None)
        if problem:
            bad.append(f"{path} ({problem})")
        else:
            shapes[s.id] = feature_shape(path)
    if dim is None and shapes:
        dims = [sh[1] for sh in shapes.values()]
        dim = max(set(dims), key=dims.count)
    bad += [f"{samples_path(samples, sid)} (D = {sh[1]}, the other programs have D = {dim})"
            for sid, sh in shapes.items() if sh[1] != dim]
    if bad:
        raise DatasetError(
            f"{len(bad)} of {len(samples)} {what} feature files cannot be used, e.g. "
            + "; ".join(bad[:SHOW_FIRST]) + ". Extract them again (python -m aqa features extract "
            "... --out <the feature folder>; finished files are kept) or run `python -m aqa doctor` "
            "for the full list")
    if dim is None:
        raise DatasetError(f"the {what} split has no programs; check the label files")
    return dim


def samples_path(samples: Sequence, sid: str) -> str:
    return next(str(s.meta["features"]) for s in samples if s.id == sid)


# ----------------------------------------------------------------- the torch Dataset

class FeatureDataset(Dataset):
    """Items of per-program features (see the module docstring). ``extra_keys`` are the score
    columns in ``sample.meta`` given with every item; ``recipe`` the folder's recipe (None
    without recipe.json); ``dim`` the feature dimension D."""

    def __init__(self, samples: list, clip_num: int, train: bool, seed: int = 0,
                 extra_keys: Sequence[str] = (), official_window: bool = False,
                 recipe: dict | None = None, dim: int | None = None, excluded: Sequence[str] = (),
                 cache: bool = True):
        if not samples:
            raise DatasetError("the dataset split is empty: check the label files and data.apparatus")
        if clip_num < 1:
            raise DatasetError(f"data.clip_num={clip_num}: the training window needs at least one row")
        self.samples = samples
        self.clip_num = clip_num
        self.train = train
        self.seed = seed
        self.extra_keys = tuple(extra_keys)
        self.official_window = official_window
        self.recipe = recipe
        self.dim = dim
        self.excluded = list(excluded)
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self._draws = np.zeros(len(samples), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def _rng(self, i: int) -> np.random.Generator:
        """A new seeded stream per draw of sample i (DataLoader workers: their torch seed too)."""
        self._draws[i] += 1
        return np.random.default_rng([self.seed, i, int(self._draws[i]), torch.initial_seed() % 2**32])

    def load(self, i: int) -> np.ndarray:
        """Every row of sample i, float32 (T, D) (kept in memory after the first read when
        ``data.cache``)."""
        if i in self._cache:
            return self._cache[i]
        path = Path(self.samples[i].meta["features"])
        try:
            feat = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DatasetError(f"{path}: feature file missing; extract it (python -m aqa features "
                               "extract) or run `python -m aqa doctor`") from None
        except (OSError, ValueError, EOFError) as exc:
            raise DatasetError(f"{path}: not a readable .npy array ({str(exc)[:80]}); extract "
                               "it again (python -m aqa features extract)") from None
        if feat.ndim != 2 or len(feat) == 0 or (self.dim is not None and feat.shape[1] != self.dim):
            raise DatasetError(f"{path}: shape {feat.shape}, expected (T, {self.dim or 'D'}) with "
                               "T >= 1; extract it again (python -m aqa features extract)")
        feat = np.ascontiguousarray(feat, dtype=np.float32)
        if self.cache:
            self._cache[i] = feat
        return feat

    def __getitem__(self, i: int) -> dict:
        feat = self.load(i)
        if self.train:
            start = window_start(self._rng(i), len(feat), self.clip_num, self.official_window)
            feat, length = crop_or_pad(feat, self.clip_num, start)
        else:
            feat, length = feat.copy(), len(feat)
        s = self.samples[i]
        item = {"features": torch.from_numpy(feat), "length": torch.tensor(length, dtype=torch.int64),
                "score": torch.tensor(s.score, dtype=torch.float32), "id": s.id}
        for k in self.extra_keys:
            item[k] = torch.tensor(float(s.meta[k]), dtype=torch.float32)
        return item


def build_feature_dataset(cfg, samples: list, split: str, train: bool, seed: int, what: str,
                          folder: Path, extra_keys: Sequence[str]) -> FeatureDataset:
    """The FeatureDataset of an adapter: every file checked (missing ones dropped with
    ``data.allow_missing``, recorded as excluded), the folder's recipe and D."""
    if not Path(folder).is_dir():
        raise DatasetError(f"no feature folder {folder}; set data.features to the folder of "
                           "<name>.npy files, or make it: python -m aqa features extract "
                           f"--dataset ... --out {folder}")
    recipe = recipe_of(folder)
    dim = recipe.get("dim") if recipe else None
    excluded = []
    if getattr(cfg, "allow_missing", False):
        missing = [s for s in samples if not Path(s.meta["features"]).is_file()]
        excluded = [s.id for s in missing]
        samples = [s for s in samples if s not in missing]
    dim = check_feature_files(samples, f"{what} {split}", dim)
    return FeatureDataset(samples, cfg.clip_num, train, seed, extra_keys,
                          cfg.official_window, recipe, dim, excluded, cache=cfg.cache)


def pad_features(values: list[torch.Tensor]) -> torch.Tensor:
    """Programs of different lengths (T_i, D) as one zero-padded (B, max T, D) batch."""
    longest = max(v.shape[0] for v in values)
    out = values[0].new_zeros((len(values), longest) + tuple(values[0].shape[1:]))
    for b, v in enumerate(values):
        out[b, :v.shape[0]] = v
    return out
