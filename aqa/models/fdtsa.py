"""FineDiving TSA: procedure-aware action quality assessment with temporal segmentation
attention (Xu et al., CVPR 2022; official code xujinglin/FineDiving @a2b8057). Not TSA-Net
(``tsa``, tube self-attention): this method is ``fdtsa``.

A query is scored *relative to exemplars* of the training split, step by step (the network and
its pure parts are :mod:`aqa.models.fdtsa_net`):

    video (B, 3, 96, H, W) --9 clips of 16 frames at 0, 10, ..., 80--> I3D (hassony2)
        Mixed_5c map m (B, 9, 1024, 2, H', W')      feature f = avg-pool of m (B, 9, 1024)
    procedure segmentation (PSNet, a 1-D U-Net down path over the 1024 feature axis, the 9
        clips as channels): f -> u (B, 96, 64) and step-transition probabilities p (B, 96, 2);
        the time-averaged map, read as (B*H'*W', 9, 1024) rows (the official reshape, not a
        permute) -> u_map (B, 96, 64, H', W')
    transitions  t1 = argmax p[:48, 0],  t2 = 48 + argmax p[48:, 1]       (0 -> 1 for pooling)
    seg_pool     each of the 3 steps [0, t1), [t1, t2), [t2, 96) resampled to 5 positions
                 (linear, align_corners) -> q (B, 15, 64), maps (B, 15*H'*W', 64)
    cross-attention, step by step: decoder(q_query[step], maps_exemplar[step]) (B, 5, 64)
    delta = mean over the 15 positions of MLP(decoded)                         (B,)
    score = mean over voters of (s_exemplar + delta)

The 96 "positions" of u are PSNet's output channels, read as the 96 sampled frames: the
transition labels index them. Training (both directions of a pair): MSE of delta against
s_query - s_exemplar and s_exemplar - s_query, plus BCE of p against one-hot transition labels;
pooling uses the ground-truth transitions while epoch / epochs <= prob_tas_threshold, the
predicted ones after (official helper.py, ``network_forward_train``).

Evaluation does not run the backbone on exemplars again: on ``on_eval_start`` every training
dive's pooled PSNet map (15*H'*W' x 64 floats, its own predicted transitions applied: 61 KB at
112 px, 147 MB for FineDiving's 2,251 training dives) is computed once and saved in ``best.pt``
as the bank; the official test loop recomputes them for each of the 10 voters of every query.
With BatchNorm in eval mode the two give the same numbers. Only the query->exemplar direction
enters the test score (the official test computes the other direction and drops it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from aqa.config import RunConfig
from aqa.data.base import Sample
from aqa.data.pairs import PairDataset
from aqa.errors import ConfigError
from aqa.models import bank
from aqa.models.base import Method, set_bn_eval
from aqa.models.fdtsa_net import (  # noqa: F401  (the network, re-exported)
    TIOU_THRESHOLDS, DecoderFuser, FDTSAModel, MLP3, PSNet, feature_map, pooling_bounds,
    predicted_transits, seg_pool, segment_iou, tiou_rates,
)
from aqa.registry import BACKBONES, METHODS

RULES = ("dive_number", "difficulty")  # the two FineDiving protocols (with / without dive number)


@dataclass
class FDTSAConfig:
    exemplar_rule: str = "dive_number"  # exemplars by dive_number (the official test) or difficulty
    voter_number: int = 10  # exemplars averaged per test query (voter_number)
    clip_len: int = 16  # frames per backbone clip
    clip_starts: list[int] = field(default_factory=lambda: list(range(0, 90, 10)))  # PSNet's channels
    fix_size: int = 5  # positions each step is resampled to (seg_pool)
    step_num: int = 3  # steps of a dive cut by the two transitions (the code handles exactly 3)
    prob_tas_threshold: float = 0.25  # pool with the labels while (epoch-1)/epochs <= this
    decoder_heads: int = 8  # cross-attention heads (decoder_fuser num_heads)
    decoder_layers: int = 3  # cross-attention blocks (decoder_fuser num_layers)
    fix_bn: bool = True  # backbone BatchNorm in eval mode while training (official --fix_bn)
    label_offset: int = 1  # added to the dataset's transits (the official runner's "+ 1")
    both_protocols: bool = True  # also score test queries by the other rule (rho_<rule>, ...)


def network(backbone: nn.Module, m: FDTSAConfig, positions: int) -> FDTSAModel:
    """The FDTSAModel of config ``m`` (``positions``: the frames of a dive, ``data.num_frames``)."""
    if m.step_num != 3:
        raise ConfigError("model.step_num must be 3: two transitions cut a dive into three "
                          "steps (the official code is written for exactly that)")
    return FDTSAModel(backbone, m.clip_starts, m.clip_len, positions, m.fix_size,
                      m.decoder_heads, m.decoder_layers)


# ---------------------------------------------------------------------------------- method

@METHODS.register("fdtsa")
class FDTSA(Method):
    name = "fdtsa"
    config_cls = FDTSAConfig
    default_backbone = "i3d"
    sample_kind = "pair"
    required_keys = ("transits",)
    description = ("FineDiving TSA (temporal segmentation attention): procedure-aware "
                   "cross-attention against same-dive exemplars (CVPR 2022)")

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        if cfg.model.exemplar_rule not in RULES:
            raise ConfigError(f"model.exemplar_rule={cfg.model.exemplar_rule!r}: fdtsa's "
                              f"protocols are {', '.join(RULES)}")
        self._pool_clips = None
        self._bank: dict | None = None
        self._epoch = 1
        self._eval: dict[str, dict] = {}  # id -> predicted transitions, tIoU (this evaluation)
        self._meta: dict[str, dict] = {}  # id -> the query's dive number (its protocol's key)

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """FineDiving_TSA.yaml and tools/builder.py: Adam 1e-3 (backbone x0.1), no weight decay,
        200 epochs, batch 8, 96 frames; the clips through torch_videovision's Resize((200, 112))
        (112 wide x 200 tall, see docs/methods.md) and a 112 crop (random with a flip at train,
        centre at test); hassony2 I3D fed ImageNet-normalised clips. On a dataset other than
        finediving the exemplars default to the difficulty protocol (no dive numbers)."""
        data = replace(cfg.data, num_frames=96, frame_size=112, hflip=True)
        if hasattr(data, "pipeline"):
            data = replace(data, pipeline="tvv")
        if hasattr(data, "resize"):
            data = replace(data, resize=[200, 112])
        cfg = replace(cfg, optim=replace(cfg.optim, name="adam", lr=1e-3, backbone_lr_factor=0.1,
                                         weight_decay=0.0, schedule="none", accum_steps=1),
                      train=replace(cfg.train, epochs=200, batch_size=8), data=data)
        if hasattr(cfg.backbone, "input_norm"):
            cfg = replace(cfg, backbone=replace(cfg.backbone, family="hassony2",
                                                input_norm="imagenet"))
        if cfg.dataset != "finediving":  # other datasets' samples carry no dive number
            cfg = replace(cfg, model=replace(cfg.model, exemplar_rule="difficulty"))
        return cfg

    # ------------------------------------------------------------ data and model
    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        for s in clips.samples:  # dive numbers and ground-truth transitions by id (queries)
            self._meta_of(s)
        if split != "train":
            return clips
        return PairDataset(clips, self.cfg.model.exemplar_rule)

    def _meta_of(self, s: Sample) -> None:
        self._meta[s.id] = {k: s.meta[k] for k in ("dive_number",) if k in s.meta}

    def build_model(self) -> nn.Module:
        backbone = BACKBONES.get(self.cfg.backbone.name).build(self.cfg.backbone)
        if self.cfg.backbone.freeze:
            backbone.requires_grad_(False)
        return network(backbone, self.cfg.model, self.cfg.data.num_frames)

    def set_train_mode(self, model: nn.Module) -> None:
        super().set_train_mode(model)
        if self.cfg.model.fix_bn:  # official: base_model.apply(fix_bn), the backbone only
            set_bn_eval(getattr(model, "module", model).backbone)

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def uses_labels(self, epoch: int) -> bool:
        """Official ``epoch / max_epoch <= prob_tas_threshold`` with its 0-based epoch."""
        return (epoch - 1) / self.cfg.train.epochs <= self.cfg.model.prob_tas_threshold

    # ------------------------------------------------------------ training
    def labels(self, transits: torch.Tensor) -> torch.Tensor:
        return transits.float() + self.cfg.model.label_offset

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        batch = super().example_batch(batch_size, device)
        gen = torch.Generator().manual_seed(1)
        t = self.cfg.data.num_frames
        batch["exemplar_video"] = torch.randint(0, 256, tuple(batch["video"].shape), generator=gen,
                                                dtype=torch.uint8).to(device)
        batch["exemplar_score"] = (torch.rand(batch_size, generator=gen) * 100).to(device)
        batch["exemplar_difficulty"] = batch["difficulty"].clone()
        for key in ("transits", "exemplar_transits"):
            batch[key] = torch.tensor([[t // 3, 2 * t // 3]] * batch_size, dtype=torch.float32,
                                      device=device)
        return batch

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        b = batch["video"].shape[0]
        lab_q, lab_e = self.labels(batch["transits"]), self.labels(batch["exemplar_transits"])
        out = model(batch["video"], batch["exemplar_video"], lab_q, lab_e,
                    self.uses_labels(self._epoch))
        s_q, s_e = batch["score"].float(), batch["exemplar_score"].float()
        delta = out["delta"].float()
        mse = F.mse_loss(delta[:b], s_q - s_e) + F.mse_loss(delta[b:], s_e - s_q)
        prob = out["prob"].float()
        target = torch.zeros_like(prob)  # one-hot transitions: channel 0 the first, 1 the second
        rows = torch.arange(2 * b, device=prob.device)
        lab = torch.cat([lab_q, lab_e]).long()
        target[rows, lab[:, 0], 0] = 1
        target[rows, lab[:, -1], 1] = 1
        with torch.autocast(prob.device.type, enabled=False):  # BCE on probabilities: fp32 only
            bce = F.binary_cross_entropy(prob, target)
        return {"loss": mse + bce, "mse": mse.detach(), "bce": bce.detach()}

    # ------------------------------------------------------------ the bank
    def on_eval_start(self, model: nn.Module, device: torch.device) -> None:
        self._eval = {}
        if self._pool_clips is None:
            self._pool_clips = bank.training_pool(self.cfg)
        self._bank = build_bank(model, self._pool_clips, self.cfg.train.batch_size,
                                self.cfg.data.num_workers, device)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return {"exemplar_bank": self._bank} if self._bank is not None else {}

    # ------------------------------------------------------------ prediction
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        if self._bank is None:
            raise RuntimeError("FDTSA.predict needs on_eval_start to have built the exemplar bank")
        segs, _, pred = model.video_units(batch["video"])
        scores = []
        for i in range(segs.shape[0]):
            qid = str(batch["id"][i])
            meta = self._meta.get(qid, {})
            query = Sample(id=qid, video=Path(""), score=0.0,
                           difficulty=float(batch["difficulty"][i]), meta=meta)
            rule = self.cfg.model.exemplar_rule
            out = self._vote(model, segs[i:i + 1], query, self._bank, rule)
            row = {"transits": pred[i].tolist(), "true": float(batch["score"][i])}
            other = "difficulty" if rule == "dive_number" else "dive_number"
            if self.cfg.model.both_protocols and (other == "difficulty" or (
                    "dive_number" in meta and any(g is not None for g in self._bank["groups"]))):
                row[other] = self._vote(model, segs[i:i + 1], query, self._bank, other)["score"]
            if "transits" in batch:  # the official test's tIoU: labels vs predictions
                labels = self.labels(batch["transits"][i]).tolist()
                row["tiou"] = segment_iou(labels, pred[i].tolist())
            self._eval[qid] = row
            scores.append(out["score"])
        return torch.tensor(scores, device=segs.device)

    def _vote(self, model: nn.Module, segs: torch.Tensor, query: Sample, bank_: dict,
              rule: str) -> dict:
        """One query's pooled features (1, 3*fix, d) against its voters' maps from the bank."""
        chosen, _, rows = bank.pick_voters(bank_, query, rule, self.cfg.model.voter_number,
                                           seed=self.cfg.train.seed)
        maps = bank_["features"][rows].to(segs.device, segs.dtype)  # (V, 3*fix*H'W', d)
        delta = model.delta(segs.expand(len(rows), -1, -1), maps)  # (V,)
        s_e = bank_["scores"][rows].to(segs.device)
        per_voter = s_e + delta.float()
        return {"score": float(per_voter.mean()), "per_voter": per_voter.tolist(),
                "exemplars": [{"id": s.id, "score": float(s.score), "difficulty": s.difficulty,
                               "dive_number": g, "difference": float(dv)}
                              for s, g, dv in zip(chosen, [bank_["groups"][r] for r in rows],
                                                  delta.tolist())]}

    def eval_protocol(self) -> dict[str, Any]:
        m = self.cfg.model
        by = ("the query's ground-truth dive number (the official test)"
              if m.exemplar_rule == "dive_number"
              else "the query's difficulty, without its dive number")
        other = "difficulty" if m.exemplar_rule == "dive_number" else "dive_number"
        also = (f"; rho_{other}, l2_{other}, rl2_{other}: the same queries with exemplars by "
                f"{other.replace('_', ' ')}" if m.both_protocols else "")
        return {"summary": f"exemplars: {m.voter_number} training dives chosen by {by}; "
                           f"tIoU of the predicted step transitions per query{also}",
                "exemplars": m.exemplar_rule, "voters": m.voter_number,
                "other_protocol": other if m.both_protocols else None}

    def take_eval_extras(self) -> dict:
        out, self._eval = self._eval, {}
        return out

    def extra_metrics(self, extras: dict) -> dict[str, float]:
        """tIoU rates, and the other protocol's rho, l2, rl2 (suffixed with its rule)."""
        from aqa.metrics import regression_metrics

        rows = list(extras.values())
        tious = [r["tiou"] for r in rows if "tiou" in r]
        out = tiou_rates(tious) if tious else {}
        for other in RULES:
            if rows and all(other in r for r in rows):
                m = regression_metrics([r[other] for r in rows], [r["true"] for r in rows])
                out.update({f"{k}_{other}": v for k, v in m.items()})
        return out

    def score_clip(self, model: nn.Module, batch: dict,
                   state: dict | None = None) -> dict[str, Any]:
        """One clip against the bank: its predicted transitions (``transits``: positions in the
        frames the model saw), exemplars of the dive number given (``batch["dive_number"]``),
        else of its difficulty (given, else the training median), and a note saying which
        protocol scored it (``protocol``)."""
        bank_ = bank.require_bank(state, self.name)
        return self._score_units(model, model.video_units(batch["video"]), batch, bank_)

    def _score_units(self, model: nn.Module, units, batch: dict, bank_: dict) -> dict[str, Any]:
        segs, _, pred = units
        notes = []
        dive = batch.get("dive_number")
        if dive:
            rule, meta = "dive_number", {"dive_number": str(dive)}
            if str(dive) not in set(bank_["groups"]):
                notes.append(f"dive number {dive} is not in the training split: exemplars of "
                             "the whole pool were used")
        else:
            rule, meta = "difficulty", {}
            if self.cfg.model.exemplar_rule == "dive_number":
                notes.append("no dive number given: exemplars chosen by difficulty (the protocol "
                             "without dive number); give the dive number for the official one")
        difficulty = bank.assumed_difficulty(batch, bank_)
        if batch.get("difficulty_given") is None and rule == "difficulty":
            notes.append(f"no difficulty given: assumed the training split's median {difficulty:g}")
        query = Sample(id=str(batch["id"][0]), video=Path(""), score=0.0, difficulty=difficulty,
                       meta=meta)
        out = self._vote(model, segs[:1], query, bank_, rule)
        spread = torch.tensor(out["per_voter"]).std(unbiased=False).item()
        return {"score": out["score"], "exemplars": out["exemplars"], "spread": spread,
                "voters": list(out["per_voter"]), "notes": notes, "protocol": rule,
                "transits": pred[0].tolist()}

    def compare_clips(self, model: nn.Module, batch_a: dict, batch_b: dict,
                      state: dict | None = None) -> dict[str, Any]:
        """Each clip scored against the bank, then the pair head on the two clips themselves,
        both orders (B attending to A gives B - A, A attending to B gives A - B; the difference
        is their mean); one backbone pass a clip."""
        bank_ = bank.require_bank(state, self.name)
        units_a, units_b = model.video_units(batch_a["video"]), model.video_units(batch_b["video"])
        a = self._score_units(model, units_a, batch_a, bank_)
        b = self._score_units(model, units_b, batch_b, bank_)
        b_minus_a = float(model.delta(units_b[0][:1], units_a[1][:1])[0])
        a_minus_b = float(model.delta(units_a[0][:1], units_b[1][:1])[0])
        return {"score_a": a["score"], "score_b": b["score"],
                "difference": (b_minus_a - a_minus_b) / 2,
                "notes": a["notes"] + [n for n in b["notes"] if n not in a["notes"]]}


def build_bank(model: FDTSAModel, clips: Any, batch_size: int, num_workers: int,
               device: torch.device) -> dict:
    """Every training dive's pooled map (N, 3*fix*H'W', d) and predicted transitions (N, 2),
    grouped by dive number where the samples have one (difficulty is kept either way, so both
    protocols vote from the same bank)."""
    from aqa.data.base import collate

    loader = DataLoader(clips, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    maps, transits = [], []
    with torch.no_grad():
        for batch in loader:
            _, m, pred = model.video_units(batch["video"].to(device))
            maps.append(m.float().cpu())
            transits.append(pred.cpu())
    rule = "dive_number" if all("dive_number" in s.meta for s in clips.samples) else "difficulty"
    out = bank.bank_from(clips.samples, torch.cat(maps), rule)
    out["transits"] = torch.cat(transits)
    if rule == "difficulty":
        out["groups"] = [None] * len(out["ids"])
    return out
