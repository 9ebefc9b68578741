"""Inputs of the PECoP and I3D parity tests (``tests/test_parity_pecop.py``): what our test code
hands the official implementations (PECoP, hassony2's and piergiaj's I3D).

Everything here is deterministic; the reference numbers in ``test_parity_pecop.py`` were computed
by the official code on exactly these files (docs/parity.md, "PECoP and the I3D weight files",
says how to regenerate them). Change a generator and those numbers must be regenerated.

- :func:`i3d_state`: seeded, conditioned I3D weights in an official key layout: hassony2's
  ``model_rgb.pth`` (400 classes) or piergiaj's ``rgb_i3d_pretrained.pt`` (157 classes), written
  by :func:`save_official` like the real files (legacy serialisation, no ``num_batches_tracked``).
- :func:`pecop_state`: a PECoP ``gait_adapterNN.pth.tar``: ``state_dict()`` of the pretext model
  wrapped in ``nn.DataParallel`` (``module.model.*``, ``module.logits_p.*``, ``module.logits_s.*``),
  saved with ``cuda:0`` storages, as PECoP's training script saves it on its GPUs.
- :func:`clip`: a moving-frames clip (1, 3, T, 224, 224) uint8.
- :func:`write_pd4t`: one PD4T gait sample in PECoP's layout (``<num_p>/<name>/img_00001.jpg``,
  ``train.list``) for the VSPP loader.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from parity_inputs import condition, moving_frames

SEED = {"hassony2": 1101, "piergiaj": 1102, "pecop": 1103, "clip": 1104, "pd4t": 1105}
CLASSES = {"hassony2": 400, "piergiaj": 157}  # model_rgb.pth: Kinetics; rgb_i3d_pretrained.pt: 157
# The PD4T sample: 120 listed frames (117 usable, PECoP's num_frames - 3) of 320x180 px.
PD4T_SAMPLE = ("p07_gait", 2, 120, "7")  # sample_name, UPDRS label, num_frames, num_p
PD4T_SIZE = (180, 320)  # (H, W) of the frame files


def i3d_state(family: str) -> dict[str, torch.Tensor]:
    """A conditioned I3D state dict in ``family``'s official layout (no num_batches_tracked, as
    the PyTorch 0.3/0.4-era files)."""
    from aqa.models.i3d import I3D

    torch.manual_seed(0)
    net = condition(I3D(family, num_classes=CLASSES[family]), SEED[family])
    return {k: v.clone() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


class _VSPPLayout(nn.Module):
    """The attribute layout of PECoP's pretext module (``VSPP``): ``model`` (the adapted
    hassony2 I3D), ``logits_p`` and ``logits_s`` (1x1x1 convolutions with a bias)."""

    def __init__(self):
        super().__init__()
        from aqa.models.i3d import I3D, Unit3D

        self.model = I3D("hassony2", num_classes=400, adapters=True)
        self.logits_p = Unit3D(1024, 5, bn=False, relu=False)
        self.logits_s = Unit3D(1024, 4, bn=False, relu=False)


def pecop_state() -> dict[str, torch.Tensor]:
    """``nn.DataParallel(VSPP).state_dict()`` of a conditioned adapted model: every I3D tensor,
    the adapters (their per-channel scale ``se`` drawn around 1, their output convolution scaled
    by 1/4 so that nine adapters in a row keep the activations in range) and both heads (scaled
    by 1/5 so that neither the eval-mode nor the train-mode logits saturate the softmax)."""
    torch.manual_seed(0)
    net = condition(_VSPPLayout(), SEED["pecop"])
    g = torch.Generator().manual_seed(SEED["pecop"] + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("tuning_module.se"):
                p.copy_(0.75 + 0.5 * torch.rand(p.shape, generator=g))
            elif ".tuning_module.conv2." in name:
                p.mul_(0.25)
            elif name.startswith("logits_") and name.endswith(".weight"):
                p.mul_(0.2)
    return nn.DataParallel(net).state_dict()


@contextlib.contextmanager
def storages_tagged(location: str):
    """torch.save writes every storage's location as ``location`` (e.g. "cuda:0"), as a file
    saved from a GPU says it."""
    registry = torch.serialization._package_registry
    entry = (-1000, lambda storage: location, lambda storage, loc: None)
    registry.insert(0, entry)
    try:
        yield
    finally:
        registry.remove(entry)


def save_official(state: dict, path: str | Path, location: str = "cpu",
                  legacy: bool = False) -> Path:
    """``torch.save(state, path)`` with storages tagged ``location``; ``legacy``: the pre-1.6
    (non-zip) serialisation of the 2017-2018 I3D files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with storages_tagged(location):
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def write_weights(folder: str | Path) -> dict[str, Path]:
    """The three official weight files, as the real ones were written."""
    folder = Path(folder)
    return {"hassony2": save_official(i3d_state("hassony2"), folder / "model_rgb.pth", legacy=True),
            "piergiaj": save_official(i3d_state("piergiaj"), folder / "rgb_i3d_pretrained.pt",
                                      "cuda:0", legacy=True),
            "pecop": save_official(pecop_state(), folder / "gait_adapter08.pth.tar", "cuda:0")}


def clip(num_frames: int) -> torch.Tensor:
    """(1, 3, T, 224, 224) uint8 RGB moving frames."""
    frames = moving_frames(num_frames, 224, 224, SEED["clip"])  # (T, H, W, 3)
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].contiguous()


def imagenet_input(video: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, T, H, W) -> float32 ImageNet-normalised, as ClipToTensor + Normalize (what
    the official modules are fed)."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)
    return (video.float() / 255.0 - mean) / std


def write_pd4t(root: str | Path) -> Path:
    """PECoP's frames layout for :data:`PD4T_SAMPLE` under ``root`` (``rgb_prefix``):
    ``7/p07_gait/img_00001.jpg`` .. ``img_00120.jpg`` (JPEG quality 90) and ``train.list``."""
    root = Path(root)
    name, label, count, num_p = PD4T_SAMPLE
    folder = root / num_p / name
    folder.mkdir(parents=True, exist_ok=True)
    frames = moving_frames(count, *PD4T_SIZE, SEED["pd4t"])
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"img_{i:05d}.jpg", quality=90)
    (root / "train.list").write_text(f"{name} {label} {count} {num_p}\n")
    (root / "test.list").write_text(f"{name} {label} {count} {num_p}\n")
    return root


def clip_digest(video: torch.Tensor) -> str:
    """sha256 of a uint8 (3, T, H, W) clip's bytes: how the tests compare a whole clip with the
    official loader's."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(video.numpy().astype(np.uint8)).tobytes()).hexdigest()


def probes(n: int, k: int = 2) -> torch.Tensor:
    """(k, n) fixed random directions: a vector is compared with the official one by its sum,
    norm and these projections (a relative L2 difference e moves each by at most e·norm)."""
    return torch.randn(k, n, generator=torch.Generator().manual_seed(SEED["clip"] + n),
                       dtype=torch.float64)


def summary(t: torch.Tensor) -> dict:
    """The literals a test stores for a feature/logit vector: sum, norm, first values, probes."""
    v = t.detach().double().flatten()
    return {"sum": float(v.sum()), "norm": float(v.norm()), "first": [float(x) for x in v[:4]],
            "probes": [float(x) for x in probes(v.numel()) @ v]}
