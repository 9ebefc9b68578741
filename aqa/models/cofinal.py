"""CoFInAl: coarse-to-fine instruction alignment (Zhou et al., IJCAI 2024, ``ZhouKanglei/CoFInAl_AQA``).

GDLT's grade queries (:mod:`aqa.models.grades`: the features projected, encoded over the clips, N
queries decoded) with the score split into a coarse grade and a fine offset, both in
score_scale (25) units. For a target y (/25), with k = int(y x 10000) (float32):

    coarse  c = (k // 100) / 100           the first two decimals
    fine    f = k - (k // 100) x 100        the next two, a class 0..99

(k rounded; the official code truncates y x 10000 in float32, so 0.692 becomes class 19:
``model.truncate_target=true`` reproduces it.)

Heads on the decoded queries q (B, N, H):

    int         grade_mix(diag(regressor(q)), grades)              -> c      (MSE)
    int_revert  grade_mix(diag(regressor_revert(q)), grades_revert) -> 1 - c  (MSE)
    dec         self-attention over the queries (4 heads), flatten, Linear(N H, 256),
                Linear(256, 100), L2-normalised                     -> column f of a simplex
                equiangular tight frame E (100 x 100, a seeded random orthogonal basis times
                (I - 1/100) sqrt(100/99))                                   (L1, mean)

    loss  = MSE(int, c) + MSE(int_revert, 1 - c) + L1(dec, E[:, f]) + alpha x triplet(q)
    score = ((int + 1 - int_revert) / 2 + argmax(dec E) / 10000) x score_scale

``model.revert=false`` drops the reversed head (score = int + argmax / 10000: the official
``GDLTETH2``). The grade values (``model.grades``, the official ``--activate_regular_restrictions``)
and the triplet labels (``model.loss_align``, ``--loss_align``) are in :data:`GRADES` and
:func:`align_labels`.

Official defaults: ``options.py`` and ``scripts/train_all_rg.sh`` / ``train_all_fis.sh`` (SGD 1e-2,
momentum 0.9, wd 1e-4, batch 32, cosine to lr x 0.01; 1 encoder and 2 decoder layers, 4 queries,
margin 1, dropout 0.3, loss_align short). Per routine: Ball 250 epochs, sigmoid grades, alpha 1;
Clubs 400, arcl1; Hoop 300, sigmoid, loss_align long; Ribbon 150, arcl1; Fis-V TES/PCS 200,
arcl1, alpha 0.5, 7 heads, hidden 448. ``rg`` gets Ball's settings, ``fisv`` Fis-V's; set the
others with ``--set``.

Official quirks (docs/methods.md): the fine head's attention is built sequence-first and fed
(B, N, H), so it attends across the *batch* (each query index over the programs of the batch);
``model.batch_attention=true`` reproduces it in training (at evaluation each program attends to
itself, as the official test batch of one does). The fine head's second layer is
``Linear(hidden, 100)`` after a 256-wide first layer, so any hidden width but 256 (the Fis-V
script's 448) crashes the official code; ours takes 256. The score's argmax runs over the whole
batch (harmless at the official test batch of 1); ours is per program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import RunConfig
from aqa.errors import ConfigError
from aqa.models.base import Method
from aqa.models.gdlt import (feature_batch, feature_recipe_extras, features_of,
                             keep_feature_recipe, official_optim)
from aqa.models.grades import (GradeTransformer, clip_contributions, diagonal_logits,
                               feature_projection, grade_mix, hardest_triplet_loss, project,
                               valid_rows)
from aqa.registry import METHODS

# model.grades -> (grade values, reversed-head values) for N queries; the official
# --activate_regular_restrictions 0, 1, 2, 3 (2 and 3 are defined for 4 queries only)
GRADES = {
    "linspace": lambda n: (torch.linspace(0, 1, n), torch.linspace(0, 1, n).flip(-1)),
    "linspace_skip0": lambda n: (torch.linspace(0, 1, n + 1)[1:], torch.linspace(0, 1, n + 1)[1:].flip(-1)),
    "sigmoid": lambda n: (torch.tensor([0.1, 0.2, 0.8, 1.0]), torch.tensor([1.0, 1.0, -1.0, -1.0])),
    "arcl1": lambda n: (torch.tensor([-1.0, -0.8, 0.8, 1.0]), torch.tensor([-1.0, -0.8, 0.8, 1.0]).flip(-1)),
}
ALIGN = ("grades", "short", "long")  # the official --loss_align 0, 1, 2


@dataclass
class CoFInAlConfig:
    in_dim: int = 1024  # feature dimension D of the dataset's clip features
    hidden_dim: int = 256  # width of the projected features, queries and transformer (Fis-V script: 448)
    n_head: int = 1  # attention heads of the transformer (not stored in a checkpoint's shapes; Fis-V script: 7)
    n_encoder: int = 1  # encoder layers over the clips
    n_decoder: int = 2  # decoder layers of the grade queries
    n_query: int = 4  # grade queries
    dropout: float = 0.3  # dropout in the transformer and the fine head's attention
    alpha: float = 1.0  # weight of the triplet loss on the decoded queries (Fis-V script: 0.5)
    margin: float = 1.0  # triplet margin (cosine distance)
    grades: str = "arcl1"  # grade values: linspace, linspace_skip0, sigmoid or arcl1 (official --activate_regular_restrictions 0-3)
    loss_align: str = "short"  # triplet labels: grades (query index), short (query index in -1..1), long (every decoded query its own label): official --loss_align 0-2
    revert: bool = True  # the reversed-grade head (CoFInAl); false: without it (the official GDLTETH2)
    fine_bins: int = 100  # classes of the fine part (the ETF's size): the 3rd and 4th decimals of score / 25
    fine_width: int = 256  # width of the fine head's hidden layer
    etf_seed: int = 0  # numpy seed of the ETF's random orthogonal basis (the official setup_seed(0))
    truncate_target: bool = False  # true: the target's decimals by float32 truncation of target x 10000, as the official code (0.692 -> fine class 19); false: rounded (20)
    batch_attention: bool = False  # true: the fine head's attention runs across the programs of a training batch, as the official code does
    score_scale: float = 25.0  # targets are score / score_scale; predictions are multiplied back
    attend_padding: bool = False  # true: zero-padded rows of short training windows are attended to and enter BatchNorm's statistics, as in the official code


def simplex_etf(n: int, seed: int) -> torch.Tensor:
    """(n, n) simplex equiangular tight frame: a random orthogonal basis (QR of a numpy
    ``RandomState(seed)`` uniform matrix, as the official code draws it after ``np.random.seed``)
    times (I - 1/n) sqrt(n / (n - 1)); column k is class k's target."""
    basis, _ = np.linalg.qr(np.random.RandomState(seed).random_sample((n, n)))
    basis = torch.tensor(basis).float()
    centre = torch.eye(n) - torch.mul(torch.ones(n, n), 1 / n)
    return torch.mul(torch.matmul(basis, centre), math.sqrt(n / (n - 1)))


def align_labels(kind: str, n: int, b: int, device) -> torch.Tensor:
    """Triplet labels of the B x N decoded queries (flattened program-major)."""
    if kind == "grades":
        return torch.arange(n, device=device).repeat(b)
    if kind == "short":
        return (torch.arange(-n // 2, n // 2, 1, device=device) / (n // 2)).repeat(b)
    m = n * b
    return torch.arange(-m // 2, m // 2, 1, device=device) / (m // 2)


def coarse_fine(target: torch.Tensor, truncate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Target (/25, float32) -> (coarse: its first two decimals, fine class: the next two).
    k = round(target x 10000); ``truncate``: int(target x 10000) in float32, as the official
    code (0.692 x 10000 = 6919.9995 gives coarse 0.69 and fine class 19, not 20)."""
    k = target * 10000
    k = k.long() if truncate else torch.round(k).long()
    return k // 100 / 100, k - k // 100 * 100


class CoFInAlModel(nn.Module):
    """Features (B, T, D) -> {"int", "int_revert" (B,), "dec" (B, fine_bins), "weights",
    "weights_revert" (B, N), "queries" (B, N, H), "attention" (B, N, T)}."""

    def __init__(self, m: CoFInAlConfig):
        super().__init__()
        self.in_proj = feature_projection(m.in_dim, m.hidden_dim)
        self.transformer = GradeTransformer(m.hidden_dim, m.n_head, m.n_encoder, m.n_decoder,
                                            m.dropout)
        self.prototype = nn.Embedding(m.n_query, m.hidden_dim)
        self.regressor = nn.Linear(m.hidden_dim, m.n_query)
        self.revert = m.revert
        if m.revert:
            self.regressor_revert = nn.Linear(m.hidden_dim, m.n_query)
        grades, grades_revert = GRADES[m.grades](m.n_query)
        self.register_buffer("grades", grades, persistent=False)
        self.register_buffer("grades_revert", grades_revert, persistent=False)
        self.register_buffer("etf_vec1", simplex_etf(m.fine_bins, m.etf_seed))
        # the fine head: attention over the queries, then two linear layers (official names)
        self.regi = nn.ModuleList([nn.MultiheadAttention(m.hidden_dim, 4, dropout=m.dropout)])
        self.regressori = nn.ModuleList([nn.Sequential(
            nn.Flatten(), nn.Linear(m.n_query * m.hidden_dim, m.fine_width),
            nn.Linear(m.fine_width, m.fine_bins))])
        self.in_dim, self.attend_padding = m.in_dim, m.attend_padding
        self.batch_attention = m.batch_attention

    def fine_attention(self, q: torch.Tensor) -> torch.Tensor:
        """(B, N, H) -> (B, N, H): the fine head's self-attention (sequence-first module)."""
        attn = self.regi[0]
        if not self.batch_attention:  # over the N queries of each program
            x = q.transpose(0, 1)  # (N, B, H)
            return attn(x, x, x)[0].transpose(0, 1)
        if self.training:  # official: over the B programs, for each query index
            return attn(q, q, q)[0]
        alone = ~torch.eye(q.shape[0], dtype=torch.bool, device=q.device)  # each program itself
        return attn(q, q, q, attn_mask=alone)[0]

    def forward(self, x: torch.Tensor, length: torch.Tensor | None = None) -> dict:
        b, t, d = x.shape
        if d != self.in_dim:
            raise ConfigError(f"the features have D = {d} but the model was built for "
                              f"model.in_dim={self.in_dim}; set model.in_dim={d}")
        valid = None if self.attend_padding else valid_rows(length, t)
        h = project(self.in_proj, x, valid)  # (B, T, H)
        q = self.prototype.weight.unsqueeze(0).repeat(b, 1, 1)  # (B, N, H)
        decoded, attention = self.transformer(h, q, valid)  # (B, N, H), (B, N, T)
        out = {"queries": decoded, "attention": attention}
        out["int"], out["weights"] = grade_mix(diagonal_logits(self.regressor, decoded), self.grades)
        if self.revert:
            out["int_revert"], out["weights_revert"] = grade_mix(
                diagonal_logits(self.regressor_revert, decoded), self.grades_revert)
        fine = self.regressori[0](self.fine_attention(decoded))  # (B, fine_bins)
        out["dec"] = fine / torch.norm(fine, p=2, dim=1, keepdim=True)
        return out

    def parts(self, out: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse (B,), fine class (B,)) of a forward's output, /25 units and 0..99."""
        coarse = (out["int"] + 1 - out["int_revert"]) / 2 if self.revert else out["int"]
        return coarse, torch.argmax(out["dec"] @ self.etf_vec1, dim=1)


@METHODS.register("cofinal")
class CoFInAl(Method):
    name = "cofinal"
    config_cls = CoFInAlConfig
    description = "CoFInAl: GDLT's grade queries with a coarse grade and a fine ETF class (long programs)"
    inputs = "features"  # reads batch["features"] (+ "length"), not video

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """scripts/train_all_rg.sh (Ball) for rg, train_all_fis.sh for fisv."""
        if cfg.dataset == "fisv":
            return replace(official_optim(cfg, 200), model=replace(
                cfg.model, alpha=0.5, n_head=7, hidden_dim=448, grades="arcl1"))
        return replace(official_optim(cfg, 250), model=replace(cfg.model, grades="sigmoid"))

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        if m.grades not in GRADES:
            raise ConfigError(f"model.grades={m.grades!r}: choose one of {', '.join(GRADES)}")
        if m.grades in ("sigmoid", "arcl1") and m.n_query != 4:
            raise ConfigError(f"model.grades={m.grades} has 4 values; set model.n_query=4 or "
                              "model.grades=linspace")
        if m.loss_align not in ALIGN:
            raise ConfigError(f"model.loss_align={m.loss_align!r}: choose one of {', '.join(ALIGN)}")
        if m.hidden_dim % m.n_head or m.hidden_dim % 4:
            raise ConfigError(f"model.hidden_dim={m.hidden_dim} must be divisible by "
                              f"model.n_head={m.n_head} and by 4 (the fine head's attention heads)")
        return CoFInAlModel(m)

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        return keep_feature_recipe(self, clips, split)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return feature_recipe_extras(self)

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        x, length = features_of(batch)
        m = self.cfg.model
        out = model(x, length)
        net = getattr(model, "module", model)
        coarse, fine = coarse_fine(batch["score"].float() / m.score_scale, m.truncate_target)
        terms = {"coarse": F.mse_loss(out["int"], coarse)}
        if m.revert:
            terms["coarse_revert"] = F.mse_loss(out["int_revert"], torch.ones_like(coarse) - coarse)
        terms["fine"] = F.l1_loss(out["dec"], net.etf_vec1[:, fine].t())
        b, n, h = out["queries"].shape
        terms["triplet"] = hardest_triplet_loss(out["queries"].reshape(-1, h),
                                                align_labels(m.loss_align, n, b, x.device), m.margin)
        loss = sum(v for k, v in terms.items() if k != "triplet") + m.alpha * terms["triplet"]
        return {"loss": loss, **terms}

    def _score(self, model: nn.Module, out: dict) -> torch.Tensor:
        coarse, fine = getattr(model, "module", model).parts(out)
        return (coarse + fine / 10000) * self.cfg.model.score_scale

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        x, length = features_of(batch)
        return self._score(model, model(x, length)).float()

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        x, length = features_of(batch)
        out = model(x, length)
        scale = self.cfg.model.score_scale
        coarse, fine = model.parts(out)
        w, g = out["weights"][0], model.grades
        if model.revert:  # coarse = (sum w g + 1 - sum w' g') / 2
            wr, gr = out["weights_revert"][0], model.grades_revert
            shares = (w * g - wr * gr) / 2 * scale
            constant = 0.5 * scale
        else:
            shares, constant = w * g * scale, 0.0
        fine_points = float(fine[0]) / 10000 * scale
        t = int(length[0]) if length is not None else x.shape[1]
        attention = out["attention"][0, :, :t]
        per_clip = clip_contributions(attention, shares) + (constant + fine_points) / t
        score = float((coarse[0] + fine[0] / 10000) * scale)
        return {"score": score,
                "contributions": {
                    "kind": "coarse_fine",
                    "grades": (g * scale).tolist(),
                    "grade_weights": w.tolist(),
                    "grade_shares": shares.tolist(),
                    "coarse": float(coarse[0]) * scale,
                    "fine_class": int(fine[0]),
                    "fine": fine_points,
                    "attention": attention.tolist(),
                    "per_clip": per_clip.tolist()},
                "notes": [f"coarse grade {float(coarse[0]) * scale:.2f} + fine class {int(fine[0])} "
                          f"({fine_points:.4f} pts)"]}

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        return feature_batch(self.cfg, batch_size, device)
