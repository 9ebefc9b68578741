"""minmax_downsample: literal tables."""

import numpy as np
import pytest

from aqa.plotting import minmax_downsample


def test_short_series_unchanged():
    x, y = minmax_downsample([0, 1, 2], [5.0, 1.0, 3.0], buckets=2)
    assert x.tolist() == [0, 1, 2] and y.tolist() == [5.0, 1.0, 3.0]


def test_keeps_min_and_max_of_each_bucket_in_order():
    y = [3, 9, 1, 4, 4, 0, 7, 2, 5, 6]  # two buckets of five
    x, out = minmax_downsample(range(10), y, buckets=2)
    # bucket 0..4: min 1 at x=2, max 9 at x=1; bucket 5..9: min 0 at x=5, max 7 at x=6; ends kept
    assert x.tolist() == [0, 1, 2, 5, 6, 9]
    assert out.tolist() == [3, 9, 1, 0, 7, 6]


def test_large_series_is_bounded_and_keeps_the_spike():
    y = np.zeros(100_000)
    y[54_321] = 42.0
    x, out = minmax_downsample(np.arange(100_000), y, buckets=500)
    assert len(x) <= 2 * 500 + 2
    assert 54_321 in x.tolist() and out.max() == 42.0


def test_nan_bucket_and_bad_input():
    x, out = minmax_downsample(range(6), [np.nan, np.nan, np.nan, 1.0, 2.0, 0.5], buckets=2)
    assert x.tolist() == [0, 4, 5]  # the all-NaN bucket keeps its first point (index 0)
    with pytest.raises(ValueError):
        minmax_downsample([1, 2], [1], buckets=1)
