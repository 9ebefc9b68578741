"""USDL / MUSDL: head sizes, soft labels, the MUSDL middle-three rule, loss and prediction."""

import pytest
import torch

from aqa.config import build_run_config
from aqa.models.base import count_parameters
from aqa.models.usdl import MUSDL, USDL, gaussian_labels, mlp_head


def test_head_parameter_counts():
    assert count_parameters(mlp_head(1024, 101)) == 262_400 + 32_896 + 13_029  # USDL: 308,325
    assert count_parameters(mlp_head(1024, 21)) == 262_400 + 32_896 + 2_709    # one MUSDL judge


def test_gaussian_soft_labels():
    lab = gaussian_labels(torch.tensor([50.0, 0.0]), 101, 5.0)
    assert lab.shape == (2, 101) and torch.allclose(lab.sum(1), torch.ones(2))
    assert lab[0].argmax() == 50 and lab[1].argmax() == 0
    assert lab[0, 45] == pytest.approx(lab[0, 55])  # symmetric about the centre
    # unnormalised ratio of neighbours one sigma apart: exp(-0.5)
    assert (lab[0, 55] / lab[0, 50]).item() == pytest.approx(0.60653, rel=1e-4)


def tiny(method: str, *extra):
    cfg = build_run_config(method, "synthetic", overrides=[
        "backbone.name=tiny3d", "data.num_frames=8", "data.frame_size=32", "model.clip_len=4",
        "model.clip_starts=0,4", *extra])
    m = (USDL if method == "usdl" else MUSDL)(cfg)
    torch.manual_seed(0)
    return m, m.build_model()


def test_usdl_defaults_are_the_papers():
    cfg = build_run_config("usdl", "synthetic")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.train.epochs, cfg.train.batch_size) == \
        (1e-4, 0.0, 100, 4)
    assert cfg.backbone.family == "piergiaj" and cfg.model.clip_starts[-1] == 87
    assert build_run_config("musdl", "synthetic").optim.weight_decay == 1e-5


def test_usdl_loss_and_prediction():
    method, model = tiny("usdl")
    batch = {"video": torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8),
             "score": torch.tensor([20.9, 104.5]), "difficulty": torch.ones(2)}
    loss = method.losses(model, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    pred = method.predict(model, batch)
    bins = pred * 100 / 104.5
    assert pred.shape == (2,) and torch.allclose(bins, bins.round(), atol=1e-3)  # on a bin
    out = method.score_clip(model, {**batch, "video": batch["video"][:1]})
    assert len(out["distribution"]) == 101 and sum(out["distribution"]) == pytest.approx(1.0)


def test_log_of_softmax_flag_reproduces_the_official_nan():
    method, _ = tiny("usdl", "model.log_of_softmax=true")
    logits = torch.tensor([[[0.0] * 100 + [200.0]]])  # softmax underflows to exactly 0
    assert not torch.isfinite(method._kl(logits, torch.tensor([[50.0]])))
    fixed, _ = tiny("usdl")
    assert torch.isfinite(fixed._kl(logits, torch.tensor([[50.0]])))


def test_musdl_sums_the_middle_three_judges_times_dd():
    method, _ = tiny("musdl")
    judges = torch.tensor([[9.0, 7.5, 8.0, 10.0, 6.0, 8.5, 8.0]])  # sorted: 6 7.5 8 8 8.5 9 10
    assert method._score(judges, torch.tensor([3.2])).item() == pytest.approx((8 + 8 + 8.5) * 3.2)


def test_musdl_trains_on_judge_scores():
    method, model = tiny("musdl")
    batch = {"video": torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8),
             "score": torch.tensor([70.0, 40.0]), "difficulty": torch.tensor([3.0, 2.0]),
             "judge_scores": torch.tensor([[8.0] * 7, [6.5] * 7])}
    loss = method.losses(model, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and len(model.heads) == 7
    assert method.predict(model, batch).shape == (2,)


def test_musdl_refuses_a_dataset_without_judges(synthetic_root):
    from aqa.errors import ConfigError
    from aqa.registry import DATASETS
    method, _ = tiny("musdl", f"data.root={synthetic_root}", "data.num_clips=24")
    clips = DATASETS.get("synthetic").build(method.cfg.data, "train", train=False)
    with pytest.raises(ConfigError, match="no judge_scores"):
        method.wrap_dataset(clips, "train", clips)


def test_kl_reductions_match_their_definitions():
    method, _ = tiny("usdl")
    logits = torch.randn(3, 1, 101)
    centres = torch.tensor([[10.0], [50.0], [90.0]])
    target = gaussian_labels(centres.reshape(-1), 101, 5.0)
    logp = torch.log_softmax(logits[:, 0], dim=1)
    kl = (target * (target.clamp_min(1e-30).log() - logp)).sum()
    assert method._kl(logits, centres).item() == pytest.approx((kl / (3 * 101)).item(), rel=1e-5)
    batchmean, _ = tiny("usdl", "model.kl_reduction=batchmean")
    assert batchmean._kl(logits, centres).item() == pytest.approx((kl / 3).item(), rel=1e-5)


@pytest.mark.slow
def test_usdl_run_finishes_and_scores_with_a_distribution(runs_dir, fast_overrides):
    from aqa.jobs import local
    from aqa.scoring import Scorer
    from conftest import shared_clip, wait_for
    path = local.submit(runs_dir, "usdl", "synthetic", overrides=fast_overrides + [
        "backbone.name=tiny3d", "model.clip_starts=0,4", "model.clip_len=4"])
    wait_for(lambda: local.run_status(path) in ("finished", "failed", "crashed"), timeout=300)
    assert local.run_status(path) == "finished", (path / "stdout.log").read_text()[-2000:]
    result = Scorer.from_checkpoint(path / "checkpoints" / "best.pt").score(shared_clip())
    assert len(result.distribution) == 101 and 0 <= result.score <= 104.5
