"""regression: backbone -> dropout -> linear -> score. The plain baseline the loop is tested with.

Shapes: video (B, C, T, H, W) -> backbone features (B, D) -> score (B,).
Targets are divided by ``score_scale`` during training so the head works near unit range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aqa.models.base import Method
from aqa.registry import BACKBONES, METHODS


@dataclass
class RegressionConfig:
    dropout: float = 0.0  # dropout before the linear head
    score_scale: float = 100.0  # training targets are score / score_scale
    loss: str = "mse"  # mse or l1


class RegressionModel(nn.Module):
    def __init__(self, backbone: nn.Module, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.out_dim, 1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(video)).squeeze(-1)  # (B,)


@METHODS.register("regression")
class Regression(Method):
    name = "regression"
    config_cls = RegressionConfig
    description = "backbone + linear head, MSE on the score (baseline, any backbone)"

    def build_model(self) -> nn.Module:
        if self.cfg.model.loss not in ("mse", "l1"):
            from aqa.errors import ConfigError
            raise ConfigError(f"model.loss={self.cfg.model.loss!r} is not one of mse, l1")
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        return RegressionModel(backbone, self.cfg.model.dropout)

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        pred = model(batch["video"])
        target = batch["score"].float() / self.cfg.model.score_scale
        fn = F.mse_loss if self.cfg.model.loss == "mse" else F.l1_loss
        loss = fn(pred.float(), target)
        return {"loss": loss}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(batch["video"]).float() * self.cfg.model.score_scale
