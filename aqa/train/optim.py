"""Optimizers and learning-rate schedules (pure factor functions, tested with literal tables)."""

from __future__ import annotations

import math

import torch

from aqa.config import OptimConfig


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(epoch: int, cfg: OptimConfig, epochs: int) -> float:
    """Multiplier of the base lr during 0-based ``epoch``: linear warm-up, then the schedule."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    e = epoch - cfg.warmup_epochs
    if cfg.schedule == "cosine":  # CosineAnnealingLR(T_max, eta_min = lr * min_lr_factor)
        span = cfg.cosine_epochs or max(1, epochs - cfg.warmup_epochs)
        cos = 0.5 * (1 + math.cos(math.pi * min(e, span) / span))
        return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * cos
    if cfg.schedule == "step":
        return cfg.gamma ** (e // cfg.step_size)
    return 1.0


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, cfg, epochs))
