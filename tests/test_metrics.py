import math

import pytest
import scipy.stats

from aqa import metrics as M


def test_spearman_hand_computed_with_ties():
    # ranks p: 1, 2.5, 2.5, 4, 5; ranks y: 2, 1, 3.5, 3.5, 5 -> rho = 0.7631578947...
    p = [1, 2, 2, 3, 5]
    y = [2, 1, 3, 3, 4]
    assert M.spearman(p, y) == pytest.approx(0.7631578947368421, abs=1e-12)
    assert M.spearman(p, y) == pytest.approx(scipy.stats.spearmanr(p, y).correlation)


def test_spearman_perfect_and_reversed():
    assert M.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert M.spearman([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)


def test_constant_predictions_give_nan():
    assert math.isnan(M.spearman([5, 5, 5], [1, 2, 3]))
    assert math.isnan(M.rl2([1, 2, 3], [4, 4, 4]))


def test_l2_and_rl2_use_the_evaluated_range():
    y = [0.0, 50.0, 104.5]   # the MTL-AQA test split's range is 0-104.5
    p = [10.45, 50.0, 104.5]
    assert M.l2(p, y) == pytest.approx(10.45 ** 2 / 3)
    assert M.rl2(p, y) == pytest.approx((10.45 / 104.5) ** 2 / 3)  # = 0.01/3
    assert M.rl2(p, y) * 100 == pytest.approx(1 / 3)


def test_accuracy_threshold():
    assert M.accuracy([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1]) == 0.5


def test_fisher_z_mean_matches_the_papers_averages():
    usdl = [0.8099, 0.7570, 0.6538, 0.7109, 0.9166, 0.8878]   # aqa/papers.py
    tsa = [0.8379, 0.8004, 0.6657, 0.6962, 0.9493, 0.9334]
    assert round(M.fisher_z_mean(usdl), 4) == 0.8102
    assert round(M.fisher_z_mean(tsa), 4) == 0.8476
    with pytest.raises(ValueError):
        M.fisher_z_mean([1.0, 0.5])


def test_bootstrap_ci_is_seeded_and_brackets_rho():
    p = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    y = [2, 1, 4, 3, 6, 5, 8, 7, 10, 9]
    lo, hi = M.bootstrap_ci(p, y, n=300, seed=1)
    assert (lo, hi) == M.bootstrap_ci(p, y, n=300, seed=1)
    assert lo <= M.spearman(p, y) <= hi
    assert 0.5 < lo < hi <= 1.0


def test_shape_errors():
    with pytest.raises(ValueError):
        M.l2([1, 2], [1])
    with pytest.raises(ValueError):
        M.spearman([], [])
