"""Inputs for the parity tests: what our test code hands the official implementations.

The reference numbers in ``tests/test_parity_*.py`` were produced by running each official
repository (at the commit named in ``docs/parity.md``) on exactly these inputs; this module must
therefore stay deterministic. Change a generator and every reference number that used it must be
regenerated (docs/parity.md says how).

- :func:`condition` gives a module seeded, well-conditioned weights: convolution and linear
  weights scaled to their fan-in (so activations neither vanish nor explode through I3D), BatchNorm
  statistics and affine parameters that are not the identity (so a wrong eps, momentum or mode
  shows), heads scaled so the output is sensitive to the features.
- :func:`moving_frames` gives lossless-friendly synthetic frames: smooth colour gradients with a
  bright square that moves, so every frame differs, in space and in time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def condition(module: nn.Module, seed: int, head_gain: float = 1.0) -> nn.Module:
    """Fill ``module``'s parameters and buffers in place from ``seed`` (see the module doc)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
                               * head_gain)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                n = m.num_features
                m.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(0.8 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module


def moving_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: a seeded colour gradient with a moving bright square."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None]
    x = np.linspace(0, 1, width)[None, :]
    phase = rng.uniform(0, 2 * np.pi, 3)
    size = max(4, min(height, width) // 5)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        for c in range(3):
            v = 0.5 + 0.35 * np.sin(2 * np.pi * (x * (1 + c) + y * (2 - c)) + phase[c] + 0.2 * t)
            out[t, :, :, c] = np.clip(v * 255, 0, 255).astype(np.uint8)
        cy = int((height - size) * (0.5 + 0.4 * np.sin(0.3 * t + phase[0])))
        cx = int((width - size) * (0.5 + 0.4 * np.cos(0.2 * t + phase[1])))
        out[t, cy:cy + size, cx:cx + size] = (250, 240, 60)
    return out
