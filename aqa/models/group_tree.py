"""The group-aware regression tree of CoRe (and TPT): score-difference bins, labels, decoding.

docs/methods.md, CoRe. From the sorted non-negative score differences D (n values) of the
training pairs and ``depth`` (5 -> 16 leaves):

    positive leaf 8+i (i = 0..7):  [D[int(i/8*(n-1))], D[int((i+1)/8*(n-1))])
                                    with the first left edge = min (0) and the last right = max
    negative leaf i:               the mirror [-right(15-i), -left(15-i)]

A difference d >= 0 falls in the leaf with left <= d < right, a negative one in left < d <= right.
The regression target in that leaf is r = (d - left) / (right - left) (d - left when the leaf is a
single point). Inference: leaf* = argmax of the leaf probabilities, d = left + (right - left) * r.

Official edge bug: a difference with |d| >= max falls in no leaf; the official one-hot is then all
zeros and its argmax sends it to leaf 0 (the most negative) with no regression target. This
module clamps it into the outermost leaf of its sign (r = 1 or 0) unless ``edge_bug=True``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


# The bins of the released MTL-AQA checkpoints: the positive leaves [left, right) built from the
# MTL-AQA training split (train_split_0.pkl, 1059 dives) exactly as the official code builds them
# (CoRe's Group_helper, depth 5). "dd": completeness differences of same-DD pairs (67,562 pairs,
# max 30, CoRe/TPT with DD); "no_dd": final-score differences of all pairs (560,211, max 100).
# tests/test_parity_core.py recomputes both from the annotation files and checks them against the
# official code's own Group_helper output.
MTL_AQA_LEAVES = {
    "dd": [(0.0, 0.9117647058823515), (0.9117647058823515, 1.5), (1.5, 2.5),
           (2.5, 3.0000000000000036), (3.0000000000000036, 4.5), (4.5, 6.0), (6.0, 8.5),
           (8.5, 30.0)],
    "no_dd": [(0.0, 3.6000000000000014), (3.6000000000000014, 7.349999999999994),
              (7.349999999999994, 11.200000000000003), (11.200000000000003, 15.700000000000003),
              (15.700000000000003, 20.799999999999997), (20.799999999999997, 27.200000000000003),
              (27.200000000000003, 36.300000000000004), (36.300000000000004, 100.0)],
}


def mtl_aqa_leaves(use_dd: bool) -> torch.Tensor:
    """(16, 2) leaf edges of the MTL-AQA training split (:data:`MTL_AQA_LEAVES`)."""
    pos = MTL_AQA_LEAVES["dd" if use_dd else "no_dd"]
    return torch.tensor([(-r, -l) for l, r in reversed(pos)] + pos, dtype=torch.float64)


def build_leaves(diffs: Sequence[float], depth: int, max_value: float,
                 min_value: float = 0.0) -> torch.Tensor:
    """(2**(depth-1), 2) leaf edges [left, right], most negative leaf first."""
    d = np.sort(np.abs(np.asarray(diffs, dtype=np.float64)))
    if d.size == 0:
        raise ValueError("no score differences to build the tree's bins from")
    half = 2 ** (depth - 1) // 2
    n = d.size
    pos = []
    for i in range(half):
        left = min_value if i == 0 else d[int(i / half * (n - 1))]
        right = max_value if i == half - 1 else d[int((i + 1) / half * (n - 1))]
        pos.append((min(left, right), max(left, right)))  # sorted, as the official code does
        # (left > right when a difference past max_value is an edge: the last leaf flips)
    neg = [(-r, -l) for l, r in reversed(pos)]
    return torch.tensor(neg + pos, dtype=torch.float64)


def leaf_labels(delta: torch.Tensor, leaves: torch.Tensor,
                edge_bug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) differences -> (B,) leaf index and (B,) regression target (-1 where there is none)."""
    delta = delta.to(torch.float64)
    left, right = leaves[:, 0][None, :], leaves[:, 1][None, :]  # (1, L)
    d = delta[:, None]  # (B, 1)
    inside = torch.where(d >= 0, (d >= left) & (d < right), (d > left) & (d <= right))  # (B, L)
    found = inside.any(dim=1)
    idx = inside.to(torch.int64).argmax(dim=1)  # first true leaf; 0 when none (the official bug)
    if not edge_bug:
        outer = torch.where(delta >= 0, len(leaves) - 1, 0)
        idx = torch.where(found, idx, outer)
    lo, hi = leaves[idx, 0], leaves[idx, 1]
    width = hi - lo
    r = torch.where(width == 0, delta - lo, (delta - lo) / torch.where(width == 0, 1.0, width))
    if edge_bug:
        r = torch.where(found, r, torch.full_like(r, -1.0))
    else:
        r = torch.where(found, r, r.clamp(0.0, 1.0))
    return idx, r.to(torch.float32)


def decode(leaf_logp: torch.Tensor, delta: torch.Tensor, leaves: torch.Tensor) -> torch.Tensor:
    """(B, L) leaf log-probabilities and (B, L) per-leaf regressions -> (B,) differences."""
    idx = leaf_logp.argmax(dim=1)  # (B,)
    r = delta.gather(1, idx[:, None]).squeeze(1).to(torch.float64)
    lo, hi = leaves[idx, 0].to(r.device), leaves[idx, 1].to(r.device)
    width = hi - lo
    return torch.where(width == 0, lo + r, lo + width * r).to(torch.float32)


def pair_differences(scores: Sequence[float], groups: Sequence) -> np.ndarray:
    """|s_i - s_j| for every unordered pair i < j within each group (e.g. same difficulty)."""
    scores = np.asarray(scores, dtype=np.float64)
    out = []
    keys = np.asarray([str(g) for g in groups])
    for key in np.unique(keys):
        s = scores[keys == key]
        if s.size > 1:
            i, j = np.triu_indices(s.size, k=1)
            out.append(np.abs(s[i] - s[j]))
    return np.concatenate(out) if out else np.zeros(0)
