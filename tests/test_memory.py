"""Memory options (backbone.freeze_bn), example batches, `aqa plan` and `aqa methods --json`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from aqa import cli
from aqa.config import build_run_config
from aqa.plan import _row, accum_factors, fit, memory_options
from aqa.registry import METHODS
from aqa.train.optim import build_optimizer

TINY = ["backbone.name=tiny3d", "backbone.width=4", "data.num_frames=8", "data.frame_size=32"]
# CoRe on tiny3d: one 8-frame clip per video instead of ten of 16
CORE_TINY = TINY + ["model.clip_starts=[0]", "model.clip_len=8"]


def _bns(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _train(method_name: str, overrides: list[str], steps: int = 2):
    """A few optimizer steps on example batches; -> (model before, model after) BN states."""
    cfg = build_run_config(method_name, "synthetic", overrides=overrides)
    method = METHODS.get(method_name)(cfg)
    torch.manual_seed(0)
    model = method.build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(method.param_groups(model), cfg.optim)
    method.set_train_mode(model)
    for _ in range(steps):
        method.losses(model, method.example_batch(2))["loss"].backward()
        opt.step()
        opt.zero_grad()
    return model, before


def _moved(model: nn.Module, before: dict, suffix: str) -> bool:
    keys = [k for k in before if k.startswith("backbone.") and k.endswith(suffix)]
    assert keys, suffix
    return any(not torch.equal(before[k], model.state_dict()[k]) for k in keys)


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_freeze_bn_fixes_running_statistics_and_still_trains_affine(freeze_bn):
    model, before = _train("regression", TINY + [f"backbone.freeze_bn={str(freeze_bn).lower()}"])
    assert _moved(model, before, "running_mean") is not freeze_bn
    assert _moved(model, before, "running_var") is not freeze_bn
    assert _moved(model, before, ".1.weight")  # the BN affine weight (features.N.1) trains
    assert all(not m.training for m in _bns(model.backbone)) is freeze_bn
    assert model.head.training  # the rest of the model trains as usual


def test_freeze_bn_with_backbone_freeze_keeps_affine_fixed():
    model, before = _train("regression", TINY + ["backbone.freeze_bn=true", "backbone.freeze=true"])
    assert not _moved(model, before, "running_mean")
    assert not _moved(model, before, ".1.weight")


@pytest.mark.parametrize("fix_bn,freeze_bn,moves", [("true", "false", False),
                                                     ("false", "true", False),
                                                     ("false", "false", True)])
def test_core_fix_bn_and_freeze_bn(fix_bn, freeze_bn, moves):
    model, before = _train("core", CORE_TINY + [f"model.fix_bn={fix_bn}",
                                                f"backbone.freeze_bn={freeze_bn}"])
    assert _moved(model, before, "running_mean") is moves


def _small(name: str) -> list[str]:
    """Overrides that make method ``name`` cheap (its own frame count, so its clip layout
    fits): tiny3d where the method takes it, else its backbone at random init and 64 px."""
    for overrides in (["backbone.name=tiny3d", "backbone.width=4", "data.frame_size=32"],
                      ["backbone.weights=", "data.frame_size=64"]):
        try:
            cfg = build_run_config(name, "synthetic", overrides=overrides)
            method = METHODS.get(name)(cfg)
            method.losses(method.build_model(), method.example_batch(1))
            return overrides
        except Exception:  # noqa: BLE001 -- a method-specific backbone: try the next
            continue
    pytest.fail(f"method {name} trains neither on tiny3d nor on its backbone at 64 px")


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_example_batch_trains_and_sizes_add_up(name):
    overrides = _small(name)
    cfg = build_run_config(name, "synthetic", overrides=overrides)
    method = METHODS.get(name)(cfg)
    model = method.build_model()
    batch = method.example_batch(2)
    if getattr(method, "inputs", "video") == "features":  # GDLT, CoFInAl: clip features
        assert batch["features"].shape[0] == 2 and batch["length"].shape == (2,)
    else:
        assert batch["video"].shape[:3] == (2, 3, cfg.data.num_frames)
    assert set(method.required_keys) <= set(batch)
    method.set_train_mode(model)
    loss = method.losses(model, batch)["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    sizes = method.module_sizes(model)
    total = sum(p.numel() for p in model.parameters())
    assert sizes["total"] == total
    assert sizes["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    if hasattr(model, "backbone"):
        assert sizes["backbone"] == sum(p.numel() for p in model.backbone.parameters())


def _core_tree_params(in_dim: int = 2049, hidden: int = 256, depth: int = 5) -> int:
    """CoRe's RegressTree by hand: a Linear, then per level d grouped 1x1 convs (2**d groups)."""
    n = in_dim * hidden + hidden
    for d in range(depth - 1):
        g = 2 ** d
        n += (g * 2 * hidden) * hidden + g * 2 * hidden  # feature layer: out x (in / groups)
        n += (g * 2) * hidden + g * 2  # classifier
    leaves = 2 ** (depth - 1)
    return n + leaves * hidden + leaves  # per-leaf regression


def test_methods_json_lists_every_method_with_real_sizes(capsys):
    assert cli.main(["methods", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    by_name = {m["name"]: m for m in info["methods"]}
    assert sorted(by_name) == METHODS.names()
    core = by_name["core"]["module_sizes"]
    assert core["backbone"] == 12_697_264  # hassony2 I3D with the 400-way logits (model_rgb.pth)
    assert core["head"] == _core_tree_params() == 2_510_382
    assert core["total"] == core["trainable"] == core["backbone"] + core["head"]
    assert by_name["core"]["sizes_config"]["backbone"] == "i3d"
    assert all(m["module_sizes"] for m in info["methods"])
    assert "random init" in info["module_sizes_note"]
    assert {"i3d", "tiny3d"} <= {b["name"] for b in info["backbones"]}
    assert "synthetic" in {d["name"] for d in info["datasets"]}
    assert cli.main(["methods"]) == 0  # the plain listing still works
    assert "core" in capsys.readouterr().out


# ---------------------------------------------------------------- the plan: pure parts

def test_memory_options_depend_on_backbone_and_device():
    tiny = build_run_config("regression", "synthetic", overrides=TINY)
    opts = {o["name"]: o for o in memory_options(tiny, torch.device("cpu"))}
    assert opts["amp"]["status"] == "n/a" and "CUDA only" in opts["amp"]["note"]
    assert opts["checkpointing"]["status"] == "n/a"
    assert opts["freeze_bn"] == {**opts["freeze_bn"], "status": "apply",
                                 "overrides": ["backbone.freeze_bn=true"]}
    i3d = build_run_config("core", "synthetic", overrides=["backbone.checkpointing=true"])
    opts = {o["name"]: o for o in memory_options(i3d, torch.device("cuda"))}
    assert opts["amp"]["status"] == "on"  # train.amp defaults to true
    assert opts["checkpointing"]["status"] == "on"
    assert accum_factors(8) == [2, 4, 8] and accum_factors(1) == [] and accum_factors(6) == [2, 3, 6]


def test_fit_and_rows_against_a_gpu_budget():
    measured = [{"batch_size": 1, "step_s": 1.0, "peak_mb": 1000.0, "allocated_mb": 900.0},
                {"batch_size": 2, "step_s": 1.5, "peak_mb": 1500.0, "allocated_mb": 1300.0}]
    assert fit(measured, "peak_mb") == (500.0, 500.0)
    assert fit(measured[:1], "peak_mb") is None
    cuda = torch.device("cuda")
    # batch 4: 500 + 4 x 500 + 600 (CUDA context) = 3100 MB, 0.5 + 4 x 0.5 = 2.5 s;
    # allocated 500 + 4 x 400 = 2100 MB (no context: that is outside the allocator)
    row = _row("as configured", [], measured, 4, 1, 1, cuda, 3000.0, 0.0)
    assert (row["peak_mb"], row["step_s"], row["fits"], row["allocated_mb"]) == (3100.0, 2.5, False, 2100.0)
    # accumulation x2: per-step batch 2 (measured: 1500 + 600), two micro-steps per update
    row = _row("x", [], measured, 4, 1, 2, cuda, 3000.0, 0.0)
    assert (row["batch_size"], row["accum_steps"], row["effective_batch"]) == (2, 2, 4)
    assert (row["peak_mb"], row["step_s"], row["fits"]) == (2100.0, 3.0, True)
    cpu = _row("x", [], measured, 4, 1, 1, torch.device("cpu"), None, 0.0)
    assert (cpu["peak_mb"], cpu["fits"]) == (2500.0, None)
    oom = _row("x", [], [{"batch_size": 1, "oom": True}], 4, 1, 1, cuda, 3000.0, 0.0)
    assert oom["fits"] is False and "out of memory" in oom["note"]
    # out of memory at batch 2, but batch 1 was measured: a batch-1 row reads that point
    half = _row("x", [], [measured[0], {"batch_size": 2, "oom": True}], 2, 1, 2, cuda, 3000.0, 0.0)
    assert (half["peak_mb"], half["fits"]) == (1600.0, True)


# ---------------------------------------------------------------- the plan: measured

def test_plan_cli_measures_each_option_in_a_child(capsys):
    args = ["plan", "--method", "regression", "--steps", "2", "--json"]
    for item in TINY + ["train.batch_size=2"]:
        args += ["--set", item]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"] == "cpu" and result["module_sizes"]["total"] > 0
    names = [r["option"] for r in result["rows"]]
    assert names == ["as configured", "as configured +accum x2", "+freeze_bn",
                     "+freeze_bn +accum x2"]
    assert [d["option"] for d in result["dry_run"]] == ["as configured", "+freeze_bn"]
    for d in result["dry_run"]:
        assert [p["batch_size"] for p in d["points"]] == [1, 2]
        assert all(p["peak_mb"] >= 0 and p["step_s"] > 0 for p in d["points"])  # tiny: may be 0
    base, accum = result["rows"][0], result["rows"][1]
    points = {p["batch_size"]: p for p in result["dry_run"][0]["points"]}
    assert base["peak_mb"] == round(points[2]["peak_mb"], 1)  # measured at the batch itself
    assert accum["peak_mb"] == round(points[1]["peak_mb"], 1)
    assert accum["step_s"] == round(2 * points[1]["step_s"], 4)  # two micro-steps an update
    assert accum["overrides"] == ["train.batch_size=1", "optim.accum_steps=2"]
    assert all(r["fits"] is None for r in result["rows"]) and result["budget_mb"] is None
    assert any("not a GPU number" in n for n in result["notes"])
    assert any("no GPU" in n for n in result["notes"])


def test_plan_cli_errors(capsys):
    assert cli.main(["plan", "--method", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert cli.main(["plan", "--method", "regression", "--set", "train.batch_size=abc"]) == 2
    assert "train.batch_size: expected int" in capsys.readouterr().err
    assert cli.main(["plan", "--method", "regression", "--set", "model.loss=huber"]) == 2
    assert "model.loss" in capsys.readouterr().err
    assert cli.main(["plan", "--method", "regression", "--gpus", "99"]) == 2
    assert "asked for 99 GPU(s)" in capsys.readouterr().err
