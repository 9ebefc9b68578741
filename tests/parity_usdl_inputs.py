"""USDL/MUSDL parity inputs: official-layout checkpoints and an MTL-AQA folder in MUSDL's layout.

Everything here is deterministic: ``tests/test_parity_usdl.py`` compares our outputs on these
inputs with numbers the official code (nzl-thu/MUSDL @205868a) printed for the same inputs
(docs/parity.md says how they were produced). Change a seed or a size and those numbers must be
regenerated.

Checkpoints are written the way MUSDL's ``main.py`` wrote them under PyTorch 1.x, numpy 1.x and
two GPUs: ``{'epoch', 'i3d', 'evaluator', 'optimizer', 'rho_best'}`` with ``module.``-prefixed
state dicts (``nn.DataParallel``), storages tagged ``cuda:0``, and ``rho_best`` a numpy float64
pickled under numpy 1.x's global name ``numpy.core.multiarray.scalar`` (byte-identical to what
numpy 1.26 writes; checked when this module was written). JIGSAWS' ``main.py`` saves the four
folds' models as ``nn.ModuleList``s: ``i3ds.<fold>.module.*``, ``evaluators.<fold>.module.*``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from legacy_pickle import dump_as_numpy1, save_as_numpy1
from parity_inputs import condition, moving_frames

I3D_SEED = 11
HEAD_SEED = {"usdl": 12, "musdl": 13}
HEAD_GAIN = 2.0  # the last layer's gain: softmax peaks with clear argmax margins
CROP = 193  # the smallest crop the official I3D accepts (its 7x7 average pool needs 7x7 at Mixed_5c)
FRAMES_PER_SAMPLE = 110  # >= 103 + MUSDL's largest temporal shift (6)
FRAME_W, FRAME_H = 320, 180  # the synthetic frames' size (resized to 455x256 by both loaders)
BINS = {"usdl": (1, 101), "musdl": (7, 21)}  # (heads, bins) on MTL-AQA

# (event, idx): (final_score, difficulty, judge_scores, brightness); the seed of its frames is its
# position; a dimmer sample gives the network clearly different features
TEST = {(1, 1): (67.5, 3.0, [7.5, 7.5, 8.0, 7.0, 7.5, 8.0, 7.5], 1.0),
        (1, 2): (40.3, 2.6, [5.0, 5.5, 5.0, 5.5, 5.0, 4.5, 5.5], 0.5)}
TRAIN = {(2, 1): (81.6, 3.2, [8.5, 8.5, 8.0, 8.5, 9.0, 8.5, 8.0], 0.8)}


def official_weights(kind: str) -> tuple[dict, dict]:
    """(i3d state, evaluator state) under the official names, without DataParallel prefixes:
    piergiaj InceptionI3d keys (157-class logits) and ``evaluator.layer{1,2,3}.*`` (USDL) or
    ``evaluator.<judge>.layer{1,2,3}.*`` (MUSDL). The head's weight rows have zero mean, so its
    output follows how the (all-positive) features differ between clips rather than their mean."""
    from aqa.models.i3d import I3D

    i3d = condition(I3D("piergiaj", 157, 0.0, "imagenet"), I3D_SEED)
    heads, bins = BINS[kind]
    g = torch.Generator().manual_seed(HEAD_SEED[kind])
    evaluator = {}
    for j in range(heads):
        prefix = "evaluator." if kind == "usdl" else f"evaluator.{j}."
        for name, (fan_out, fan_in) in (("layer1", (256, 1024)), ("layer2", (128, 256)),
                                        ("layer3", (bins, 128))):
            w = torch.randn(fan_out, fan_in, generator=g) * (2.0 / fan_in) ** 0.5 / 3.0
            w = (w - w.mean(dim=1, keepdim=True)) * (HEAD_GAIN if name == "layer3" else 1.0)
            evaluator[f"{prefix}{name}.weight"] = w
            evaluator[f"{prefix}{name}.bias"] = torch.randn(fan_out, generator=g) * 0.05
    return {k: v.clone() for k, v in i3d.state_dict().items()}, evaluator


# ----------------------------------------------------------------- writing like numpy 1.x did

def save_official(obj, path: Path, legacy: bool = False) -> None:
    """``torch.save`` as on the authors' machines: numpy 1.x names, ``cuda:0`` storages; with
    ``legacy`` the pre-1.6 (non-zip) format of PyTorch <= 1.5, which MUSDL's 2020 code ran on
    (``tests/legacy_pickle.save_as_numpy1``)."""
    save_as_numpy1(obj, path, legacy=legacy)


def _adam_state(n_params: int, weight_decay: float) -> dict:
    """An Adam ``state_dict()`` of PyTorch 1.x after some steps (int step counts)."""
    state = {i: {"step": 1350, "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}
             for i in range(2)}
    return {"state": state, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                                              "weight_decay": weight_decay, "amsgrad": False,
                                              "params": list(range(n_params))}]}


def write_mtl_checkpoint(path: Path, kind: str, dataparallel: bool = True,
                         legacy: bool = False) -> Path:
    """MTL-AQA ``ckpts/{USDL,MUSDL}.pt`` as MUSDL's main.py saves it."""
    i3d, evaluator = official_weights(kind)
    pre = "module." if dataparallel else ""
    n = sum(1 for k in [*i3d, *evaluator] if "num_batches" not in k and "running" not in k)
    save_official({"epoch": 41, "i3d": {pre + k: v for k, v in i3d.items()},
                   "evaluator": {pre + k: v for k, v in evaluator.items()},
                   "optimizer": _adam_state(n, 0.0 if kind == "usdl" else 1e-5),
                   "rho_best": np.float64(0.9064 if kind == "usdl" else 0.9306)}, path, legacy)
    return path


def write_jigsaws_checkpoint(path: Path, kind: str, folds: int = 4) -> Path:
    """JIGSAWS ``ckpts/<task>_{USDL,MUSDL}.pt``: the four folds' DataParallel models in
    ModuleLists; fold k gets head seed + k (the I3D is shared, to keep the file small enough)."""
    i3d, _ = official_weights("usdl")
    heads, bins = (1, 25) if kind == "usdl" else (6, 5)
    i3ds, evaluators = {}, {}
    for f in range(folds):
        i3ds.update({f"{f}.module.{k}": v for k, v in i3d.items()})
        g = torch.Generator().manual_seed(100 + f)
        for j in range(heads):
            prefix = f"{f}.module.evaluator." + ("" if kind == "usdl" else f"{j}.")
            for name, (o, i) in (("layer1", (256, 1024)), ("layer2", (128, 256)), ("layer3", (bins, 128))):
                evaluators[f"{prefix}{name}.weight"] = torch.randn(o, i, generator=g) * (2.0 / i) ** 0.5
                evaluators[f"{prefix}{name}.bias"] = torch.randn(o, generator=g) * 0.05
    save_official({"epoch": 70, "i3ds": i3ds, "evaluators": evaluators,
                   "optimizer": [_adam_state(4, 0.0) for _ in range(folds)],
                   "rho_best": np.float64(0.71)}, path)
    return path


# ----------------------------------------------------------------- MUSDL's MTL-AQA data folder

def write_mtl_data(root: Path) -> Path:
    """``root/info/{augmented_final_annotations_dict,train_split_0,test_split_0}.pkl`` and
    ``root/frames/{event:02d}_{idx:02d}/{n:05d}.jpg`` (MUSDL's layout; the files hold PNG data,
    lossless and identical on every platform, which PIL opens by content)."""
    from PIL import Image

    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    ann = {}
    for n, (key, (score, dd, judges, bright)) in enumerate({**TEST, **TRAIN}.items()):
        ann[key] = {"primary_view": 0, "start_frame": 100, "end_frame": 100 + FRAMES_PER_SAMPLE,
                    "position": 0, "difficulty": dd, "armstand": 0, "rotation_type": 1,
                    "ss_no": 2, "tw_no": 0, "final_score": score,
                    "judge_scores": np.asarray(judges, dtype=np.float64)}
        folder = root / "frames" / f"{key[0]:02d}_{key[1]:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(moving_frames(FRAMES_PER_SAMPLE, FRAME_H, FRAME_W, seed=n)):
            frame = (frame * bright).astype(np.uint8)
            Image.fromarray(frame).save(folder / f"{t:05d}.jpg", format="PNG")
    with open(info / "augmented_final_annotations_dict.pkl", "wb") as f:
        dump_as_numpy1(ann, f, protocol=3)
    for name, keys in (("train_split_0.pkl", list(TRAIN)), ("test_split_0.pkl", list(TEST))):
        with open(info / name, "wb") as f:
            pickle.dump(keys, f, protocol=3)
    return root


def clip_md5(frames_thwc_uint8: np.ndarray) -> str:
    """The md5 of a uint8 ``(T, H, W, 3)`` clip: how the data-parity test compares frames."""
    import hashlib

    return hashlib.md5(np.ascontiguousarray(frames_thwc_uint8, dtype=np.uint8).tobytes()).hexdigest()


def unnormalise(video_tchw: torch.Tensor) -> np.ndarray:
    """An ImageNet-normalised float ``(T, C, H, W)`` clip (torchvision ToTensor + Normalize) back
    to the uint8 ``(T, H, W, 3)`` it came from (exact: the round trip errs by < 1e-4 of a level)."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    levels = ((video_tchw * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return levels.permute(0, 2, 3, 1).numpy()


class FixedDraws:
    """A stand-in numpy Generator whose draws are given: ``integers`` returns ``ints`` in turn,
    ``random`` returns ``uniforms`` in turn (for the train-time data-parity check)."""

    def __init__(self, ints: list[int], uniforms: list[float]):
        self.ints, self.uniforms = list(ints), list(uniforms)

    def integers(self, low, high=None, size=None):
        return self.ints.pop(0)

    def random(self, size=None):
        return self.uniforms.pop(0)



# ----------------------------------------------------------------- MUSDL's JIGSAWS data folder

JIGSAWS_TRIALS = ["Suturing_B001", "Suturing_C001", "Suturing_D001", "Suturing_E001",
                  "Suturing_B002"]
JIGSAWS_FOLDS = [[0, 4], [1], [], []]  # fold 0 tests B001 and B002 and trains on C001 alone
JIGSAWS_FRAMES = 173  # a count that makes linspace(0, n-1, 160) skip and repeat nothing evenly


def write_jigsaws_data(root: Path, with_frames: tuple[str, ...] = ("Suturing_B001",)) -> Path:
    """``root/info/{label,splits}.pkl`` (four folds) and, for the trials in ``with_frames``,
    ``root/frames/<trial>_capture1/{n:05d}.jpg`` at 320x240 (PNG data)."""
    from PIL import Image

    (root / "info").mkdir(parents=True, exist_ok=True)
    labels = {t: [1 + (i + j) % 5 for j in range(6)] for i, t in enumerate(JIGSAWS_TRIALS)}
    with open(root / "info" / "label.pkl", "wb") as f:
        pickle.dump(labels, f, protocol=3)
    with open(root / "info" / "splits.pkl", "wb") as f:
        pickle.dump({"Suturing": [[JIGSAWS_TRIALS[i] for i in fold] for fold in JIGSAWS_FOLDS]},
                    f, protocol=3)
    for n, trial in enumerate(JIGSAWS_TRIALS):
        if trial not in with_frames:
            continue
        folder = root / "frames" / f"{trial}_capture1"
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(moving_frames(JIGSAWS_FRAMES, 240, 320, seed=10 + n)):
            Image.fromarray(frame).save(folder / f"{t:05d}.jpg", format="PNG")
    return root
