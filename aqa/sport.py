"""Does a clip look like the sport a model was trained on? DeepMind's Kinetics-400 I3D says.

The I3D we ship (``backbone.weights="kinetics400"``) keeps its 400-way logits layer, and several
Kinetics-400 classes name the sports of the AQA datasets. A clip whose top-k classes include none
of its model's sport gets a warning (never a refusal): a diving model scoring a skating clip
gives a number that means nothing.

    dataset                          sport                 Kinetics-400 classes that count
    finediving, mtl_aqa,             diving                springboard diving, diving cliff,
    aqa7 diving / sync_diving_*                            jumping into pool
    aqa7 gym_vault                   gymnastics (vault)    vault, gymnastics tumbling,
                                                           somersaulting, cartwheeling,
                                                           bouncing on trampoline
    rg                               rhythmic gymnastics   gymnastics tumbling, hula hooping,
                                                           dancing ballet, cartwheeling,
                                                           somersaulting, juggling balls,
                                                           spinning poi
    fisv, frfs                       figure skating        ice skating
    aqa7 ski_big_air                 freestyle skiing      skiing (not slalom or crosscountry),
                                                           ski jumping, skiing slalom
    aqa7 snowboard_big_air           snowboarding          snowboarding, ski jumping
    jigsaws, pd4t, folder, ...       (none)                no check: Kinetics has no surgery or
                                                           clinical-task class, a folder no sport

Kinetics-400 has no balance beam, parallel bars, pommel horse or figure skating class (those
came with Kinetics-600/700). The class names are torchvision's list, in DeepMind's label order
(``tests/test_score_page.py`` checks that the real dive clip's top class is springboard diving).
The classifier is built once a process (:func:`classifier`) and runs on frames already decoded
for scoring where they are large enough (:func:`check_frames`).
"""

from __future__ import annotations

import functools
import importlib.util
import runpy
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIVING = ("springboard diving", "diving cliff", "jumping into pool")
VAULT = ("vault", "gymnastics tumbling", "somersaulting", "cartwheeling", "bouncing on trampoline")
RHYTHMIC = ("gymnastics tumbling", "hula hooping", "dancing ballet", "cartwheeling",
            "somersaulting", "juggling balls", "spinning poi")
SKATING = ("ice skating",)
SKIING = ("skiing (not slalom or crosscountry)", "ski jumping", "skiing slalom")
SNOWBOARD = ("snowboarding", "ski jumping")

# dataset -> (sport, classes); aqa7 goes by its data.class_name (AQA7_CLASS)
SPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "finediving": ("diving", DIVING), "mtl_aqa": ("diving", DIVING),
    "rg": ("rhythmic gymnastics", RHYTHMIC),
    "fisv": ("figure skating", SKATING), "frfs": ("figure skating", SKATING),
}
AQA7_CLASS = {"diving": ("diving", DIVING), "sync_diving_3m": ("diving", DIVING),
              "sync_diving_10m": ("diving", DIVING), "gym_vault": ("gymnastics (vault)", VAULT),
              "ski_big_air": ("freestyle skiing", SKIING),
              "snowboard_big_air": ("snowboarding", SNOWBOARD)}
NO_SPORT = {"jigsaws": "surgical gestures (JIGSAWS) have no Kinetics-400 class",
            "pd4t": "Parkinson's motor tasks (PD4T) have no Kinetics-400 class"}

TOP_K = 5  # the sport must be among the clip's top-k classes
SHOW = 3  # classes shown in the warning
FRAMES = 32  # frames the classifier sees, uniformly over the scored ones (repeated when fewer:
# I3D pools over time, and under ~24 frames its Kinetics classes become unreliable)
SIZE = 224  # the side the classifier sees (DeepMind's): shorter side resized, centre crop
MIN_SIDE = 112  # frames decoded for scoring smaller than this are decoded again


@dataclass
class SportCheck:
    sport: str | None  # the model's sport, None when it has none Kinetics knows
    expected: list[str] = field(default_factory=list)  # the Kinetics classes that count for it
    top: list[tuple[str, float]] = field(default_factory=list)  # top-k classes, probabilities
    ok: bool | None = None  # True: one of the top-k is the sport; False: none; None: no check
    message: str = ""  # what to tell the user
    frames: int = 0  # frames the classifier saw
    reused: bool = False  # True when they were the frames decoded for scoring

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sport_of(dataset: str, class_name: str | None = None
             ) -> tuple[str | None, tuple[str, ...], str]:
    """(sport, its Kinetics classes, why none) of a model trained on ``dataset`` (AQA-7: of
    ``class_name``; "all" is the union of its sports)."""
    if dataset == "aqa7":
        if class_name in AQA7_CLASS:
            return (*AQA7_CLASS[class_name], "")
        classes = tuple(dict.fromkeys(c for _, cs in AQA7_CLASS.values() for c in cs))
        return "an AQA-7 sport", classes, ""
    if dataset in SPORTS:
        return (*SPORTS[dataset], "")
    why = NO_SPORT.get(dataset, f"the {dataset} dataset names no sport")
    return None, (), why


def sport_of_config(cfg) -> tuple[str | None, tuple[str, ...], str]:
    """:func:`sport_of` for a run config (a checkpoint's)."""
    return sport_of(cfg.dataset, getattr(cfg.data, "class_name", None))


_lock = threading.Lock()
_model: list = []  # the one classifier of this process, built on first use


def classifier() -> torch.nn.Module:
    """DeepMind's Kinetics-400 I3D with its logits, in eval mode: one copy a process (sessions
    and threads share it). A CheckpointError says how to fetch the weights when they are absent."""
    with _lock:
        if not _model:
            from aqa.registry import BACKBONES

            entry = BACKBONES.get("i3d")
            _model.append(entry.build(entry.config_cls(weights="kinetics400")).eval())
        return _model[0]


@functools.lru_cache(maxsize=1)
def class_names() -> list[str]:
    """The 400 Kinetics class names in the order of the logits: torchvision's list
    (``torchvision/models/_meta.py``, a data-only file, read without importing torchvision's
    model zoo, which takes seconds)."""
    spec = importlib.util.find_spec("torchvision")
    path = Path(spec.origin).parent / "models" / "_meta.py" if spec and spec.origin else None
    if path is not None and path.is_file():
        return list(runpy.run_path(str(path))["_KINETICS400_CATEGORIES"])
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    return list(_KINETICS400_CATEGORIES)


@torch.no_grad()
def classify(frames: np.ndarray, k: int = TOP_K, num_frames: int = FRAMES,
             size: int = SIZE) -> list[tuple[str, float]]:
    """The top-``k`` Kinetics-400 classes of ``frames`` (T, H, W, 3) uint8, with probabilities:
    ``num_frames`` of them sampled uniformly (repeating frames of a shorter clip), the shorter
    side resized to ``size`` and the centre ``size`` x ``size`` cut out (squashing a wide clip
    to a square costs accuracy)."""
    from aqa.video import sample_indices

    picks = sample_indices(len(frames), num_frames)  # a shorter clip repeats frames
    video = torch.from_numpy(np.ascontiguousarray(frames[picks])).permute(3, 0, 1, 2)  # 3,T,H,W
    video = centre_square(video, size)
    probs = classifier()(video[None], logits=True).softmax(-1)[0]
    top = probs.topk(k)
    names = class_names()
    return [(names[int(i)], float(p)) for p, i in zip(top.values, top.indices)]


def centre_square(video: torch.Tensor, size: int) -> torch.Tensor:
    """(3, T, H, W) uint8 -> (3, T, size, size): shorter side to ``size``, centre crop."""
    h, w = video.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        shape = (max(size, round(h * scale)), max(size, round(w * scale)))
        video = torch.nn.functional.interpolate(video.float(), size=shape, mode="bilinear",
                                                align_corners=False).round().clamp(0, 255)
        video = video.to(torch.uint8)
    h, w = video.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return video[..., top:top + size, left:left + size]


def check_frames(cfg, frames: np.ndarray | None, video: str | Path | None = None,
                 indices: list[int] | None = None, k: int = TOP_K, num_frames: int = FRAMES,
                 size: int = SIZE) -> SportCheck:
    """Whether the clip looks like the sport of a model with run config ``cfg``. ``frames``
    (T, H, W, 3): the frames decoded for scoring, used as they are when their side is at least
    :data:`MIN_SIDE`; else frames ``indices`` of ``video`` (the scored range; None: the whole
    clip) are decoded again at their native size (a tiny model's 32-pixel frames say nothing
    to the classifier)."""
    if sport_of_config(cfg)[0] is None:
        return judge(cfg, [])
    reused = frames is not None and min(frames.shape[1:3]) >= MIN_SIDE
    if not reused:
        if video is None:
            raise ValueError("check_frames needs the video when the frames are too small")
        from aqa import video as V

        indices = list(indices) if indices else list(range(V.probe(video).num_frames))
        picks = [indices[i] for i in V.sample_indices(len(indices), min(num_frames, len(indices)))]
        frames = V.read_frames(video, picks)
    top = classify(frames, k=k, num_frames=num_frames, size=size)
    return replace(judge(cfg, top), frames=num_frames, reused=reused)


def judge(cfg, top: list[tuple[str, float]]) -> SportCheck:
    """The verdict on a clip whose top-k Kinetics classes are ``top``, for a model with run
    config ``cfg``: ok when one of them is a class of its sport."""
    sport, expected, why = sport_of_config(cfg)
    if sport is None:
        return SportCheck(sport=None, message=f"no sport check: {why}")
    ok = any(name in expected for name, _ in top)
    shown = ", ".join(f"{name} ({p:.0%})" for name, p in top[:SHOW])
    if ok:
        message = f"looks like {sport}: Kinetics-400 top {SHOW}: {shown}"
    else:
        message = (f"this clip does not look like {sport}, the sport this model was trained on: "
                   f"none of the Kinetics-400 classifier's top {len(top)} classes is "
                   f"{' / '.join(expected)} (its top {SHOW}: {shown}). The score of a {sport} "
                   f"model on another sport means little; check the clip and the checkpoint")
    return SportCheck(sport=sport, expected=list(expected), top=top, ok=ok, message=message)


def scored_frames(result) -> list[int] | None:
    """The frame indices of the range a ScoreResult scored (all of them, not only those the
    model saw), for :func:`check_frames`; None (the whole clip) when the result has no range."""
    r = getattr(result, "scored_range", None)
    return list(range(r["start_frame"], r["end_frame"])) if r else None
