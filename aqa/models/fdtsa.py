"""FineDiving TSA: procedure-aware action quality assessment with temporal segmentation
attention (Xu et al., CVPR 2022; official code xujinglin/FineDiving @a2b8057). Not TSA-Net
(``tsa``, tube self-attention): this method is ``fdtsa``.

A query is scored *relative to exemplars* of the training split, step by step:

    video (B, 3, 96, H, W) --9 clips of 16 frames at 0, 10, ..., 80--> I3D (hassony2)
        Mixed_5c map m (B, 9, 1024, 2, H', W')      feature f = avg-pool of m (B, 9, 1024)
    procedure segmentation (PSNet, a 1-D U-Net down path over the 1024 feature axis, the 9
        clips as channels): f -> u (B, 96, 64) and step-transition probabilities p (B, 96, 2);
        the time-averaged map, read as (B*H'*W', 9, 1024) rows (the official reshape, not a
        permute) -> u_map (B, 96, 64, H', W')
    transitions  t1 = argmax p[:48, 0],  t2 = 48 + argmax p[48:, 1]       (0 -> 1 for pooling)
    seg_pool     each of the 3 steps [0, t1), [t1, t2), [t2, 96) resampled to 5 positions
                 (linear, align_corners) -> q (B, 15, 64), maps (B, 15*H'*W', 64)
    cross-attention, step by step: decoder(q_query[step], maps_exemplar[step]) (B, 5, 64)
    delta = mean over the 15 positions of MLP(decoded)                         (B,)
    score = mean over voters of (s_exemplar + delta)

The 96 "positions" of u are PSNet's output channels, read as the 96 sampled frames: the
transition labels index them. Training (both directions of a pair): MSE of delta against
s_query - s_exemplar and s_exemplar - s_query, plus BCE of p against one-hot transition labels;
pooling uses the ground-truth transitions while epoch / epochs <= prob_tas_threshold, the
predicted ones after (official helper.py, ``network_forward_train``).

Evaluation does not run the backbone on exemplars again: on ``on_eval_start`` every training
dive's pooled PSNet map (15*H'*W' x 64 floats, its own predicted transitions applied: 61 KB at
112 px, 147 MB for FineDiving's 2,251 training dives) is computed once and saved in ``best.pt``
as the bank; the official test loop recomputes them for each of the 10 voters of every query.
With BatchNorm in eval mode the two give the same numbers. Only the query->exemplar direction
enters the test score (the official test computes the other direction and drops it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from aqa.config import RunConfig
from aqa.data.base import Sample
from aqa.data.pairs import PairDataset
from aqa.errors import ConfigError, DatasetError
from aqa.models import bank
from aqa.models.base import Method, set_bn_eval
from aqa.registry import BACKBONES, METHODS

RULES = ("dive_number", "difficulty")  # the two FineDiving protocols (with / without dive number)
TIOU_THRESHOLDS = (0.5, 0.75)


@dataclass
class FDTSAConfig:
    exemplar_rule: str = "dive_number"  # exemplars of the query's dive number (official action_number_choosing) or difficulty (without dive number)
    voter_number: int = 10  # exemplars averaged per test query (voter_number)
    clip_len: int = 16  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(range(0, 90, 10)))  # 9 clips: PSNet's input channels
    fix_size: int = 5  # positions each step is resampled to (seg_pool)
    step_num: int = 3  # steps of a dive cut by the two transitions (the code handles exactly 3)
    prob_tas_threshold: float = 0.25  # ground-truth transitions pool while (epoch-1)/epochs <= this, then predicted ones
    decoder_heads: int = 8  # cross-attention heads (decoder_fuser num_heads)
    decoder_layers: int = 3  # cross-attention blocks (decoder_fuser num_layers)
    fix_bn: bool = True  # backbone BatchNorm in eval mode while training (official --fix_bn, default True)
    label_offset: int = 1  # added to the dataset's transits for labels and pooling (the official runner's "+ 1")
    both_protocols: bool = True  # also score each test query under the other exemplar rule: rho_<rule>, l2_<rule>, rl2_<rule>


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
    union = (float(candidate[1]) - float(candidate[0])) + (float(target[1]) - float(target[0])) - inter
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
    -> regressor)."""

    def __init__(self, backbone: nn.Module, cfg: FDTSAConfig, positions: int = 96):
        super().__init__()
        if cfg.step_num != 3:
            raise ConfigError("model.step_num must be 3: two transitions cut a dive into three "
                              "steps (the official code is written for exactly that)")
        self.backbone = backbone
        dim = backbone.out_dim
        for _ in range(4):  # PSNet's four halvings of the feature axis
            dim //= 2
        if dim < 1:
            raise ConfigError(f"the backbone's {backbone.out_dim}-d features are too small for "
                              "PSNet's four halvings")
        self.psnet = PSNet(len(cfg.clip_starts), positions, dim)
        self.decoder = DecoderFuser(dim, cfg.decoder_heads, cfg.decoder_layers)
        self.regressor = MLP3(dim, (256, 64), 1)
        self.clip_starts, self.clip_len = list(cfg.clip_starts), cfg.clip_len
        self.fix_size, self.positions = cfg.fix_size, positions

    def backbone_maps(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 3, T, H, W) -> features (M, N, D) and time-averaged maps (M, N, D, H', W') of
        the N clips, all clips in one backbone batch (clip-major, as the official packs them)."""
        m, t, n = video.shape[0], video.shape[2], len(self.clip_starts)
        if max(self.clip_starts) + self.clip_len > t:
            raise ConfigError(f"model.clip_starts/clip_len need {max(self.clip_starts) + self.clip_len}"
                              f" frames but clips have {t}; set data.num_frames accordingly")
        pack = torch.cat([video[:, :, s:s + self.clip_len] for s in self.clip_starts])  # (N*M, 3, L, H, W)
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
        steps = [self.decoder(segs[:, i * fix:(i + 1) * fix], maps[:, i * fix * hw:(i + 1) * fix * hw])
                 for i in range(segs.shape[1] // fix)]  # each (B, fix, d)
        return self.regressor(torch.cat(steps, 1)).mean(1).squeeze(-1)  # (B,)

    def forward(self, video_q: torch.Tensor, video_e: torch.Tensor, transits_q: torch.Tensor,
                transits_e: torch.Tensor, use_labels: bool) -> dict[str, torch.Tensor]:
        """A training pair batch: both videos in one backbone pass; deltas in both directions
        (query - exemplar first, then exemplar - query) (2B,), transition probabilities
        (2B, P, 2) and predicted transitions (2B, 2). ``transits_*`` (B, 2) are the labels
        (already offset); ``use_labels`` pools with them, else with the predicted ones."""
        b = video_q.shape[0]
        feat, fmap = self.backbone_maps(torch.cat([video_q, video_e]))  # (2B, N, D), (2B, N, D, H', W')
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


# ---------------------------------------------------------------------------------- method

@METHODS.register("fdtsa")
class FDTSA(Method):
    name = "fdtsa"
    config_cls = FDTSAConfig
    default_backbone = "i3d"
    sample_kind = "pair"
    required_keys = ("transits",)
    description = ("FineDiving TSA (temporal segmentation attention): procedure-aware "
                   "cross-attention against same-dive exemplars (CVPR 2022)")

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        if cfg.model.exemplar_rule not in RULES:
            raise ConfigError(f"model.exemplar_rule={cfg.model.exemplar_rule!r}: fdtsa's "
                              f"protocols are {', '.join(RULES)}")
        self._pool_clips = None
        self._bank: dict | None = None
        self._epoch = 1
        self._eval: dict[str, dict] = {}  # id -> predicted transitions, tIoU (this evaluation)
        self._meta: dict[str, dict] = {}  # id -> the query's dive number (its protocol's key)

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """FineDiving_TSA.yaml and tools/builder.py: Adam 1e-3 (backbone x0.1), no weight decay,
        200 epochs, batch 8, 96 frames; the clips through torch_videovision's Resize((200, 112))
        (112 wide x 200 tall, see docs/methods.md) and a 112 crop (random with a flip at train,
        centre at test); hassony2 I3D fed ImageNet-normalised clips. On a dataset other than
        finediving the exemplars default to the difficulty protocol (no dive numbers)."""
        data = replace(cfg.data, num_frames=96, frame_size=112, hflip=True)
        if hasattr(data, "pipeline"):
            data = replace(data, pipeline="tvv")
        if hasattr(data, "resize"):
            data = replace(data, resize=[200, 112])
        cfg = replace(cfg, optim=replace(cfg.optim, name="adam", lr=1e-3, backbone_lr_factor=0.1,
                                         weight_decay=0.0, schedule="none", accum_steps=1),
                      train=replace(cfg.train, epochs=200, batch_size=8), data=data)
        if hasattr(cfg.backbone, "input_norm"):
            cfg = replace(cfg, backbone=replace(cfg.backbone, family="hassony2",
                                                input_norm="imagenet"))
        if cfg.dataset != "finediving":  # other datasets' samples carry no dive number
            cfg = replace(cfg, model=replace(cfg.model, exemplar_rule="difficulty"))
        return cfg

    # ------------------------------------------------------------ data and model
    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        for s in clips.samples:  # dive numbers and ground-truth transitions by id (queries)
            self._meta_of(s)
        if split != "train":
            return clips
        return PairDataset(clips, self.cfg.model.exemplar_rule)

    def _meta_of(self, s: Sample) -> None:
        self._meta[s.id] = {k: s.meta[k] for k in ("dive_number",) if k in s.meta}

    def build_model(self) -> nn.Module:
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        return FDTSAModel(backbone, self.cfg.model, self.cfg.data.num_frames)

    def set_train_mode(self, model: nn.Module) -> None:
        super().set_train_mode(model)
        if self.cfg.model.fix_bn:  # official: base_model.apply(fix_bn), the backbone only
            set_bn_eval(getattr(model, "module", model).backbone)

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def uses_labels(self, epoch: int) -> bool:
        """Official ``epoch / max_epoch <= prob_tas_threshold`` with its 0-based epoch."""
        return (epoch - 1) / self.cfg.train.epochs <= self.cfg.model.prob_tas_threshold

    # ------------------------------------------------------------ training
    def labels(self, transits: torch.Tensor) -> torch.Tensor:
        return transits.float() + self.cfg.model.label_offset

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        batch = super().example_batch(batch_size, device)
        gen = torch.Generator().manual_seed(1)
        t = self.cfg.data.num_frames
        batch["exemplar_video"] = torch.randint(0, 256, tuple(batch["video"].shape), generator=gen,
                                                dtype=torch.uint8).to(device)
        batch["exemplar_score"] = (torch.rand(batch_size, generator=gen) * 100).to(device)
        batch["exemplar_difficulty"] = batch["difficulty"].clone()
        for key in ("transits", "exemplar_transits"):
            batch[key] = torch.tensor([[t // 3, 2 * t // 3]] * batch_size, dtype=torch.float32,
                                      device=device)
        return batch

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        b = batch["video"].shape[0]
        lab_q, lab_e = self.labels(batch["transits"]), self.labels(batch["exemplar_transits"])
        out = model(batch["video"], batch["exemplar_video"], lab_q, lab_e,
                    self.uses_labels(self._epoch))
        s_q, s_e = batch["score"].float(), batch["exemplar_score"].float()
        delta = out["delta"].float()
        mse = F.mse_loss(delta[:b], s_q - s_e) + F.mse_loss(delta[b:], s_e - s_q)
        prob = out["prob"].float()
        target = torch.zeros_like(prob)  # one-hot transitions: channel 0 the first, 1 the second
        rows = torch.arange(2 * b, device=prob.device)
        lab = torch.cat([lab_q, lab_e]).long()
        target[rows, lab[:, 0], 0] = 1
        target[rows, lab[:, -1], 1] = 1
        with torch.autocast(prob.device.type, enabled=False):  # BCE on probabilities: fp32 only
            bce = F.binary_cross_entropy(prob, target)
        return {"loss": mse + bce, "mse": mse.detach(), "bce": bce.detach()}

    # ------------------------------------------------------------ the bank
    def on_eval_start(self, model: nn.Module, device: torch.device) -> None:
        self._eval = {}
        if self._pool_clips is None:
            self._pool_clips = bank.training_pool(self.cfg)
        self._bank = build_bank(model, self._pool_clips, self.cfg.train.batch_size,
                                self.cfg.data.num_workers, device)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return {"exemplar_bank": self._bank} if self._bank is not None else {}

    # ------------------------------------------------------------ prediction
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        if self._bank is None:
            raise RuntimeError("FDTSA.predict needs on_eval_start to have built the exemplar bank")
        segs, _, pred = model.video_units(batch["video"])
        scores = []
        for i in range(segs.shape[0]):
            qid = str(batch["id"][i])
            meta = self._meta.get(qid, {})
            query = Sample(id=qid, video=Path(""), score=0.0,
                           difficulty=float(batch["difficulty"][i]), meta=meta)
            rule = self.cfg.model.exemplar_rule
            out = self._vote(model, segs[i:i + 1], query, self._bank, rule)
            row = {"transits": pred[i].tolist(), "true": float(batch["score"][i])}
            other = "difficulty" if rule == "dive_number" else "dive_number"
            if self.cfg.model.both_protocols and (other == "difficulty" or (
                    "dive_number" in meta and any(g is not None for g in self._bank["groups"]))):
                row[other] = self._vote(model, segs[i:i + 1], query, self._bank, other)["score"]
            if "transits" in batch:  # the official test's tIoU: labels vs predictions
                row["tiou"] = segment_iou(self.labels(batch["transits"][i]).tolist(), pred[i].tolist())
            self._eval[qid] = row
            scores.append(out["score"])
        return torch.tensor(scores, device=segs.device)

    def _vote(self, model: nn.Module, segs: torch.Tensor, query: Sample, bank_: dict,
              rule: str) -> dict:
        """One query's pooled features (1, 3*fix, d) against its voters' maps from the bank."""
        chosen, _, rows = bank.pick_voters(bank_, query, rule, self.cfg.model.voter_number,
                                           seed=self.cfg.train.seed)
        maps = bank_["features"][rows].to(segs.device, segs.dtype)  # (V, 3*fix*H'W', d)
        delta = model.delta(segs.expand(len(rows), -1, -1), maps)  # (V,)
        s_e = bank_["scores"][rows].to(segs.device)
        per_voter = s_e + delta.float()
        return {"score": float(per_voter.mean()), "per_voter": per_voter.tolist(),
                "exemplars": [{"id": s.id, "score": float(s.score), "difficulty": s.difficulty,
                               "dive_number": g, "difference": float(dv)}
                              for s, g, dv in zip(chosen, [bank_["groups"][r] for r in rows],
                                                  delta.tolist())]}

    def eval_protocol(self) -> dict[str, Any]:
        m = self.cfg.model
        by = ("the query's ground-truth dive number (the official test)" if m.exemplar_rule == "dive_number"
              else "the query's difficulty, without its dive number")
        other = "difficulty" if m.exemplar_rule == "dive_number" else "dive_number"
        also = (f"; rho_{other}, l2_{other}, rl2_{other}: the same queries with exemplars by "
                f"{other.replace('_', ' ')}" if m.both_protocols else "")
        return {"summary": f"exemplars: {m.voter_number} training dives chosen by {by}; "
                           f"tIoU of the predicted step transitions per query{also}",
                "exemplars": m.exemplar_rule, "voters": m.voter_number,
                "other_protocol": other if m.both_protocols else None}

    def take_eval_extras(self) -> dict:
        out, self._eval = self._eval, {}
        return out

    def extra_metrics(self, extras: dict) -> dict[str, float]:
        """tIoU rates, and the other protocol's rho, l2, rl2 (suffixed with its rule)."""
        from aqa.metrics import regression_metrics

        rows = list(extras.values())
        tious = [r["tiou"] for r in rows if "tiou" in r]
        out = tiou_rates(tious) if tious else {}
        for other in RULES:
            if rows and all(other in r for r in rows):
                m = regression_metrics([r[other] for r in rows], [r["true"] for r in rows])
                out.update({f"{k}_{other}": v for k, v in m.items()})
        return out

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        """One clip against the bank: its predicted transitions (``transits``: positions in the
        frames the model saw), exemplars of the dive number given (``batch["dive_number"]``),
        else of its difficulty (given, else the training median), and a note saying which
        protocol scored it (``protocol``)."""
        bank_ = bank.require_bank(state, self.name)
        return self._score_units(model, model.video_units(batch["video"]), batch, bank_)

    def _score_units(self, model: nn.Module, units, batch: dict, bank_: dict) -> dict[str, Any]:
        segs, _, pred = units
        notes = []
        dive = batch.get("dive_number")
        if dive:
            rule, meta = "dive_number", {"dive_number": str(dive)}
            if str(dive) not in set(bank_["groups"]):
                notes.append(f"dive number {dive} is not in the training split: exemplars of "
                             "the whole pool were used")
        else:
            rule, meta = "difficulty", {}
            if self.cfg.model.exemplar_rule == "dive_number":
                notes.append("no dive number given: exemplars chosen by difficulty (the protocol "
                             "without dive number); give the dive number for the official one")
        difficulty = bank.assumed_difficulty(batch, bank_)
        if batch.get("difficulty_given") is None and rule == "difficulty":
            notes.append(f"no difficulty given: assumed the training split's median {difficulty:g}")
        query = Sample(id=str(batch["id"][0]), video=Path(""), score=0.0, difficulty=difficulty,
                       meta=meta)
        out = self._vote(model, segs[:1], query, bank_, rule)
        spread = torch.tensor(out["per_voter"]).std(unbiased=False).item()
        return {"score": out["score"], "exemplars": out["exemplars"], "spread": spread,
                "notes": notes, "protocol": rule, "transits": pred[0].tolist()}

    def compare_clips(self, model: nn.Module, batch_a: dict, batch_b: dict,
                      state: dict | None = None) -> dict[str, Any]:
        """Each clip scored against the bank, then the pair head on the two clips themselves,
        both orders (B attending to A gives B - A, A attending to B gives A - B; the difference
        is their mean); one backbone pass a clip."""
        bank_ = bank.require_bank(state, self.name)
        units_a, units_b = model.video_units(batch_a["video"]), model.video_units(batch_b["video"])
        a = self._score_units(model, units_a, batch_a, bank_)
        b = self._score_units(model, units_b, batch_b, bank_)
        b_minus_a = float(model.delta(units_b[0][:1], units_a[1][:1])[0])
        a_minus_b = float(model.delta(units_a[0][:1], units_b[1][:1])[0])
        return {"score_a": a["score"], "score_b": b["score"],
                "difference": (b_minus_a - a_minus_b) / 2,
                "notes": a["notes"] + [n for n in b["notes"] if n not in a["notes"]]}


def build_bank(model: FDTSAModel, clips: Any, batch_size: int, num_workers: int,
               device: torch.device) -> dict:
    """Every training dive's pooled map (N, 3*fix*H'W', d) and predicted transitions (N, 2),
    grouped by dive number where the samples have one (difficulty is kept either way, so both
    protocols vote from the same bank)."""
    from aqa.data.base import collate

    loader = DataLoader(clips, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    maps, transits = [], []
    with torch.no_grad():
        for batch in loader:
            _, m, pred = model.video_units(batch["video"].to(device))
            maps.append(m.float().cpu())
            transits.append(pred.cpu())
    rule = "dive_number" if all("dive_number" in s.meta for s in clips.samples) else "difficulty"
    out = bank.bank_from(clips.samples, torch.cat(maps), rule)
    out["transits"] = torch.cat(transits)
    if rule == "difficulty":
        out["groups"] = [None] * len(out["ids"])
    return out
