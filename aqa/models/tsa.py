"""TSA-Net: tube self-attention (Wang et al., ACM MM 2021), and Plain-Net, the same without it.

docs/methods.md, TSA-Net. The I3D (piergiaj family) is split after ``MaxPool3d_4a_3x3``:

    7 clips of 16 frames (starts 0, 16, 32, 48, 64, 80, 87)
      --stage 1, per clip--> (B, 480, 4, 14, 14) each --concat on time--> (B, 480, 28, 14, 14)
      --tube self-attention on the cells inside the tube--> same shape
      --stage 2, per clip (Mixed_4b .. Mixed_5c, pool)--> (B, 7, 1024) --mean--> (B, 1024)
      --head--> FR-FS: 1024 -> 256 -> 128 -> 1, sigmoid (fall probability)
                scores: the USDL head 1024 -> 256 -> 128 -> 101 bins (aqa.models.distribution)

The tube mask (aqa.models.tubes) follows the stage-1 map: 14x14 at 224 px, 7x7 at 112 px; each
clip's frames form groups of clip_len / T1 frames (4 for 16-frame clips), one mask a time step.

Tube self-attention: a 1-D non-local block over the masked cells of each video, with identity
theta/phi (f = X^T X, softmax over the last axis), g = Conv1d(C, C, 1), and W = Conv1d(C, C, 1)
+ BatchNorm1d whose scale and shift start at zero, so the block starts as the identity.
Plain-Net runs each clip through the whole I3D (``model.tube`` is not used).

Official quirks kept behind flags:
- ``clip_order_bug``: after the attention the official code reshapes the 28 time steps as
  (4, 7) and takes index i of the 7 as clip i, so stage 2's "clip i" receives steps
  {i, 7+i, 14+i, 21+i} of the concatenation, from different clips. True reproduces it; the
  default keeps each clip's own 4 steps together.
- ``swap_first_corners`` (default True, as the official loader): FR-FS's frame-0 box lists its
  corners 3 and 4 the other way round; they are swapped before rasterising. This is a data fix,
  not a bug, so it is on by default.
Deliberate differences: the BCE is computed from the logit (BCE-with-logits, the same value as
BCELoss on the sigmoid, stable under mixed precision); the attention runs in float32.

The backbone may also be ``tiny3d`` (split after its third block), for tests and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import RunConfig
from aqa.data.sampling import TSA as TSA_PLAN
from aqa.errors import ConfigError
from aqa.models.base import Method, count_parameters
from aqa.models.tubes import (fill_convex, full_frame_boxes, motion_boxes, swap_first_corners,
                              tube_mask)
from aqa.models.distribution import ScoreDistribution, check_reduction, mlp_head
from aqa.registry import BACKBONES, METHODS

__all__ = ["TSA_STARTS", "SPLIT_AT", "fill_convex", "tube_mask", "TubeSelfAttention", "TSANet",
           "TSAHead", "TSA", "Plain"]

TSA_STARTS = TSA_PLAN.starts  # (0, 16, 32, 48, 64, 80, 87)
SPLIT_AT = "MaxPool3d_4a_3x3"
HEADS = ("auto", "bce", "usdl")
TUBES = ("auto", "boxes", "motion", "full")
CLASSIFICATION_DATASETS = ("frfs",)  # datasets whose items carry a 0/1 ``label``
TUBE_NOTES = {"boxes": "tube: the dataset's athlete boxes",
              "motion": "tube: estimated from motion (the clip has no athlete boxes)",
              "still": "tube: estimated from motion found none; the whole frame was used",
              "full": "tube: the whole frame (as asked)"}


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
        """(1, C, N) -> (1, C, N): z = W(softmax(X^T X) g(X)) + X, in float32 (X^T X over 480
        channels overflows half precision)."""
        with torch.autocast(x.device.type, enabled=False):
            x32 = x.float()
            f = torch.softmax(x32.transpose(1, 2) @ x32, dim=-1)  # (1, N, N)
            y = (f @ self.g(x32).transpose(1, 2)).transpose(1, 2)  # (1, C, N)
            return (self.W(y) + x32).to(x.dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W), mask (B, T, H, W) bool -> x with its masked cells attended."""
        out = x.clone(memory_format=torch.contiguous_format)  # flatten(1) below must be a view
        for b in range(x.shape[0]):
            # the masked cells by their flat positions: the same cells, in the same order, as
            # x[b][:, mask[b]] gives (a gather by index is several times faster than by mask)
            idx = mask[b].flatten().nonzero().squeeze(1)
            if idx.numel():
                cells = x[b].flatten(1).index_select(1, idx).unsqueeze(0)  # (1, C, N_b)
                out[b].flatten(1).index_copy_(1, idx, self.block(cells).squeeze(0).to(out.dtype))
        if self.training and not bool(mask.any()):
            # no tube in the whole batch: keep the block's parameters in the graph (zero
            # gradients) so DistributedDataParallel does not stop on unused parameters
            out = out + 0.0 * sum(p.sum() for p in self.parameters())
        return out


class TSAHead(nn.Module):
    """The official MLP_block: 1024 -> 256 -> 128 -> out (``distribution.mlp_head``), with the ``--dp``
    dropout after the first two layers; logits (the sigmoid/softmax is the method's)."""

    def __init__(self, in_dim: int, out: int, dropout: float = 0.0):
        super().__init__()
        self.mlp = mlp_head(in_dim, out)  # 0 Linear, 1 ReLU, 2 Linear, 3 ReLU, 4 Linear
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp[1](self.drop(self.mlp[0](x)))
        x = self.mlp[3](self.drop(self.mlp[2](x)))
        return self.mlp[4](x)  # (B, out)


# ------------------------------------------------------------------ the backbone, split in two

def split_channels(backbone: nn.Module) -> int:
    """Channels at the split point: I3D 480, tiny3d 4 x width."""
    if hasattr(backbone, "features_at"):
        return 480
    if hasattr(backbone, "features") and len(backbone.features) == 4:
        return backbone.features[2][0].out_channels
    raise ConfigError(f"TSA splits an i3d or tiny3d backbone; {type(backbone).__name__} has no "
                      "split point (use backbone.name=i3d)")


def stage1(backbone: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """(B, 3, L, H, W) -> the split-point map (B, C, T1, h, w)."""
    if hasattr(backbone, "features_at"):
        return backbone.features_at(clip, SPLIT_AT)
    x = backbone.normalize(clip) if clip.dtype == torch.uint8 else clip
    return backbone.features[:3](x)


def stage2(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The split-point map (B, C, T1, h, w) -> (B, D) clip features."""
    if hasattr(backbone, "features_at"):
        return backbone.pool(backbone.features_at(x, "Mixed_5c", start=SPLIT_AT)).flatten(2).mean(2)
    return backbone.features[3](x).mean(dim=(2, 3, 4))


class TSANet(nn.Module):
    """Clip features of a split backbone with tube self-attention between its two stages, and
    (with ``head``) the head's logits."""

    def __init__(self, backbone: nn.Module, use_tsa: bool = True,
                 starts: Sequence[int] = TSA_STARTS, clip_len: int = 16,
                 clip_order_bug: bool = False, channels: int | None = None,
                 head: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        channels = channels or split_channels(backbone)
        self.tsa = TubeSelfAttention(channels) if use_tsa else None
        self.head = head
        self.starts, self.clip_len, self.clip_order_bug = list(starts), clip_len, clip_order_bug

    def masks(self, tubes: Sequence[tuple[np.ndarray, tuple[int, int]]], t1: int, grid: tuple[int, int],
              device: torch.device) -> torch.Tensor:
        """Per sample (corners (T, 8), (frame width, height)) -> (B, n_clips * T1, h, w) bool."""
        if self.clip_len % t1:
            raise ConfigError(f"model.clip_len={self.clip_len} is not a multiple of the {t1} time "
                              "steps the backbone makes of a clip; use a multiple of 4")
        out = [tube_mask(c, self.starts, self.clip_len, self.clip_len // t1, grid, frame)
               for c, frame in tubes]
        return torch.from_numpy(np.stack(out)).to(device)

    def features(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                 tubes: Sequence | None = None) -> torch.Tensor:
        """video (B, C, T, H, W); the tube as a mask (B, n_clips * T1, h, w) bool or as
        per-sample corner boxes (``masks``) -> (B, D) features."""
        b, n = video.shape[0], len(self.starts)
        if max(self.starts) + self.clip_len > video.shape[2]:
            raise ConfigError(f"model.clip_starts/clip_len need {max(self.starts) + self.clip_len} "
                              f"frames but clips have {video.shape[2]}; set data.num_frames")
        clips = [video[:, :, s:s + self.clip_len] for s in self.starts]
        if self.tsa is None:  # Plain-Net: every clip through the whole backbone
            feats = self._per_clip(lambda c: stage2(self.backbone, stage1(self.backbone, c)), clips)
            return torch.stack(feats, 1).mean(1)  # (B, D)
        parts = self._per_clip(lambda c: stage1(self.backbone, c), clips)  # n x (B, C, T1, h, w)
        t1, h, w = parts[0].shape[2:]
        x = torch.cat(parts, dim=2)  # (B, C, n*T1, h, w), clip-major in time
        if mask is None:
            if tubes is None:
                raise ConfigError("TSA needs a tube (boxes, or one estimated from motion)")
            mask = self.masks(tubes, t1, (h, w), x.device)
        if tuple(mask.shape) != (b, n * t1, h, w):
            raise ConfigError(f"tube mask {tuple(mask.shape)} does not fit the feature map "
                              f"{(b, n * t1, h, w)}")
        x = self.tsa(x, mask.bool())
        c = x.shape[1]
        if self.clip_order_bug:  # the official view(B, C, T1, n, h, w): clips interleaved
            clips = x.view(b, c, t1, n, h, w).permute(3, 0, 1, 2, 4, 5)
        else:
            clips = x.view(b, c, n, t1, h, w).permute(2, 0, 1, 3, 4, 5)  # (n, B, C, T1, h, w)
        feats = self._per_clip(lambda c: stage2(self.backbone, c), list(clips))  # n x (B, D)
        return torch.stack(feats, 1).mean(1)  # (B, D)

    def _per_clip(self, fn, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[fn(c) for c in clips]``: one backbone call a clip while training (the official
        per-clip BatchNorm statistics); in eval mode (BN on running statistics, so a clip's
        output does not depend on its batch) the clips go through in one batch, which is faster."""
        if self.training:
            return [fn(c) for c in clips]
        return list(fn(torch.cat(clips)).chunk(len(clips)))

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                tubes: Sequence | None = None) -> torch.Tensor:
        """-> (B, D) features, or (B, out) head logits when the net has a head."""
        feat = self.features(video, mask, tubes)
        return feat if self.head is None else self.head(feat)


# ------------------------------------------------------------------ the methods

@dataclass
class PlainConfig:
    head: str = "auto"  # auto (bce on datasets with fall labels, FR-FS; usdl otherwise), bce or usdl
    dropout: float = 0.0  # dropout after the head's first two layers (the official --dp: 0.5)
    clip_len: int = 16  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(TSA_STARTS))  # clip starts in the window
    num_bins: int = 101  # usdl head: score bins of the distribution
    score_max: float = 104.5  # usdl head: the score of the top bin (MTL-AQA; 100 for normalised AQA-7)
    sigma: float = 5.0  # usdl head: standard deviation of the Gaussian soft label, in bins
    kl_reduction: str = "mean"  # usdl head: KLDivLoss reduction, mean (official) or batchmean
    log_of_softmax: bool = False  # usdl head: reproduce the official log(softmax(x)) (can give NaN)


@dataclass
class TSAConfig(PlainConfig):
    tube: str = "auto"  # the athlete's tube: auto (dataset boxes, else from motion), boxes, motion or full
    clip_order_bug: bool = False  # reproduce the official interleaving of clips after the attention
    swap_first_corners: bool = True  # swap corners 3 and 4 of frame 0's box, as the official FR-FS loader
    box_frame: list[int] = field(default_factory=lambda: [640, 360])  # width, height of the frames the dataset boxes measure


class _TubeNetwork(Method):
    default_backbone = "i3d"
    use_tsa = True

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        m = cfg.model
        if m.head not in HEADS:
            raise ConfigError(f"model.head={m.head!r} is not one of {', '.join(HEADS)}")
        if getattr(m, "tube", "auto") not in TUBES:
            raise ConfigError(f"model.tube={m.tube!r} is not one of {', '.join(TUBES)}")
        self.head_kind = m.head if m.head != "auto" else (
            "bce" if cfg.dataset in CLASSIFICATION_DATASETS else "usdl")
        best = cfg.train.best_metric
        if (self.head_kind == "usdl" and best == "accuracy") or \
                (self.head_kind == "bce" and best not in ("accuracy", "rho")):
            raise ConfigError(f"train.best_metric={best} does not fit the {self.head_kind} head: use "
                              + ("rho, l2 or rl2" if self.head_kind == "usdl" else "accuracy"))
        # the USDL head's bins, soft labels and KL (score_min 0)
        self.distribution = ScoreDistribution(m.num_bins, 0.0, m.score_max, m.sigma,
                                              m.kl_reduction, m.log_of_softmax)

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """docs/methods.md, TSA-Net (FR-FS): Adam 1e-4, weight decay 1e-5, 20 epochs, batch 4, 103 frames at
        224 px (455x256 resize, centre crop, ImageNet normalisation), the piergiaj I3D fully
        trained, no augmentation, best by test accuracy. Other datasets: the same with USDL's
        100 epochs and best by rho."""
        backbone = cfg.backbone
        if hasattr(backbone, "family"):
            backbone = replace(backbone, family="piergiaj", input_norm="imagenet")
        frfs = cfg.dataset in CLASSIFICATION_DATASETS
        data = replace(cfg.data, num_frames=103, frame_size=224, hflip=False)
        if hasattr(data, "jitter"):
            data = replace(data, jitter=0)
        if hasattr(data, "pipeline"):
            data = replace(data, pipeline="musdl")
        return replace(cfg, backbone=backbone, data=data,
                       optim=replace(cfg.optim, name="adam", lr=1e-4, weight_decay=1e-5,
                                     backbone_lr_factor=1.0),
                       train=replace(cfg.train, epochs=20 if frfs else 100, batch_size=4,
                                     best_metric="accuracy" if frfs else "rho"))

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        check_reduction(m.kl_reduction)
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError("model.dropout must be in [0, 1)")
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        out_dim = getattr(backbone, "out_dim", 1024)
        head = TSAHead(out_dim, 1 if self.head_kind == "bce" else m.num_bins, m.dropout)
        return TSANet(backbone, self.use_tsa, m.clip_starts, m.clip_len,
                      getattr(m, "clip_order_bug", False), split_channels(backbone), head)

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        keys = set(getattr(clips, "extra_keys", ()))
        if self.head_kind == "bce" and "label" not in keys:
            raise ConfigError(f"the bce head classifies falls; dataset {self.cfg.dataset!r} has no "
                              "labels (use frfs, or model.head=usdl for scores)")
        if self.use_tsa and "boxes" in keys and self.cfg.model.tube in ("auto", "boxes"):
            d = self.cfg.data
            if d.hflip or getattr(d, "jitter", 0):
                raise ConfigError("the dataset boxes are not flipped or shifted with the frames: "
                                  "set data.hflip=false and data.jitter=0, or model.tube=motion")
        elif self.use_tsa and self.cfg.model.tube == "boxes":
            raise ConfigError(f"model.tube=boxes but dataset {self.cfg.dataset!r} gives no boxes "
                              "(FRFS_Boxes.json for frfs); use model.tube=motion or full")
        return clips

    # ------------------------------------------------------------ tubes
    def tubes(self, batch: dict) -> tuple[list | None, list[str]]:
        """Per sample (corners (T, 8), (width, height)) and the tube source of each: dataset
        boxes, estimated from motion, or the whole frame (``batch["tube"]`` overrides the
        config's choice, for scoring)."""
        if not self.use_tsa:
            return None, []
        m = self.cfg.model
        want = batch.get("tube") or m.tube
        if want not in TUBES:
            raise ConfigError(f"tube={want!r} is not one of {', '.join(TUBES)}")
        video = batch["video"]
        t, h, w = video.shape[2:]
        boxes = batch.get("boxes")
        out, sources = [], []
        for i in range(video.shape[0]):
            has = boxes is not None and bool(boxes[i].abs().sum() > 0)
            if want == "boxes" and not has:
                raise ConfigError("model.tube=boxes but this clip has no boxes; use "
                                  "model.tube=motion or full (or tube= when scoring)")
            if want in ("auto", "boxes") and has:
                b = boxes[i].detach().cpu().double().numpy()  # (T, 8)
                if m.swap_first_corners:
                    b = swap_first_corners(b)
                out.append((b, tuple(m.box_frame)))
                sources.append("boxes")
            elif want == "full":
                out.append((full_frame_boxes(t, w, h), (w, h)))
                sources.append("full")
            else:
                frames = video[i].permute(1, 2, 3, 0).detach().cpu().numpy()  # (T, H, W, C)
                corners, found = motion_boxes(frames)
                out.append((corners, (w, h)))
                sources.append("motion" if found else "still")
        return out, sources

    # ------------------------------------------------------------ training and prediction
    def _logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        tubes, _ = self.tubes(batch)
        return model(batch["video"], tubes=tubes)  # (B, 1) or (B, bins)

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        out = self._logits(model, batch).float()
        if self.head_kind == "bce":
            label = batch["label"].float().reshape(-1)
            return {"loss": F.binary_cross_entropy_with_logits(out[:, 0], label)}
        centres = self.distribution.to_bins(batch["score"])[:, None]  # (B, 1)
        return {"loss": self.distribution.kl(out[:, None, :], centres)}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(B,): the fall probability (bce head) or the USDL score (argmax bin)."""
        out = self._logits(model, batch).float()
        if self.head_kind == "bce":
            return torch.sigmoid(out[:, 0])
        m = self.cfg.model
        return out.argmax(dim=1).float() * m.score_max / (m.num_bins - 1)

    def eval_metrics(self, preds: list[float], labels: list[float]) -> dict[str, float]:
        from aqa import metrics as M
        if self.head_kind == "bce":  # accuracy at p > 0.5, and how well p ranks the labels
            return {"accuracy": M.accuracy(preds, labels), "rho": M.spearman(preds, labels)}
        return M.regression_metrics(preds, labels)

    def predicted_classes(self, preds: list[float]) -> list[int] | None:
        if self.head_kind == "bce":  # fall when p > 0.5, the class M.accuracy counts
            return [int(p > 0.5) for p in preds]
        return None

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        tubes, sources = self.tubes(batch)
        out = model(batch["video"], tubes=tubes).float()
        notes = [TUBE_NOTES[sources[0]]] if sources else ["Plain-Net: no tube attention"]
        if self.head_kind == "bce":
            p = float(torch.sigmoid(out[0, 0]))
            verdict = "fall" if p > 0.5 else "no fall"
            return {"score": p, "distribution": [1 - p, p],
                    "notes": [f"the score is the fall probability (FR-FS class 1) {p:.3f}: "
                              f"verdict {verdict}"] + notes}
        m = self.cfg.model
        probs = F.softmax(out, dim=1)[0]
        return {"score": float(probs.argmax()) * m.score_max / (m.num_bins - 1),
                "distribution": probs.tolist(),
                "notes": [f"the distribution has {m.num_bins} bins over 0..{m.score_max:g}"] + notes}

    # ------------------------------------------------------------ planner hooks
    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        """A batch with labels and FR-FS-like boxes (a 200x150 box drifting across 640x360)."""
        batch = super().example_batch(batch_size, device)
        t = self.cfg.data.num_frames
        x = torch.linspace(100, 340, t)[:, None]  # (T, 1) left edge per frame
        box = torch.cat([x, torch.full_like(x, 100), x + 200, torch.full_like(x, 100),
                         x + 200, torch.full_like(x, 250), x, torch.full_like(x, 250)], 1)  # (T, 8)
        batch["boxes"] = box.expand(batch_size, t, 8).contiguous().to(device)
        batch["label"] = (torch.arange(batch_size) % 2).float().to(device)
        if self.head_kind == "usdl":
            batch["score"] = batch["score"].clamp(max=self.cfg.model.score_max)
        return batch

    def module_sizes(self, model: nn.Module) -> dict[str, int]:
        sizes = super().module_sizes(model)
        n_tsa = count_parameters(model.tsa) if model.tsa is not None else 0
        sizes.update(tsa=n_tsa, head=count_parameters(model.head))
        return sizes


@METHODS.register("tsa")
class TSA(_TubeNetwork):
    name = "tsa"
    config_cls = TSAConfig
    description = "TSA-Net: I3D with self-attention inside the athlete's tube (boxes or motion)"
    use_tsa = True


@METHODS.register("plain")
class Plain(_TubeNetwork):
    name = "plain"
    config_cls = PlainConfig
    description = "Plain-Net: TSA-Net's I3D and head without the tube self-attention"
    use_tsa = False
