"""``finediving``: FineDiving (Xu et al., CVPR 2022), 3,000 dives with step-transition labels.

``--data-root`` is the folder as the authors distribute it (xujinglin/FineDiving README)::

    FINADiving_MTL_256s/<event>/<idx>/<frame>.jpg   frames, named by their frame number in the
                                                    event video (e.g. 00489.jpg .. 00592.jpg)
    Annotations/fine-grained_annotation_aqa.pkl     {(event, idx): [dive_number, final score,
                                                    difficulty, steps_transit_frames (2,),
                                                    frames_labels (n_frames,)]}
    Annotations/train_split.pkl, test_split.pkl     lists of (event, idx): 2251 / 749

(the three pickles may also lie in the root itself; every path is a ``data.*`` field).
``FineDiving_fine-grained_annotation.pkl``, whose values are dicts (``action_type``,
``dive_score``, ``difficulty``, ``steps_transit_frames``, ``frames_labels``, ...), is read too.

**Keys.** ``<event>`` is a two-digit code (``'01'``) for some events and a full name
(``'FINADivingWorldCup2021_Men3m_final_r1'``) for others. Keys are normalised to
``(event, idx)`` with a numeric event written as two digits (``1``, ``'1'``, ``'01'`` ->
``'01'``) and the index an int, in the annotation and in the splits alike; a split entry whose
normalised key has no annotation is a :class:`DatasetError` naming the entry. A sample's id is
``<event>_<idx>``.

**Frames** (the official ``FineDiving_Pair_Dataset.load_video``): the folder's frame files,
sorted; with ``first``/``last`` the numbers of the first and last file, the clip is the files at
positions ``np.linspace(first, last, num_frames).astype(int) - first`` (96 frames, floor; a
dive of fewer files repeats some). Its step labels are ``frames_labels`` at the same positions,
and the two step transitions (``meta["transits"]``) are, over those ``num_frames`` labels taken
in order of first appearance, the position of the first frame of the second label minus one and
of the first frame of the last label minus one: the last frame of the first step and the last
frame before the final step (the official training adds 1 back).

**Images that disagree with their labels.** A frame folder whose image count differs from the
length of its ``frames_labels`` (FineDiving issue #1: ``('14', 55)`` had 98 images for 94
labels, fixed by downloading the frames again), or whose frame numbers have gaps, or whose
sampled labels hold a single step, is not used silently: such a dive is refused with a
:class:`DatasetError` naming it and saying what to do, unless ``data.allow_missing=true``, which
leaves it out and records it in the run with the samples whose files are missing (``aqa doctor``
lists every one). The official loader would crash on it (an index past the labels) or read
labels that belong to other frames.

A sample's ``score`` is the final score, ``difficulty`` the DD; ``meta`` carries
``dive_number`` (str, as in the annotation), ``transits`` (int (2,)), ``frame_labels`` (int
(num_frames,)), ``event``, ``index``, ``frame_numbers`` (the sampled frame numbers) and
``steps_transit_frames`` (the annotation's, as given). Items add ``transits`` and
``frame_labels`` as float32 tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aqa.data.base import (SHOW_FIRST, FrameSpan, FramesDataConfig, Sample, build_clip_dataset,
                           resolve_common)
from aqa.errors import AQAError, ConfigError, DatasetError
from aqa.registry import DATASETS

EXTRA_KEYS = ("transits", "frame_labels")
OFFICIAL_RESIZE = (200, 112)  # tools/builder.py: video_transforms.Resize((200, 112)), then crop 112
SPLITS = ("train", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
HINT = ("the FineDiving folder holding FINADiving_MTL_256s/ (frames) and Annotations/ "
        "(fine-grained_annotation_aqa.pkl, train_split.pkl, test_split.pkl)")
# FineDiving_fine-grained_annotation.pkl's dict values hold the same five (README's field table)
FINE_FIELDS = ("action_type", "dive_score", "difficulty", "steps_transit_frames", "frames_labels")
REDOWNLOAD = "download this dive's frames again (FineDiving issue #1)"


@dataclass
class FineDivingDataConfig(FramesDataConfig):
    num_frames: int = 96  # frames per dive, linspace over the folder's frame numbers (frame_length)
    frame_size: int = 112  # crop side (FineDiving_TSA: RandomCrop / CenterCrop(112))
    pipeline: str = "tvv"  # spatial preprocessing: tvv (the official torch_videovision pipeline), tvv_fixed, square
    resize: list[int] = field(default_factory=lambda: list(OFFICIAL_RESIZE))  # width, height of the official Resize((200, 112)); tvv makes it 112 wide x 200 tall (the torch_videovision swap)
    hflip: bool = True  # random horizontal flip at train time (the official RandomHorizontalFlip)
    frames_dir: str = "FINADiving_MTL_256s"  # folder of <event>/<idx>/<frame>.jpg inside the root
    annotations: str = "Annotations/fine-grained_annotation_aqa.pkl"  # annotation pickle (or in the root)
    train_split: str = "Annotations/train_split.pkl"  # pickle of (event, idx) training dives (or in the root)
    test_split: str = "Annotations/test_split.pkl"  # pickle of (event, idx) test dives (or in the root)


# ----------------------------------------------------------------- keys

def normalise_key(entry) -> tuple[str, int]:
    """``(event, idx)`` with a numeric event as two digits and idx an int; ValueError otherwise."""
    try:
        event, idx = entry
    except (TypeError, ValueError):
        raise ValueError(f"{entry!r} is not an (event, idx) pair") from None
    if isinstance(event, bytes):
        event = event.decode()
    if isinstance(event, (int, np.integer)) and not isinstance(event, bool):
        event = f"{int(event):02d}"
    elif isinstance(event, str):
        event = event.strip()
        if event.isdigit():
            event = f"{int(event):02d}"
    else:
        raise ValueError(f"{entry!r}: the event {event!r} is neither a name nor a number")
    if not event:
        raise ValueError(f"{entry!r}: empty event name")
    if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
        return event, int(idx)
    if isinstance(idx, str) and idx.strip().isdigit():
        return event, int(idx)
    raise ValueError(f"{entry!r}: the index {idx!r} is not a whole number")


def sample_id(key: tuple[str, int]) -> str:
    return f"{key[0]}_{key[1]}"


def key_style(event: str) -> str:
    return "code" if event.isdigit() else "name"


# ----------------------------------------------------------------- files

def find_file(root: Path, rel: str) -> Path:
    """``root/rel``, else ``root/<basename>`` (files laid in the root); absolute ``rel`` as is."""
    if os.path.isabs(rel):
        return Path(rel)
    for cand in (root / rel, root / Path(rel).name):
        if cand.is_file():
            return cand
    return root / rel


def _load(path: Path, what: str):
    from aqa.safe_pickle import safe_load

    if not path.is_file():
        raise DatasetError(f"no FineDiving {what} at {path}; the dataset's Annotations/ folder has "
                           f"it (put it in {path.parent}, or set the data.* path)")
    try:
        return safe_load(path)
    except AQAError as exc:
        raise DatasetError(f"{path}: not a readable FineDiving {what} ({exc})") from exc


def load_annotations(path: Path) -> dict:
    """Normalised key -> ``(dive_number, score, difficulty, steps_transit_frames, frames_labels,
    the key as the file writes it)``."""
    raw = _load(path, "annotation file (fine-grained_annotation_aqa.pkl)")
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{path}: expected a dict keyed by (event, idx), got "
                           f"{type(raw).__name__}")
    out: dict = {}
    for k, v in raw.items():
        try:
            key = normalise_key(k)
        except ValueError as exc:
            raise DatasetError(f"{path}: annotation key {exc}") from None
        if isinstance(v, dict) and all(f in v for f in FINE_FIELDS):  # the fine-grained file
            v = [v[f] for f in FINE_FIELDS]
        if not isinstance(v, (list, tuple)) or len(v) < 5:
            raise DatasetError(f"{path}: the annotation of {k!r} should be [dive_number, final "
                               "score, difficulty, steps_transit_frames, frames_labels] (or a "
                               f"dict with {', '.join(FINE_FIELDS)})")
        try:
            value = (str(v[0]), float(v[1]), float(v[2]),
                     np.asarray(v[3], dtype=np.int64).reshape(-1),
                     np.asarray(v[4], dtype=np.int64).reshape(-1))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: the annotation of {k!r} has a value of the wrong type "
                               f"({exc})") from None
        if key in out and not _same(out[key], value):
            raise DatasetError(f"{path}: keys {out[key][5]!r} and {k!r} both name dive {key} "
                               "with different annotations; keep one of them")
        out.setdefault(key, value + (k,))
    return out


def _same(a: tuple, b: tuple) -> bool:
    return (a[:3] == b[:3] and np.array_equal(a[3], b[3]) and np.array_equal(a[4], b[4]))


def load_split(path: Path, annotations: dict, ann_path: Path) -> list[tuple]:
    """``(entry as written, normalised key)`` of every split entry."""
    raw = _load(path, f"split file ({path.name})")
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise DatasetError(f"{path}: expected a list of (event, idx), got {type(raw).__name__}")
    keys = []
    for entry in raw:
        try:
            key = normalise_key(entry)
        except ValueError as exc:
            raise DatasetError(f"{path}: split entry {exc}") from None
        if key not in annotations:
            raise DatasetError(
                f"{path}: split entry {entry!r} matches no annotation in {ann_path} (neither as "
                f"written nor as {key!r}); are the split and annotation files from the same "
                "FineDiving release?")
        keys.append((entry, key))
    return keys


def frame_files(folder: Path) -> tuple[tuple[str, ...], list[int]]:
    """The folder's frame files sorted by name (as the official ``sorted(glob)``), and their
    numbers (-1 for a name that is not a number)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS))
    except OSError:
        return (), []
    numbers = [int(Path(n).stem) if Path(n).stem.isdigit() else -1 for n in names]
    return tuple(names), numbers


def event_folder(frames_root: Path, written, key: tuple[str, int]) -> Path:
    """The frame folder of a dive: the event as the split writes it, or its normalised spelling,
    or the number without padding, whichever exists."""
    event = written[0].decode() if isinstance(written[0], bytes) else written[0]
    cands = [str(event).strip(), key[0]] + ([str(int(key[0]))] if key[0].isdigit() else [])
    for name in cands:
        folder = frames_root / name / str(key[1])
        if folder.is_dir():
            return folder
    return frames_root / key[0] / str(key[1])


# ----------------------------------------------------------------- the official sampling

def sampled_positions(first_number: int, last_number: int, count: int) -> np.ndarray:
    """``np.linspace(first, last, count).astype(int) - first``: positions in the frame list."""
    return np.linspace(first_number, last_number, count).astype(np.int64) - first_number


def step_transits(labels: Sequence[int]) -> np.ndarray:
    """The official transits of the sampled labels: with the labels' distinct values in order of
    first appearance, ``[first(second) - 1, first(last) - 1]`` (int64 (2,)). ValueError for a
    single value (the official loader raises IndexError)."""
    labels = [int(v) for v in labels]
    order = list(dict.fromkeys(labels))
    if len(order) < 2:
        raise ValueError("the sampled step labels hold the single value "
                         f"{order[0] if order else None}")
    return np.array([labels.index(order[1]) - 1, labels.index(order[-1]) - 1], dtype=np.int64)


def dive_frames(files: tuple[str, ...], numbers: list[int], n_labels: int, num_frames: int):
    """``(positions, problem)`` for a folder: the official positions, or why the folder cannot
    be read as annotated (None when it can)."""
    if not files:
        return None, None  # missing: reported as a missing file
    if -1 in numbers:
        bad = files[numbers.index(-1)]
        return None, f"frame file {bad} is not named by its frame number"
    first, last = numbers[0], numbers[-1]
    if last - first + 1 != len(files) or len(set(numbers)) != len(numbers):
        return None, (f"{len(files)} frame images numbered {first}..{last} (gaps); the frames "
                      f"are indexed by number - {first}: {REDOWNLOAD}")
    if len(files) != n_labels:
        return None, (f"{len(files)} frame images but {n_labels} frame labels in the "
                      f"annotation: {REDOWNLOAD}")
    return sampled_positions(first, last, num_frames), None


# ----------------------------------------------------------------- samples

def paths(cfg: FineDivingDataConfig) -> tuple[Path, Path, Path, Path]:
    root = Path(cfg.root)
    frames_root = root / cfg.frames_dir
    return (frames_root, find_file(root, cfg.annotations), find_file(root, cfg.train_split),
            find_file(root, cfg.test_split))


def make_samples(cfg: FineDivingDataConfig, split: str) -> list[Sample]:
    """The split's dives; a dive that cannot be read as annotated has ``meta["problem"]``."""
    if split not in SPLITS:
        return []
    frames_root, ann_path, train_path, test_path = paths(cfg)
    ann = load_annotations(ann_path)
    split_path = train_path if split == "train" else test_path
    samples = []
    for written, key in load_split(split_path, ann, ann_path):
        dive, score, dd, transit_frames, labels, _ = ann[key]
        folder = event_folder(frames_root, written, key)
        files, numbers = frame_files(folder)
        positions, problem = dive_frames(files, numbers, len(labels), cfg.num_frames)
        meta = {"dive_number": dive, "event": key[0], "index": key[1],
                "steps_transit_frames": transit_frames}
        if positions is not None:
            picked = labels[positions]
            try:
                meta["transits"] = step_transits(picked)
            except ValueError as exc:
                problem = f"{exc}: no step transitions to learn"
            meta["frame_labels"] = picked
            meta["frame_numbers"] = np.asarray(numbers)[positions]
            span = FrameSpan(0, len(positions), files=tuple(files[p] for p in positions))
        else:
            span = FrameSpan(0, len(files), files=files)
        if problem:
            meta["problem"] = problem
        samples.append(Sample(id=sample_id(key), video=folder, score=score, difficulty=dd,
                              split=split, frames=span, window_start=0, meta=meta))
    return samples


def keep_usable(samples: list[Sample], allow: bool, split: str) -> tuple[list[Sample], list[str]]:
    """``(dives without a problem, ids left out)``; a DatasetError naming the first few unless
    ``allow`` (``data.allow_missing``)."""
    bad = [s for s in samples if "problem" in s.meta]
    if not bad:
        return samples, []
    if not allow:
        names = "; ".join(f"{s.id} ({s.meta['problem']})" for s in bad[:SHOW_FIRST])
        raise DatasetError(
            f"{len(bad)} of {len(samples)} FineDiving {split} dives do not match their "
            f"annotation: {names}. Run `python -m aqa doctor --dataset finediving` for the full "
            f"list; fix the data, or set data.allow_missing=true (--allow-missing) to leave them "
            f"out (the run records which)")
    ids = {s.id for s in bad}
    return [s for s in samples if s.id not in ids], [s.id for s in bad]


def check_notes(cfg: FineDivingDataConfig) -> list[str]:
    """What the doctor says about the annotation: the key styles found, and the split entries
    that name their dive in another spelling than the annotation does."""
    _, ann_path, train_path, test_path = paths(cfg)
    ann = load_annotations(ann_path)
    styles: dict[str, int] = {}
    for key in ann:
        styles[key_style(key[0])] = styles.get(key_style(key[0]), 0) + 1
    events = {k[0] for k in ann}
    notes = [f"annotation: {len(ann)} dives in {len(events)} events; keys by two-digit event "
             f"code ({styles.get('code', 0)}) and by event name ({styles.get('name', 0)}), "
             "normalised"]
    for split, path in (("train", train_path), ("test", test_path)):
        respelled = [(w, key) for w, key in load_split(path, ann, ann_path)
                     if tuple(w) != tuple(ann[key][5])]
        if respelled:
            w, key = respelled[0]
            notes.append(f"{split} split: {len(respelled)} entries spell their key differently "
                         f"from the annotation (e.g. {tuple(w)!r} for {ann[key][5]!r}); matched "
                         "after normalising")
    return notes


def check_resize(cfg: FineDivingDataConfig) -> None:
    """``data.resize`` is (width, height) and the crop fits the frames the pipeline decodes."""
    from aqa.data.transforms import build_pipeline

    if len(cfg.resize) != 2 or min(cfg.resize) < 1:
        raise ConfigError(f"data.resize={list(cfg.resize)}: give width,height (the official "
                          f"{OFFICIAL_RESIZE[0]},{OFFICIAL_RESIZE[1]})")
    pipe = build_pipeline(cfg.pipeline, cfg.frame_size, cfg.hflip, resize=tuple(cfg.resize))
    if pipe.crop and pipe.decode_size and pipe.crop > min(pipe.decode_size):
        w, h = pipe.decode_size
        raise ConfigError(f"data.frame_size={cfg.frame_size} does not fit the {w}x{h} frames "
                          f"data.pipeline={cfg.pipeline} makes of data.resize={list(cfg.resize)}; "
                          f"lower the crop or raise the resize")


@DATASETS.register("finediving")
class FineDivingDataset:
    config_cls = FineDivingDataConfig
    description = "FineDiving (2251 train / 749 test dives, step transitions), as distributed"

    @classmethod
    def resolve(cls, cfg: FineDivingDataConfig, workspace: Path) -> FineDivingDataConfig:
        cfg = resolve_common(cfg, workspace, "finediving", HINT)
        check_resize(cfg)
        frames_root = Path(cfg.root) / cfg.frames_dir
        if not frames_root.is_dir():
            raise DatasetError(f"{frames_root}: no frame folder; expected {HINT} (or set "
                               "data.frames_dir)")
        return cfg

    @classmethod
    def prepare(cls, cfg: FineDivingDataConfig) -> None:
        """Nothing to make: the frames come with the dataset."""

    @classmethod
    def samples(cls, cfg: FineDivingDataConfig, split: str) -> list[Sample]:
        return make_samples(cfg, split)

    @classmethod
    def check_notes(cls, cfg: FineDivingDataConfig) -> list[str]:
        return check_notes(cfg)

    @classmethod
    def build(cls, cfg: FineDivingDataConfig, split: str, train: bool, seed: int = 0):
        usable, left_out = keep_usable(cls.samples(cfg, split), cfg.allow_missing, split)
        ds = build_clip_dataset(cfg, usable, split, train, seed, "FineDiving",
                                extra_keys=EXTRA_KEYS)
        ds.excluded = left_out + list(ds.excluded)
        return ds

