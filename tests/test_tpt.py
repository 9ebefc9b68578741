"""TPT: parameter count, shapes, the ranking/sparsity loss on a literal attention table, loading
an official-layout state dict, padded voters, training + ``aqa eval``, and scoring that runs
the backbone on the query's 20 clips only."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import build_run_config
from aqa.data.base import Sample
from aqa.models.base import count_parameters
from aqa.models.core import bank_from
from aqa.models.tpt import (TPT, TPTConfig, TPTModel, attention_centres, official_eval_epoch,
                            official_state_dict, ranking_loss)

LEAVES = torch.tensor([[-30, -4], [-4, 0], [0, 4], [4, 30]], dtype=torch.float64).repeat_interleave(4, 0)
# 20 clips of 4 frames at 0..19 in a 24-frame window: TPT's clip count on a CPU-sized input
TINY = ["backbone.name=tiny3d", "model.clip_len=4", "model.clip_starts=" + ",".join(map(str, range(20))),
        "data.num_frames=24", "data.frame_size=32", "train.batch_size=2", "model.voter_number=4",
        "model.d_model=32", "model.d_ffn=32", "model.num_heads=4"]


class Stub(nn.Module):
    """A stand-in backbone: (N, C, L, H, W) -> (N, out_dim), the mean colour repeated."""

    def __init__(self, out_dim=1024):
        super().__init__()
        self.out_dim = out_dim

    def forward(self, x):
        return x.float().mean(dim=(2, 3, 4)).repeat(1, self.out_dim // x.shape[1] + 1)[:, :self.out_dim]


def official_pair_model_shapes(d=512, ffn=512, k=5, feat=1024, leaves=16):
    """The official PairModel's keys and shapes, written from its layer.py/model.py."""
    shapes = {"action_decoder.query_embed.weight": (k, d)}
    for i in (0, 1):
        p = f"action_decoder.layers.{i}."
        shapes |= {p + "temp": (), p + "key_embed.weight": (d, feat), p + "key_embed.bias": (d,),
                   p + "value_embed.weight": (d, feat), p + "value_embed.bias": (d,),
                   p + "query_embed.weight": (d, d), p + "query_embed.bias": (d,),
                   p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "norm2.weight": (d,),
                   p + "norm2.bias": (d,), p + "linear1.weight": (ffn, d), p + "linear1.bias": (ffn,),
                   p + "linear2.weight": (d, ffn), p + "linear2.bias": (d,)}
    p = "action_decoder.layers.0."
    shapes |= {p + "self_attn.in_proj_weight": (3 * d, d), p + "self_attn.in_proj_bias": (3 * d,),
               p + "self_attn.out_proj.weight": (d, d), p + "self_attn.out_proj.bias": (d,),
               p + "norm3.weight": (d,), p + "norm3.bias": (d,),
               "pair_encoder.mlp.0.weight": (d, 2 * d), "pair_encoder.mlp.0.bias": (d,),
               "pair_encoder.mlp.3.weight": (d, d), "pair_encoder.mlp.3.bias": (d,)}
    for head in ("cls", "reg"):
        shapes |= {f"{head}.0.weight": (128, d), f"{head}.0.bias": (128,),
                   f"{head}.2.weight": (leaves, 128), f"{head}.2.bias": (leaves,)}
    return shapes


def test_head_parameter_count_at_d512():
    model = TPTModel(Stub(), TPTConfig(), LEAVES)
    assert count_parameters(model) == 5_656_354  # everything but the (parameter-free) stub I3D
    official = official_pair_model_shapes()
    assert sum(torch.Size(s).numel() for s in official.values()) == 5_656_354
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "leaves"}
    assert ours == official


def test_module_sizes_split_the_model():
    cfg = build_run_config("tpt", "synthetic", overrides=TINY)
    method = TPT(cfg)
    sizes = method.module_sizes(method.build_model())
    assert sizes["backbone"] + sizes["action_decoder"] + sizes["pair_encoder"] + sizes["heads"] \
        == sizes["total"] == sizes["trainable"]
    assert sizes["head"] == sizes["total"] - sizes["backbone"]


def test_forward_shapes_and_ranges():
    torch.manual_seed(0)
    model = TPTModel(Stub(64), TPTConfig(d_model=32, d_ffn=16, num_heads=4,
                                         clip_starts=list(range(0, 20)), clip_len=4), LEAVES)
    video_q = torch.randint(0, 256, (3, 3, 24, 8, 8), dtype=torch.uint8)
    f = model.video_features(video_q)
    assert f.shape == (3, 20, 64)  # (B, clips, D)
    logp, reg, att = model(video_q, video_q.flip(0))
    assert logp.shape == reg.shape == (6, 16) and att.shape == (6, 40, 5)  # 2B, leaves; 2T, K
    assert torch.allclose(logp.exp().sum(1), torch.ones(6), atol=1e-5)  # flat 16-way softmax
    assert ((reg > 0) & (reg < 1)).all()  # sigmoid per leaf
    assert torch.allclose(att.sum(1), torch.full((6, 5), 2.0), atol=1e-5)  # each layer over time
    with pytest.raises(Exception, match="data.num_frames"):
        model.video_features(video_q[:, :, :20])


def test_cross_attention_is_scaled_by_d_and_the_temperature():
    torch.manual_seed(1)
    model = TPTModel(Stub(64), TPTConfig(d_model=32, d_ffn=16, num_heads=4), LEAVES).eval()
    layer = model.action_decoder.layers[1]
    with torch.no_grad():
        layer.temp.fill_(0.5)
    mem, tgt, pos = torch.randn(2, 7, 64), torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    _, att = layer(mem, tgt, pos)
    key, query = layer.key_embed(mem), layer.query_embed(tgt + pos)
    expected = torch.softmax(key @ query.transpose(1, 2) / 32 / 0.5, dim=1)
    assert torch.allclose(att, expected, atol=1e-6)
    assert not hasattr(layer, "self_attn") and hasattr(model.action_decoder.layers[0], "self_attn")


# Literal attention table, T = 4 clips (rows), K = 2 queries (columns)
TABLE = torch.tensor([[[0.50, 0.00],
                       [0.50, 0.00],
                       [0.00, 0.25],
                       [0.00, 0.75]]])


def test_centres_and_ranking_loss_by_hand():
    mu, spread = attention_centres(TABLE)
    # mu_0 = 1*.5 + 2*.5 = 1.5; mu_1 = 3*.25 + 4*.75 = 3.75
    # spread_0 = .5*.5 + .5*.5 = 0.5; spread_1 = .75*.25 + .25*.75 = 0.375
    assert mu.tolist() == [[1.5, 3.75]] and spread.tolist() == [[0.5, 0.375]]
    loss, sparsity = ranking_loss(TABLE, margin=1.0)
    # max(0, 1-(3.75-1.5)) = 0; first: max(0, 1-(1.5-1)) = 0.5; last: max(0, 1-(4-3.75)) = 0.75
    assert loss.item() == pytest.approx(1.25) and sparsity.item() == pytest.approx(0.4375)
    loss, _ = ranking_loss(TABLE, margin=3.2)  # README margin: 0.95 + 2.7 + 2.95
    assert loss.item() == pytest.approx(6.6)
    swapped = TABLE.flip(2)  # the queries out of order: the pair term fires
    loss, _ = ranking_loss(torch.cat([TABLE, swapped]), margin=1.0)
    # swapped: mu = (3.75, 1.5): pair max(0, 1-(1.5-3.75)) = 3.25, first 0, last max(0, 1-2.5) = 0
    # batch mean per term: pair (0 + 3.25)/2, first (0.5 + 0)/2, last (0.75 + 0)/2
    assert loss.item() == pytest.approx((3.25 + 0.5 + 0.75) / 2)


def test_total_loss_adds_hinge_and_sparsity_of_both_layers(monkeypatch):
    cfg = build_run_config("tpt", "synthetic", overrides=TINY)
    method = TPT(cfg)
    method.leaves = LEAVES
    torch.manual_seed(0)
    model = method.build_model()
    method.set_train_mode(model)
    batch = method.example_batch(2)
    torch.manual_seed(5)
    out = method.losses(model, batch)
    assert set(out) == {"loss", "nll", "mse", "hinge", "sparsity"}
    expected = out["nll"] + out["mse"] + out["hinge"] + 0.05 * out["sparsity"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    assert model.action_decoder.layers[0].temp.grad is not None  # tau is learned
    assert all(m.training is False for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    one = TPT(build_run_config("tpt", "synthetic", overrides=TINY + ["model.multi_hinge=false"]))
    one.leaves = LEAVES
    torch.manual_seed(5)
    single = one.losses(model, batch)
    assert single["hinge"].item() < out["hinge"].item()  # one layer's hinge, not two


def test_optimizer_groups_and_the_official_lr_quirk():
    cfg = build_run_config("tpt", "synthetic", overrides=TINY + ["optim.lr=2e-4"])
    method = TPT(cfg)
    groups = {g["name"]: g["lr"] for g in method.param_groups(method.build_model())}
    assert groups == {"backbone": 2e-4, "action_decoder": 2e-4, "pair_encoder": 2e-4,
                      "cls": 2e-3, "reg": 2e-3}
    quirk = TPT(build_run_config("tpt", "synthetic", overrides=TINY + ["optim.lr=2e-4",
                                                                       "model.official_lr=true"]))
    groups = {g["name"]: g["lr"] for g in quirk.param_groups(quirk.build_model())}
    assert groups == {"backbone": 1e-4, "action_decoder": 1e-4, "pair_encoder": 1e-4,
                      "cls": 1e-3, "reg": 1e-3}


def test_readme_defaults():
    cfg = build_run_config("tpt", "mtl_aqa")
    m = cfg.model
    assert (m.d_model, m.d_ffn, m.num_queries, m.margin, m.hinge_loss, m.multi_hinge) == \
        (512, 512, 5, 3.2, True, True)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == (250, 3, 12)
    assert (cfg.data.num_frames, cfg.data.frame_size, cfg.optim.lr, cfg.optim.weight_decay) == \
        (103, 224, 1e-4, 0.0)
    assert (cfg.backbone.family, cfg.backbone.input_norm) == ("hassony2", "imagenet")
    assert cfg.data.hflip and cfg.data.pipeline == "tvv"  # the official train transform flips
    assert m.clip_starts == list(range(0, 100, 5)) and m.clip_len == 8
    seven = build_run_config("tpt", "aqa7").model
    assert (seven.score_range, seven.use_dd, seven.exemplar_rule) == (100.0, False, "class")


def test_official_eval_schedule():
    chosen = [e for e in range(1, 251) if official_eval_epoch(e)]
    assert chosen[:5] == [41, 81, 121, 150, 160]
    assert chosen[5:9] == [170, 180, 183, 186] and chosen[-2:] == [249, 250]
    cfg = build_run_config("tpt", "synthetic", overrides=TINY + ["train.epochs=50",
                                                                 "model.official_eval_schedule=true"])
    assert [e for e in range(1, 51) if TPT(cfg).should_evaluate(e)] == [41, 50]  # + the last
    assert TPT(cfg).resumable()
    broken = build_run_config("tpt", "synthetic", overrides=TINY + ["model.official_resume=true"])
    assert not TPT(broken).resumable()


def _reference_forward(sd, f_q, f_e, d, heads):
    """The official PairModel forward (eval mode), written from layer.py/model.py with the raw
    state dict: pair_encoder(exemplar parts, query parts) -> cls log-probs, sigmoid reg."""
    def lin(x, p):
        return F.linear(x, sd[p + ".weight"], sd[p + ".bias"])

    def norm(x, p):
        return F.layer_norm(x, (d,), sd[p + ".weight"], sd[p + ".bias"])

    def decoder(mem):
        pos = sd["action_decoder.query_embed.weight"][None].repeat(mem.shape[0], 1, 1)
        tgt = torch.zeros_like(pos)
        for i in (0, 1):
            p = f"action_decoder.layers.{i}"
            key, value = lin(mem, p + ".key_embed"), lin(mem, p + ".value_embed")
            query = lin(tgt + pos, p + ".query_embed")
            adj = torch.softmax(key @ query.transpose(-1, -2) / key.shape[-1] / sd[p + ".temp"], 1)
            tgt = norm(tgt + adj.transpose(-1, -2) @ value, p + ".norm1")
            tgt = norm(tgt + lin(torch.relu(lin(tgt, p + ".linear1")), p + ".linear2"), p + ".norm2")
            if i == 0:
                q = (tgt + pos).permute(1, 0, 2)
                out = F.multi_head_attention_forward(
                    q, q, tgt.permute(1, 0, 2), d, heads, sd[p + ".self_attn.in_proj_weight"],
                    sd[p + ".self_attn.in_proj_bias"], None, None, False, 0.0,
                    sd[p + ".self_attn.out_proj.weight"], sd[p + ".self_attn.out_proj.bias"],
                    training=False, need_weights=False)[0]
                tgt = norm(tgt + out.permute(1, 0, 2), p + ".norm3")
        return tgt

    x1, x2 = decoder(f_q), decoder(f_e)
    pair = lin(torch.relu(lin(torch.cat([x2, x1], -1), "pair_encoder.mlp.0")), "pair_encoder.mlp.3")
    pair = pair.mean(1)
    cls = lin(torch.relu(lin(pair, "cls.0")), "cls.2")
    reg = torch.sigmoid(lin(torch.relu(lin(pair, "reg.0")), "reg.2"))
    return F.log_softmax(cls, -1), reg


def test_loads_an_official_layout_state_dict_and_gives_its_outputs():
    from aqa.models.i3d import I3D

    gen = torch.Generator().manual_seed(3)
    pair = {"module." + k: torch.randn(s, generator=gen) * 0.05
            for k, s in official_pair_model_shapes().items()}  # DDP-saved, random weights
    for i in (0, 1):
        pair[f"module.action_decoder.layers.{i}.temp"] = torch.tensor(0.07 + 0.01 * i)
    i3d = I3D("hassony2")
    backbone = {"module.backbone." + k: (torch.randn(v.shape, generator=gen) if v.is_floating_point()
                                         else v.clone()) for k, v in i3d.state_dict().items()}
    official = {"model": pair, "backbone": backbone, "epoch": 7, "optimizer": {}}
    model = TPTModel(i3d, TPTConfig(), LEAVES).eval()
    model.load_state_dict(official_state_dict(official, LEAVES))  # strict: every key maps
    assert torch.equal(model.backbone.conv3d_1a_7x7.conv3d.weight,
                       backbone["module.backbone.conv3d_1a_7x7.conv3d.weight"])
    f_q, f_e = torch.randn(2, 20, 1024, generator=gen), torch.randn(2, 20, 1024, generator=gen)
    with torch.no_grad():
        logp, reg, _ = model.forward_features(f_q, f_e)
        ref_logp, ref_reg = _reference_forward({k[7:]: v for k, v in pair.items()}, f_q, f_e,
                                               512, 8)
    # rows [B:] are pair_encoder(exemplar, query): the official test-time direction
    assert torch.allclose(logp[2:], ref_logp, atol=1e-5) and torch.allclose(reg[2:], ref_reg, atol=1e-5)
    with pytest.raises(Exception, match="official TPT checkpoint"):
        official_state_dict({"model": pair}, LEAVES)


def _bank_method(dds, voter_number=4):
    cfg = build_run_config("tpt", "synthetic", overrides=TINY + [f"model.voter_number={voter_number}"])
    method = TPT(cfg)
    method.leaves = LEAVES
    torch.manual_seed(0)
    model = TPTModel(Stub(64), cfg.model, LEAVES).eval()
    samples = [Sample(id=f"t{i}", video=Path(""), score=20.0 + i, difficulty=d)
               for i, d in enumerate(dds)]
    return method, model, samples


def test_padded_voters_have_no_say_and_real_ones_do():
    torch.manual_seed(2)
    dds = [2.0, 2.0, 3.0, 3.0, 3.0, 3.4]  # the query's DD 2.0 has 2 members: 2 padded voters
    feats = torch.randn(len(dds), 20, 64)
    method, model, samples = _bank_method(dds)
    query = Sample(id="q", video=Path(""), score=0.0, difficulty=2.0)
    f_q = torch.randn(1, 20, 64)
    with torch.no_grad():
        out = method._vote(model, f_q, query, bank_from(samples, feats, "difficulty"))
        weights = [e["weight"] for e in out["exemplars"]]
        assert weights == [0.5, 0.5, 0.0, 0.0]
        assert {e["id"] for e in out["exemplars"][:2]} == {"t0", "t1"}
        assert {e["difficulty"] for e in out["exemplars"][2:]} == {3.0}  # nearest DD
        assert len(out["per_voter"]) == 2
        assert out["score"] == pytest.approx(sum(out["per_voter"]) / 2, rel=1e-6)
        padded = [int(e["id"][1:]) for e in out["exemplars"][2:]]
        changed = feats.clone()
        changed[padded] = torch.randn(2, 20, 64) * 5
        same = method._vote(model, f_q, query, bank_from(samples, changed, "difficulty"))
        assert same["score"] == pytest.approx(out["score"], abs=1e-6)
        changed = feats.clone()
        changed[0] = torch.randn(20, 64) * 5
        other = method._vote(model, f_q, query, bank_from(samples, changed, "difficulty"))
        assert other["score"] != pytest.approx(out["score"], abs=1e-6)
    no_pad = TPT(build_run_config("tpt", "synthetic", overrides=TINY + ["model.pad_voters=false"]))
    with torch.no_grad():
        short = no_pad._vote(model, f_q, query, bank_from(samples, feats, "difficulty"))
    assert len(short["exemplars"]) == 2 and short["score"] == pytest.approx(out["score"], rel=1e-6)


def test_bank_vote_equals_the_official_per_voter_loop():
    """The official test loop runs the backbone on the query and each voter, pair by pair."""
    torch.manual_seed(4)
    dds = [2.0, 2.0, 2.0, 3.0]
    videos = torch.randint(0, 256, (4, 3, 24, 8, 8), dtype=torch.uint8)
    method, model, samples = _bank_method(dds)
    feats = model.video_features(videos)
    query_video = torch.randint(0, 256, (1, 3, 24, 8, 8), dtype=torch.uint8)
    query = Sample(id="q", video=Path(""), score=0.0, difficulty=2.0)
    with torch.no_grad():
        out = method._vote(model, model.video_features(query_video), query,
                           bank_from(samples, feats, "difficulty"))
        total = 0.0
        from aqa.models.group_tree import decode
        for ex in out["exemplars"]:
            j = int(ex["id"][1:])
            f = model.video_features(torch.cat([query_video, videos[j:j + 1]]))  # official pack
            logp, reg, _ = model.forward_features(f[:1], f[1:])
            y_e = samples[j].score / samples[j].difficulty
            total += ex["weight"] * (y_e + float(decode(logp[1:], reg[1:], model.leaves)[0])) * 2.0
    assert out["score"] == pytest.approx(total, rel=1e-5)


def test_tpt_trains_evaluates_and_scores_with_one_backbone_pass(runs_dir, synthetic_root, capsys):
    from aqa.cli import main as cli
    from aqa.evaluate import evaluate_checkpoint
    from aqa.jobs import local
    from aqa.scoring import Scorer
    from aqa.train.loop import main

    path = local.submit(runs_dir, "tpt", "synthetic", start_now=False, overrides=TINY + [
        f"data.root={synthetic_root}", "data.num_clips=24", "train.epochs=1", "train.log_every=4",
        "optim.accum_steps=2", "train.heartbeat_s=5"])
    assert main(str(path)) == 0, (path / "stdout.log").read_text()[-2000:] if (path / "stdout.log").exists() else ""
    best = path / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    bank = state["exemplar_bank"]
    assert bank["features"].shape == (18, 20, 64)  # per-clip features of each training sample
    result = evaluate_checkpoint(path)
    assert result["samples"] == 6 and set(result["metrics"]) >= {"rho", "l2", "rl2"}
    assert result["metrics"]["l2"] > 0
    proto = result["protocol"]
    assert proto["queries"] == 6 and proto["voters"] == 24  # 4 voters for each test dive
    assert "padded from the nearest groups with weight 0" in proto["summary"]
    capsys.readouterr()
    assert cli(["eval", str(path), "--runs-dir", str(runs_dir)]) == 0  # python -m aqa eval RUN
    printed = capsys.readouterr().out
    assert "rho" in printed and "RL2x100" in printed and "protocol: 4 voters" in printed
    scorer = Scorer.from_checkpoint(best)
    passes = []
    forward = scorer.model.backbone.forward

    def counted(x):
        passes.append(x.shape[0])
        return forward(x)

    scorer.model.backbone.forward = counted
    clip = synthetic_root / "clips" / "dive_0001.mp4"
    scored = scorer.score(clip, difficulty=2.8)
    assert sum(passes) == 20  # the query's clips; voters come from the bank (official: 2 x 20 a voter)
    assert len(scored.exemplars) == 4 and sum(e["weight"] for e in scored.exemplars) == pytest.approx(1)
    verdict = scorer.compare(clip, synthetic_root / "clips" / "dive_0002.mp4", 2.8, 2.8)
    assert verdict["better"] in ("A", "B", "tie")
