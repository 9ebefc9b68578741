"""USDL and MUSDL: uncertainty-aware score distribution learning (Tang et al., CVPR 2020).

docs/methods.md, USDL and MUSDL. A video is 10 clips of 16 frames (starts 0, 10, ..., 80 and the last 16)
through I3D, averaged to one 1024-d feature; an MLP head (1024 -> 256 -> 128 -> K, softmax)
predicts a distribution over score bins, trained with KL divergence against a Gaussian soft
label centred on the true score:

    USDL   one head, K = 101 bins over 0..score_max (104.5 on MTL-AQA), sigma 5 bins;
           score = argmax bin * score_max / 100
    MUSDL  one head per judge (7), K = 21 bins over a judge's 0..10 in steps of 0.5, sigma 5 bins;
           judge j = argmax_j * 0.5; score = the sum of the middle three of the sorted seven,
           times the difficulty degree

On JIGSAWS (docs/methods.md, USDL and MUSDL) the bins are offset (``score_min``): USDL has 25 bins over the GRS
total 6..30, MUSDL six heads of 5 bins over each GRS item 1..5, summed (``combine=sum``, no
DD), sigma 1; 160 frames as 10 clips of 16.

Clips go through the backbone one at a time (a batch of B clips per forward), as MUSDL's MTL-AQA
``main.py`` does, so BatchNorm's training statistics are those of B clips;
``model.pack_clips=true`` puts all 10 x B in one batch, as its JIGSAWS ``main.py`` does (the
default there). Inference is the same either way.

Official quirks: the loss takes ``log`` of the softmax output, which underflows to -inf/NaN;
we use log_softmax unless ``model.log_of_softmax=true`` reproduces it. KLDivLoss uses the
elementwise 'mean' reduction in the official code; ``model.kl_reduction`` keeps that default (the
paper's learning rates were tuned with it) and offers 'batchmean', the true KL.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import RunConfig
from aqa.data.sampling import JIGSAWS as JIGSAWS_PLAN, MUSDL as MUSDL_PLAN
from aqa.errors import ConfigError
from aqa.models.base import Method, clip_features
from aqa.models.distribution import (ScoreDistribution, check_reduction,  # noqa: F401
                                     gaussian_labels, mlp_head)
from aqa.registry import BACKBONES, METHODS

MUSDL_STARTS = list(MUSDL_PLAN.starts)  # [0, 10, ..., 80, 87]


@dataclass
class USDLConfig:
    num_bins: int = 101  # score bins of the distribution
    score_max: float = 104.5  # the score of the top bin (MTL-AQA's maximum)
    sigma: float = 5.0  # standard deviation of the Gaussian soft label, in bins
    clip_len: int = 16  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(MUSDL_STARTS))  # clip starts in the window
    kl_reduction: str = "mean"  # KLDivLoss reduction: mean (official, elementwise) or batchmean
    log_of_softmax: bool = False  # reproduce the official log(softmax(x)) (can give NaN)
    score_min: float = 0.0  # the score of the bottom bin (JIGSAWS: 6)
    pack_clips: bool = False  # all clips in one backbone batch (MUSDL's JIGSAWS code) instead of one forward per clip (its MTL-AQA code)


@dataclass
class MUSDLConfig(USDLConfig):
    num_bins: int = 21  # bins of one judge's score
    score_max: float = 10.0  # a judge's top score
    num_judges: int = 7  # one head per judge
    use_dd: bool = True  # multiply the judges' combined score by the difficulty degree
    combine: str = "middle3"  # judges -> score: middle3 (diving: the middle three of the sorted judges) or sum (JIGSAWS' six GRS items)


class DistributionModel(nn.Module):
    def __init__(self, backbone: nn.Module, heads: int, bins: int, clip_starts: list[int],
                 clip_len: int, pack_clips: bool = False):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(mlp_head(backbone.out_dim, bins) for _ in range(heads))
        self.clip_starts, self.clip_len, self.pack_clips = list(clip_starts), clip_len, pack_clips

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, heads, bins) logits."""
        if self.pack_clips or not self.training:  # eval: BN on running statistics, so one
            # batch of all clips gives each clip what its own forward would, faster
            feat = clip_features(self.backbone, video, self.clip_starts, self.clip_len)  # (B, D)
        else:  # one forward per clip: (B, D) each, averaged
            n = self.clip_len
            if max(self.clip_starts) + n > video.shape[2]:
                raise ConfigError(f"model.clip_starts/clip_len need {max(self.clip_starts) + n} "
                                  f"frames but clips have {video.shape[2]}; set data.num_frames")
            feat = torch.stack([self.backbone(video[:, :, s:s + n]) for s in self.clip_starts]).mean(0)
        return torch.stack([head(feat) for head in self.heads], dim=1)  # (B, H, K)


class _Distribution(Method):
    default_backbone = "i3d"

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """docs/methods.md, USDL and MUSDL: Adam 1e-4, 100 epochs, batch 4, 103 frames at 224 px, the piergiaj
        I3D family fully fine-tuned on ImageNet-normalised frames, MUSDL's preprocessing (455x256
        resize, centre crop; at train a flip and a 0..6-frame shift). 2.2: JIGSAWS."""
        backbone = cfg.backbone
        if hasattr(backbone, "family"):
            backbone = replace(backbone, family="piergiaj", input_norm="imagenet")
        data = replace(cfg.data, num_frames=103, frame_size=224, hflip=True)
        if hasattr(data, "pipeline"):
            data = replace(data, pipeline="musdl")
        if hasattr(data, "jitter"):
            data = replace(data, jitter=3)
        cfg = replace(cfg, backbone=backbone,
                      optim=replace(cfg.optim, name="adam", lr=1e-4, weight_decay=cls.weight_decay),
                      train=replace(cfg.train, epochs=100, batch_size=4), data=data)
        if cfg.dataset == "jigsaws":  # 160 frames, centre crop only, 10 clips of 16, packed
            cfg = replace(cfg, optim=replace(cfg.optim, weight_decay=0.0),
                          train=replace(cfg.train, epochs=80),
                          data=replace(cfg.data, num_frames=160, hflip=False, pipeline="crop",
                                       jitter=0),
                          model=replace(cfg.model, clip_starts=list(JIGSAWS_PLAN.starts),
                                        pack_clips=True, sigma=1.0, **cls.jigsaws_bins))
        return cfg

    jigsaws_bins = {"num_bins": 25, "score_min": 6.0, "score_max": 30.0}

    weight_decay = 0.0
    heads = 1

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        check_reduction(m.kl_reduction)
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        return DistributionModel(backbone, self.heads, m.num_bins, m.clip_starts, m.clip_len,
                                 m.pack_clips)

    @property
    def distribution(self) -> ScoreDistribution:
        """The bins, soft labels and KL of :mod:`aqa.models.distribution`, from the config."""
        return ScoreDistribution.of(self.cfg.model)

    def _to_bins(self, score: torch.Tensor) -> torch.Tensor:
        return self.distribution.to_bins(score)

    def _from_bins(self, index: torch.Tensor) -> torch.Tensor:
        return self.distribution.from_bins(index)

    def _kl(self, logits: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        return self.distribution.kl(logits, centres)


@METHODS.register("usdl")
class USDL(_Distribution):
    name = "usdl"
    config_cls = USDLConfig
    description = "USDL: a distribution over 101 score bins learned from Gaussian soft labels"

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch["video"])  # (B, 1, K)
        loss = self._kl(logits, self._to_bins(batch["score"])[:, None])
        return {"loss": loss}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        logits = model(batch["video"])[:, 0]  # (B, K)
        return self._from_bins(logits.argmax(dim=1))

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        logits = model(batch["video"])[:, 0]
        probs = F.softmax(logits.float(), dim=1)[0]
        m = self.cfg.model
        return {"score": float(self._from_bins(probs.argmax())),
                "distribution": probs.tolist(),
                "notes": [f"the distribution has {m.num_bins} bins over "
                          f"{m.score_min:g}..{m.score_max:g}"]}


@METHODS.register("musdl")
class MUSDL(_Distribution):
    name = "musdl"
    config_cls = MUSDLConfig
    description = "MUSDL: one score distribution per judge; the middle three sum, times DD"
    weight_decay = 1e-5
    judge_keys = ("judge_scores", "sub_scores")  # the per-judge item (MTL-AQA, JIGSAWS), first found
    required_keys = ("judge_scores",)  # one of judge_keys; MTL-AQA's (JIGSAWS: sub_scores)
    jigsaws_bins = {"num_bins": 5, "score_min": 1.0, "score_max": 5.0, "num_judges": 6,
                    "combine": "sum", "use_dd": False}

    @property
    def heads(self) -> int:  # type: ignore[override]
        return self.cfg.model.num_judges

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        if not set(self.judge_keys) & set(getattr(clips, "extra_keys", ())):
            raise ConfigError(f"musdl learns each judge's score; dataset {self.cfg.dataset!r} has "
                              "no judge_scores or sub_scores (use mtl_aqa or jigsaws, or usdl "
                              "for a single score)")
        if self.cfg.model.combine not in ("middle3", "sum"):
            raise ConfigError(f"model.combine={self.cfg.model.combine!r}: choose middle3 or sum")
        return clips

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        """The plain batch plus each judge's score (0..score_max in half points)."""
        batch = super().example_batch(batch_size, device)
        m = self.cfg.model
        gen = torch.Generator().manual_seed(1)
        halves = torch.randint(0, int(2 * m.score_max) + 1, (batch_size, m.num_judges), generator=gen)
        batch["judge_scores"] = (halves.float() / 2).to(device)  # (B, judges)
        return batch

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        key = next(k for k in self.judge_keys if k in batch)
        centres = self._to_bins(batch[key].float())  # (B, judges)
        return {"loss": self._kl(model(batch["video"]), centres)}

    def _judges(self, logits: torch.Tensor) -> torch.Tensor:
        return self._from_bins(logits.argmax(dim=2))  # (B, H)

    def _score(self, judges: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
        h = judges.shape[1]
        if self.cfg.model.combine == "sum":
            total = judges.sum(dim=1)
        else:  # the middle three of the sorted judges
            total = judges.sort(dim=1).values[:, (h - 3) // 2:(h - 3) // 2 + 3].sum(dim=1)  # (B,)
        return total * difficulty.float() if self.cfg.model.use_dd else total

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return self._score(self._judges(model(batch["video"])), batch["difficulty"])

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        logits = model(batch["video"])
        judges = self._judges(logits)
        notes = ["judges: " + ", ".join(f"{j:g}" for j in judges[0].tolist())]
        if self.cfg.model.use_dd and batch.get("difficulty_given") is None:
            notes.append("no difficulty given: the middle-three sum is multiplied by 1.0")
        probs = F.softmax(logits.float(), dim=2)[0].mean(0)  # the judges' mean distribution
        return {"score": float(self._score(judges, batch["difficulty"])[0]),
                "distribution": probs.tolist(), "notes": notes}
