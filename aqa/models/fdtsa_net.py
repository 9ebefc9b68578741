"""FineDiving TSA's network (Xu et al., CVPR 2022; xujinglin/FineDiving @a2b8057): PSNet, the
step-wise cross-attention decoder, the regressor, and the pure parts between them (transitions
from probabilities, step pooling, tIoU). :mod:`aqa.models.fdtsa` is the method around it.

Shapes for one dive of 96 frames at 112 px (M videos), hassony2 I3D:

    clips        9 x (3, 16, 112, 112) at 0, 10, ..., 80
    I3D          Mixed_5c (M, 9, 1024, 2, 4, 4) -> mean over time (M, 9, 1024, 4, 4)
                 average pool (M, 9, 1024)
    PSNet        features (M, 9, 1024) -> u (M, 96, 64), p (M, 96, 2)
                 maps read as (M*16, 9, 1024) rows -> (M*16, 96, 64) -> u_map (M, 96, 64, 4, 4)
    seg_pool     3 steps x 5 positions: segs (M, 15, 64), map tokens (M, 15*16, 64)
    decoder      per step: 5 query tokens on the other video's 5*16 map tokens -> (M, 15, 64)
    regressor    (M, 15, 1) -> mean -> delta (M,)
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F

from aqa.errors import ConfigError, DatasetError

TIOU_THRESHOLDS = (0.5, 0.75)

# ---------------------------------------------------------------------------------- PSNet

class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1), nn.BatchNorm1d(cout),
                                  nn.ReLU(inplace=True), nn.Conv1d(cout, cout, 3, padding=1),
                                  nn.BatchNorm1d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _In(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool1d(2), _DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mpconv(x)


class MLP3(nn.Module):
    """Linear-ReLU-Linear-ReLU-Linear (official MLP_score; MLP_tas with a final sigmoid)."""

    def __init__(self, cin: int, hidden: tuple[int, int], cout: int, sigmoid: bool = False):
        super().__init__()
        self.layer1 = nn.Linear(cin, hidden[0])
        self.layer2 = nn.Linear(hidden[0], hidden[1])
        self.layer3 = nn.Linear(hidden[1], cout)
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layer2(F.relu(self.layer1(x))))
        x = self.layer3(x)
        return torch.sigmoid(x) if self.sigmoid else x


class PSNet(nn.Module):
    """Procedure segmentation: (M, clips, D) -> u (M, positions, D/16), p (M, positions, 2).

    Convolutions run along the feature axis D with the clips as channels; four halvings take D
    to D/16 (1024 -> 64), and the last block's channels are the positions (96 frames)."""

    def __init__(self, clips: int = 9, positions: int = 96, length: int = 64):
        super().__init__()
        self.inc = _In(clips, 12)
        self.down1 = _Down(12, 24)
        self.down2 = _Down(24, 48)
        self.down3 = _Down(48, 96)
        self.down4 = _Down(96, positions)
        self.tas = MLP3(length, (128, 64), 2, sigmoid=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.down4(self.down3(self.down2(self.down1(self.inc(x)))))  # (M, P, D/16)
        return x, self.tas(x)  # (M, P, D/16), (M, P, 2)


# ---------------------------------------------------------------------------------- decoder

class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.decoder_heads={heads} does not divide the decoder width "
                              f"{dim} (the backbone's feature size / 16)")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q_map = nn.Linear(dim, dim, bias=False)
        self.k_map = nn.Linear(dim, dim, bias=False)
        self.v_map = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, c = q.shape
        nk, h = v.shape[1], self.heads
        k = self.k_map(v).view(b, nk, h, c // h).permute(0, 2, 1, 3)  # (B, h, NK, c/h)
        val = self.v_map(v).view(b, nk, h, c // h).permute(0, 2, 1, 3)
        q = self.q_map(q).view(b, n, h, c // h).permute(0, 2, 1, 3)  # (B, h, N, c/h)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, h, N, NK)
        return self.proj((attn @ val).transpose(1, 2).reshape(b, n, c))  # (B, N, c)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DecoderBlock(nn.Module):
    """Pre-norm cross-attention block: q += attn(LN(q), LN(v)); q += MLP(LN(q))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(self.norm_q(q), self.norm_v(v))
        return q + self.mlp(self.norm2(q))


class DecoderFuser(nn.Module):
    def __init__(self, dim: int = 64, heads: int = 8, layers: int = 3):
        super().__init__()
        self.model = nn.ModuleList(DecoderBlock(dim, heads) for _ in range(layers))

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        for block in self.model:
            q = block(q, v)
        return q


# ---------------------------------------------------------------------------------- pure parts

def predicted_transits(prob: torch.Tensor) -> torch.Tensor:
    """(M, P, 2) transition probabilities -> (M, 2) positions: the first transition is the
    argmax of channel 0 over the first half, the second of channel 1 over the second half."""
    half = round(prob.shape[1] / prob.shape[2])
    first = prob[:, :half, 0].argmax(1)
    second = prob[:, half:2 * half, 1].argmax(1) + half
    return torch.stack([first, second], 1)


def pooling_bounds(transits) -> tuple[int, int]:
    """Predicted transitions as pooling bounds: a 0 becomes 1 (an empty first step cannot be
    resampled; the official code makes the same change)."""
    st, ed = int(transits[0]), int(transits[1])
    return (st or 1), (ed or 1)


def seg_pool(x: torch.Tensor, st: int, ed: int, size: int) -> torch.Tensor:
    """(1, C, P) or (1, C, P, H, W) -> (1, C, 3*size[, H, W]): the steps [0, st), [st, ed),
    [ed, P) each resampled to ``size`` positions (linear / trilinear, align_corners)."""
    if not 0 < st < ed < x.shape[2]:
        raise DatasetError(f"step transitions ({st}, {ed}) do not cut the {x.shape[2]} frames "
                           "into three non-empty steps; check the sample's frame labels")
    parts = (x[:, :, :st], x[:, :, st:ed], x[:, :, ed:])
    if x.dim() == 3:
        out = [F.interpolate(p, size=size, mode="linear", align_corners=True) for p in parts]
    else:
        out = [F.interpolate(p, size=[size, *x.shape[3:]], mode="trilinear", align_corners=True)
               for p in parts]
    return torch.cat(out, 2)


def segment_iou(target, candidate) -> float:
    """tIoU of two [start, end] segments (official utils/misc.py ``segment_iou``: intersection
    over union with float epsilon in the denominator)."""
    inter = max(0.0, min(float(target[1]), float(candidate[1]))
                - max(float(target[0]), float(candidate[0])))
    union = ((float(candidate[1]) - float(candidate[0])) + (float(target[1]) - float(target[0]))
             - inter)
    return inter / (union + sys.float_info.epsilon)


def tiou_rates(tious: list[float], thresholds=TIOU_THRESHOLDS) -> dict[str, float]:
    """Fraction of queries whose tIoU reaches each threshold: ``tiou_50``, ``tiou_75``."""
    n = max(1, len(tious))
    return {f"tiou_{round(t * 100)}": sum(v >= t for v in tious) / n for t in thresholds}


def feature_map(backbone: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """(N, 3, L, H, W) clips -> (N, D, T', H', W'): I3D's Mixed_5c, or tiny3d's last block."""
    if hasattr(backbone, "features_at"):
        return backbone.features_at(clips)
    if hasattr(backbone, "features") and hasattr(backbone, "normalize"):
        return backbone.features(backbone.normalize(clips) if clips.dtype == torch.uint8 else clips)
    raise ConfigError(f"fdtsa needs a backbone with a feature map (i3d or tiny3d), not "
                      f"{type(backbone).__name__}")


# ---------------------------------------------------------------------------------- model

class FDTSAModel(nn.Module):
    """Backbone + PSNet + decoder + regressor (module names as the official checkpoint's four
    parts: ``base_model`` -> backbone, ``psnet_model`` -> psnet, ``decoder``, ``regressor_delta``
    -> regressor). ``positions``: PSNet's output positions, the frames of a dive (96)."""

    def __init__(self, backbone: nn.Module, clip_starts: list[int], clip_len: int = 16,
                 positions: int = 96, fix_size: int = 5, heads: int = 8, layers: int = 3):
        super().__init__()
        self.backbone = backbone
        dim = backbone.out_dim
        for _ in range(4):  # PSNet's four halvings of the feature axis
            dim //= 2
        if dim < 1:
            raise ConfigError(f"the backbone's {backbone.out_dim}-d features are too small for "
                              "PSNet's four halvings")
        self.psnet = PSNet(len(clip_starts), positions, dim)
        self.decoder = DecoderFuser(dim, heads, layers)
        self.regressor = MLP3(dim, (256, 64), 1)
        self.clip_starts, self.clip_len = list(clip_starts), clip_len
        self.fix_size, self.positions = fix_size, positions

    def backbone_maps(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 3, T, H, W) -> features (M, N, D) and time-averaged maps (M, N, D, H', W') of
        the N clips, all clips in one backbone batch (clip-major, as the official packs them)."""
        m, t, n = video.shape[0], video.shape[2], len(self.clip_starts)
        if max(self.clip_starts) + self.clip_len > t:
            need = max(self.clip_starts) + self.clip_len
            raise ConfigError(f"model.clip_starts/clip_len need {need} frames but clips have "
                              f"{t}; set data.num_frames accordingly")
        # (N*M, 3, L, H, W)
        pack = torch.cat([video[:, :, s:s + self.clip_len] for s in self.clip_starts])
        fmap = feature_map(self.backbone, pack)  # (N*M, D, T', H', W')
        feat = F.avg_pool3d(fmap, tuple(fmap.shape[2:]), stride=1)  # (N*M, D, 1, 1, 1)
        feat = feat.reshape(n, m, -1).transpose(0, 1)  # (M, N, D)
        fmap = fmap.reshape(n, m, *fmap.shape[1:]).transpose(0, 1)  # (M, N, D, T', H', W')
        return feat, fmap.mean(3)  # (M, N, D), (M, N, D, H', W')

    def segment(self, feat: torch.Tensor, fmap: torch.Tensor):
        """PSNet on features and maps: u (M, P, d), u_map (M, P, d, H', W'), p (M, P, 2)."""
        m, n, d, h, w = fmap.shape
        u, prob = self.psnet(feat)
        rows, _ = self.psnet(fmap.reshape(-1, n, d))  # (M*H'*W', P, d): the official reshape
        return u, rows.reshape(m, rows.shape[1], rows.shape[2], h, w), prob

    def pooled(self, u: torch.Tensor | None, umap: torch.Tensor | None, bounds: list):
        """Per video, the three steps resampled: segs (M, 3*fix, d), maps (M, 3*fix*H'*W', d)."""
        segs = maps = None
        if u is not None:  # (M, P, d) -> (M, d, 3*fix) -> (M, 3*fix, d)
            segs = torch.cat([seg_pool(u[i].transpose(0, 1)[None], st, ed, self.fix_size)
                              for i, (st, ed) in enumerate(bounds)]).transpose(1, 2)
        if umap is not None:  # (M, P, d, H', W') -> (M, d, 3*fix, H', W') -> (M, 3*fix*H'*W', d)
            maps = torch.cat([seg_pool(umap[i].transpose(0, 1)[None], st, ed, self.fix_size)
                              for i, (st, ed) in enumerate(bounds)])
            maps = maps.flatten(2).transpose(1, 2)
        return segs, maps

    def delta(self, segs: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Step-wise cross-attention of ``segs`` (B, 3*fix, d) on the other video's ``maps``
        (B, 3*fix*H'W', d), then the regressor averaged over positions -> (B,)."""
        fix = self.fix_size
        hw = maps.shape[1] // segs.shape[1]
        steps = [self.decoder(segs[:, i * fix:(i + 1) * fix],  # each (B, fix, d)
                              maps[:, i * fix * hw:(i + 1) * fix * hw])
                 for i in range(segs.shape[1] // fix)]
        return self.regressor(torch.cat(steps, 1)).mean(1).squeeze(-1)  # (B,)

    def forward(self, video_q: torch.Tensor, video_e: torch.Tensor, transits_q: torch.Tensor,
                transits_e: torch.Tensor, use_labels: bool) -> dict[str, torch.Tensor]:
        """A training pair batch: both videos in one backbone pass; deltas in both directions
        (query - exemplar first, then exemplar - query) (2B,), transition probabilities
        (2B, P, 2) and predicted transitions (2B, 2). ``transits_*`` (B, 2) are the labels
        (already offset); ``use_labels`` pools with them, else with the predicted ones."""
        b = video_q.shape[0]
        # (2B, N, D), (2B, N, D, H', W')
        feat, fmap = self.backbone_maps(torch.cat([video_q, video_e]))
        u, umap, prob = self.segment(feat, fmap)
        pred = predicted_transits(prob)  # (2B, 2)
        if use_labels:
            bounds = [(int(a), int(b_)) for a, b_ in torch.cat([transits_q, transits_e]).tolist()]
        else:
            bounds = [pooling_bounds(t) for t in pred.tolist()]
        segs, maps = self.pooled(u, umap, bounds)
        d12 = self.delta(segs[:b], maps[b:])  # query attends to the exemplar: s_q - s_e
        d21 = self.delta(segs[b:], maps[:b])
        return {"delta": torch.cat([d12, d21]), "prob": prob, "transits": pred}

    def video_units(self, video: torch.Tensor):
        """Eval: (M, 3, T, H, W) -> segs (M, 3*fix, d), maps (M, 3*fix*H'W', d), predicted
        transitions (M, 2) (positions in the T frames, before the 0 -> 1 pooling change)."""
        u, umap, prob = self.segment(*self.backbone_maps(video))
        pred = predicted_transits(prob)
        segs, maps = self.pooled(u, umap, [pooling_bounds(t) for t in pred.tolist()])
        return segs, maps, pred
