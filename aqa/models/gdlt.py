"""GDLT: Likert scoring with grade decoupling (Xu et al., CVPR 2022, ``xuangch/CVPR22_GDLT``).

A long program (a skating or gymnastics routine) is read as T clip features, one row a clip
window (``batch["features"]`` (B, T, D), ``batch["length"]`` real rows). N grade queries
(default 4) decode the program; query i's weight w_i = sigmoid(s_i) / sum_j sigmoid(s_j) mixes
the grade values g = linspace(0, 1, N) (0, 1/3, 2/3, 1: the Likert grades) into

    score / score_scale = sum_i w_i g_i           (official: score_scale 25, scores in /25 units)

Shapes: features (B, T, D) -> projection (B, T, 256) -> encoder (B, T, 256); queries (N, 256) ->
decoder (B, N, 256) -> logits (B, N) -> weights (B, N) -> score (B,). The layers are in
:mod:`aqa.models.grades`.

Loss: MSE between the score and target / score_scale, plus ``alpha`` times the hardest-triplet
loss on the decoded queries (each query its own label, cosine distance, ``margin``).

Official defaults (README command): SGD lr 1e-2, momentum 0.9, weight decay 1e-4, batch 32,
cosine decay to lr x 0.01 over the run, 2 decoder layers, 4 queries, alpha 1, margin 1, dropout
0.3; ``options.py``: 1 encoder layer, 1 head, hidden 256, training windows of 68 rows
(``data.clip_num``); epochs 250 / 400 / 500 / 150 for Ball / Clubs / Hoop / Ribbon. Official
runs keep the epoch of the best *test* rho; ``train.val_fraction`` picks it on held-out training
programs instead.

The per-grade and per-clip parts of a score (``score_clip``): the grade weights w_i and each
grade's share w_i g_i of the score, and the last decoder layer's cross-attention of each query
over the clips; spreading each share over the clips its query attended to gives per-clip
contributions that add up to the score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import RunConfig
from aqa.errors import ConfigError
from aqa.models.base import Method
from aqa.models.grades import (GradeTransformer, clip_contributions, diagonal_logits,
                               feature_projection, grade_mix, hardest_triplet_loss, project,
                               valid_rows)
from aqa.registry import METHODS


@dataclass
class GDLTConfig:
    in_dim: int = 1024  # feature dimension D of the dataset's clip features (Video Swin / I3D: 1024)
    hidden_dim: int = 256  # width of the projected features, queries and transformer
    n_head: int = 1  # attention heads (not stored in a checkpoint's shapes)
    n_encoder: int = 1  # encoder layers over the clips
    n_decoder: int = 2  # decoder layers of the grade queries
    n_query: int = 4  # grade queries (grades linspace(0, 1, n_query))
    dropout: float = 0.3  # dropout in the transformer (attention weights, residuals, feed-forward)
    alpha: float = 1.0  # weight of the triplet loss on the decoded queries
    margin: float = 1.0  # triplet margin (cosine distance)
    score_scale: float = 25.0  # targets are score / score_scale (official: 25); predictions are multiplied back
    attend_padding: bool = False  # true: zero-padded rows of short training windows are attended to and enter BatchNorm's statistics, as in the official code


class GDLTModel(nn.Module):
    """Features (B, T, D) -> {"score" (B,) in score_scale units, "weights" (B, N), "queries"
    (B, N, H), "attention" (B, N, T)}."""

    def __init__(self, m: GDLTConfig):
        super().__init__()
        self.in_proj = feature_projection(m.in_dim, m.hidden_dim)
        self.transformer = GradeTransformer(m.hidden_dim, m.n_head, m.n_encoder, m.n_decoder,
                                            m.dropout)
        self.prototype = nn.Embedding(m.n_query, m.hidden_dim)
        self.regressor = nn.Linear(m.hidden_dim, m.n_query)
        self.register_buffer("grades", torch.linspace(0, 1, m.n_query), persistent=False)
        self.in_dim, self.attend_padding = m.in_dim, m.attend_padding

    def forward(self, x: torch.Tensor, length: torch.Tensor | None = None) -> dict:
        b, t, d = x.shape
        if d != self.in_dim:
            raise ConfigError(f"the features have D = {d} but the model was built for "
                              f"model.in_dim={self.in_dim}; set model.in_dim={d} (or use features "
                              "of the checkpoint's recipe)")
        valid = None if self.attend_padding else valid_rows(length, t)
        h = project(self.in_proj, x, valid)  # (B, T, H)
        q = self.prototype.weight.unsqueeze(0).repeat(b, 1, 1)  # (B, N, H)
        decoded, attention = self.transformer(h, q, valid)  # (B, N, H), (B, N, T)
        score, weights = grade_mix(diagonal_logits(self.regressor, decoded), self.grades)
        return {"score": score, "weights": weights, "queries": decoded, "attention": attention}


def features_of(batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    if "features" not in batch:
        raise ConfigError("this method reads clip features (batch['features']); train it on a "
                          "feature dataset: rg, fisv with data.features=<folder>, or folder_features "
                          "(python -m aqa features extract makes the features)")
    return batch["features"].float(), batch.get("length")


def check_feature_dataset(method: Method, clips: Any) -> dict | None:
    """A feature method on a video dataset, or on features of another D, is refused here;
    returns the features' recipe (``recipe.json``; None for an official release)."""
    base = getattr(clips, "dataset", clips)  # a SampleSubset's dataset
    dim = getattr(clips, "dim", getattr(base, "dim", None))
    if dim is None and not hasattr(base, "clip_num"):
        raise ConfigError(f"{method.name} reads clip features; dataset {method.cfg.dataset!r} "
                          "gives video clips. Use rg, fisv with data.features=<folder of .npy> or "
                          "folder_features (python -m aqa features extract makes the features)")
    if dim is not None and dim != method.cfg.model.in_dim:
        raise ConfigError(f"the dataset's features have D = {dim}; set model.in_dim={dim}")
    return getattr(clips, "recipe", getattr(base, "recipe", None))


def keep_feature_recipe(method: Method, clips: Any, split: str) -> Any:
    """``wrap_dataset`` of a feature method: the dataset checked, the training features' recipe
    remembered for the checkpoint; the clips unchanged."""
    recipe = check_feature_dataset(method, clips)
    if split == "train":
        method.feature_recipe = recipe
    return clips


def feature_recipe_extras(method: Method) -> dict[str, Any]:
    """``checkpoint_extras`` of a feature method: the training features' recipe, with which the
    Score page extracts an upload's features."""
    recipe = getattr(method, "feature_recipe", None)
    return {"feature_recipe": dict(recipe)} if recipe else {}


def feature_batch(cfg: RunConfig, batch_size: int, device: torch.device | str) -> dict:
    """A training batch of the configured shape (the memory planner's)."""
    gen = torch.Generator().manual_seed(0)
    t = getattr(cfg.data, "clip_num", 68)
    batch = {"features": torch.rand(batch_size, t, cfg.model.in_dim, generator=gen),
             "length": torch.full((batch_size,), t, dtype=torch.int64),
             "score": torch.rand(batch_size, generator=gen) * cfg.model.score_scale,
             "id": [f"x{i}" for i in range(batch_size)]}
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def official_optim(cfg: RunConfig, epochs: int) -> RunConfig:
    """The README's optimisation: SGD 1e-2 (momentum 0.9, wd 1e-4), cosine to lr x 0.01, batch
    32, evaluated every epoch."""
    return replace(cfg, optim=replace(cfg.optim, name="sgd", lr=1e-2, momentum=0.9,
                                      weight_decay=1e-4, schedule="cosine", min_lr_factor=0.01,
                                      warmup_epochs=0, cosine_epochs=0),
                   train=replace(cfg.train, epochs=epochs, batch_size=32, eval_every=1))


# README: --epoch {250/400/500/150} for Ball / Clubs / Hoop / Ribbon
EPOCHS = {"Ball": 250, "Clubs": 400, "Hoop": 500, "Ribbon": 150}


@METHODS.register("gdlt")
class GDLT(Method):
    name = "gdlt"
    config_cls = GDLTConfig
    description = "GDLT: grade queries over a program's clip features (long programs: rg, fisv)"
    inputs = "features"  # reads batch["features"] (+ "length"), not video

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """The README's settings with Ball's epochs: defaults are fixed before ``--set
        data.apparatus`` is applied, so another apparatus takes ``train.epochs`` from EPOCHS."""
        return official_optim(cfg, EPOCHS["Ball"])

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        if m.hidden_dim % m.n_head:
            raise ConfigError(f"model.hidden_dim={m.hidden_dim} is not divisible by "
                              f"model.n_head={m.n_head}")
        if m.n_query < 2:
            raise ConfigError("model.n_query must be at least 2 (the grades span 0..1)")
        return GDLTModel(m)

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        return keep_feature_recipe(self, clips, split)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return feature_recipe_extras(self)

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        x, length = features_of(batch)
        out = model(x, length)
        m = self.cfg.model
        target = batch["score"].float() / m.score_scale
        mse = F.mse_loss(out["score"], target)
        b, n, h = out["queries"].shape
        labels = torch.arange(n, device=x.device).repeat(b)  # each query its own label
        triplet = hardest_triplet_loss(out["queries"].reshape(-1, h), labels, m.margin)
        return {"loss": mse + m.alpha * triplet, "mse": mse, "triplet": triplet}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        x, length = features_of(batch)
        return model(x, length)["score"].float() * self.cfg.model.score_scale

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        x, length = features_of(batch)
        out = model(x, length)
        scale = self.cfg.model.score_scale
        weights, grades = out["weights"][0], model.grades
        shares = weights * grades * scale  # each grade's part of the score, in points
        t = int(length[0]) if length is not None else x.shape[1]
        attention = out["attention"][0, :, :t]  # (N, T)
        per_clip = clip_contributions(attention, shares)
        return {"score": float(out["score"][0] * scale),
                "contributions": {
                    "kind": "grades",
                    "grades": [float(g * scale) for g in grades],
                    "grade_weights": weights.tolist(),
                    "grade_shares": shares.tolist(),
                    "attention": attention.tolist(),
                    "per_clip": per_clip.tolist()},
                "notes": [f"{len(grades)} grades: " + ", ".join(
                    f"{g * scale:.1f} pts x {w:.2f}" for g, w in zip(grades.tolist(),
                                                                     weights.tolist()))]}

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        return feature_batch(self.cfg, batch_size, device)
