"""tiny3d: a few small 3D convolutions, so the whole loop runs on a CPU in seconds.

Input (B, 3, T, H, W) uint8 or float in [0, 1]; output (B, 4*width) features.
Not a model of any paper: the test and demo backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aqa.models.base import BackboneConfig
from aqa.registry import BACKBONES


@dataclass
class Tiny3DConfig(BackboneConfig):
    name: str = "tiny3d"  # registered backbone
    width: int = 16  # channels of the first layer (later layers use 2x and 4x)


def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class Tiny3D(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, (1, 2, 2)),        # (B, w, T, H/2, W/2)
            _block(w, 2 * w, (2, 2, 2)),    # (B, 2w, T/2, H/4, W/4)
            _block(2 * w, 4 * w, (2, 2, 2)),  # (B, 4w, T/4, H/8, W/8)
            _block(4 * w, 4 * w, (1, 2, 2)),  # (B, 4w, T/4, H/16, W/16)
        )
        self.out_dim = 4 * w

    @staticmethod
    def normalize(video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, T, H, W) -> float in [-1, 1]."""
        return video.float().div(127.5).sub(1.0)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(video) if video.dtype == torch.uint8 else video)
        return x.mean(dim=(2, 3, 4))  # (B, 4w)


@BACKBONES.register("tiny3d")
class Tiny3DEntry:
    config_cls = Tiny3DConfig
    description = "four 3x3x3 conv layers; CPU-friendly test backbone"

    @staticmethod
    def build(cfg: Tiny3DConfig) -> Tiny3D:
        model = Tiny3D(width=cfg.width)
        if cfg.weights:
            from aqa.train.checkpoint import load_backbone_weights
            load_backbone_weights(model, cfg.weights)
        return model
