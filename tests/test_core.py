"""CoRe: the tree's shapes and parameters, its bins on the real MTL-AQA files, labels at the
bin edges, training, and the exemplar bank giving the official test loop's prediction."""

import pickle
from pathlib import Path

import pytest
import torch

from aqa.config import build_run_config
from aqa.models.base import count_parameters
from aqa.models.core import CoRe, CoReModel, RegressTree
from aqa.models.group_tree import build_leaves, decode, leaf_labels, pair_differences
from conftest import SHARED_DATA, shared_clip

TINY = ["backbone.name=tiny3d", "model.clip_starts=0,4", "model.clip_len=4", "data.num_frames=8",
        "data.frame_size=32", "train.batch_size=2", "model.voter_number=3"]


def test_regressor_parameter_count_and_shapes():
    tree = RegressTree(2049, 256, 5)
    assert count_parameters(tree) == 2_510_382
    logp, delta = tree(torch.randn(3, 2049))
    assert logp.shape == delta.shape == (3, 16)
    assert torch.allclose(logp.exp().sum(1), torch.ones(3), atol=1e-5)  # 16 leaves, one distribution


def test_leaf_order_follows_the_official_parent_expansion():
    tree = RegressTree(5, 4, 3)  # 4 leaves: node 0 -> (a, b); a -> (leaf 0, 1), b -> (leaf 2, 3)
    with torch.no_grad():
        for p in tree.parameters():
            p.zero_()
        tree.clf_layers[0].bias[:] = torch.tensor([0.0, 10.0])    # root prefers b
        tree.clf_layers[1].bias[:] = torch.tensor([0.0, 0.0, 10.0, 0.0])  # b prefers its first
    logp, _ = tree(torch.zeros(1, 5))
    assert logp.argmax(1).item() == 2


def mtl_completeness():
    info = SHARED_DATA / "MTL-AQA"
    if not (info / "train_split_0.pkl").exists():
        pytest.skip(f"real MTL-AQA annotations not at {info}")
    from aqa.safe_pickle import safe_load
    ann = safe_load(info / "final_annotations_dict_with_dive_number.pkl")
    train = pickle.loads((info / "train_split_0.pkl").read_bytes())
    return ([ann[k]["final_score"] / ann[k]["difficulty"] for k in train],
            [ann[k]["difficulty"] for k in train], [ann[k]["final_score"] for k in train])


def test_bins_on_the_real_mtl_aqa_training_split():
    completeness, dd, final = mtl_completeness()
    diffs = pair_differences(completeness, dd)
    assert len(diffs) == 67_562
    leaves = build_leaves(diffs, depth=5, max_value=30)
    positive = [(round(l, 4), round(r, 4)) for l, r in leaves[8:].tolist()]
    assert positive == [(0.0, 0.9118), (0.9118, 1.5), (1.5, 2.5), (2.5, 3.0), (3.0, 4.5),
                        (4.5, 6.0), (6.0, 8.5), (8.5, 30.0)]
    assert leaves[:8].tolist() == [[-r, -l] for l, r in reversed(leaves[8:].tolist())]
    no_dd = build_leaves(pair_differences(final, [0] * len(final)), depth=5, max_value=100)
    assert [round(r, 2) for _, r in no_dd[8:].tolist()] == [3.6, 7.35, 11.2, 15.7, 20.8, 27.2,
                                                           36.3, 100.0]


LEAVES = build_leaves([0.5, 1, 2, 3, 4, 5, 6, 7, 8], depth=3, max_value=10)  # 4 leaves


def test_leaves_from_a_small_list():
    # positive half: [0, D[int(0.5*8)] = 4), [4, 10); negative mirrors it
    assert LEAVES.tolist() == [[-10, -4], [-4, 0], [0, 4], [4, 10]]


@pytest.mark.parametrize("delta, leaf, r", [
    (0.0, 2, 0.0),       # zero belongs to the first positive leaf
    (2.0, 2, 0.5),
    (4.0, 3, 0.0),       # a left edge opens the next leaf
    (9.0, 3, 5 / 6),
    (-4.0, 0, 1.0),      # negative: left < d <= right, so -4 is the top of (-10, -4]
    (-2.0, 1, 0.5),
    (-10.0, 0, 0.0),
])
def test_labels_on_bin_edges(delta, leaf, r):
    idx, rr = leaf_labels(torch.tensor([delta]), LEAVES)
    assert (idx.item(), round(rr.item(), 6)) == (leaf, round(r, 6))


def test_out_of_range_differences_fixed_and_official_bug():
    idx, r = leaf_labels(torch.tensor([10.0, 12.0, -12.0]), LEAVES)
    assert idx.tolist() == [3, 3, 0] and r.tolist() == [1.0, 1.0, 0.0]
    idx, r = leaf_labels(torch.tensor([10.0, 12.0, -12.0]), LEAVES, edge_bug=True)
    assert idx.tolist() == [0, 0, 0] and r.tolist() == [-1.0, -1.0, -1.0]


def test_decode_inverts_the_label():
    deltas = torch.tensor([-7.0, -1.0, 0.5, 6.0])
    idx, r = leaf_labels(deltas, LEAVES)
    logp = torch.full((4, 4), -10.0).scatter(1, idx[:, None], 0.0)
    reg = torch.zeros(4, 4).scatter(1, idx[:, None], r[:, None])
    assert torch.allclose(decode(logp, reg, LEAVES), deltas)


def tiny_core(synthetic_root, extra=()):
    cfg = build_run_config("core", "synthetic", overrides=TINY + [
        f"data.root={synthetic_root}", "data.num_clips=24", *extra])
    from aqa.registry import DATASETS
    entry = DATASETS.get("synthetic")
    clips = entry.build(cfg.data, "train", train=False)
    method = CoRe(cfg)
    pairs = method.wrap_dataset(clips, "train", clips)
    torch.manual_seed(0)
    model = method.build_model().eval()
    return method, model, pairs, clips


def test_losses_backpropagate(synthetic_root):
    method, model, pairs, _ = tiny_core(synthetic_root)
    model.train()
    from aqa.evaluate import collate
    batch = collate([pairs[0], pairs[1]])
    losses = method.losses(model, batch)
    losses["loss"].backward()
    assert set(losses) == {"loss", "nll", "mse"} and torch.isfinite(losses["loss"])
    assert model.regressor.first_layer[0].weight.grad is not None
    # the regressed completeness is divided in double precision, as the official loaders do
    s = pairs.samples[0]
    assert batch["completeness"][0].item() == torch.tensor(s.score / s.difficulty).float().item()


def test_bank_prediction_equals_running_the_backbone_on_every_exemplar(synthetic_root):
    """The official test loop runs query and exemplar through the backbone for each voter."""
    method, model, _, clips = tiny_core(synthetic_root)
    method.on_eval_start(model, torch.device("cpu"))
    item = clips[3]
    batch = {"video": item["video"][None], "difficulty": item["difficulty"][None],
             "id": ["query-x"], "score": item["score"][None]}
    with torch.no_grad():
        fast = method.predict(model, batch).item()
        out = method._vote(model, model.video_features(batch["video"]),
                           _sample("query-x", float(item["difficulty"])), method._bank)
        total = 0.0
        for ex in out["exemplars"]:
            j = [s.id for s in clips.samples].index(ex["id"])
            ev = clips[j]
            f = model.video_features(torch.cat([ev["video"][None], batch["video"]]))  # official pack
            y_e = method.target(ev["score"][None], ev["difficulty"][None])
            logp, delta = model.head(f[:1], f[1:], y_e / method.cfg.model.score_range)
            total += float((y_e + decode(logp, delta, model.leaves)) * item["difficulty"])
        official = total / len(out["exemplars"])
    assert fast == pytest.approx(official, rel=1e-5)
    assert len(out["exemplars"]) == 3


def _sample(i, d):
    from aqa.data.base import Sample
    return Sample(id=i, video=Path(""), score=0.0, difficulty=d)


@pytest.mark.slow
def test_core_trains_and_scores_from_its_bank(runs_dir, synthetic_root):
    from aqa.jobs import local
    from aqa.scoring import Scorer
    from conftest import wait_for
    path = local.submit(runs_dir, "core", "synthetic", overrides=TINY + [
        f"data.root={synthetic_root}", "data.num_clips=24", "train.epochs=2",
        "optim.accum_steps=1", "train.log_every=2"])
    wait_for(lambda: local.run_status(path) in ("finished", "failed", "crashed"), timeout=300)
    assert local.run_status(path) == "finished", (path / "stdout.log").read_text()[-2000:]
    state = torch.load(path / "checkpoints" / "best.pt", weights_only=True)
    bank = state["exemplar_bank"]
    assert bank["features"].shape == (18, 64) and len(bank["ids"]) == 18
    result = Scorer.from_checkpoint(path / "checkpoints" / "best.pt").score(shared_clip(),
                                                                            difficulty=2.8)
    assert len(result.exemplars) == 3 and result.spread is not None
    assert all({"id", "score", "difference"} <= set(e) for e in result.exemplars)
    no_dd = Scorer.from_checkpoint(path / "checkpoints" / "best.pt").score(shared_clip())
    assert "no difficulty given" in no_dd.notes[-1]
    # head to head: each clip against the bank, and the pair head on the two clips
    scorer = Scorer.from_checkpoint(path / "checkpoints" / "best.pt")
    a, b = synthetic_root / "clips" / "dive_0001.mp4", synthetic_root / "clips" / "dive_0002.mp4"
    verdict = scorer.compare(a, b, 2.8, 2.8)
    assert verdict["score_a"] == pytest.approx(scorer.score(a, difficulty=2.8).score)
    assert verdict["better"] == ("B" if verdict["difference"] > 0 else "A")
    assert verdict["summary"].startswith(f"{verdict['better']} is better by")
    same = scorer.compare(a, a, 2.8, 2.8)
    assert abs(same["difference"]) < abs(same["score_a"]) * 0.5  # a clip against itself: small


def test_core_model_loads_official_regressor_keys():
    tree = RegressTree(2049, 256, 5)
    keys = list(tree.state_dict())
    assert keys[:2] == ["first_layer.0.weight", "first_layer.0.bias"]
    assert "feature_layers.3.0.weight" in keys and "clf_layers.3.weight" in keys
    assert keys[-2:] == ["reg_layer.weight", "reg_layer.bias"]
    assert CoReModel  # imported for the registry


def test_a_leaf_whose_edge_passes_the_maximum_is_sorted_as_the_official_one():
    """Group_helper sorts every leaf: with a training difference past Max as the last left
    edge, the last leaf is [Max, d], not [d, Max]."""
    from aqa.models.group_tree import build_leaves
    leaves = build_leaves([1.0, 35.0, 40.0, 45.0], depth=3, max_value=30.0)
    # Group_helper([1, 35, 40, 45], 3, Max=30, Min=0).Group of the official code (f7881a9)
    assert leaves.tolist() == [[-35.0, -30.0], [-35.0, 0.0], [0.0, 35.0], [30.0, 35.0]]
