"""TPT: Temporal Parsing Transformer (Bai et al., ECCV 2022); docs/methods.md, TPT.

A pair method like CoRe, but the video is parsed into K ordered parts before the pair is compared:

    video (B, C, 103, H, W) --20 clips of 8 frames at 0,5,...,95--> I3D --> (20B, 1024)
        --per clip, spatially pooled--> clip features f (B, 20, 1024)
    action decoder (2 layers): K learnable queries attend over the 20 clips,
        A = softmax_over_T(K Q^T / d / tau)  (B, 20, K),  tau learnable (init 0.07);
        parts (B, K, d); self-attention over the K parts in the first layer only
    pair encoder: MLP(2d -> d -> d) on [parts_exemplar, parts_query] per part, mean over K  (B, d)
    cls: a flat 16-way leaf classifier (log_softmax);  reg: a sigmoid per leaf in [0, 1]
    score = weighted mean over voters of (s_exemplar + d)  (x DD on MTL-AQA: s is score / DD)

Loss (docs/methods.md, TPT) = NLL of both directions + per-leaf masked MSE + the temporal ranking hinge
on the attention centres of each decoder layer + 0.05 x their spread ("sparsity").

Evaluation (5.3): 10 voters of the query's DD, padded from the nearest DDs with weight 0. The
exemplar bank in ``best.pt`` holds the per-clip backbone features (N, 20, 1024) of the training
split, so a query costs its own 20 clip passes instead of the official 20 x 11.

Module names are the official ones (``action_decoder``, ``pair_encoder``, ``cls``, ``reg``,
``backbone``), so an official checkpoint's ``model`` and ``backbone`` dicts map by
:data:`OFFICIAL_PREFIXES` (see :func:`official_state_dict`).
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
from aqa.data.sampling import TPT as TPT_PLAN
from aqa.errors import CheckpointError, ConfigError
from aqa.models import bank
from aqa.models.base import Method, count_parameters, set_bn_eval
from aqa.models.group_tree import decode, leaf_labels
from aqa.registry import BACKBONES, METHODS

OFFICIAL_LR = 1e-4  # the official script's hard-coded base lr (self.lr = 0.0001)
OFFICIAL_HEAD_LR = 1e-3  # and its cls/reg heads' lr


@dataclass
class TPTConfig:
    d_model: int = 512  # width of the decoder queries and parts (README run: 512; official opt default 1024)
    d_ffn: int = 512  # hidden width of the decoder's feed-forward block
    num_queries: int = 5  # K learnable part queries (official num_cluster)
    num_heads: int = 8  # heads of the first layer's self-attention over the parts
    dropout: float = 0.1  # dropout in the decoder and the pair encoder
    temperature: float = 0.07  # initial value of the learnable attention temperature tau
    margin: float = 3.2  # ranking-hinge margin between consecutive attention centres (README: 3.2; opt default 20)
    hinge_loss: bool = True  # add the temporal ranking hinge and the sparsity term to the loss
    multi_hinge: bool = True  # apply them to every decoder layer (false: the first layer only)
    sparsity_weight: float = 0.05  # weight of the attention spread ("sparsity") term
    depth: int = 5  # group tree depth: 2**(depth-1) = 16 leaves
    score_range: float = 30.0  # top bin edge (30 for MTL-AQA completeness, 100 for AQA-7)
    use_dd: bool = True  # regress completeness = score / difficulty, multiply back at the end
    exemplar_rule: str = "difficulty"  # exemplar groups: difficulty, dive_number, class or none
    voter_number: int = 10  # exemplars per test query
    pad_voters: bool = True  # pad a short voter list from the nearest groups with weight 0 (official)
    clip_len: int = 8  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(TPT_PLAN.starts))  # clip starts in the window
    fix_bn: bool = True  # keep every BatchNorm in eval mode while training (official fix_bn)
    edge_bug: bool = False  # reproduce the official label of |difference| >= score_range: leaf 0, no regression
    head_lr_factor: float = 10.0  # cls/reg heads' lr = optim.lr x this (official: 1e-3 vs 1e-4)
    official_lr: bool = False  # reproduce the official bug: ignore optim.lr, use 1e-4 (heads 1e-3)
    official_resume: bool = False  # reproduce the official bug: resume never finds its file, restarts at epoch 1
    official_eval_schedule: bool = False  # evaluate only on the official epochs (41, 81, 121, every 10th from 150, every 3rd after 180)


# ---------------------------------------------------------------------------------- modules

class ActionDecoderLayer(nn.Module):
    """Cross-attention of the part queries over the clips (1/d/tau scaled, softmax over time),
    a feed-forward block, and (first layer only) self-attention among the parts."""

    def __init__(self, in_dim: int, d_model: int, d_ffn: int, first: bool, heads: int = 8,
                 dropout: float = 0.1, temperature: float = 0.07):
        super().__init__()
        self.temp = nn.Parameter(torch.tensor(float(temperature)))
        self.key_embed = nn.Linear(in_dim, d_model)
        self.value_embed = nn.Linear(in_dim, d_model)
        self.query_embed = nn.Linear(d_model, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.linear1, self.linear2 = nn.Linear(d_model, d_ffn), nn.Linear(d_ffn, d_model)
        self.isfirst = first
        if first:
            self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout)
            self.norm3 = nn.LayerNorm(d_model)
            self.dropout4 = nn.Dropout(dropout)

    def forward(self, memory: torch.Tensor, tgt: torch.Tensor,
                pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, T, in_dim), tgt and pos (B, K, d) -> tgt (B, K, d), attention (B, T, K)."""
        key = self.key_embed(memory)  # (B, T, d)
        value = self.value_embed(memory)  # (B, T, d)
        query = self.query_embed(tgt + pos)  # (B, K, d)
        logits = key @ query.transpose(-1, -2) / key.shape[-1] / self.temp  # (B, T, K)
        att = F.softmax(logits.float(), dim=1).to(value.dtype)  # over time; fp32 under AMP
        tgt = self.norm1(tgt + self.dropout1(att.transpose(-1, -2) @ value))  # (B, K, d)
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(tgt))))  # (B, K, d)
        tgt = self.norm2(tgt + self.dropout3(ffn))
        if self.isfirst:
            q = (tgt + pos).transpose(0, 1)  # (K, B, d): sequence first, as nn.MultiheadAttention
            out = self.self_attn(q, q, tgt.transpose(0, 1))[0].transpose(0, 1)  # (B, K, d)
            tgt = self.norm3(tgt + self.dropout4(out))
        return tgt, att


class ActionDecoder(nn.Module):
    """K learnable queries, two layers; returns parts (B, K, d) and both layers' attention maps
    concatenated on time (B, 2T, K)."""

    def __init__(self, in_dim: int, num_queries: int, d_model: int, d_ffn: int, heads: int = 8,
                 dropout: float = 0.1, temperature: float = 0.07):
        super().__init__()
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.layers = nn.ModuleList(
            ActionDecoderLayer(in_dim, d_model, d_ffn, first, heads, dropout, temperature)
            for first in (True, False))
        for p in self.parameters():  # the official init: xavier on every matrix
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = memory.shape[0]
        pos = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1)  # (B, K, d)
        tgt = torch.zeros_like(pos)
        atts = []
        for layer in self.layers:
            tgt, att = layer(memory, tgt, pos)
            atts.append(att)
        return tgt, torch.cat(atts, dim=1)  # (B, K, d), (B, 2T, K)


class PairEncoder(nn.Module):
    def __init__(self, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(d_model, d_model))

    def forward(self, parts_e: torch.Tensor, parts_q: torch.Tensor) -> torch.Tensor:
        """(B, K, d) exemplar and query parts -> (B, d), mean over the parts."""
        return self.mlp(torch.cat([parts_e, parts_q], dim=-1)).mean(1)


class TPTModel(nn.Module):
    """The backbone and the official ``PairModel`` parts at the top level (official key names)."""

    def __init__(self, backbone: nn.Module, cfg: TPTConfig, leaves: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        d, n_leaf = cfg.d_model, 2 ** (cfg.depth - 1)
        self.action_decoder = ActionDecoder(backbone.out_dim, cfg.num_queries, d, cfg.d_ffn,
                                            cfg.num_heads, cfg.dropout, cfg.temperature)
        self.pair_encoder = PairEncoder(d, cfg.dropout)
        self.cls = nn.Sequential(nn.Linear(d, 128), nn.ReLU(inplace=True), nn.Linear(128, n_leaf))
        self.reg = nn.Sequential(nn.Linear(d, 128), nn.ReLU(inplace=True), nn.Linear(128, n_leaf),
                                 nn.Sigmoid())
        self.register_buffer("leaves", leaves.to(torch.float64))  # (L, 2), saved with the weights
        self.clip_starts, self.clip_len = list(cfg.clip_starts), cfg.clip_len

    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, N, D): the backbone once on each of the N clips, all clips in
        one batch; I3D's forward pools Mixed_5c over (1, 7, 7) for 8-frame clips, as TPT does."""
        b, t = video.shape[0], video.shape[2]
        if max(self.clip_starts) + self.clip_len > t:
            need = max(self.clip_starts) + self.clip_len
            raise ConfigError(f"model.clip_starts/clip_len need {need} frames but clips have "
                              f"{t}; set data.num_frames accordingly")
        pack = torch.stack([video[:, :, s:s + self.clip_len] for s in self.clip_starts], 1)
        pack = pack.flatten(0, 1)  # (B*N, C, L, H, W), sample-major as the official view(-1, ...)
        return self.backbone(pack).reshape(b, len(self.clip_starts), -1)  # (B, N, D)

    def compare(self, parts_e: torch.Tensor,
                parts_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parts (B, K, d) of exemplar and query -> leaf log-probs (B, L), sigmoid regs (B, L)
        predicting s_query - s_exemplar."""
        pair = self.pair_encoder(parts_e, parts_q)  # (B, d)
        return F.log_softmax(self.cls(pair).float(), dim=-1), self.reg(pair)

    def head(self, f_e: torch.Tensor, f_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip features (V, N, D) of exemplars and (V or 1, N, D) of the query -> (V, L), (V, L);
        TPT does not see the exemplar's score."""
        parts_e, _ = self.action_decoder(f_e)
        parts_q, _ = self.action_decoder(f_q)  # decoded once, broadcast over the voters
        return self.compare(parts_e, parts_q.expand(parts_e.shape[0], -1, -1))

    def forward(self, video_q: torch.Tensor, video_e: torch.Tensor):
        """Training: one backbone pass for both videos, both directions of the pair.
        -> leaf log-probs (2B, L), regs (2B, L), attention (2B, 2T, K); rows [:B] predict
        s_e - s_q (the official first half), rows [B:] s_q - s_e."""
        b = video_q.shape[0]
        f = self.video_features(torch.cat([video_q, video_e]))  # (2B, N, D)
        return self.forward_features(f[:b], f[b:])

    def forward_features(self, f_q: torch.Tensor, f_e: torch.Tensor):
        parts_q, att_q = self.action_decoder(f_q)
        parts_e, att_e = self.action_decoder(f_e)
        logp, reg = self.compare(torch.cat([parts_q, parts_e]), torch.cat([parts_e, parts_q]))
        return logp, reg, torch.cat([att_q, att_e])


# ---------------------------------------------------------------------------------- losses

def attention_centres(att: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention (B, T, K), normalised over T -> centres mu (B, K) with t = 1..T, and the spread
    sum_t |t - mu_k| A[t, k] (B, K)."""
    t = torch.arange(1, att.shape[1] + 1, device=att.device, dtype=torch.float32)[None, :, None]
    att = att.float()
    mu = (att * t).sum(1)  # (B, K)
    return mu, ((t - mu[:, None, :]).abs() * att).sum(1)


def ranking_loss(att: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """TPT's temporal ranking hinge on one layer's attention (B, T, K) and its spread (mean):
    sum_k max(0, m - (mu_{k+1} - mu_k)) + max(0, m - (mu_1 - 1)) + max(0, m - (T - mu_K)),
    each term averaged over the batch (MarginRankingLoss with y = 1)."""
    mu, spread = attention_centres(att)
    hinge = lambda a, b: F.relu(margin - (a - b)).mean()  # noqa: E731  a should exceed b by m
    loss = sum(hinge(mu[:, k + 1], mu[:, k]) for k in range(mu.shape[1] - 1))
    loss = loss + hinge(mu[:, 0], torch.ones_like(mu[:, 0]))
    loss = loss + hinge(torch.full_like(mu[:, -1], float(att.shape[1])), mu[:, -1])
    return loss, spread.mean()


def leaf_mse(reg: torch.Tensor, idx: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Per leaf, the MSE of its regression over the pairs whose difference falls in it; summed."""
    out = reg.new_zeros((), dtype=torch.float32)
    for leaf in range(reg.shape[1]):
        mask = (idx == leaf) & (r >= 0)
        if mask.any():
            out = out + F.mse_loss(reg[mask, leaf].float(), r[mask])
    return out


# ---------------------------------------------------------------------------------- method

@METHODS.register("tpt")
class TPT(Method):
    """A pair method like CoRe, sharing its parts as modules: bins from same-group training pairs
    (:func:`aqa.models.bank.training_leaves`), one same-group exemplar a query
    (:class:`PairDataset`), the bank of the training split's per-clip features, scoring and
    head-to-head (:mod:`aqa.models.bank`); the model, the loss, the optimizer groups and the
    weighted, padded voting are TPT's."""

    name = "tpt"
    config_cls = TPTConfig
    default_backbone = "i3d"
    sample_kind = "pair"
    description = "TPT: temporal parsing transformer, part-wise contrastive regression (ECCV 2022)"

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """The README command (docs/methods.md, TPT): Adam 1e-4 (heads 1e-3), no weight decay, 250
        epochs, batch 3, seed 12, 103 frames at 224, the training clips flipped at random
        (``get_video_trans``: RandomHorizontalFlip before the resize and random crop); hassony2
        I3D fed ImageNet-normalised clips.
        AQA-7: one class a model, exemplars of the same class, Max 100, no DD."""
        cfg = replace(cfg, optim=replace(cfg.optim, name="adam", lr=OFFICIAL_LR,
                                         backbone_lr_factor=1.0, weight_decay=0.0,
                                         schedule="none", accum_steps=1),
                      train=replace(cfg.train, epochs=250, batch_size=3, seed=12),
                      data=replace(cfg.data, num_frames=103, frame_size=224, hflip=True))
        if hasattr(cfg.backbone, "input_norm"):
            cfg = replace(cfg, backbone=replace(cfg.backbone, family="hassony2",
                                                input_norm="imagenet"))
        if cfg.dataset == "aqa7":
            cfg = replace(cfg, model=replace(cfg.model, score_range=100.0, use_dd=False,
                                             exemplar_rule="class"))
        return cfg

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        m = cfg.model
        bank.check_rule(m.exemplar_rule)
        self.leaves = torch.zeros(2 ** (m.depth - 1), 2, dtype=torch.float64)
        self._pool_clips = None  # the training split without augmentation (the bank's clips)
        self._bank: dict | None = None

    def target(self, score: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
        """What the tree regresses: completeness score / DD with use_dd, else the score."""
        return bank.target(score, difficulty, self.cfg.model.use_dd)

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
        return TPTModel(backbone, self.cfg.model, self.leaves)

    def set_train_mode(self, model: nn.Module) -> None:
        super().set_train_mode(model)  # train(); backbone BN in eval with backbone.freeze_bn
        if self.cfg.model.fix_bn:  # the official fix_bn: every BatchNorm
            set_bn_eval(model)

    # ------------------------------------------------------------ optimizer and loop hooks
    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Official groups: backbone, decoder and pair encoder at the base lr; cls and reg at
        base x head_lr_factor; no weight decay. ``official_lr`` pins the base to 1e-4."""
        m, o = self.cfg.model, self.cfg.optim
        base = OFFICIAL_LR if m.official_lr else o.lr
        head = OFFICIAL_HEAD_LR if m.official_lr else o.lr * m.head_lr_factor
        back = 1.0 if m.official_lr else o.backbone_lr_factor
        parts = [("backbone", model.backbone, base * back),
                 ("action_decoder", model.action_decoder, base),
                 ("pair_encoder", model.pair_encoder, base),
                 ("cls", model.cls, head), ("reg", model.reg, head)]
        return [{"params": [p for p in mod.parameters() if p.requires_grad], "lr": lr, "name": name}
                for name, mod, lr in parts if any(p.requires_grad for p in mod.parameters())]

    def should_evaluate(self, epoch: int) -> bool:
        if not self.cfg.model.official_eval_schedule:
            return super().should_evaluate(epoch)
        return official_eval_epoch(epoch) or epoch == self.cfg.train.epochs

    def resumable(self) -> bool:
        return not self.cfg.model.official_resume

    # ------------------------------------------------------------ training
    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        tpt = getattr(model, "module", model)  # the TPTModel behind a DDP wrapper
        m = self.cfg.model
        b = batch["video"].shape[0]
        y_q = self.target(batch["score"], batch["difficulty"])
        y_e = self.target(batch["exemplar_score"], batch["exemplar_difficulty"])
        logp, reg, att = model(batch["video"], batch["exemplar_video"])
        idx, r = leaf_labels(torch.cat([y_e - y_q, y_q - y_e]).detach().cpu(), tpt.leaves.cpu(),
                             edge_bug=m.edge_bug)
        idx, r = idx.to(logp.device), r.to(logp.device)
        nll = F.nll_loss(logp[:b], idx[:b]) + F.nll_loss(logp[b:], idx[b:])
        mse = leaf_mse(reg[:b], idx[:b], r[:b]) + leaf_mse(reg[b:], idx[b:], r[b:])
        out = {"nll": nll.detach(), "mse": mse.detach()}
        loss = nll + mse
        if m.hinge_loss:
            t = att.shape[1] // 2
            layers = (att[:, :t], att[:, t:]) if m.multi_hinge else (att[:, :t],)
            hinge = sparsity = logp.new_zeros(())
            for a in layers:
                h, s = ranking_loss(a, m.margin)
                hinge, sparsity = hinge + h, sparsity + s
            loss = loss + hinge + m.sparsity_weight * sparsity
            out.update(hinge=hinge.detach(), sparsity=sparsity.detach())
        return {"loss": loss, **out}

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        batch = super().example_batch(batch_size, device)
        gen = torch.Generator().manual_seed(1)
        batch["exemplar_video"] = torch.randint(0, 256, tuple(batch["video"].shape), generator=gen,
                                                dtype=torch.uint8).to(device)
        batch["exemplar_score"] = (batch["score"].flip(0) * 0.9).to(device)
        batch["exemplar_difficulty"] = batch["difficulty"].clone()
        return batch

    def module_sizes(self, model: nn.Module) -> dict[str, int]:
        parts = {name: count_parameters(getattr(model, name))
                 for name in ("backbone", "action_decoder", "pair_encoder")}
        parts["heads"] = count_parameters(model.cls) + count_parameters(model.reg)
        total = count_parameters(model)
        return {**parts, "head": total - parts["backbone"],
                "trainable": count_parameters(model, trainable_only=True), "total": total}

    # ------------------------------------------------------------ evaluation
    def on_eval_start(self, model: nn.Module, device: torch.device) -> None:
        """The bank: per-clip features (N, 20, D) of the training split."""
        if self._pool_clips is None:
            self._pool_clips = bank.training_pool(self.cfg)
        self._bank = bank.build_bank(model, self._pool_clips, self.cfg.train.batch_size,
                                     self.cfg.data.num_workers, self.cfg.model.exemplar_rule, device)
        self._voter_stats = {"queries": 0, "voters": 0, "padded": 0, "padded_queries": 0}

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return {"exemplar_bank": self._bank} if self._bank is not None else {}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        vote = lambda f, q, b: self._vote(model, f, q, b)  # noqa: E731
        if self._bank is None:
            raise RuntimeError("TPT.predict needs on_eval_start to have built the exemplar bank")
        return bank.predict_batch(vote, model.video_features(batch["video"]), batch, self._bank)

    def _pair_difference(self, model: nn.Module, f_e: torch.Tensor, f_q: torch.Tensor,
                         y_e: float) -> float:
        """The heads on one pair of clip features (1, N, D): y_query - y_exemplar (TPT does not
        see the exemplar's score)."""
        logp, reg = model.head(f_e, f_q)
        return float(decode(logp.float(), reg.float(), model.leaves)[0])

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        return bank.score_clip_of(self, model, batch, state)

    def compare_clips(self, model: nn.Module, batch_a: dict, batch_b: dict,
                      state: dict | None = None) -> dict[str, Any]:
        """Each clip scored against the bank, then the heads on the pair itself, both orders
        (:func:`aqa.models.bank.head_to_head`); one backbone pass a clip."""
        return bank.compare_clips_of(self, model, batch_a, batch_b, state)

    def eval_protocol(self) -> dict[str, Any]:
        """What ``aqa eval`` reports beside the metrics: the voting of docs/methods.md, TPT."""
        m, st = self.cfg.model, dict(getattr(self, "_voter_stats", {}))
        summary = (f"{m.voter_number} voters a query from its {m.exemplar_rule} group"
                   + (", padded from the nearest groups with weight 0" if m.pad_voters else "")
                   + "; weighted mean")
        if st.get("queries"):
            summary += (f"; {st['queries']} queries, {st['padded_queries']} padded "
                        f"({st['padded']} of {st['voters']} voters at weight 0)")
        return {"voter_number": m.voter_number, "pad_voters": m.pad_voters, **st,
                "summary": summary}

    def _vote(self, model: nn.Module, f_q: torch.Tensor, query: Sample, bank_: dict) -> dict:
        """Score one query (1, N, D) against its voters' bank features (V, N, D): the query's
        group, padded to voter_number from the nearest groups with weight 0 (docs/methods.md, TPT)."""
        m = self.cfg.model
        chosen, weights, rows = bank.pick_voters(bank_, query, m.exemplar_rule, m.voter_number,
                                                 seed=self.cfg.train.seed, pad=m.pad_voters)
        f_e = bank_["features"][rows].to(f_q.device, f_q.dtype)  # (V, N, D)
        if f_e.dim() != 3 or f_e.shape[1:] != f_q.shape[1:]:
            raise CheckpointError(f"the exemplar bank holds features of shape {tuple(f_e.shape[1:])} "
                                  f"but the model makes {tuple(f_q.shape[1:])}: it was saved by "
                                  "another method or clip plan; evaluate the run again to rebuild it")
        y_e = self.target(bank_["scores"][rows], bank_["difficulty"][rows]).to(f_q.device)
        logp, reg = model.head(f_e, f_q)
        diff = decode(logp.float(), reg.float(), model.leaves).to(f_q.device)  # (V,)
        leaf = logp.argmax(dim=1)  # (V,) the chosen leaf, and its regression delta in [0, 1]
        delta = reg.gather(1, leaf[:, None]).squeeze(1).float()
        scale = query.difficulty if m.use_dd else 1.0
        per_voter = (y_e + diff) * scale
        w = torch.as_tensor(weights, device=f_q.device)
        real = w > 0
        st = getattr(self, "_voter_stats", None)
        if st is not None:
            n_pad = int((~real).sum())
            st["queries"] += 1
            st["voters"] += len(rows)
            st["padded"] += n_pad
            st["padded_queries"] += int(n_pad > 0)
        return {"score": float((per_voter * w).sum()), "per_voter": per_voter[real].tolist(),
                "exemplars": [{"id": s.id, "score": float(s.score), "difficulty": s.difficulty,
                               "difference": float(dv) * scale, "weight": float(wv),
                               "leaf": int(lf), "delta": float(dl)}
                              for s, dv, wv, lf, dl in zip(chosen, diff.tolist(), weights.tolist(),
                                                           leaf.tolist(), delta.tolist())]}


def official_eval_epoch(epoch: int) -> bool:
    """The official schedule on 1-based epochs (its loop is 0-based: e = epoch0 + 1)."""
    if epoch < 150:
        return epoch > 1 and (epoch - 1) % 40 == 0
    return epoch % 10 == 0 or (epoch > 180 and epoch % 3 == 0)


# ---------------------------------------------------------------------------------- official weights

OFFICIAL_PREFIXES = {"model": "", "backbone": ""}  # official checkpoint entry -> our key prefix


def official_state_dict(raw: dict, leaves: torch.Tensor) -> dict[str, torch.Tensor]:
    """An official TPT checkpoint ``{'model': PairModel state, 'backbone': I3D_backbone state,
    ...}`` (DDP ``module.`` prefixes allowed) -> a state dict for :class:`TPTModel`. The official
    names are ours (``action_decoder.layers.0.temp``, ``backbone.conv3d_1a_7x7.conv3d.weight``),
    so the table only strips DDP prefixes; the bins are not in the official file and come from
    the training split (``leaves``)."""
    out: dict[str, torch.Tensor] = {}
    for entry, prefix in OFFICIAL_PREFIXES.items():
        part = raw.get(entry)
        if not isinstance(part, dict):
            raise CheckpointError(f"not an official TPT checkpoint: no {entry!r} state dict "
                                  "(expected the keys 'model' and 'backbone')")
        for key, value in part.items():
            key = key[len("module."):] if key.startswith("module.") else key
            out[prefix + key] = value
    out["leaves"] = leaves.to(torch.float64)
    return out


def is_official_tpt(raw: dict) -> bool:
    """An official TPT training checkpoint: ``model`` (the PairModel, with its action decoder)
    and ``backbone`` (the I3D) state dicts."""
    model = raw.get("model")
    return (isinstance(model, dict) and isinstance(raw.get("backbone"), dict)
            and any("action_decoder." in k for k in model))


def tpt_state(raw: dict, model: torch.nn.Module) -> tuple[dict, list[str]]:
    """Map an official TPT checkpoint onto our TPTModel's keys (the names are the official ones;
    DDP prefixes are stripped), checking every key and shape."""
    from aqa.models.official_files import check_fit

    own = model.state_dict()
    mapped = official_state_dict(raw, own["leaves"])  # bins come from the training split
    hint = ("; the official README run has d_model=512, d_ffn=512, num_cluster=5 (pass others "
            "with --set)")
    return check_fit(mapped, own, "TPT with this config", hint), []
