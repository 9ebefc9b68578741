"""TSA-Net building blocks: tube masks and tube self-attention (Wang et al., ACM MM 2021).

METHODS.md section 4. The I3D (piergiaj family) is split after ``MaxPool3d_4a_3x3``:

    7 clips of 16 frames (starts 0, 16, 32, 48, 64, 80, 87)
      --stage 1, per clip--> (B, 480, 4, 14, 14) each --concat on time--> (B, 480, 28, 14, 14)
      --tube self-attention on the masked cells--> same shape
      --stage 2, per clip (Mixed_4b .. Mixed_5c, pool)--> (B, 7, 1024) --mean--> (B, 1024)

Tube mask: each frame's four box corners (in 640x360 frame pixels, the full frame mapped onto
the feature grid, ignoring resize and crop, as the official code does) are truncated to grid
cells and the convex quadrilateral is filled (cells on its edges included, like
cv2.fillConvexPoly); the 16 frames of a clip form 4 groups of 4 whose masks are OR-ed -> one
mask per feature time step.

Tube self-attention: a 1-D non-local block over the masked cells of each video, with identity
theta/phi (f = X^T X, softmax over the last axis), g = Conv1d(C, C, 1), and W = Conv1d(C, C, 1)
+ BatchNorm1d whose scale and shift start at zero, so the block starts as the identity.

Official quirk kept behind a flag: after the attention the official code reshapes the 28 time
steps as (4, 7) and takes index i of the 7 as clip i, so stage 2's "clip i" receives steps
{i, 7+i, 14+i, 21+i} of the concatenation, from different clips. ``clip_order_bug=True``
reproduces it; the default keeps each clip's own 4 steps together.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

TSA_STARTS = (0, 16, 32, 48, 64, 80, 87)
SPLIT_AT = "MaxPool3d_4a_3x3"


def fill_convex(corners: np.ndarray, height: int, width: int) -> np.ndarray:
    """(4, 2) corner points (x, y) in grid units -> (height, width) bool: the cells (x, y), with
    integer-truncated vertices, inside or on the edge of the convex polygon."""
    pts = np.trunc(np.asarray(corners, dtype=np.float64)).astype(np.int64)  # (4, 2)
    ys, xs = np.mgrid[0:height, 0:width]  # (H, W) each
    signs = []
    for k in range(len(pts)):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % len(pts)]
        signs.append((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0))  # cross product per cell
    signs = np.stack(signs)  # (4, H, W)
    inside = (signs >= 0).all(0) | (signs <= 0).all(0)
    if (pts == pts[0]).all():  # a degenerate box: its single cell
        inside = (xs == pts[0, 0]) & (ys == pts[0, 1])
    return inside


def tube_mask(boxes: np.ndarray, starts: Sequence[int] = TSA_STARTS, clip_len: int = 16,
              t_ratio: int = 4, grid: tuple[int, int] = (14, 14),
              frame_size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """(frames, 8) corner boxes x1,y1,...,x4,y4 in frame pixels -> (len(starts) * clip_len /
    t_ratio, gh, gw) bool: per clip, the OR of each group of ``t_ratio`` frames' masks."""
    gh, gw = grid
    fw, fh = frame_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), 4, 2)  # (F, 4, (x, y))
    scaled = boxes / np.array([fw / gw, fh / gh])
    out = []
    for s in starts:
        for g in range(clip_len // t_ratio):
            frames = range(s + g * t_ratio, s + (g + 1) * t_ratio)
            out.append(np.any([fill_convex(scaled[f], gh, gw) for f in frames], axis=0))
    return np.stack(out)  # (T', gh, gw)


class TubeSelfAttention(nn.Module):
    """Non-local attention among the masked cells of each video (module names as the official
    ``TSA_Module.NL_1D``: ``g``, ``W.0``, ``W.1``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.g = nn.Conv1d(channels, channels, 1)
        self.W = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def block(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, N) -> (1, C, N): z = W(softmax(X^T X) g(X)) + X."""
        f = torch.softmax(x.transpose(1, 2) @ x, dim=-1)  # (1, N, N)
        y = (f @ self.g(x).transpose(1, 2)).transpose(1, 2)  # (1, C, N)
        return self.W(y) + x

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W), mask (B, T, H, W) bool -> x with its masked cells attended."""
        out = x.clone()
        for b in range(x.shape[0]):
            m = mask[b]
            if m.any():
                cells = x[b][:, m].unsqueeze(0)  # (1, C, N_b)
                out[b][:, m] = self.block(cells).squeeze(0)
        return out


class TSANet(nn.Module):
    """Clip features of an I3D with tube self-attention between its two stages."""

    def __init__(self, backbone: nn.Module, use_tsa: bool = True,
                 starts: Sequence[int] = TSA_STARTS, clip_len: int = 16,
                 clip_order_bug: bool = False, channels: int = 480):
        super().__init__()
        self.backbone = backbone
        self.tsa = TubeSelfAttention(channels) if use_tsa else None
        self.starts, self.clip_len, self.clip_order_bug = list(starts), clip_len, clip_order_bug

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """video (B, C, T, H, W), mask (B, n_clips * T1, h, w) bool -> (B, D) features."""
        b, n = video.shape[0], len(self.starts)
        stage1 = [self.backbone.features_at(video[:, :, s:s + self.clip_len], SPLIT_AT)
                  for s in self.starts]  # n x (B, 480, T1, h, w)
        t1 = stage1[0].shape[2]
        x = torch.cat(stage1, dim=2)  # (B, 480, n*T1, h, w), clip-major in time
        if self.tsa is not None:
            if mask is None:
                raise ValueError("TSA needs a tube mask (boxes, or one estimated from motion)")
            x = self.tsa(x, mask)
        c, h, w = x.shape[1], x.shape[3], x.shape[4]
        if self.clip_order_bug:  # the official view(B, C, T1, n, h, w): clips interleaved
            clips = x.view(b, c, t1, n, h, w).permute(3, 0, 1, 2, 4, 5)
        else:
            clips = x.view(b, c, n, t1, h, w).permute(2, 0, 1, 3, 4, 5)  # (n, B, C, T1, h, w)
        feats = [self.backbone.pool(self.backbone.features_at(clip, "Mixed_5c", start=SPLIT_AT))
                 .flatten(1) for clip in clips]  # n x (B, D)
        return torch.stack(feats, 1).mean(1)  # (B, D)
