"""Importing an official CoRe checkpoint: safe loading, key mapping, the same prediction."""

import argparse
import os

import numpy as np
import pytest
import torch

from aqa.config import build_run_config
from aqa.errors import CheckpointError
from aqa.importers import import_checkpoint, load_official
from aqa.models.core import CoRe
from aqa.models.group_tree import decode
from aqa.scoring import Scorer
from conftest import SMALL_CLIPS

SMALL = ["model.clip_starts=0", "model.clip_len=8", "data.num_frames=8", "data.frame_size=64",
         "model.voter_number=3", "train.batch_size=4"]


def official_core_checkpoint(path, seed=0):
    """What CoRe's tools/helper.save_checkpoint writes: DataParallel keys, numpy scalars."""
    cfg = build_run_config("core", "synthetic", overrides=["backbone.weights=",
                                                            "backbone.family=hassony2"] + SMALL)
    torch.manual_seed(seed)
    model = CoRe(cfg).build_model()
    state = model.state_dict()
    torch.save({"base_model": {f"module.{k}": v for k, v in state.items() if k.startswith("backbone.")},
                "regressor": {f"module.{k[10:]}": v for k, v in state.items()
                              if k.startswith("regressor.")},
                "optimizer": {"state": {}, "param_groups": []}, "epoch": np.int64(120),
                "epoch_best": 97, "rho_best": np.float64(0.9512), "L2_min": np.float64(47.1),
                "RL2_min": np.float64(0.0026), "args": argparse.Namespace(bs_train=1)}, path)
    return state


def test_numpy_scalars_and_namespaces_load_without_unpickling_code(tmp_path):
    official_core_checkpoint(tmp_path / "MTL_CoRe.pth")
    raw = load_official(tmp_path / "MTL_CoRe.pth")
    assert float(raw["rho_best"]) == 0.9512 and raw["args"].bs_train == 1


def test_arbitrary_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    torch.save({"regressor": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="cannot be imported safely"):
        load_official(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_import_predicts_what_the_official_test_loop_predicts(tmp_path, runs_dir, synthetic_root):
    state = official_core_checkpoint(tmp_path / "MTL_CoRe.pth")
    result = import_checkpoint(tmp_path / "MTL_CoRe.pth", "core", runs_dir, dataset="synthetic",
                               data_root=str(synthetic_root),
                               overrides=SMALL + [f"data.num_clips={SMALL_CLIPS}"])
    scorer = Scorer.from_checkpoint(result["checkpoint"])
    clip = synthetic_root / "clips" / "dive_0003.mp4"
    ours = scorer.score(clip, difficulty=2.8)
    # the official way: query and each exemplar through the backbone, with the file's weights
    model = scorer.model
    for k, v in state.items():
        if k != "leaves":
            assert torch.equal(model.state_dict()[k], v), k
    from aqa.registry import DATASETS
    cfg = scorer.cfg
    clips = DATASETS.get("synthetic").build(cfg.data, "train", train=False)
    index = {s.id: i for i, s in enumerate(clips.samples)}
    query = torch.from_numpy(ours.frames).permute(3, 0, 1, 2)[None]
    total = 0.0
    with torch.no_grad():
        for ex in ours.exemplars:
            item = clips[index[ex["id"]]]
            f = model.video_features(torch.cat([item["video"][None], query]))
            y_e = item["score"] / item["difficulty"]
            logp, delta = model.head(f[:1], f[1:], (y_e / 30.0)[None])
            total += float((y_e + decode(logp, delta, model.leaves)) * 2.8)
    assert ours.score == pytest.approx(total / len(ours.exemplars), rel=1e-5)
    # the import is a run in the index, with the official numbers as its metrics
    from aqa.runs import index
    row = [r for r in index.list_runs(runs_dir) if r["id"] == result["run_id"]][0]
    assert row["status"] == "finished" and row["best_rho"] == pytest.approx(0.9512)


def test_import_without_dataset_says_what_is_missing(tmp_path, runs_dir):
    official_core_checkpoint(tmp_path / "MTL_CoRe.pth")
    result = import_checkpoint(tmp_path / "MTL_CoRe.pth", "core", runs_dir, overrides=SMALL)
    assert any("no exemplar bank" in n for n in result["notes"])
    state = torch.load(result["checkpoint"], weights_only=True)
    assert state["method"] == "core" and "exemplar_bank" not in state


def test_wrong_file_is_refused(tmp_path, runs_dir):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a CoRe checkpoint"):
        import_checkpoint(tmp_path / "x.pth", "core", runs_dir, overrides=SMALL)


def test_musdl_tsa_i3d_weights_import_as_a_core_backbone(tmp_path, runs_dir):
    """rgb_i3d_pretrained.pt: piergiaj names, a 157-class logits layer."""
    from aqa.models.i3d import I3D
    torch.manual_seed(1)
    piergiaj = I3D(family="piergiaj", num_classes=157)
    state = piergiaj.state_dict()
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
               tmp_path / "rgb_i3d_pretrained.pt")
    result = import_checkpoint(tmp_path / "rgb_i3d_pretrained.pt", "core", runs_dir,
                               overrides=SMALL)
    assert any("157 classes" in n for n in result["notes"])
    assert any("regression tree starts untrained" in n for n in result["notes"])
    ours = torch.load(result["checkpoint"], weights_only=True)["model"]
    assert torch.equal(ours["backbone.conv3d_1a_7x7.conv3d.weight"],
                       state["Conv3d_1a_7x7.conv3d.weight"])
    assert torch.equal(ours["backbone.mixed_5c.branch_2.1.batch3d.running_var"],
                       state["Mixed_5c.b2b.bn.running_var"])


TPT_SMALL = ["model.d_model=32", "model.d_ffn=32", "model.num_heads=4"]


def official_tpt_checkpoint(path, seed=0):
    """What TPT's training script saves (DDP keys): the PairModel and the I3D_backbone apart."""
    from aqa.models.tpt import TPT

    cfg = build_run_config("tpt", "synthetic", overrides=["backbone.weights="] + TPT_SMALL)
    torch.manual_seed(seed)
    state = TPT(cfg).build_model().state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()
                          if not k.startswith("backbone.") and k != "leaves"},
                "backbone": {f"module.{k}": v for k, v in state.items() if k.startswith("backbone.")},
                "epoch": np.int64(150), "optimizer": {"state": {}, "param_groups": []}}, path)
    return state


def test_official_tpt_checkpoint_is_detected_and_maps_key_for_key(tmp_path, runs_dir):
    state = official_tpt_checkpoint(tmp_path / "checkpoint_150.pth")
    result = import_checkpoint(tmp_path / "checkpoint_150.pth", None, runs_dir, overrides=TPT_SMALL)
    saved = torch.load(result["checkpoint"], weights_only=True)
    assert saved["method"] == "tpt" and saved["epoch"] == 150
    for k, v in state.items():
        if k != "leaves":
            assert torch.equal(saved["model"][k], v), k
    # the README's d_model=512 model does not fit a d_model=32 file: refused with the reason
    with pytest.raises(CheckpointError, match="do not fit TPT.*d_model=512"):
        import_checkpoint(tmp_path / "checkpoint_150.pth", "tpt", runs_dir)


def test_rerun_of_an_imported_run_trains_its_config_locally(tmp_path, runs_dir, monkeypatch):
    """An imported run has no process to resume (it is finished); "duplicate with changes" trains
    its recorded config (the official preprocessing included) with the local executor."""
    from pathlib import Path

    from aqa.errors import RunError
    from aqa.jobs import control

    official_core_checkpoint(tmp_path / "MTL_CoRe.pth")
    result = import_checkpoint(tmp_path / "MTL_CoRe.pth", "core", runs_dir, overrides=SMALL)
    run_dir = Path(runs_dir) / result["run_id"]
    with pytest.raises(RunError, match="finished"):
        control.resume(run_dir)
    asked = []
    monkeypatch.setattr(control, "submit", lambda root, request: asked.append(request) or root)
    control.rerun(run_dir, ["train.epochs=1"])
    (request,) = asked
    assert request.executor == "local" and request.method == "core"
    assert request.values["data"]["pipeline"] == "tvv" and request.overrides == ["train.epochs=1"]
