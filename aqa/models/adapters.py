"""PECoP's 3D adapter (Dadashzadeh et al., WACV 2024; docs/methods.md, PECoP) and the key table of the
official PECoP state dicts.

One adapter sits after every I3D Mixed block (3b, 3c, 4b-4f, 5b, 5c) and is added to the block's
concatenated output, ``out = out + adapter(out)``:

    (B, C, T, H, W) -conv1-> (B, C/4, T, H, W) -ReLU-> -conv2-> (B, C, T, H, W) * se (1, C, 1, 1, 1)

conv1 is a 3x3x3 convolution with groups = C/4 (each group maps 4 input channels to 1), conv2 is
1x1x1; both have a bias and PyTorch's default init; ``se`` is a per-channel scale initialised to 1.
So the adapter is not the identity at init. (C, C/4) per block: 3b (256, 64), 3c (480, 120),
4b-4d (512, 128), 4e (528, 132), 4f and 5b (832, 208), 5c (1024, 256): 1,109,068 parameters.

The module is named ``tuning_module`` inside the Mixed block, as in the official
``models/i3d_adapter.py``, so a backbone key reads ``mixed_3b.tuning_module.conv1.weight``.
PECoP's training script saves the whole pretext model (``VSPP``), possibly DataParallel-wrapped::

    [module.]model.<i3d key>                  the adapted hassony2 I3D (incl. conv3d_0c_1x1)
    [module.]logits_p.conv3d.{weight,bias}    pace head
    [module.]logits_s.conv3d.{weight,bias}    segment head
"""

from __future__ import annotations

import torch
from torch import nn

ADAPTER = "tuning_module"  # the adapter's attribute inside a Mixed block (official name)
HEADS = ("logits_p", "logits_s")  # PECoP's pretext heads (dropped from a backbone)


class ConvAdapter(nn.Module):
    """(B, C, T, H, W) -> (B, C, T, H, W): grouped 3x3x3 to C/4, ReLU, 1x1x1 back to C, times se."""

    def __init__(self, channels: int):
        super().__init__()
        width = channels // 4
        self.conv1 = nn.Conv3d(channels, width, 3, padding=1, groups=width)  # 4 channels -> 1
        self.act = nn.ReLU()
        self.conv2 = nn.Conv3d(width, channels, 1)
        self.se = nn.Parameter(torch.ones(1, channels, 1, 1, 1))  # per-channel scale, init 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x))) * self.se


def is_adapter_key(key: str) -> bool:
    return f".{ADAPTER}." in f".{key}"


def has_adapters(state: dict) -> bool:
    """Whether a backbone state dict carries adapter weights."""
    return any(is_adapter_key(k) for k in state)


def adapter_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in module.named_parameters() if is_adapter_key(n)]


def strip_module_prefix(state: dict) -> dict:
    """DataParallel's ``module.`` prefix removed (when every key has it)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def is_pecop_layout(state: dict) -> bool:
    """A PECoP ``gait_adapterNN.pth.tar``: ``[module.]model.*`` keys (with or without heads)."""
    keys = strip_module_prefix(state)
    return bool(keys) and any(k.startswith("model.") for k in keys) and all(
        k.startswith("model.") or k.split(".")[0] in HEADS for k in keys)


def split_pecop_state(state: dict) -> tuple[dict, dict]:
    """Official PECoP state dict -> (backbone state with plain I3D keys, heads state)."""
    state = strip_module_prefix(state)
    backbone = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    heads = {k: v for k, v in state.items() if k.split(".")[0] in HEADS}
    return backbone, heads


def to_pecop_layout(backbone: dict, heads: dict | None = None) -> dict:
    """The inverse of :func:`split_pecop_state` (no ``module.`` prefix): what PECoP's
    ``VSPP.load_state_dict`` reads."""
    return {**{f"model.{k}": v for k, v in backbone.items()}, **(heads or {})}
