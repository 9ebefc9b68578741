"""train.compile=backbone: the backbone's forward compiled in place (torch.compile), the same
losses and checkpoint keys as the plain model; bad values refused with what to use. The tests
use the ``eager`` backend (graph capture without code generation: no compiler needed); what it
gains with ``inductor`` on a GPU is for bench/train_step.py there (docs/performance.md)."""

from __future__ import annotations

import copy

import pytest
import torch

from aqa.config import build_run_config
from aqa.errors import ConfigError
from aqa.registry import METHODS
from aqa.train.loop import compile_backbone

TINY = ["data.num_frames=8", "data.frame_size=32"]


def test_compiled_backbone_same_losses_gradients_and_keys():
    cfg = build_run_config("regression", "synthetic", overrides=TINY + [
        "train.compile=backbone", "train.compile_backend=eager"])
    torch.manual_seed(0)
    method = METHODS.get("regression")(cfg)
    model = method.build_model()
    plain = copy.deepcopy(model)
    compile_backbone(model, cfg)
    assert model.backbone._compiled_call_impl is not None  # nn.Module.compile, in place
    assert plain.backbone._compiled_call_impl is None
    assert list(model.state_dict()) == list(plain.state_dict())  # checkpoints unchanged
    batch = method.example_batch(2)
    got, want = method.losses(model, batch), method.losses(plain, batch)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    sum(got.values()).backward()
    sum(want.values()).backward()
    for (name, a), b in zip(model.named_parameters(), plain.parameters()):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_off_leaves_the_model_alone():
    cfg = build_run_config("regression", "synthetic", overrides=TINY)
    assert cfg.train.compile == "off"
    model = METHODS.get("regression")(cfg).build_model()
    compile_backbone(model, cfg)
    assert model.backbone._compiled_call_impl is None


@pytest.mark.parametrize("overrides, message", [
    (["train.compile=all"], "train.compile='all' is not one of off, backbone"),
    (["train.compile=backbone", "train.compile_backend=nope"],
     "train.compile_backend='nope' is not a torch.compile backend here; one of"),
])
def test_bad_values_are_refused(overrides, message):
    cfg = build_run_config("regression", "synthetic", overrides=TINY + overrides)
    model = METHODS.get("regression")(cfg).build_model()
    with pytest.raises(ConfigError, match=message):
        compile_backbone(model, cfg)


def test_a_model_without_a_backbone_is_refused():
    cfg = build_run_config("regression", "synthetic", overrides=TINY + ["train.compile=backbone"])
    with pytest.raises(ConfigError, match="has no backbone module to compile; use "
                                          "train.compile=off"):
        compile_backbone(torch.nn.Linear(2, 1), cfg)


@pytest.mark.slow
def test_a_run_with_a_compiled_backbone_finishes(runs_dir, fast_overrides):
    from aqa.jobs import local
    from conftest import wait_for

    path = local.submit(runs_dir, "regression", "synthetic", overrides=fast_overrides + [
        "train.compile=backbone", "train.compile_backend=eager"])
    wait_for(lambda: local.run_status(path) in {"finished", "failed", "crashed"}, timeout=300,
             what="the run to end")
    assert local.run_status(path) == "finished", (path / "stdout.log").read_text()
