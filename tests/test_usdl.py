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


# ----------------------------------------------------------------- official checkpoints

def _official_bytes(path) -> bytes:
    import zipfile
    with zipfile.ZipFile(path) as z:
        return b"".join(z.read(n) for n in z.namelist() if n.endswith("data.pkl"))


def test_official_mtl_checkpoints_import_and_are_detected(tmp_path, runs_dir):
    """MUSDL's MTL-AQA ckpts/{USDL,MUSDL}.pt (DataParallel keys, cuda:0 storages, numpy 1.x
    rho_best) import without --method; the heads and bins come from the file."""
    from aqa.config import build_run_config
    from aqa.importers import import_checkpoint
    from aqa.train.checkpoint import load_checkpoint
    from parity_usdl_inputs import official_weights, write_mtl_checkpoint

    for kind, heads, bins in (("usdl", 1, 101), ("musdl", 7, 21)):
        path = write_mtl_checkpoint(tmp_path / f"{kind.upper()}.pt", kind)
        raw = _official_bytes(path)
        assert b"numpy.core.multiarray\nscalar" in raw and b"cuda:0" in raw and b"module.Conv3d" in raw
        out = import_checkpoint(path, None, runs_dir)
        assert out["method"] == kind
        state = load_checkpoint(out["checkpoint"])
        cfg = build_run_config(kind, "mtl_aqa", values=state["config"])
        assert (cfg.model.num_bins, cfg.backbone.family, cfg.backbone.input_norm,
                cfg.backbone.num_classes, cfg.data.pipeline) == (bins, "piergiaj", "imagenet", 157, "musdl")
        assert len({k.split(".")[1] for k in state["model"] if k.startswith("heads.")}) == heads
        assert state["metrics"]["rho"] == pytest.approx(0.9064 if kind == "usdl" else 0.9306)
        i3d, evaluator = official_weights(kind)
        last = "evaluator.layer3.weight" if kind == "usdl" else "evaluator.6.layer3.weight"
        assert torch.equal(state["model"][f"heads.{heads - 1}.4.weight"], evaluator[last])
        assert torch.equal(state["model"]["backbone.Mixed_5c.b3b.bn.running_var"],
                           i3d["Mixed_5c.b3b.bn.running_var"])


def test_single_gpu_legacy_checkpoint_and_wrong_method(tmp_path, runs_dir):
    from aqa.errors import CheckpointError
    from aqa.importers import import_checkpoint
    from parity_usdl_inputs import write_mtl_checkpoint

    path = write_mtl_checkpoint(tmp_path / "MUSDL.pt", "musdl", dataparallel=False, legacy=True)
    assert path.read_bytes()[:2] == b"\x80\x02"  # a pickle stream, not a zip: PyTorch <= 1.5
    assert import_checkpoint(path, "musdl", runs_dir)["method"] == "musdl"
    with pytest.raises(CheckpointError, match="--method musdl"):
        import_checkpoint(path, "usdl", runs_dir)


def test_jigsaws_checkpoint_imports_the_chosen_fold(tmp_path, runs_dir):
    """JIGSAWS' ckpts/<task>_MUSDL.pt holds four folds' models; data.fold picks one. The config
    gets JIGSAWS' bins (6 GRS items x 1..5, summed) and MUSDL's JIGSAWS preprocessing."""
    from aqa.config import build_run_config
    from aqa.importers import import_checkpoint, load_official
    from aqa.train.checkpoint import load_checkpoint
    from parity_usdl_inputs import write_jigsaws_checkpoint

    path = write_jigsaws_checkpoint(tmp_path / "Suturing_MUSDL.pt", "musdl")
    out = import_checkpoint(path, None, runs_dir, overrides=["data.fold=2"])
    assert out["method"] == "musdl" and "fold 2" in out["notes"][0]
    state = load_checkpoint(out["checkpoint"])
    cfg = build_run_config("musdl", "jigsaws", values=state["config"])
    m = cfg.model
    assert (m.num_judges, m.num_bins, m.score_min, m.score_max, m.combine, m.use_dd, m.sigma,
            m.pack_clips, cfg.data.pipeline, cfg.data.fold) == (6, 5, 1.0, 5.0, "sum", False, 1.0,
                                                                 True, "crop", 2)
    raw = load_official(path)
    assert torch.equal(state["model"]["heads.3.0.bias"], raw["evaluators"]["2.module.evaluator.3.layer1.bias"])


def test_musdl_on_jigsaws_sums_the_six_items():
    cfg = build_run_config("musdl", "jigsaws")
    method = MUSDL(cfg)
    logits = torch.zeros(1, 6, 5)
    logits[0, torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 4])] = 5.0  # items 1 2 3 4 5 5
    assert method._score(method._judges(logits), torch.ones(1)).item() == 20.0
    usdl = USDL(build_run_config("usdl", "jigsaws"))
    assert usdl._from_bins(torch.tensor(0)).item() == 6.0 and usdl._from_bins(torch.tensor(24)).item() == 30.0
    assert usdl._to_bins(torch.tensor([6.0, 18.0, 30.0])).tolist() == [0.0, 12.0, 24.0]


def test_a_malicious_checkpoint_is_refused_without_running(tmp_path, runs_dir):
    import os
    from aqa.errors import CheckpointError
    from aqa.importers import import_checkpoint

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "MUSDL.pt"
    torch.save({"epoch": 1, "i3d": {}, "evaluator": {}, "rho_best": Payload()}, path)
    for method in ("musdl", None):
        with pytest.raises(CheckpointError, match="cannot be imported safely"):
            import_checkpoint(path, method, runs_dir)
    assert not marker.exists()


def test_detection_leaves_tsa_files_to_the_tsa_importer():
    from aqa.models.usdl_import import head_shape, is_official_usdl
    from aqa.errors import CheckpointError

    assert not is_official_usdl({"i3d": {}, "evaluator": {}, "TSA_module": None})
    assert is_official_usdl({"i3d": {}, "evaluator": {}, "rho_best": 0.9})
    assert is_official_usdl({"i3ds": {}, "evaluators": {}})
    with pytest.raises(CheckpointError, match="unexpected evaluator key"):
        head_shape({"evaluator.fc.weight": torch.zeros(1)})


def test_a_folder_import_records_musdls_preprocessing(tmp_path, runs_dir, monkeypatch):
    """A folder of clips reads them as the checkpoint was trained (455x256 by PIL, centre crop),
    not with the folder's own square default; a dataset that cannot say so is refused."""
    from aqa import importers
    from aqa.errors import ConfigError
    from aqa.importers import import_checkpoint
    from parity_usdl_inputs import write_mtl_checkpoint

    path = write_mtl_checkpoint(tmp_path / "USDL.pt", "usdl")
    result = import_checkpoint(path, None, runs_dir, dataset="folder")
    data = torch.load(result["checkpoint"], weights_only=True)["config"]["data"]
    assert (data["pipeline"], data["video_resize"], data["frame_size"]) == ("musdl", "pil", 224)
    monkeypatch.setitem(importers.OFFICIAL_PREPROCESSING, "usdl",
                        {**importers.OFFICIAL_PREPROCESSING["usdl"], "data.layout": "core"})
    with pytest.raises(ConfigError, match="folder dataset has no data.layout"):
        import_checkpoint(path, None, runs_dir, dataset="folder")
