"""USDL and MUSDL: uncertainty-aware score distribution learning (Tang et al., CVPR 2020).

METHODS.md section 2. A video is 10 clips of 16 frames (starts 0, 10, ..., 80 and the last 16)
through I3D, averaged to one 1024-d feature; an MLP head (1024 -> 256 -> 128 -> K, softmax)
predicts a distribution over score bins, trained with KL divergence against a Gaussian soft
label centred on the true score:

    USDL   one head, K = 101 bins over 0..score_max (104.5 on MTL-AQA), sigma 5 bins;
           score = argmax bin * score_max / 100
    MUSDL  one head per judge (7), K = 21 bins over a judge's 0..10 in steps of 0.5, sigma 5 bins;
           judge j = argmax_j * 0.5; score = the sum of the middle three of the sorted seven,
           times the difficulty degree

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
from aqa.errors import ConfigError
from aqa.models.base import Method, clip_features
from aqa.registry import BACKBONES, METHODS

MUSDL_STARTS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 87]


@dataclass
class USDLConfig:
    num_bins: int = 101  # score bins of the distribution
    score_max: float = 104.5  # the score of the top bin (MTL-AQA's maximum)
    sigma: float = 5.0  # standard deviation of the Gaussian soft label, in bins
    clip_len: int = 16  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(MUSDL_STARTS))  # clip starts in the window
    kl_reduction: str = "mean"  # KLDivLoss reduction: mean (official, elementwise) or batchmean
    log_of_softmax: bool = False  # reproduce the official log(softmax(x)) (can give NaN)


@dataclass
class MUSDLConfig(USDLConfig):
    num_bins: int = 21  # bins of one judge's score
    score_max: float = 10.0  # a judge's top score
    num_judges: int = 7  # one head per judge
    use_dd: bool = True  # multiply the judges' middle-three sum by the difficulty degree


def mlp_head(in_dim: int, bins: int) -> nn.Sequential:
    """MUSDL's MLP_block: 1024 -> 256 -> 128 -> bins (logits; softmax in the loss/prediction)."""
    return nn.Sequential(nn.Linear(in_dim, 256), nn.ReLU(inplace=True), nn.Linear(256, 128),
                         nn.ReLU(inplace=True), nn.Linear(128, bins))


def gaussian_labels(centres: torch.Tensor, bins: int, sigma: float) -> torch.Tensor:
    """(B,) centres in bin units -> (B, bins) Gaussian pdf at the integer bins, renormalised."""
    grid = torch.arange(bins, dtype=torch.float32, device=centres.device)[None, :]
    pdf = torch.exp(-0.5 * ((grid - centres[:, None].float()) / sigma) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


class DistributionModel(nn.Module):
    def __init__(self, backbone: nn.Module, heads: int, bins: int, clip_starts: list[int],
                 clip_len: int):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(mlp_head(backbone.out_dim, bins) for _ in range(heads))
        self.clip_starts, self.clip_len = list(clip_starts), clip_len

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, heads, bins) logits."""
        feat = clip_features(self.backbone, video, self.clip_starts, self.clip_len)  # (B, D)
        return torch.stack([head(feat) for head in self.heads], dim=1)  # (B, H, K)


class _Distribution(Method):
    default_backbone = "i3d"

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """METHODS.md 2.1: Adam 1e-4, 100 epochs, batch 4, 103 frames at 224 px, the piergiaj
        I3D family fully fine-tuned."""
        backbone = cfg.backbone
        if hasattr(backbone, "family"):
            backbone = replace(backbone, family="piergiaj")
        return replace(cfg, backbone=backbone,
                       optim=replace(cfg.optim, name="adam", lr=1e-4, weight_decay=cls.weight_decay),
                       train=replace(cfg.train, epochs=100, batch_size=4),
                       data=replace(cfg.data, num_frames=103, frame_size=224))

    weight_decay = 0.0
    heads = 1

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        if m.kl_reduction not in ("mean", "batchmean"):
            raise ConfigError(f"model.kl_reduction={m.kl_reduction!r} is not one of mean, batchmean")
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        return DistributionModel(backbone, self.heads, m.num_bins, m.clip_starts, m.clip_len)

    def _log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.model.log_of_softmax:  # the official log(softmax(x))
            return torch.log(F.softmax(logits.float(), dim=-1))
        return F.log_softmax(logits.float(), dim=-1)

    def _kl(self, logits: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """KL between the soft labels centred at ``centres`` (B, H) and the predictions."""
        m = self.cfg.model
        b, h, k = logits.shape
        target = gaussian_labels(centres.reshape(-1), k, m.sigma).reshape(b, h, k)
        logp = self._log_probs(logits)
        loss = 0.0
        # 'mean' (official) divides the summed KL by batch x bins, 'batchmean' by the batch;
        # written out, since torch's own 'mean' is deprecated and will change meaning
        denom = b * k if m.kl_reduction == "mean" else b
        for j in range(h):  # MUSDL sums the per-judge losses
            loss = loss + F.kl_div(logp[:, j], target[:, j], reduction="sum") / denom
        return loss


@METHODS.register("usdl")
class USDL(_Distribution):
    name = "usdl"
    config_cls = USDLConfig
    description = "USDL: a distribution over 101 score bins learned from Gaussian soft labels"

    def _to_bins(self, score: torch.Tensor) -> torch.Tensor:
        m = self.cfg.model
        return (score.float() * (m.num_bins - 1) / m.score_max).clamp(0, m.num_bins - 1)

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch["video"])  # (B, 1, K)
        loss = self._kl(logits, self._to_bins(batch["score"])[:, None])
        return {"loss": loss}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        m = self.cfg.model
        logits = model(batch["video"])[:, 0]  # (B, K)
        return logits.argmax(dim=1).float() * m.score_max / (m.num_bins - 1)

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        logits = model(batch["video"])[:, 0]
        probs = F.softmax(logits.float(), dim=1)[0]
        m = self.cfg.model
        return {"score": float(probs.argmax()) * m.score_max / (m.num_bins - 1),
                "distribution": probs.tolist(),
                "notes": [f"the distribution has {m.num_bins} bins over 0..{m.score_max:g}"]}


@METHODS.register("musdl")
class MUSDL(_Distribution):
    name = "musdl"
    config_cls = MUSDLConfig
    description = "MUSDL: one score distribution per judge; the middle three sum, times DD"
    weight_decay = 1e-5
    required_keys = ("judge_scores",)  # per-sample items the dataset must provide

    @property
    def heads(self) -> int:  # type: ignore[override]
        return self.cfg.model.num_judges

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        if not set(self.required_keys) <= set(getattr(clips, "extra_keys", ())):
            raise ConfigError(f"musdl learns each judge's score; dataset {self.cfg.dataset!r} has "
                              "no judge_scores (use mtl_aqa, or usdl for a single score)")
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
        m = self.cfg.model
        judges = batch["judge_scores"].float()  # (B, 7)
        centres = (judges * (m.num_bins - 1) / m.score_max).clamp(0, m.num_bins - 1)
        return {"loss": self._kl(model(batch["video"]), centres)}

    def _judges(self, logits: torch.Tensor) -> torch.Tensor:
        m = self.cfg.model
        return logits.argmax(dim=2).float() * m.score_max / (m.num_bins - 1)  # (B, H)

    def _score(self, judges: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
        h = judges.shape[1]
        middle = judges.sort(dim=1).values[:, (h - 3) // 2:(h - 3) // 2 + 3].sum(dim=1)  # (B,)
        return middle * difficulty.float() if self.cfg.model.use_dd else middle

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
