"""Inputs for the FineDiving TSA parity tests (tests/test_parity_fdtsa.py).

What our test code hands the official implementation (xujinglin/FineDiving @a2b8057); the
reference numbers in the tests were computed by the official code on exactly these inputs, so
everything here must stay deterministic (docs/parity.md says how to regenerate them):

- :func:`fdtsa_model`: our FDTSAModel at the official size (hassony2 I3D, PSNet on 9 clips and
  96 positions, a 3-block 64-wide decoder with 8 heads, the 64-256-64-1 regressor), weights
  seeded and conditioned (``parity_inputs.condition``), the last layer of PSNet's transition head
  scaled down so the transition probabilities do not saturate (no ties at 1.0 in the argmax);
- :func:`write_official_checkpoint`: those weights as the official training loop saves them
  (tools/helper.py ``save_checkpoint`` after ``nn.DataParallel``: ``base_model``,
  ``psnet_model``, ``decoder``, ``regressor_delta`` with ``module.``-prefixed keys, ``optimizer``,
  ``epoch``, ``epoch_best_aqa``, and numpy 1.x float64 ``rho_best``, ``L2_min``, ``RL2_min``;
  storages tagged ``cuda:0``);
- :func:`clip`: a (3, 96, 112, 112) uint8 clip of ``moving_frames``: what the official test
  transform (a 112 centre crop) hands the model, before ``ClipToTensor`` and ``Normalize``;
- :data:`VIDEOS`: each clip's seed, score and transitions in the dataset's definition (the
  official loader's ``transitions[1]-1, transitions[-1]-1``; the runner adds 1).

``python tests/parity_fdtsa_inputs.py OUT`` writes ``OUT/fdtsa_ckpt.pth`` and
``OUT/fdtsa_inputs.npz`` (clips, scores, transits) for the official runner.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.legacy_pickle import save_as_numpy1  # noqa: E402
from tests.parity_inputs import condition, moving_frames  # noqa: E402

SEED = 20220607
FRAMES, SIZE = 96, 112
TAS_GAIN = 0.05
# name: (frame seed, final score, transits as the dataset gives them)
VIDEOS = {"query": (301, 71.4, (27, 58)), "ex_a": (302, 80.5, (30, 62)),
          "ex_b": (303, 55.0, (22, 66))}
TEST_VOTERS = ("ex_a", "ex_b")  # the query's exemplars at test, in this order
TRAIN_PAIR = ("query", "ex_a")  # (query, exemplar) of the training step


def fdtsa_model(seed: int = SEED, freeze_backbone: bool = False):
    """Our FDTSAModel at the official size, weights seeded and conditioned."""
    from aqa.models.fdtsa import FDTSAConfig, network
    from aqa.models.i3d import I3D

    torch.manual_seed(seed)
    model = network(I3D("hassony2", input_norm="imagenet"), FDTSAConfig(), FRAMES)
    condition(model, seed)
    with torch.no_grad():  # transition probabilities below saturation
        model.psnet.tas.layer3.weight.mul_(TAS_GAIN)
    if freeze_backbone:
        model.backbone.requires_grad_(False)
    return model.eval()


def clip(name: str) -> torch.Tensor:
    """(3, 96, 112, 112) uint8: ``VIDEOS[name]``'s moving frames."""
    frames = moving_frames(FRAMES, SIZE, SIZE, VIDEOS[name][0])  # (T, H, W, 3)
    return torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()


def official_parts(model) -> dict[str, OrderedDict]:
    """Our weights under the official four parts' keys, ``module.``-prefixed (DataParallel)."""
    state = model.state_dict()
    parts = {"base_model": "backbone.", "psnet_model": "psnet.", "decoder": "decoder.",
             "regressor_delta": "regressor."}
    out = {}
    for part, prefix in parts.items():
        keep = "" if part == "base_model" else prefix  # I3D_backbone keeps its 'backbone.'
        out[part] = OrderedDict(("module." + k[len(keep):], v.clone()) for k, v in state.items()
                                if k.startswith(prefix))
    return out


def official_optimizer_state(model) -> dict:
    """A fresh Adam state dict with the official four groups (backbone at lr 1e-4, then PSNet,
    decoder, regressor at 1e-3), as torch 1.7 wrote it."""
    groups, start = [], 0
    for name, lr in (("backbone", 1e-4), ("psnet", 1e-3), ("decoder", 1e-3), ("regressor", 1e-3)):
        n = len(list(getattr(model, name).parameters()))
        groups.append({"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                       "amsgrad": False, "params": list(range(start, start + n))})
        start += n
    return {"state": {}, "param_groups": groups}


def write_official_checkpoint(path: Path, model, epoch: int = 117) -> Path:
    state = {**official_parts(model), "optimizer": official_optimizer_state(model),
             "epoch": epoch, "epoch_best_aqa": epoch, "rho_best": np.float64(0.9312715),
             "L2_min": np.float64(24.3127), "RL2_min": np.float64(0.0031862)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_as_numpy1(state, path)
    return path


def write_inputs(out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_official_checkpoint(out / "fdtsa_ckpt.pth", fdtsa_model())
    np.savez(out / "fdtsa_inputs.npz",
             **{f"clip_{k}": clip(k).numpy() for k in VIDEOS},
             **{f"score_{k}": np.float64(v[1]) for k, v in VIDEOS.items()},
             **{f"transits_{k}": np.asarray(v[2], np.int64) for k, v in VIDEOS.items()})


if __name__ == "__main__":
    write_inputs(Path(sys.argv[1]))
