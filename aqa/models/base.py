"""The interface between the training loop and a method.

A method knows its config dataclass, how to build its model, its loss terms and how it turns model
output into a score. The loop (``aqa.train.loop``) knows no method by name.

Batches are dicts:
    video:      (B, C, T, H, W) uint8   clips as decoded; the backbone normalises them on device
    score:      (B,) float32            ground-truth score
    difficulty: (B,) float32            difficulty degree (1.0 where the dataset has none)
    id:         list[str]               sample ids

A method with ``inputs = "features"`` reads a feature dataset's batches instead of ``video``
(``aqa.data.features``): ``features`` (B, T, D) float32 zero-padded, ``length`` (B,) real rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aqa.config import RunConfig


@dataclass
class BackboneConfig:
    name: str = "tiny3d"  # registered backbone
    weights: str = ""  # path of pretrained weights to load ("" = the backbone's default)
    freeze: bool = False  # keep backbone weights fixed (only the head trains)
    freeze_bn: bool = False  # backbone BatchNorm in eval mode while training (running stats fixed)


class Method:
    """Base class of a registered method; subclasses set ``name`` and ``config_cls``."""

    name: str = ""
    config_cls: type = object
    default_backbone: str = "tiny3d"
    sample_kind: str = "single"  # "single": one clip per sample; pair methods add exemplars
    required_keys: tuple[str, ...] = ()  # item keys beyond video/score/difficulty (e.g. judge_scores)
    inputs: str = "video"  # what a batch brings: "video" clips, or "features" (B, T, D) + "length" (GDLT, CoFInAl: feature datasets only)

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """Paper defaults for sections other than ``model`` (epochs, lr, ...)."""
        return cfg

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        """The dataset the loop iterates for ``split``. Single-clip methods use the clips as they
        are; pair methods wrap them to add exemplars drawn from ``train_clips``."""
        return clips

    def set_train_mode(self, model: nn.Module) -> None:
        """Put the model in training mode; with ``backbone.freeze_bn`` the backbone's BatchNorm
        layers stay in eval mode (they normalise with, and do not update, their running
        statistics; their weight and bias still train unless ``backbone.freeze``)."""
        model.train()
        if getattr(self.cfg.backbone, "freeze_bn", False):
            backbone = getattr(getattr(model, "module", model), "backbone", None)
            if backbone is not None:
                set_bn_eval(backbone)

    def should_evaluate(self, epoch: int) -> bool:
        """Whether the loop evaluates after (1-based) ``epoch``: every ``train.eval_every``
        epochs and after the last (a method may follow its paper's sparser schedule)."""
        t = self.cfg.train
        return epoch % t.eval_every == 0 or epoch == t.epochs

    def on_epoch_start(self, epoch: int) -> None:
        """Called before (1-based) ``epoch``'s first batch, and again when a resumed attempt
        continues it (FineDiving TSA pools with the labels for the first quarter of the epochs)."""

    def resumable(self) -> bool:
        """False makes the loop ignore ``last.pt`` (only to reproduce an official broken resume)."""
        return True

    def on_eval_start(self, model: nn.Module, device: torch.device) -> None:
        """Called with the model in eval mode before each evaluation (pair methods compute the
        exemplar pool's features here, once, instead of once per query)."""

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        """Extra entries of ``best.pt`` (tensors and plain values only), e.g. the exemplar bank
        that lets ``aqa.scoring`` score a clip with no dataset on disk."""
        return {}

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups; the default gives the backbone its lr factor."""
        lr = self.cfg.optim.lr
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
        ids = {id(p) for p in backbone.parameters()}
        rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
        back = [p for p in backbone.parameters() if p.requires_grad]
        groups = [{"params": rest, "lr": lr, "name": "head"}]
        if back:
            groups.append({"params": back, "lr": lr * self.cfg.optim.backbone_lr_factor,
                           "name": "backbone"})
        return groups

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Loss terms; the key ``loss`` is the total that is back-propagated."""
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(B,) predicted scores in the dataset's score units."""
        raise NotImplementedError

    def eval_protocol(self) -> dict[str, Any] | None:
        """How the last evaluation scored its queries, for ``aqa eval`` to print (``{"summary":
        str, ...}``; TPT: the voters and how many were padded); None when there is nothing to say."""
        return None

    def take_eval_extras(self) -> dict:
        """Per-query values ``predict`` recorded beside the scores since the last call, by id
        (FineDiving TSA: the predicted step transitions and their tIoU), and cleared; the loop
        gathers them from every rank and hands them to :meth:`extra_metrics`."""
        return {}

    def extra_metrics(self, extras: dict) -> dict[str, float]:
        """Metrics of one evaluation beyond ``eval_metrics``, from the gathered extras."""
        return {}

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        """A training batch of the configured shape filled with plausible values, for the memory
        planner (``aqa plan``) and ``bench/train_step.py``: what ``losses`` receives. Methods whose
        batches carry more (exemplar videos, boxes, judge scores) override it."""
        d = self.cfg.data
        gen = torch.Generator().manual_seed(0)
        video = torch.randint(0, 256, (batch_size, 3, d.num_frames, d.frame_size, d.frame_size),
                              generator=gen, dtype=torch.uint8)
        batch = {"video": video, "score": torch.rand(batch_size, generator=gen) * 100,
                 "difficulty": torch.full((batch_size,), 3.0), "id": [f"x{i}" for i in range(batch_size)]}
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def module_sizes(self, model: nn.Module) -> dict[str, int]:
        """Parameter count of each part of the model (``aqa methods --json``): ``backbone``,
        ``head`` (everything else), ``trainable`` and ``total``. Methods with more parts (adapters,
        a decoder) override it and add their own keys."""
        backbone = getattr(model, "backbone", None)
        n_back = count_parameters(backbone) if backbone is not None else 0
        total = count_parameters(model)
        return {"backbone": n_back, "head": total - n_back,
                "trainable": count_parameters(model, trainable_only=True), "total": total}

    def eval_metrics(self, preds: list[float], labels: list[float]) -> dict[str, float]:
        """The per-epoch evaluation metrics of predictions against labels (the loop, ``aqa eval``
        and the best.pt choice use these). Regression methods report rho, L2, RL2; a
        classification method (TSA on FR-FS) reports accuracy."""
        from aqa import metrics as M
        return M.regression_metrics(preds, labels)

    def predicted_classes(self, preds: list[float]) -> list[int] | None:
        """The class each prediction stands for, for a classification method (the predictions
        CSV's ``pred_class`` column, the confusion matrix of the run view); None: a regression."""
        return None

    def compare_clips(self, model: nn.Module, batch_a: dict, batch_b: dict,
                      state: dict | None = None) -> dict[str, Any]:
        """Head to head for pair methods: ``{"score_a", "score_b", "difference" (B - A)}``."""
        from aqa.errors import ConfigError
        raise ConfigError(f"{self.name} scores one clip at a time; comparing two clips head to "
                          "head needs a pair method such as core")

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        """Score one clip (a batch of 1) for ``aqa.scoring``: ``{"score": float, ...}`` plus
        what the score rests on (``exemplars``, ``distribution``, ``spread``, ``notes``).
        ``state`` is the loaded checkpoint (for the extras ``checkpoint_extras`` saved)."""
        return {"score": float(self.predict(model, batch)[0])}


def set_bn_eval(module: nn.Module) -> None:
    """Every BatchNorm layer inside ``module`` to eval mode (the rest keeps its mode)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def clip_features(backbone: nn.Module, video: torch.Tensor, starts: list[int],
                  clip_len: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, D): the backbone on each clip ``video[:, :, s:s + clip_len]``, all
    clips in one batch (clip-major, as the official CoRe/MUSDL code packs them), averaged."""
    from aqa.errors import ConfigError

    b, t = video.shape[0], video.shape[2]
    if max(starts) + clip_len > t:
        raise ConfigError(f"model.clip_starts/clip_len need {max(starts) + clip_len} frames but "
                          f"clips have {t}; set data.num_frames accordingly")
    pack = torch.cat([video[:, :, s:s + clip_len] for s in starts])  # (N*B, C, L, H, W)
    return backbone(pack).reshape(len(starts), b, -1).mean(0)  # (B, D)
