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
