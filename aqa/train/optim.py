"""Optimizers and learning-rate schedules (pure factor functions, tested with literal tables)."""

from __future__ import annotations

import math

import torch

from aqa.config import OptimConfig
from aqa.errors import ConfigError


KERNELS = ("auto", "fused", "foreach", "loop")


def kernel_options(params: list, kernels: str) -> dict:
    """The optimizer's implementation keywords for ``optim.kernels``: ``auto`` is the fused
    kernel (one launch for all parameters) when every parameter is a floating-point CUDA tensor,
    else torch's own default (foreach on CUDA, the per-parameter loop on the CPU, which the
    parity tests compare with); ``fused``, ``foreach`` and ``loop`` ask for one (``loop`` is what
    the official code's torch 1.x ran everywhere)."""
    if kernels not in KERNELS:
        raise ConfigError(f"optim.kernels={kernels!r} is not one of {', '.join(KERNELS)}")
    if kernels == "auto":
        cuda = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
        return {"fused": True} if cuda else {}
    if kernels == "fused":
        return {"fused": True}
    return {"foreach": kernels == "foreach"}


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    extra = kernel_options([p for g in groups for p in g["params"]], cfg.kernels)
    try:
        if cfg.name == "adam":
            return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)
        if cfg.name == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, **extra)
    except RuntimeError as exc:  # e.g. fused kernels for a device or dtype torch has none for
        raise ConfigError(f"optim.kernels={cfg.kernels}: {exc}; use optim.kernels=auto") from exc


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
