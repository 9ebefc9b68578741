"""``mtl_aqa``: MTL-AQA diving (Parmar & Morris, CVPR 2019) as its authors distribute it.

``--data-root`` is the folder holding ``info/`` (the annotation and split pickles; they may also
lie in the root itself) and one of these frame layouts, detected from what is there
(docs/datasets.md, MTL-AQA):

    layout   path                                               a sample's window
    core     new/new_total_frames_256s/{event:02d}/{n:08d}.jpg  the num_frames files ending at
             (or new_total_frames_256s/ in the root)            end_frame (CoRe, HGCN, T2CR)
    musdl    frames/{event:02d}_{idx:02d}/*.jpg (pre-trimmed)   num_frames from position 0 (test)
                                                                or jitter (train, +-jitter)
    tpt      frames_long/{event:02d}_{idx:02d}/*.jpg            train split: from file 3 (shifted
                                                                by -jitter..jitter when training;
                                                                at 3 as an exemplar); test split
                                                                (queries): from file 0
    videos   videos/{event:02d}_{idx:02d}.<ext> (trimmed)       uniform over the clip
             or videos/{event:02d}.<ext> (whole event video)    as core, frame n = index n-1

Annotations: CoRe's ``final_annotations_dict_with_dive_number.pkl`` (with ``dive_number``) or
MUSDL's ``augmented_final_annotations_dict.pkl`` (without it), read with the restricted
unpickler (they hold numpy arrays). Splits: ``train_split_0.pkl`` / ``test_split_0.pkl``,
lists of ``(event, idx)`` (1059 / 353).

A sample's score is ``final_score``, its difficulty the DD (``use_difficulty=false``: 1.0 for
all, so methods that multiply by the DD ignore it); ``meta`` carries ``dive_number``,
``judge_scores`` (7,), ``event``, ``index``, ``start_frame``, ``end_frame``. Items add
``judge_scores`` (7,) float32 for MUSDL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aqa.data.base import (FrameSpan, FramesDataConfig, Sample, build_clip_dataset, find_video,
                           resolve_common)
from aqa.errors import AQAError, DatasetError
from aqa.registry import DATASETS

ANNOTATIONS = ("final_annotations_dict_with_dive_number.pkl", "augmented_final_annotations_dict.pkl")
LAYOUTS = ("auto", "core", "musdl", "tpt", "videos")
CORE_FRAMES = ("new/new_total_frames_256s", "new_total_frames_256s")
# TPT's frames_long loader (baiyang4/aqa_tpt dataloader_pair_MLT.py load_video): a training query
# or exemplar starts at file 3 (+ randint(-3, 3) when training), a test query at file 0.
TPT_TRAIN_START, TPT_TEST_START = 3, 0
HINT = ("the MTL-AQA folder holding info/ (the annotation and split pickles) and "
        "new/new_total_frames_256s/ (CoRe's frames), frames/ (MUSDL), frames_long/ (TPT) or videos/")


@dataclass
class MTLAQADataConfig(FramesDataConfig):
    num_frames: int = 103  # frames per sample window (CoRe/MUSDL/TSA/TPT: 103)
    frame_size: int = 224  # crop side (square pipeline: the resize side)
    pipeline: str = "tvv"  # spatial preprocessing: square, tvv (CoRe/TPT), tvv_fixed, musdl
    jitter: int = 3  # train-time window shift -jitter..jitter (CoRe: end_frame + randint(-3, 3))
    layout: str = "auto"  # frame layout: auto, core, musdl, tpt or videos
    annotations: str = ""  # annotation pickle (empty: info/ CoRe's, else MUSDL's)
    train_split: str = "train_split_0.pkl"  # pickle of (event, idx) training samples, in info/
    test_split: str = "test_split_0.pkl"  # pickle of (event, idx) test samples, in info/
    use_difficulty: bool = True  # false: difficulty 1.0 for every sample (w/o DD)


def find_info(root: Path, name: str) -> Path:
    """``root/info/name`` or ``root/name`` (absolute ``name`` as is)."""
    if os.path.isabs(name):
        return Path(name)
    for cand in (root / "info" / name, root / name):
        if cand.is_file():
            return cand
    return root / "info" / name


def load_annotations(path: Path) -> dict:
    from aqa.safe_pickle import safe_load

    if not path.is_file():
        raise DatasetError(f"no MTL-AQA annotation file at {path}; put CoRe's {ANNOTATIONS[0]} "
                           f"or MUSDL's {ANNOTATIONS[1]} in {path.parent}")
    try:
        ann = safe_load(path)
    except AQAError as exc:
        raise DatasetError(f"{path}: not a readable MTL-AQA annotation pickle ({exc})") from exc
    if not isinstance(ann, dict) or not ann:
        raise DatasetError(f"{path}: expected a dict keyed by (event, idx), got {type(ann).__name__}")
    return ann


def load_split(path: Path) -> list[tuple[int, int]]:
    if not path.is_file():
        raise DatasetError(f"no MTL-AQA split file at {path}; put train_split_0.pkl and "
                           f"test_split_0.pkl (CoRe's/MUSDL's info/) in {path.parent}")
    from aqa.safe_pickle import safe_load

    try:
        keys = safe_load(path)
    except AQAError as exc:
        raise DatasetError(f"{path}: not a readable split pickle ({exc})") from exc
    return [(int(e), int(i)) for e, i in keys]


def detect_layout(root: Path) -> str:
    for rel in CORE_FRAMES:
        if (root / rel).is_dir():
            return "core"
    for layout, rel in (("musdl", "frames"), ("tpt", "frames_long"), ("videos", "videos")):
        if (root / rel).is_dir():
            return layout
    if (root / "data_preprocessed" / "MTL_AQA" / "frames_long").is_dir():
        return "tpt"
    raise DatasetError(f"{root}: found no MTL-AQA frames or videos; expected {HINT}. "
                       "Extract frames from videos with `python -m aqa data extract-frames`")


def _numbers(folder: Path, cache: dict) -> set[int]:
    """Frame numbers of the ``%08d.jpg`` files in ``folder`` (listed once)."""
    if folder not in cache:
        try:
            cache[folder] = {int(n[:-4]) for n in os.listdir(folder)
                             if n.endswith(".jpg") and n[:-4].isdigit()}
        except OSError:
            cache[folder] = set()
    return cache[folder]


def _sorted_jpgs(folder: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png"))))
    except OSError:
        return ()


def end_window_span(end_frame: int, length: int, jitter: int, first_number: int,
                    last_number: int | None) -> tuple[int, int, int]:
    """``(first, count, window_start)``: frame numbers ``first .. first+count-1`` that hold
    CoRe's window (files ``end-length+1 .. end``) and every shift of it by ``-jitter..jitter``,
    clipped to the numbers that exist (``first_number`` .. ``last_number``)."""
    lo = max(first_number, end_frame - length + 1 - jitter)
    hi = end_frame + jitter if last_number is None else min(last_number, end_frame + jitter)
    hi = max(hi, lo)
    return lo, hi - lo + 1, (end_frame - length + 1) - lo


def make_samples(cfg: MTLAQADataConfig, split: str) -> list[Sample]:
    root = Path(cfg.root)
    if split not in ("train", "test"):
        return []
    ann_path = find_info(root, cfg.annotations) if cfg.annotations else next(
        (p for p in (find_info(root, a) for a in ANNOTATIONS) if p.is_file()),
        find_info(root, ANNOTATIONS[0]))
    ann = load_annotations(ann_path)
    keys = load_split(find_info(root, cfg.train_split if split == "train" else cfg.test_split))
    layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown data.layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    frames_root = next((root / r for r in CORE_FRAMES if (root / r).is_dir()), root / CORE_FRAMES[0])
    if layout == "tpt" and not (root / "frames_long").is_dir():
        trimmed_root = root / "data_preprocessed" / "MTL_AQA" / "frames_long"
    else:
        trimmed_root = root / {"musdl": "frames", "tpt": "frames_long"}.get(layout, "frames")
    listing: dict = {}
    samples = []
    for e, i in keys:
        if (e, i) not in ann:
            raise DatasetError(f"{ann_path}: no annotation for ({e}, {i}) listed in the {split} "
                               "split; are the split and annotation files from the same release?")
        a = ann[(e, i)]
        sid = f"{e:02d}_{i:02d}"
        end = int(a["end_frame"])
        L, J = cfg.num_frames, cfg.jitter
        if layout == "core":
            folder = frames_root / f"{e:02d}"
            numbers = _numbers(folder, listing)
            first, count, start = end_window_span(end, L, J, 1, max(numbers) if numbers else None)
            video, span = folder, FrameSpan(first, count, pattern="{:08d}.jpg")
        elif layout in ("musdl", "tpt"):
            video = trimmed_root / sid
            files = _sorted_jpgs(video)
            span = FrameSpan(0, len(files), files=files)
            if layout == "tpt":  # test queries from file 0, training samples (exemplars) from 3
                start = TPT_TRAIN_START if split == "train" else TPT_TEST_START
            else:  # MUSDL's loader reads files 0..102 at test and shifts by randint(0, 6) at
                # train (here J + randint(-J, J) with the default J = 3)
                start = 0 if split == "test" else J
        else:  # videos
            trimmed = find_video(root / "videos", sid)
            if trimmed is not None:
                video, span, start = trimmed, None, None
            else:
                video = find_video(root / "videos", f"{e:02d}") or root / "videos" / f"{e:02d}.mp4"
                first, count, start = end_window_span(end, L, J, 1, None)
                span = FrameSpan(first - 1, count)  # frame file n is video index n - 1
        judges = np.asarray(a.get("judge_scores", np.full(7, np.nan)), dtype=np.float32).reshape(-1)
        meta = {"event": e, "index": i, "start_frame": int(a["start_frame"]), "end_frame": end,
                "judge_scores": judges, "layout": layout}
        if "dive_number" in a:
            meta["dive_number"] = str(a["dive_number"])
        samples.append(Sample(id=sid, video=video, score=float(a["final_score"]),
                              difficulty=float(a["difficulty"]) if cfg.use_difficulty else 1.0,
                              split=split, frames=span, window_start=start, meta=meta))
    return samples


@DATASETS.register("mtl_aqa")
class MTLAQADataset:
    config_cls = MTLAQADataConfig
    description = "MTL-AQA diving (1059 train / 353 test), frames as distributed by CoRe/MUSDL/TPT or videos"

    @classmethod
    def resolve(cls, cfg: MTLAQADataConfig, workspace: Path) -> MTLAQADataConfig:
        cfg = resolve_common(cfg, workspace, "mtl_aqa", HINT)
        if cfg.layout not in LAYOUTS:
            raise DatasetError(f"unknown data.layout {cfg.layout!r}; choose one of {', '.join(LAYOUTS)}")
        return cfg

    @classmethod
    def prepare(cls, cfg: MTLAQADataConfig) -> None:
        """Nothing to make: the frames are the user's (see ``aqa data extract-frames``)."""

    @classmethod
    def samples(cls, cfg: MTLAQADataConfig, split: str) -> list[Sample]:
        return make_samples(cfg, split)

    @classmethod
    def build(cls, cfg: MTLAQADataConfig, split: str, train: bool, seed: int = 0):
        return build_clip_dataset(cfg, cls.samples(cfg, split), split, train, seed, "MTL-AQA",
                                  extra_keys=("judge_scores",))
