"""The exemplar bank and voting shared by the pair methods (CoRe, TPT); docs/methods.md, CoRe and TPT.

A pair method scores a query *relative to exemplars* of the training split. At evaluation the
training split's features are computed once and kept as the **bank** (saved in ``best.pt``), so a
clip is scored with its own backbone pass and no dataset on disk:

    bank = {features (N, ...), ids [N], scores (N,), difficulty (N,), groups [N], rule}
    voters   = up to k exemplars of the query's group (same DD, dive number or class),
               the same every time for the same query id and seed
    score    = mean over voters of (y_exemplar + predicted difference)   (x DD with use_dd)

A method supplies two things: ``video_features`` on its model, and its ``_vote`` (features of one
query against the bank -> score, per-voter scores, exemplars) and ``_pair_difference`` (features of
an exemplar and a query and the exemplar's target -> predicted y_query - y_exemplar). Everything
else (building the bank, choosing voters, the query's assumed difficulty, head-to-head) is here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from aqa.data.base import Sample
from aqa.data.exemplars import KEYS, pool_by, pool_key
from aqa.data.pairs import voters
from aqa.errors import ConfigError

Vote = Callable[[torch.Tensor, Sample, dict], dict]  # (1, ...) query features, query, bank -> out


def check_rule(rule: str) -> None:
    if rule not in KEYS:
        raise ConfigError(f"model.exemplar_rule={rule!r} is not one of {', '.join(KEYS)}")


def target(score: torch.Tensor, difficulty: torch.Tensor, use_dd: bool) -> torch.Tensor:
    """What a pair method regresses: completeness = score / difficulty with DD, else the score."""
    return score / difficulty if use_dd else score


def training_leaves(samples: list[Sample], rule: str, use_dd: bool, depth: int,
                    score_range: float) -> torch.Tensor:
    """The group tree's leaves (L, 2) from the differences of same-group training pairs."""
    from aqa.models.group_tree import build_leaves, pair_differences

    targets = [s.score / s.difficulty if use_dd else s.score for s in samples]
    groups = [pool_key(s, rule) for s in samples]
    return build_leaves(pair_differences(targets, groups), depth, score_range)


# ---------------------------------------------------------------------------------- the bank

def bank_from(samples: list[Sample], features: torch.Tensor, rule: str) -> dict:
    """The exemplar bank: training-split features and what the pool needs (plain values only)."""
    return {"features": features.float(), "ids": [s.id for s in samples],
            "scores": torch.tensor([s.score for s in samples], dtype=torch.float32),
            "difficulty": torch.tensor([s.difficulty for s in samples], dtype=torch.float32),
            "groups": [None if rule in ("difficulty", "none") else str(pool_key(s, rule))
                       for s in samples], "rule": rule}


def bank_pool(bank: dict, rule: str):
    samples = [Sample(id=i, video=Path(""), score=float(s), difficulty=float(d),
                      meta={rule: g} if g is not None else {})
               for i, s, d, g in zip(bank["ids"], bank["scores"], bank["difficulty"],
                                     bank["groups"])]
    return pool_by(samples, rule)


def training_pool(cfg) -> Any:
    """The training split without augmentation: the clips the bank is computed from."""
    from aqa.registry import DATASETS

    return DATASETS.get(cfg.dataset).build(cfg.data, "train", train=False)


def build_bank(model: nn.Module, clips: Any, batch_size: int, num_workers: int, rule: str,
               device: torch.device) -> dict:
    """``model.video_features`` of every clip (no gradients), as a bank."""
    from aqa.data.base import collate

    loader = DataLoader(clips, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    feats = []
    with torch.no_grad():
        for batch in loader:
            feats.append(model.video_features(batch["video"].to(device)).float().cpu())
    return bank_from(clips.samples, torch.cat(feats), rule)


def require_bank(state: dict | None, method: str) -> dict:
    bank = (state or {}).get("exemplar_bank")
    if not bank:
        raise ConfigError(f"this {method} checkpoint has no exemplar bank: score with "
                          "best.pt, or import it with --dataset/--data-root so the training split is cached")
    return bank


# ---------------------------------------------------------------------------------- voting

def pick_voters(bank: dict, query: Sample, rule: str, k: int, seed: int,
                pad: bool = False) -> tuple[list[Sample], Any, list[int]]:
    """The query's voters from the bank: the chosen samples, their weights (k,) (1/n_real, 0 for
    padding) and their rows in the bank."""
    chosen, weights = voters(query, bank_pool(bank, rule), k, seed=seed, pad=pad)
    return chosen, weights, [bank["ids"].index(s.id) for s in chosen]


def predict_batch(vote: Vote, f_q: torch.Tensor, batch: dict, bank: dict) -> torch.Tensor:
    """(B,) scores of a batch whose features are ``f_q`` (B, ...), each query voted alone."""
    preds = []
    for i in range(f_q.shape[0]):
        query = Sample(id=str(batch["id"][i]), video=Path(""), score=0.0,
                       difficulty=float(batch["difficulty"][i]))
        preds.append(vote(f_q[i:i + 1], query, bank)["score"])
    return torch.tensor(preds, device=f_q.device)


def assumed_difficulty(batch: dict, bank: dict) -> float:
    """The difficulty the user gave, else the training split's median (what scoring assumes)."""
    given = batch.get("difficulty_given")
    return float(torch.median(bank["difficulty"])) if given is None else given


def score_features(vote: Vote, f_q: torch.Tensor, batch: dict, bank: dict,
                   needs_difficulty: bool) -> dict[str, Any]:
    """One clip's score from its features (1, ...): the vote, the voters' spread, notes."""
    notes = []
    difficulty = assumed_difficulty(batch, bank)
    if batch.get("difficulty_given") is None and needs_difficulty:
        notes.append(f"no difficulty given: assumed the training split's median "
                     f"{difficulty:g}; give the dive's difficulty for a faithful score")
    query = Sample(id=str(batch["id"][0]), video=Path(""), score=0.0, difficulty=difficulty)
    out = vote(f_q, query, bank)
    spread = torch.tensor(out["per_voter"]).std(unbiased=False).item() if out["per_voter"] else None
    dist = feature_distances(f_q, bank)
    if dist is not None:  # how far each voter's features are from the query's
        for e in out["exemplars"]:
            e["distance"] = float(dist[bank["ids"].index(e["id"])])
    return {"score": out["score"], "exemplars": out["exemplars"], "spread": spread,
            "voters": list(out["per_voter"]), "nearest": nearest_exemplars(dist, bank),
            "notes": notes}


def feature_distances(f_q: torch.Tensor, bank: dict) -> torch.Tensor | None:
    """(N,) Euclidean distance between the query's features (1, ...) and each bank entry's, or
    None where the bank holds features of another shape (FineDiving TSA's maps)."""
    feats = bank["features"]
    if tuple(feats.shape[1:]) != tuple(f_q.shape[1:]):
        return None
    return (feats.flatten(1) - f_q.detach().float().cpu().flatten(1)).norm(dim=1)


def nearest_exemplars(dist: torch.Tensor | None, bank: dict, k: int = 5) -> list[dict]:
    """The ``k`` training clips of the bank whose features are nearest the query's (any group):
    id, score, difficulty, distance, nearest first."""
    if dist is None or not len(dist):
        return []
    near = dist.topk(min(k, len(dist)), largest=False)
    return [{"id": bank["ids"][i], "score": float(bank["scores"][i]),
             "difficulty": float(bank["difficulty"][i]), "distance": float(d)}
            for d, i in zip(near.values.tolist(), near.indices.tolist())]


def head_to_head(pair_difference: Callable[[torch.Tensor, torch.Tensor, float], float],
                 f_a: torch.Tensor, f_b: torch.Tensor, a: dict, b: dict, dd_a: float,
                 dd_b: float) -> dict[str, Any]:
    """Two scored clips compared by the pair head itself, both orders: with A as the exemplar at
    its predicted score, the predicted B minus A; and the reverse; their mean is the difference.
    ``pair_difference(f_exemplar, f_query, y_exemplar)`` -> predicted y_query - y_exemplar."""
    y_a, y_b = a["score"] / dd_a, b["score"] / dd_b
    b_from_a = (y_a + pair_difference(f_a, f_b, y_a)) * dd_b
    a_from_b = (y_b + pair_difference(f_b, f_a, y_b)) * dd_a
    difference = ((b_from_a - a["score"]) + (b["score"] - a_from_b)) / 2
    return {"score_a": a["score"], "score_b": b["score"], "difference": difference,
            "notes": a["notes"] + [n for n in b["notes"] if n not in a["notes"]]}


def compare_clips(model: nn.Module, batch_a: dict, batch_b: dict, bank: dict, vote: Vote,
                  pair_difference: Callable[[torch.Tensor, torch.Tensor, float], float],
                  use_dd: bool, needs_difficulty: bool) -> dict[str, Any]:
    """Head-to-head of two clips: each clip's features computed once (one backbone pass a
    clip), scored against the bank, then compared by the pair head (:func:`head_to_head`)."""
    f_a = model.video_features(batch_a["video"])
    f_b = model.video_features(batch_b["video"])
    a = score_features(vote, f_a, batch_a, bank, needs_difficulty)
    b = score_features(vote, f_b, batch_b, bank, needs_difficulty)
    median = float(torch.median(bank["difficulty"]))  # as score_features assumes
    dd_a = (batch_a.get("difficulty_given") or median) if use_dd else 1.0
    dd_b = (batch_b.get("difficulty_given") or median) if use_dd else 1.0
    return head_to_head(pair_difference, f_a, f_b, a, b, dd_a, dd_b)


def needs_difficulty(model_cfg) -> bool:
    """Whether a score rests on the query's difficulty (DD regression or DD exemplar groups)."""
    return model_cfg.use_dd or model_cfg.exemplar_rule == "difficulty"


def score_clip_of(method, model: nn.Module, batch: dict, state: dict | None) -> dict[str, Any]:
    """``Method.score_clip`` of a bank method (CoRe, TPT): its ``_vote`` on the clip's features."""
    bank = require_bank(state, method.name)
    return score_features(lambda f, q, b: method._vote(model, f, q, b),
                          model.video_features(batch["video"]), batch, bank,
                          needs_difficulty(method.cfg.model))


def compare_clips_of(method, model: nn.Module, batch_a: dict, batch_b: dict,
                     state: dict | None) -> dict[str, Any]:
    """``Method.compare_clips`` of a bank method: its ``_vote`` and ``_pair_difference``."""
    bank = require_bank(state, method.name)
    return compare_clips(model, batch_a, batch_b, bank,
                         lambda f, q, b: method._vote(model, f, q, b),
                         lambda f_e, f_q, y_e: method._pair_difference(model, f_e, f_q, y_e),
                         method.cfg.model.use_dd, needs_difficulty(method.cfg.model))
