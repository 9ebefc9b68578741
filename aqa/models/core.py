"""CoRe: Group-aware Contrastive Regression (Yu et al., ICCV 2021). docs/methods.md, CoRe.

A query is scored *relative to exemplars* of the training split:

    video (B, C, 103, H, W) --10 clips of 16 frames at [0,10,...,80,86]--> I3D --> (10B, 1024)
        --mean over clips--> f (B, 1024)
    pair feature  [f_exemplar, f_query, s_exemplar / theta]               (B, 2049)
    regression tree: 16 leaves of score differences (group_tree), per leaf a log-probability
        and a regression r in the leaf;  d = left + (right - left) * r  at the argmax leaf
    score = mean over voters of (s_exemplar + d)  (x difficulty with DD: s is score / DD)

Training uses one same-difficulty exemplar a query and both directions of the pair; the loss is
NLL over the leaf of the true difference + the per-leaf MSE of r (docs/methods.md, CoRe).

Evaluation and scoring do not run the backbone on exemplars again: the training split's features
are computed once (``on_eval_start``) and saved in ``best.pt`` as the exemplar bank, so a clip is
scored with one backbone pass and no dataset on disk. With the same weights this gives the
official test loop's prediction (BatchNorm is in eval mode at test, so a video's feature does not
depend on what it is batched with).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import RunConfig
from aqa.data.base import Sample
from aqa.data.pairs import PairDataset
from aqa.data.sampling import CORE as CORE_PLAN
from aqa.errors import CheckpointError
from aqa.models import bank
from aqa.models.bank import bank_from, bank_pool  # noqa: F401  (their old home)
from aqa.models.base import Method, clip_features, set_bn_eval
from aqa.models.group_tree import decode, leaf_labels
from aqa.registry import BACKBONES, METHODS

CORE_STARTS = list(CORE_PLAN.starts)  # [0, 10, ..., 80, 86]


@dataclass
class CoReConfig:
    depth: int = 5  # regression tree depth: 2**(depth-1) = 16 leaves
    hidden: int = 256  # width of every tree node
    score_range: float = 30.0  # theta: top bin edge and exemplar-score divisor (30 with DD, 100 without)
    use_dd: bool = True  # regress completeness = score / difficulty, multiply back at the end
    exemplar_rule: str = "difficulty"  # exemplar groups: difficulty, dive_number, class or none
    voter_number: int = 10  # exemplars averaged per test query
    clip_len: int = 16  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(CORE_STARTS))  # clip starts in the window
    fix_bn: bool = True  # keep every BatchNorm in eval mode while training (the official default)
    edge_bug: bool = False  # reproduce the official label of |difference| >= score_range: leaf 0, no regression


class RegressTree(nn.Module):
    """CoRe's tree head (module names as the official ``RegressTree``, so its weights import)."""

    def __init__(self, in_dim: int, hidden: int, depth: int):
        super().__init__()
        self.depth = depth
        self.num_leaf = 2 ** (depth - 1)
        self.first_layer = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True))
        self.feature_layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(2**d * hidden, 2**d * 2 * hidden, 1, groups=2**d),
                          nn.ReLU(inplace=True)) for d in range(depth - 1))
        self.clf_layers = nn.ModuleList(
            nn.Conv1d(2**d * hidden, 2**d * 2, 1, groups=2**d) for d in range(depth - 1))
        self.reg_layer = nn.Conv1d(self.num_leaf * hidden, self.num_leaf, 1, groups=self.num_leaf)

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_dim) -> leaf log-probabilities (B, L) and per-leaf regressions (B, L)."""
        b = pair.shape[0]
        x = self.first_layer(pair).unsqueeze(-1)  # (B, hidden, 1)
        logp = None
        for clf, feat in zip(self.clf_layers, self.feature_layers):
            step = F.log_softmax(clf(x).view(b, -1, 2), dim=-1)  # (B, nodes, 2)
            if logp is not None:  # each node's parent log-probability, for both children
                step = step + logp.view(b, -1, 1).expand(b, -1, 2)
            logp = step
            x = feat(x)  # (B, 2*nodes*hidden, 1)
        return logp.reshape(b, -1), self.reg_layer(x).squeeze(-1)


class CoReModel(nn.Module):
    def __init__(self, backbone: nn.Module, cfg: CoReConfig, leaves: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        self.regressor = RegressTree(2 * backbone.out_dim + 1, cfg.hidden, cfg.depth)
        self.register_buffer("leaves", leaves.to(torch.float64))  # (L, 2), saved with the weights
        self.clip_starts, self.clip_len = list(cfg.clip_starts), cfg.clip_len

    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, D): the backbone on each clip, averaged over clips."""
        return clip_features(self.backbone, video, self.clip_starts, self.clip_len)

    def head(self, f_exemplar: torch.Tensor, f_query: torch.Tensor,
             s_exemplar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict s_query - s_exemplar: (B, D), (B, D), (B,) scaled score -> (B, L), (B, L)."""
        pair = torch.cat([f_exemplar, f_query, s_exemplar[:, None].to(f_query.dtype)], dim=1)
        return self.regressor(pair)

    def forward(self, video_q: torch.Tensor, video_e: torch.Tensor, s_q: torch.Tensor,
                s_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pairs in both directions (the query as the exemplar's exemplar, then the
        other way round), one backbone pass for both videos: -> (2B, L), (2B, L)."""
        b = video_q.shape[0]
        f = self.video_features(torch.cat([video_q, video_e]))  # (2B, D)
        f_q, f_e = f[:b], f[b:]
        return self.head(torch.cat([f_q, f_e]), torch.cat([f_e, f_q]), torch.cat([s_q, s_e]))


@METHODS.register("core")
class CoRe(Method):
    name = "core"
    config_cls = CoReConfig
    default_backbone = "i3d"
    sample_kind = "pair"
    description = "CoRe: group-aware contrastive regression against same-difficulty exemplars"

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        m = cfg.model
        bank.check_rule(m.exemplar_rule)
        self.leaves = torch.zeros(2 ** (m.depth - 1), 2, dtype=torch.float64)
        self._pool_clips = None  # the training split without augmentation (the bank's clips)
        self._bank: dict | None = None

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """The paper's MTL-AQA settings (docs/methods.md, CoRe): Adam 1e-3, backbone x0.1, 200 epochs,
        batch 1 with 2-step accumulation (gradients added, not averaged, as the official
        step_per_update), 103 frames at 224 px, and the official train transform's
        random horizontal flip (p = 0.5, the same for query and exemplar clips' frames)."""
        cfg = replace(cfg, optim=replace(cfg.optim, name="adam", lr=1e-3, backbone_lr_factor=0.1,
                                         weight_decay=0.0, accum_steps=2, accum_sum=True),
                      train=replace(cfg.train, epochs=200, batch_size=1),
                      data=replace(cfg.data, num_frames=103, frame_size=224, hflip=True))
        if cfg.dataset == "aqa7":  # configs/Seven_CoRe.yaml: one class a model, scores
            # normalised to 0..100 (score_range 100), exemplars of the class, no DD, batch 2
            cfg = replace(cfg, model=replace(cfg.model, score_range=100.0, use_dd=False,
                                             exemplar_rule="class"),
                          train=replace(cfg.train, batch_size=2))
        return cfg

    # ------------------------------------------------------------ targets
    def target(self, score: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
        """What the tree regresses: completeness score / DD with use_dd, else the score."""
        return bank.target(score, difficulty, self.cfg.model.use_dd)

    # ------------------------------------------------------------ data
    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        if split != "train":
            return clips
        m = self.cfg.model
        self.leaves = bank.training_leaves(train_clips.samples, m.exemplar_rule, m.use_dd,
                                           m.depth, m.score_range)
        return PairDataset(clips, m.exemplar_rule)

    def build_model(self) -> nn.Module:
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        return CoReModel(backbone, self.cfg.model, self.leaves)

    def set_train_mode(self, model: nn.Module) -> None:
        super().set_train_mode(model)  # train(); backbone BN in eval with backbone.freeze_bn
        if self.cfg.model.fix_bn:  # the official default: every BatchNorm, head included
            set_bn_eval(model)

    # ------------------------------------------------------------ training
    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        """A query batch plus one same-difficulty exemplar each (what PairDataset yields)."""
        batch = super().example_batch(batch_size, device)
        gen = torch.Generator().manual_seed(1)
        batch["exemplar_video"] = torch.randint(0, 256, tuple(batch["video"].shape), generator=gen,
                                                dtype=torch.uint8).to(device)
        batch["exemplar_score"] = (torch.rand(batch_size, generator=gen) * 100).to(device)
        batch["exemplar_difficulty"] = batch["difficulty"].clone()
        return batch

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        core = getattr(model, "module", model)  # the CoReModel behind a DDP wrapper
        b = batch["video"].shape[0]
        if self.cfg.model.use_dd and "completeness" in batch:  # divided in double (PairDataset)
            y_q, y_e = batch["completeness"], batch["exemplar_completeness"]
        else:
            y_q = self.target(batch["score"], batch["difficulty"])
            y_e = self.target(batch["exemplar_score"], batch["exemplar_difficulty"])
        theta = self.cfg.model.score_range
        logp, delta = model(batch["video"], batch["exemplar_video"], y_q / theta, y_e / theta)
        idx, r = leaf_labels(torch.cat([y_e - y_q, y_q - y_e]).detach().cpu(), core.leaves.cpu(),
                             edge_bug=self.cfg.model.edge_bug)
        idx, r = idx.to(logp.device), r.to(logp.device)
        nll = F.nll_loss(logp[:b].float(), idx[:b]) + F.nll_loss(logp[b:].float(), idx[b:])
        mse = logp.new_zeros((), dtype=torch.float32)
        for half in (slice(0, b), slice(b, 2 * b)):  # per direction, per leaf: mean over its pairs
            for leaf in range(delta.shape[1]):
                mask = (idx[half] == leaf) & (r[half] >= 0)
                if mask.any():
                    mse = mse + F.mse_loss(delta[half][mask, leaf].float(), r[half][mask])
        return {"loss": nll + mse, "nll": nll.detach(), "mse": mse.detach()}

    # ------------------------------------------------------------ evaluation and the bank
    def on_eval_start(self, model: nn.Module, device: torch.device) -> None:
        if self._pool_clips is None:
            self._pool_clips = bank.training_pool(self.cfg)
        self._bank = bank.build_bank(model, self._pool_clips, self.cfg.train.batch_size,
                                     self.cfg.data.num_workers, self.cfg.model.exemplar_rule, device)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return {"exemplar_bank": self._bank} if self._bank is not None else {}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        vote = lambda f, q, b: self._vote(model, f, q, b)  # noqa: E731
        if self._bank is None:
            raise RuntimeError("CoRe.predict needs on_eval_start to have built the exemplar bank")
        return bank.predict_batch(vote, model.video_features(batch["video"]), batch, self._bank)

    def _vote(self, model: nn.Module, f_q: torch.Tensor, query: Sample, bank_: dict) -> dict:
        """Score one query (1, D) against its voters from the bank."""
        m = self.cfg.model
        chosen, _, rows = bank.pick_voters(bank_, query, m.exemplar_rule, m.voter_number,
                                           seed=self.cfg.train.seed)
        f_e = bank_["features"][rows].to(f_q.device, f_q.dtype)  # (V, D)
        s_e = bank_["scores"][rows].to(f_q.device)
        d_e = bank_["difficulty"][rows].to(f_q.device)
        y_e = self.target(s_e, d_e)
        logp, delta = model.head(f_e, f_q.expand(len(rows), -1), y_e / m.score_range)
        diff = decode(logp.float(), delta.float(), model.leaves).to(f_q.device)  # (V,)
        per_voter = y_e + diff
        if m.use_dd:
            per_voter = per_voter * query.difficulty
        return {"score": float(per_voter.mean()), "per_voter": per_voter.tolist(),
                "exemplars": [{"id": s.id, "score": float(s.score), "difficulty": s.difficulty,
                               "difference": float(dv) * (query.difficulty if m.use_dd else 1.0)}
                              for s, dv in zip(chosen, diff.tolist())]}

    def _pair_difference(self, model: nn.Module, f_e: torch.Tensor, f_q: torch.Tensor,
                         y_e: float) -> float:
        """The tree on one pair (1, D), (1, D) with the exemplar's target: y_query - y_exemplar."""
        s_e = torch.tensor([y_e], device=f_e.device) / self.cfg.model.score_range
        logp, delta = model.head(f_e, f_q, s_e)
        return float(decode(logp.float(), delta.float(), model.leaves)[0])

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        return bank.score_clip_of(self, model, batch, state)

    def compare_clips(self, model: nn.Module, batch_a: dict, batch_b: dict,
                      state: dict | None = None) -> dict[str, Any]:
        """Each clip scored against the bank, then the tree on the pair itself, both orders
        (:func:`aqa.models.bank.head_to_head`); one backbone pass a clip."""
        return bank.compare_clips_of(self, model, batch_a, batch_b, state)


# ---------------------------------------------------------------------------------- official weights

def core_state(raw: dict, model: torch.nn.Module) -> tuple[dict, list[str]]:
    """Map an official CoRe checkpoint (``base_model`` + ``regressor``) or a bare I3D state dict
    (hassony2 ``model_rgb.pth``) onto our CoReModel's keys."""
    from aqa.models.official_files import check_fit, i3d_state_for, strip_module

    notes = []
    own = model.state_dict()
    if "base_model" in raw and "regressor" in raw:
        base = strip_module(raw["base_model"])
        mapped = {k if k.startswith("backbone.") else f"backbone.{k}": v for k, v in base.items()}
        mapped.update({f"regressor.{k}": v for k, v in strip_module(raw["regressor"]).items()})
    elif any(k.endswith("conv3d.weight") for k in raw):
        mapped = {f"backbone.{k}": v for k, v in i3d_state_for(model.backbone, raw, notes).items()}
        mapped.update({k: v for k, v in own.items() if k.startswith("regressor.")})
        notes.append("the file holds I3D weights only: the regression tree starts untrained")
    else:
        raise CheckpointError("not a CoRe checkpoint: expected 'base_model' and 'regressor' "
                              f"entries or an I3D state dict; found {sorted(raw)[:8]}")
    mapped["leaves"] = own["leaves"]  # bins come from the training split, not the file
    return check_fit(mapped, own, "CoRe"), notes
