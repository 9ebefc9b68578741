import pytest

from aqa.config import OptimConfig
from aqa.train.optim import lr_factor


@pytest.mark.parametrize("schedule, warmup, expected", [
    ("none", 0, [1.0, 1.0, 1.0, 1.0]),
    ("cosine", 0, [1.0, 0.8535533905932737, 0.5, 0.14644660940672627]),
    ("cosine", 1, [0.5, 1.0, 0.75, 0.25]),
    ("step", 0, [1.0, 1.0, 0.1, 0.1]),
])
def test_lr_factor_table(schedule, warmup, expected):
    cfg = OptimConfig(schedule=schedule, warmup_epochs=warmup, step_size=2, gamma=0.1)
    got = [lr_factor(e, cfg, epochs=4) for e in range(4)]
    assert got == pytest.approx(expected)


class _Param:
    """What kernel_options reads of a parameter."""

    def __init__(self, cuda: bool, floating: bool = True):
        self.is_cuda, self._floating = cuda, floating

    def is_floating_point(self) -> bool:
        return self._floating


def test_kernel_options_per_device_and_choice():
    from aqa.errors import ConfigError
    from aqa.train.optim import kernel_options

    assert kernel_options([_Param(True), _Param(True)], "auto") == {"fused": True}
    assert kernel_options([_Param(True), _Param(False)], "auto") == {}  # torch's default
    assert kernel_options([_Param(True, floating=False)], "auto") == {}
    assert kernel_options([_Param(False)], "auto") == {}  # the CPU: the parity tests' loop
    assert kernel_options([_Param(False)], "fused") == {"fused": True}
    assert kernel_options([_Param(False)], "foreach") == {"foreach": True}
    assert kernel_options([_Param(False)], "loop") == {"foreach": False}
    with pytest.raises(ConfigError, match="optim.kernels='fast' is not one of auto, fused"):
        kernel_options([], "fast")


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_every_kernel_takes_the_same_steps(name):
    """fused, foreach and the loop (and auto on the CPU, the loop) move the weights alike."""
    import torch

    from aqa.train.optim import build_optimizer

    def trained(kernels: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
        opt = build_optimizer([{"params": list(model.parameters())}],
                              OptimConfig(name=name, lr=0.01, weight_decay=0.01, kernels=kernels))
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
        for _ in range(5):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        return model, opt

    ref, ref_opt = trained("loop")
    assert ref_opt.defaults["foreach"] is False
    for kernels in ("auto", "fused", "foreach"):
        model, opt = trained(kernels)
        assert opt.defaults.get("fused") is (True if kernels == "fused" else None)
        for a, b in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
