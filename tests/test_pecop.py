"""PECoP (docs/methods.md, PECoP): the 3D adapters, VSPP sampling and labels, official state dicts, the
pretext run and fine-tuning from it."""

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aqa.config import build_run_config
from aqa.data import sampling as S
from aqa.errors import CheckpointError
from aqa.models.adapters import (ConvAdapter, adapter_parameters, has_adapters, is_pecop_layout,
                                 split_pecop_state)
from aqa.models.i3d import I3D, I3DConfig, I3DEntry, load_i3d_weights
from aqa.registry import METHODS

# docs/methods.md, PECoP: (C, C/4) of the adapter of each Mixed block
ADAPTER_CHANNELS = {"mixed_3b": 256, "mixed_3c": 480, "mixed_4b": 512, "mixed_4c": 512,
                    "mixed_4d": 512, "mixed_4e": 528, "mixed_4f": 832, "mixed_5b": 832,
                    "mixed_5c": 1024}


@pytest.fixture(scope="module")
def adapted():
    torch.manual_seed(0)
    return I3D(adapters=True).eval()


# ------------------------------------------------------------------------- the adapters

def test_adapter_parameters_are_1109068(adapted):
    assert sum(p.numel() for p in adapter_parameters(adapted)) == 1_109_068
    assert sum(p.numel() for p in adapted.parameters()) == 12_697_264 + 1_109_068
    for block, c in ADAPTER_CHANNELS.items():
        a = getattr(adapted, block).tuning_module
        assert a.conv1.weight.shape == (c // 4, 4, 3, 3, 3) and a.conv1.groups == c // 4
        assert a.conv2.weight.shape == (c, c // 4, 1, 1, 1) and a.se.shape == (1, c, 1, 1, 1)
    assert not has_adapters(I3D().state_dict())


def test_adapter_is_not_the_identity_at_init():
    torch.manual_seed(0)
    a = ConvAdapter(256)
    x = torch.randn(2, 256, 2, 4, 4)
    assert torch.equal(a.se, torch.ones(1, 256, 1, 1, 1))
    assert a(x).abs().mean() > 1e-3  # the block adds this to its output


def test_vspp_forward_shapes():
    torch.manual_seed(0)
    cfg = build_run_config("pecop", "synthetic", overrides=["backbone.weights=", "data.frame_size=64"])
    method = METHODS.get("pecop")(cfg)
    model = method.build_model().eval()
    video = torch.randint(0, 256, (2, 3, 32, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        mixed = model.backbone.features_at(video)
        pooled = model.backbone.pool(mixed)
        pace, seg = model(video)
    assert mixed.shape == (2, 1024, 4, 2, 2) and pooled.shape == (2, 1024, 3, 1, 1)  # T=32: 3 steps
    assert pace.shape == (2, 5) and seg.shape == (2, 4)
    sizes = method.module_sizes(model)
    assert sizes == {"backbone": 12_697_264, "adapters": 1_109_068, "heads": 5125 + 4100,
                     "trainable": 1_109_068 + 9225, "total": 12_697_264 + 1_109_068 + 9225}


def test_frozen_bn_and_bgr_flags():
    cfg = build_run_config("pecop", "synthetic", overrides=["backbone.name=tiny3d", "data.frame_size=16"])
    method = METHODS.get("pecop")(cfg)
    model = method.build_model()
    cfg_i3d = build_run_config("pecop", "synthetic", overrides=["backbone.weights="])
    m = METHODS.get("pecop")(cfg_i3d)
    net = m.build_model()
    m.set_train_mode(net)
    assert not net.backbone.mixed_3b.branch_0.batch3d.training and net.logits_p.training
    m = METHODS.get("pecop")(replace(cfg_i3d, model=replace(cfg_i3d.model, update_frozen_bn=True)))
    m.set_train_mode(net)
    assert net.backbone.mixed_3b.branch_0.batch3d.training
    model.eval()
    video = torch.randint(0, 256, (1, 3, 8, 16, 16), dtype=torch.uint8)
    bgr = type(model)(model.backbone, 5, 4, 0.5, bgr=True).eval()
    bgr.logits_p, bgr.logits_s = model.logits_p, model.logits_s
    with torch.no_grad():
        assert torch.equal(bgr(video)[0], model(video.flip(1))[0])
        assert not torch.equal(bgr(video)[0], model(video)[0])


def test_pecop_defaults():
    cfg = build_run_config("pecop", "pd4t")
    o, t, b = cfg.optim, cfg.train, cfg.backbone
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.schedule, o.cosine_epochs, o.min_lr_factor) \
        == ("sgd", 0.01, 0.9, 1e-4, "cosine", 22, 1e-3)
    assert (t.epochs, t.batch_size, t.best_metric, cfg.data.num_frames) == (8, 16, "accuracy", 32)
    assert (b.adapters, b.freeze, b.family, b.input_norm) == (True, True, "hassony2", "imagenet")
    assert METHODS.get("pecop")(cfg).fr == 1
    assert METHODS.get("pecop")(replace(cfg, data=replace(cfg.data, task="gait"))).fr == 3
    from aqa.train.optim import lr_factor  # CosineAnnealingLR(T_max=22, eta_min=lr/1000)
    got = [lr_factor(e, o, 8) for e in (0, 1, 7)]
    want = [1e-3 + (1 - 1e-3) * 0.5 * (1 + np.cos(np.pi * e / 22)) for e in (0, 1, 7)]
    assert got == pytest.approx(want) and got[1] == pytest.approx(0.994916, abs=1e-6)


def test_eval_metrics_decode_pace_and_segment():
    method = METHODS.get("pecop")(build_run_config("pecop", "synthetic"))
    # class = pace * 4 + segment: (pace, seg) true (0,0) (1,3) (4,2) (2,1); predicted (0,1) (1,3) (3,2) (2,1)
    got = method.eval_metrics([1.0, 7.0, 14.0, 9.0], [0.0, 7.0, 18.0, 9.0])
    assert got == {"accuracy": 0.75, "pace_acc": 0.75, "segment_acc": 0.75}


# ------------------------------------------------------------------------- VSPP sampling

def test_segment_bounds_are_inclusive():
    assert [S.vspp_segment_bounds(s) for s in (1, 2, 3, 4)] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert [S.vspp_segment_bounds(s, 16, 4) for s in (1, 4)] == [(0, 4), (12, 16)]
    assert S.vspp_segment_bounds(3, 32, 3) == (21, 32)  # int(2 * 10.67), int(32.0)
    with pytest.raises(ValueError):
        S.vspp_segment_bounds(5)


@pytest.mark.parametrize("args, official, expected", [
    # segment 2 = clip frames 8..16 at rate 3 (9 steps of 3), the rest at fr=1
    ((200, 10, 1, 3, 2), False, list(range(10, 18)) + list(range(20, 45, 3)) + list(range(45, 60))),
    # gait (fr=3), segment 1 at rate 2: frame 9 is 3 after frame 8 (official: 1 after it)
    ((200, 0, 3, 2, 1), False, [0, 2, 4, 6, 8, 10, 12, 14, 16, 19, 22, 25]),
    ((200, 0, 3, 2, 1), True, [0, 2, 4, 6, 8, 10, 12, 14, 16, 17, 20, 23]),
    # wrap-around past the end (20 usable frames) to frame 0
    ((20, 15, 2, 1, 4, 8, 4), False, [15, 17, 19, 0, 2, 4, 5, 6]),
    ((20, 15, 2, 1, 4, 8, 4), True, [15, 17, 0, 2, 4, 6, 7, 8]),  # 4-frame look-ahead
    ((12, 4, 1, 5, 2, 8, 4), False, [4, 5, 10, 0, 5, 6, 7, 8]),  # segment 2 = frames 2..4
])
def test_vspp_literal_tables(args, official, expected):
    got = S.vspp_indices(*args, official=official)
    assert got[:len(expected)] == expected


def official_loop_load_rgb(start_frame, sample_rate, clip_len, num_frames, seg_lo, seg_hi, fr):
    """A line-by-line model of PECoP's ucf101.py ``loop_load_rgb`` state machine (1-based frame
    numbers), the oracle for ``vspp_indices(official=True)``."""
    out, idx1, idx, normal = [], 0, 0, start_frame
    for i in range(clip_len):
        if seg_lo <= i <= seg_hi:
            out.append(start_frame + idx1 * sample_rate)
            normal, idx = start_frame + idx1 * sample_rate, 1
            if start_frame + (idx1 + 1) * sample_rate > num_frames:
                start_frame = normal = 1
                idx = idx1 = 0
            else:
                idx1 += 1
        else:
            out.append(normal + idx)
            start_frame, idx1 = normal + idx, 1
            if normal + idx + 4 > num_frames:
                normal = start_frame = 1
                idx1 = idx = 0
            else:
                idx += fr
    return out


def test_official_steps_match_the_official_loader_on_random_draws():
    rnd = random.Random(0)
    for _ in range(500):
        n, fr = rnd.randint(40, 160), rnd.choice([1, 3])
        rate = rnd.choice([r for r in range(1, 6) if r != fr])
        segment, start = rnd.randint(1, 4), rnd.randint(1, n - 32)
        lo, hi = S.vspp_segment_bounds(segment)
        want = official_loop_load_rgb(start, rate, 32, n, lo, hi, fr)
        got = S.vspp_indices(n, start - 1, fr, rate, segment, official=True)
        assert [p + 1 for p in got] == want, (n, fr, rate, segment, start)


def test_vspp_labels_are_rate_and_segment_minus_one():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        clip = S.draw_vspp(rng, 1000, fr=3)
        lo, hi = S.vspp_segment_bounds(clip.segment + 1)
        steps = np.diff(clip.indices)
        rate = clip.pace + 1
        inside = steps[lo:hi][steps[lo:hi] > 0]  # into frames lo+1..hi, but for a wrap to 0
        assert rate != 3 and len(inside) >= min(hi, 31) - lo - 1 and all(inside == rate)
        assert 0 <= clip.indices[0] <= 1000 - 32 - 1
        seen.add((clip.pace, clip.segment))
    assert {p for p, _ in seen} == {0, 1, 3, 4} and {s for _, s in seen} == {0, 1, 2, 3}


def test_tvv_cv2_resizes_by_cv2_nearest_after_the_flip():
    from aqa.data.transforms import build_pipeline, cv2_nearest

    row = np.arange(5, dtype=np.uint8)[None, :, None]  # one row, 5 columns
    # cv2.INTER_NEAREST: destination x takes floor(x * 5 / 3) = 0, 1, 3 (PIL's centre rule: 0, 2, 4)
    assert cv2_nearest(row, (3, 1))[0, :, 0].tolist() == [0, 1, 3]
    assert cv2_nearest(row, (8, 2))[1, :, 0].tolist() == [0, 0, 1, 1, 2, 3, 3, 4]
    # flipping first (torch_videovision) is not flipping the resized frame
    assert cv2_nearest(row[:, ::-1], (3, 1))[0, :, 0].tolist() == [4, 3, 1] != [3, 1, 0]
    p = build_pipeline("tvv_cv2")
    assert (p.decode_size, p.interpolation, p.crop, p.random_crop, p.flip_before_resize) == \
        ((256, 455), "cv2_nearest", 224, True, True)
    cfg = build_run_config("pecop", "pd4t")
    assert (cfg.data.pipeline, cfg.data.hflip) == ("tvv_cv2", True)


# ------------------------------------------------------------------------- official state dicts

def test_official_pecop_state_dict_loads_with_identical_outputs(tmp_path, adapted):
    state = adapted.state_dict()
    heads = {"logits_p.conv3d.weight": torch.randn(5, 1024, 1, 1, 1),
             "logits_p.conv3d.bias": torch.randn(5), "logits_s.conv3d.weight": torch.randn(4, 1024, 1, 1, 1),
             "logits_s.conv3d.bias": torch.randn(4)}
    official = {f"module.model.{k}": v for k, v in state.items()} | {f"module.{k}": v for k, v in heads.items()}
    assert "module.model.mixed_4e.tuning_module.se" in official and is_pecop_layout(official)
    torch.save(official, tmp_path / "gait_adapter08.pth.tar")
    backbone, got_heads = split_pecop_state(official)
    assert set(backbone) == set(state) and set(got_heads) == set(heads)
    net = I3DEntry.build(I3DConfig(weights=str(tmp_path / "gait_adapter08.pth.tar"))).eval()  # adapters: auto
    assert net.adapters
    video = torch.randint(0, 256, (1, 3, 16, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(net(video), adapted(video))
    # the piergiaj family: keys renamed, the adapter weights arrive
    pier = I3DEntry.build(I3DConfig(weights=str(tmp_path / "gait_adapter08.pth.tar"), family="piergiaj"))
    assert torch.equal(pier.Mixed_4e.tuning_module.conv1.weight, adapted.mixed_4e.tuning_module.conv1.weight)
    # a plain I3D file into an adapted I3D: the adapters keep their init (PECoP's strict=False)
    torch.save(I3D().state_dict(), tmp_path / "plain.pt")
    fresh = I3D(adapters=True)
    se = fresh.mixed_3b.tuning_module.conv1.weight.clone()
    load_i3d_weights(fresh, tmp_path / "plain.pt")
    assert torch.equal(fresh.mixed_3b.tuning_module.conv1.weight, se)
    # some adapter keys but not all: refused, naming the key
    del official["module.model.mixed_5c.tuning_module.se"]
    torch.save(official, tmp_path / "broken.pth.tar")
    with pytest.raises(CheckpointError, match="mixed_5c.tuning_module.se"):
        I3DEntry.build(I3DConfig(weights=str(tmp_path / "broken.pth.tar")))


# ------------------------------------------------------------------------- runs

def write_pd4t(root: Path) -> None:
    """A PD4T gait tree: 3 training and 2 test patients, 30-44 frames of 12x12 px."""
    (root / "gait" / "label").mkdir(parents=True)
    rows = {"train": [("p01", 2, 40, "1"), ("p02", 0, 36, "2"), ("p03", 4, 44, "3")],
            "test": [("p04", 1, 30, "4"), ("p05", 3, 38, "5")]}
    for split, lines in rows.items():
        (root / "gait" / "label" / f"{split}.list").write_text(
            "".join(f"{n}_walk {label} {count} {p}\n" for n, label, count, p in lines))
        for n, _, count, p in lines:
            folder = root / "gait" / p / f"{n}_walk"
            folder.mkdir(parents=True)
            for i in range(1, count + 1):
                Image.fromarray(np.full((12, 12, 3), (i * 7) % 256, np.uint8)).save(folder / f"img_{i:05d}.jpg")


def wait_finished(run_dir: Path, timeout: float = 240) -> None:
    from aqa.jobs.local import run_status
    from conftest import wait_for

    wait_for(lambda: run_status(run_dir) not in ("running", "queued"), timeout=timeout,
             what=f"run {run_dir.name}")
    assert run_status(run_dir) == "finished", (run_dir / "stdout.log").read_text()[-3000:]


SMALL = ["backbone.weights=", "data.num_frames=8", "data.frame_size=32", "data.pipeline=square",
         "data.disk_cache=off", "data.task=gait", "train.batch_size=3", "train.log_every=1",
         "train.heartbeat_s=1"]


def sets(items):
    return [a for o in items for a in ("--set", o)]


def test_pretrain_refuses_a_scoring_method(runs_dir, capsys):
    from aqa.cli import main

    assert main(["pretrain", "--method", "usdl", "--dataset", "pd4t"]) == 2
    assert "not a pretext task" in capsys.readouterr().err
    assert not any(runs_dir.iterdir())


@pytest.mark.slow
def test_pretrain_then_fine_tune_usdl_and_build_core(tmp_path, runs_dir, capsys):
    from aqa.cli import main
    from aqa.train.checkpoint import load_checkpoint

    write_pd4t(tmp_path / "pd4t")
    assert main(["pretrain", "--method", "pecop", "--dataset", "pd4t", "--data-root",
                 str(tmp_path / "pd4t"), *sets(SMALL + ["train.epochs=1", "model.repeat=2"]), "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    wait_finished(runs_dir / run_id)
    spec = json.loads((runs_dir / run_id / "run.json").read_text())
    assert spec["argv"][:2] == ["aqa", "pretrain"]
    best = load_checkpoint(runs_dir / run_id / "checkpoints" / "best.pt")
    assert set(best["metrics"]) >= {"accuracy", "pace_acc", "segment_acc"} and best["epoch"] == 1
    assert best["step"] == 2  # 3 samples x 2 draws, batches of 3
    pretrained = {k[len("backbone."):]: v for k, v in best["model"].items() if k.startswith("backbone.")}

    # fine-tune usdl (piergiaj family) from the run id: adapters built, keys renamed, loaded
    usdl = SMALL + ["train.epochs=1", f"backbone.weights={run_id}", "model.clip_starts=0",
                    "model.clip_len=8", "model.score_max=4", "backbone.input_norm=imagenet"]
    assert main(["train", "--method", "usdl", "--dataset", "pd4t", "--data-root",
                 str(tmp_path / "pd4t"), *sets(usdl), "--json"]) == 0
    ft_id = json.loads(capsys.readouterr().out)["run_id"]
    ft_spec = json.loads((runs_dir / ft_id / "run.json").read_text())
    weights = ft_spec["config"]["backbone"]["weights"]
    assert weights == str(runs_dir / run_id / "checkpoints" / "best.pt")  # resolved at submit
    wait_finished(runs_dir / ft_id)
    log = (runs_dir / ft_id / "stdout.log").read_text()
    assert "carries PECoP 3D adapters" in log and "backbone.family=hassony2" in log

    # the adapter weights arrived (usdl and core built in-process from the checkpoint)
    for method in ("usdl", "core"):
        extra = ["model.clip_starts=0", "model.clip_len=8"] + (["model.voter_number=1"] if method == "core" else [])
        cfg = build_run_config(method, "pd4t", overrides=SMALL[1:] + extra + [f"backbone.weights={weights}"])
        model = METHODS.get(method)(cfg).build_model()
        mixed = model.backbone.Mixed_5c if cfg.backbone.family == "piergiaj" else model.backbone.mixed_5c
        assert torch.equal(mixed.tuning_module.se, pretrained["mixed_5c.tuning_module.se"]), method
        assert torch.equal(mixed.tuning_module.conv1.weight, pretrained["mixed_5c.tuning_module.conv1.weight"])

    # export: plain strict keys, and PECoP's layout
    assert main(["export-backbone", run_id, "-o", str(tmp_path / "adapted.pt")]) == 0
    exported = torch.load(tmp_path / "adapted.pt", weights_only=True)
    assert set(exported) == set(pretrained) and has_adapters(exported)
    net = I3D(adapters=True)
    load_i3d_weights(net, tmp_path / "adapted.pt")
    assert torch.equal(net.mixed_3b.tuning_module.conv2.bias, pretrained["mixed_3b.tuning_module.conv2.bias"])
    assert main(["export-backbone", run_id, "-o", str(tmp_path / "official.pth.tar"), "--official"]) == 0
    official = torch.load(tmp_path / "official.pth.tar", weights_only=True)
    assert is_pecop_layout(official) and "logits_p.conv3d.weight" in official
    assert "model.mixed_3b.tuning_module.se" in official
