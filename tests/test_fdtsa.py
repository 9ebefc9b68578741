"""FineDiving TSA (fdtsa): the official sizes, the pure parts (transitions, pooling, tIoU), and
training, resuming, evaluating under both exemplar protocols and scoring on the FineDiving
fixture in the official layout."""

from __future__ import annotations

import json

import pytest
import torch

from aqa.config import build_run_config
from aqa.models.base import count_parameters
from aqa.models.fdtsa import FDTSA, FDTSAConfig, network
from aqa.models.fdtsa_net import (pooling_bounds, predicted_transits, seg_pool, segment_iou,
                                  tiou_rates)
from aqa.models.i3d import I3D

# tiny3d at width 64 gives 256-d features: PSNet halves them to 16, the decoder is 16 wide
TINY = ["backbone.name=tiny3d", "backbone.width=64", "model.clip_len=4",
        "model.clip_starts=0,1,2,3,4,5,6,7,8", "data.num_frames=16", "data.frame_size=32",
        "train.batch_size=2", "model.voter_number=2", "data.cache=false"]


def test_official_sizes():
    """The official modules' parameter counts (tools/builder.py model_builder, counted by
    running it): I3D 12,697,264, PSNet 128,846, decoder_fuser 149,760, MLP_score 33,153."""
    model = network(I3D("hassony2"), FDTSAConfig(), 96)
    assert [count_parameters(getattr(model, k)) for k in ("backbone", "psnet", "decoder",
                                                          "regressor")] == [12_697_264, 128_846,
                                                                            149_760, 33_153]
    u, prob = model.psnet(torch.randn(2, 9, 1024))
    assert u.shape == (2, 96, 64) and prob.shape == (2, 96, 2)


def test_defaults_are_the_official_ones():
    cfg = build_run_config("fdtsa", "finediving")
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.optim.name, cfg.optim.lr,
            cfg.optim.backbone_lr_factor, cfg.optim.weight_decay) == (8, 200, "adam", 1e-3, 0.1, 0.0)
    assert (cfg.data.num_frames, cfg.data.frame_size, cfg.data.pipeline, list(cfg.data.resize),
            cfg.data.hflip) == (96, 112, "tvv", [200, 112], True)
    m = cfg.model
    assert (m.exemplar_rule, m.voter_number, m.clip_starts, m.fix_size, m.step_num,
            m.prob_tas_threshold, m.fix_bn) == ("dive_number", 10, list(range(0, 90, 10)), 5, 3,
                                                0.25, True)
    assert (cfg.backbone.family, cfg.backbone.input_norm) == ("hassony2", "imagenet")


def test_unknown_protocol_is_refused():
    from aqa.errors import ConfigError

    with pytest.raises(ConfigError, match="dive_number, difficulty"):
        FDTSA(build_run_config("fdtsa", "finediving", overrides=["model.exemplar_rule=class"]))


def test_predicted_transits_take_each_half():
    prob = torch.zeros(1, 8, 2)
    prob[0, 6, 0] = 0.9  # channel 0 outside its half [0, 4): ignored
    prob[0, 2, 0] = 0.5
    prob[0, 1, 1] = 0.9  # channel 1 outside its half [4, 8): ignored
    prob[0, 5, 1] = 0.4
    assert predicted_transits(prob).tolist() == [[2, 5]]
    assert predicted_transits(torch.zeros(1, 8, 2)).tolist() == [[0, 4]]  # ties: the first


def test_pooling_bounds_move_zero_to_one():
    assert pooling_bounds([0, 50]) == (1, 50) and pooling_bounds([3, 50]) == (3, 50)


def test_seg_pool_resamples_each_step_with_align_corners():
    x = torch.arange(10.0).view(1, 1, 10)  # steps [0, 3), [3, 7), [7, 10)
    out = seg_pool(x, 3, 7, 5)
    assert out.shape == (1, 1, 15)
    assert out[0, 0].tolist() == pytest.approx([0, 0.5, 1, 1.5, 2, 3, 3.75, 4.5, 5.25, 6,
                                                7, 7.5, 8, 8.5, 9])
    maps = seg_pool(torch.randn(1, 2, 10, 3, 3), 3, 7, 5)
    assert maps.shape == (1, 2, 15, 3, 3)


def test_seg_pool_refuses_an_empty_step():
    from aqa.errors import DatasetError

    with pytest.raises(DatasetError, match="three non-empty steps"):
        seg_pool(torch.zeros(1, 1, 10), 4, 4, 5)


@pytest.mark.parametrize("target, candidate, iou", [
    ((10, 50), (10, 50), 1.0),
    ((10, 50), (30, 70), 20 / 60),
    ((10, 50), (60, 90), 0.0),   # disjoint: no overlap, not negative
    ((10, 50), (20, 40), 0.5),   # inside
])
def test_segment_iou_table(target, candidate, iou):
    assert segment_iou(target, candidate) == pytest.approx(iou)


def test_tiou_rates_count_each_threshold():
    assert tiou_rates([0.8, 0.6, 0.4, 0.75]) == {"tiou_50": 0.75, "tiou_75": 0.5}


# ---------------------------------------------------------------------------------- the fixture

@pytest.fixture(scope="module")
def fd_root(tmp_path_factory):
    from tests.finediving_fixture import make_finediving

    root = tmp_path_factory.mktemp("fd")
    make_finediving(root, n_train=6, n_test=3)
    return root


def test_train_resume_evaluate_both_protocols_and_score(fd_root, runs_dir, monkeypatch, capsys,
                                                       synthetic_root):
    from aqa.cli import main as cli
    from aqa.evaluate import evaluate_checkpoint
    from aqa.jobs import local
    from aqa.train import loop
    from aqa.train.stopflag import STOP

    path = local.submit(runs_dir, "fdtsa", "finediving", start_now=False, overrides=TINY + [
        f"data.root={fd_root}", "train.epochs=2", "train.log_every=1"])
    epochs, pooled = [], []
    real_start = FDTSA.on_epoch_start

    def start(self, epoch):  # stop at epoch 2's first step, once
        real_start(self, epoch)
        epochs.append(epoch)
        if epoch == 2 and epochs.count(2) == 1:
            STOP.requested = True
    monkeypatch.setattr(FDTSA, "on_epoch_start", start)
    real_losses = FDTSA.losses
    monkeypatch.setattr(FDTSA, "losses", lambda self, m, b: pooled.append(
        self.uses_labels(self._epoch)) or real_losses(self, m, b))
    monkeypatch.setattr(STOP, "requested", False)
    assert loop.main(str(path)) == 0
    assert (path / "checkpoints" / "last.pt").exists() and epochs == [1, 2]
    monkeypatch.setattr(STOP, "requested", False)
    assert loop.main(str(path)) == 0  # resumes inside epoch 2
    assert epochs == [1, 2, 2]
    assert pooled[:3] == [True, True, True] and pooled[-1] is False  # labels, then predictions
    log = [json.loads(line) for line in (path / "events.jsonl").read_text().splitlines()]
    test_metrics = {(e["epoch"], e["name"]) for e in log if e.get("type") == "metric"
                    and e.get("split") == "test"}
    assert {(2, "rho"), (2, "tiou_50"), (2, "tiou_75"), (2, "rho_difficulty")} <= test_metrics
    statuses = [e["status"] for e in log if e.get("type") == "status"]
    assert statuses[-1] == "finished" and "stopped" in statuses

    best = path / "checkpoints" / "best.pt"
    bank = torch.load(best, weights_only=True)["exemplar_bank"]
    assert bank["features"].shape == (6, 15 * 2 * 2, 16)  # 3 steps x 5, 2x2 map positions, d 16
    assert bank["transits"].shape == (6, 2) and bank["rule"] == "dive_number"
    by_dive = evaluate_checkpoint(path)
    by_dd = evaluate_checkpoint(path, exemplars="difficulty")
    assert by_dive["protocol"]["exemplars"] == "dive_number"
    assert by_dd["protocol"]["exemplars"] == "difficulty"
    for result in (by_dive, by_dd):
        assert result["samples"] == 3 and {"rho", "l2", "rl2", "tiou_50", "tiou_75"} <= set(result["metrics"])
    # each evaluation also scores the queries under the other protocol, labelled
    assert by_dive["metrics"]["l2_difficulty"] == pytest.approx(by_dd["metrics"]["l2"], rel=1e-6)
    assert by_dd["metrics"]["l2_dive_number"] == pytest.approx(by_dive["metrics"]["l2"], rel=1e-6)
    assert by_dive["metrics"]["l2"] != by_dd["metrics"]["l2"]  # the protocols differ here
    capsys.readouterr()
    assert cli(["eval", str(path), "--runs-dir", str(runs_dir), "--exemplars", "difficulty"]) == 0
    printed = capsys.readouterr().out
    assert "tiou_50" in printed and "without its dive number" in printed

    # scoring a clip: the transitions in the frames the model saw, exemplars of the dive given
    from aqa.scoring import Scorer

    scorer = Scorer.from_checkpoint(best)
    clip = synthetic_root / "clips" / "dive_0001.mp4"
    scored = scorer.score(clip, difficulty=3.1, dive_number="107B")
    t = scored.transitions
    assert t["frames_seen"] == 16 and 0 <= t["positions"][0] < 8 <= t["positions"][1] < 16
    assert t["frames"] == [scored.frame_indices[p] for p in t["positions"]]
    assert t["seconds"][0] == pytest.approx(t["frames"][0] / 12.0, abs=1e-3)  # synthetic: 12 fps
    assert scored.protocol == "dive_number" and scored.exemplars
    assert {e["dive_number"] for e in scored.exemplars} == {"107B"}
    by_dd = scorer.score(clip, difficulty=3.1)
    assert by_dd.protocol == "difficulty" and any("no dive number given" in n for n in by_dd.notes)
    verdict = scorer.compare(clip, synthetic_root / "clips" / "dive_0002.mp4", 3.1, 3.1)
    assert verdict["better"] in ("A", "B", "tie")
    capsys.readouterr()
    assert cli(["score", str(clip), "--checkpoint", str(best), "--dive-number", "107B"]) == 0
    printed = capsys.readouterr().out
    assert "step transitions at frames" in printed and "exemplars by dive_number" in printed
