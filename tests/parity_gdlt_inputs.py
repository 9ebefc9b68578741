"""GDLT / CoFInAl parity inputs: seeded weights in the official checkpoint layout, and programs.

Deterministic: ``tests/test_parity_gdlt.py`` and ``tests/test_parity_cofinal.py`` compare our
outputs on these inputs with numbers the official code printed for the same inputs (docs/parity.md
says how). Change a seed or a size and those numbers must be regenerated.

The official ``main.py`` of both repositories saves ``torch.save(model.state_dict(), path)``:
a plain state dict, from a GPU (storages tagged ``cuda:0``), PyTorch 1.10 (zip format).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from legacy_pickle import save_as_numpy1
from parity_inputs import condition

D = 1024  # the official in_dim default
TEST_LENGTHS = (30, 45, 17)  # rows of the three test programs
TEST_SCORES = (14.2, 19.85, 9.6)  # raw points (the official loader divides by 25)
TRAIN_ROWS = 12  # rows of a training window (data.clip_num in the step)
TRAIN_LENGTHS = (12, 12, 9, 12)  # real rows of the four windows of the training batch
TRAIN_SCORES = (17.3, 11.05, 21.4, 15.65)
DROP_SEED = 1234  # torch.manual_seed before the training step (the dropout draws)


def fill(module: nn.Module, seed: int) -> nn.Module:
    """``condition`` plus what it leaves alone here: the attention projections and the grade
    query embeddings, from the same seed."""
    condition(module, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, nn.MultiheadAttention):
                d = m.embed_dim
                m.in_proj_weight.copy_(torch.randn(m.in_proj_weight.shape, generator=g) * d ** -0.5)
                m.in_proj_bias.copy_(torch.randn(m.in_proj_bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    return module


def programs(lengths, seed: int, dim: int = D) -> list[np.ndarray]:
    """Feature programs (T_i, D) float32: smooth in time (a drifting mix of a few seeded patterns,
    non-negative like pooled activations), so neighbouring clips look alike and programs differ."""
    rng = np.random.default_rng(seed)
    out = []
    for t in lengths:
        basis = rng.random((4, dim)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, 4)
        time = np.arange(t)[:, None]
        mix = 0.5 + 0.5 * np.sin(0.15 * time * (1 + np.arange(4)) + phase)  # (T, 4)
        out.append((mix @ basis / 2).astype(np.float32))
    return out


def test_programs() -> list[np.ndarray]:
    return programs(TEST_LENGTHS, seed=31)


def train_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (4, 12, D) with zero rows after each window's length, length (4,), score (4,))."""
    feats = programs((TRAIN_ROWS,) * len(TRAIN_LENGTHS), seed=32)
    x = np.stack(feats)
    for i, n in enumerate(TRAIN_LENGTHS):
        x[i, n:] = 0.0  # a short program zero-padded, as the loaders pad it
    return (torch.from_numpy(x), torch.tensor(TRAIN_LENGTHS, dtype=torch.int64),
            torch.tensor(TRAIN_SCORES, dtype=torch.float32))


def write_checkpoint(model: nn.Module, path: Path) -> Path:
    """The state dict as the official main.py saved it from a GPU."""
    save_as_numpy1({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    return path
