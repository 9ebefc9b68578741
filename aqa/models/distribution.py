"""The score-distribution head shared by USDL, MUSDL and TSA-Net (docs/methods.md: USDL and MUSDL, TSA-Net).

A score is a position on ``num_bins`` bins spread evenly over ``score_min..score_max``. The head
predicts logits over the bins (one set a judge for MUSDL); the target is a Gaussian soft label
centred on the true score's (fractional) bin, and the loss is the KL divergence between them:

    centres (B, H) = (score - score_min) * (K - 1) / (score_max - score_min), clamped to [0, K-1]
    target  (B, H, K) = N(k; centre, sigma) over the integer bins k, renormalised
    loss = sum_j KL(target_j || softmax(logits_j)) / (B x K) ('mean', official) or / B ('batchmean')
    score = score_min + argmax_k * (score_max - score_min) / (K - 1)

``mlp_head`` is MUSDL's ``MLP_block`` (1024 -> 256 -> 128 -> K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aqa.errors import ConfigError

REDUCTIONS = ("mean", "batchmean")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"model.kl_reduction={reduction!r} is not one of mean, batchmean")


def mlp_head(in_dim: int, bins: int) -> nn.Sequential:
    """MUSDL's MLP_block: 1024 -> 256 -> 128 -> bins (logits; softmax in the loss/prediction)."""
    return nn.Sequential(nn.Linear(in_dim, 256), nn.ReLU(inplace=True), nn.Linear(256, 128),
                         nn.ReLU(inplace=True), nn.Linear(128, bins))


def gaussian_labels(centres: torch.Tensor, bins: int, sigma: float) -> torch.Tensor:
    """(B,) centres in bin units -> (B, bins) Gaussian pdf at the integer bins, renormalised."""
    grid = torch.arange(bins, dtype=torch.float32, device=centres.device)[None, :]
    pdf = torch.exp(-0.5 * ((grid - centres[:, None].float()) / sigma) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class ScoreDistribution:
    """Bins over a score range, the soft label's width and the KL's form."""

    num_bins: int  # K bins
    score_min: float  # the score of the bottom bin
    score_max: float  # the score of the top bin
    sigma: float  # soft label's standard deviation, in bins
    kl_reduction: str = "mean"  # mean (official: / B x K) or batchmean (/ B, the true KL)
    log_of_softmax: bool = False  # the official log(softmax(x)) (can give -inf/NaN)

    @classmethod
    def of(cls, m) -> "ScoreDistribution":
        """From a method's model config (its num_bins, score_max, sigma, ... fields)."""
        return cls(m.num_bins, getattr(m, "score_min", 0.0), m.score_max, m.sigma,
                   m.kl_reduction, m.log_of_softmax)

    def to_bins(self, score: torch.Tensor) -> torch.Tensor:
        """Scores -> fractional bin positions (the soft labels' centres)."""
        bins = (score.float() - self.score_min) * (self.num_bins - 1) / (self.score_max - self.score_min)
        return bins.clamp(0, self.num_bins - 1)

    def from_bins(self, index: torch.Tensor) -> torch.Tensor:
        """Bin indices -> scores."""
        return self.score_min + index.float() * (self.score_max - self.score_min) / (self.num_bins - 1)

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        if self.log_of_softmax:  # the official log(softmax(x))
            return torch.log(F.softmax(logits.float(), dim=-1))
        return F.log_softmax(logits.float(), dim=-1)

    def kl(self, logits: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """KL between the soft labels centred at ``centres`` (B, H) and the predictions
        ``logits`` (B, H, K), summed over the H heads."""
        b, h, k = logits.shape
        target = gaussian_labels(centres.reshape(-1), k, self.sigma).reshape(b, h, k)
        logp = self.log_probs(logits)
        loss = 0.0
        # 'mean' (official) divides the summed KL by batch x bins, 'batchmean' by the batch;
        # written out, since torch's own 'mean' is deprecated and will change meaning
        denom = b * k if self.kl_reduction == "mean" else b
        for j in range(h):  # MUSDL sums the per-judge losses
            loss = loss + F.kl_div(logp[:, j], target[:, j], reduction="sum") / denom
        return loss
