import numpy as np
import pytest

from aqa.data import sampling as S


def test_clip_plans():
    assert S.CORE.starts == (0, 10, 20, 30, 40, 50, 60, 70, 80, 86)
    assert S.clip_indices(S.CORE)[-1].tolist() == list(range(86, 102))  # frame 102 unused
    assert S.clip_indices(S.MUSDL)[-1].tolist() == list(range(87, 103))  # the last 16
    assert S.clip_indices(S.TSA).shape == (7, 16)
    tpt = S.clip_indices(S.TPT)
    assert tpt.shape == (20, 8) and tpt[-1].tolist() == list(range(95, 103))
    assert set(S.clip_indices(S.CORE).ravel()) == set(range(102))


@pytest.mark.parametrize("end, n, shift, first, last", [
    (150, 300, 0, 47, 149),
    (150, 300, -3, 44, 146),
    (150, 300, 3, 50, 152),
    (60, 300, 0, 0, 102),     # would start before 0: moved in
    (400, 300, 0, 197, 299),  # would end past the sample: moved in
    (103, 103, 0, 0, 102),    # exact fit
])
def test_core_window(end, n, shift, first, last):
    w = S.core_window(end, n, shift)
    assert (len(w), w[0], w[-1]) == (103, first, last)
    assert w == list(range(first, last + 1))


def test_short_sample_is_resampled_with_repetition():
    w = S.core_window(end_frame=21, num_available=21)  # the real sample clip has 21 frames
    assert len(w) == 103
    assert w[:12] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2]
    assert w[-5:] == [19, 20, 20, 20, 20]
    counts = [w.count(f) for f in range(21)]  # every frame 4 or 5 times, in order
    assert set(counts) == {4, 5} and sum(counts) == 103 and w == sorted(w)
    clips = S.window_clips(w, S.CORE)
    assert clips.shape == (10, 16) and clips.max() <= 20


def test_offset_window_and_linspace():
    assert S.offset_window(3, 120)[:3] == [3, 4, 5]
    assert S.offset_window(10, 110)[-1] == 109  # moved in: 110 frames hold 103 from 7
    assert S.linspace_indices(10, 4) == [0, 3, 6, 9]
    assert S.linspace_indices(200, 160)[:5] == [0, 1, 2, 3, 5]
    assert len(S.linspace_indices(5, 160)) == 160


def test_window_size_is_checked():
    with pytest.raises(ValueError):
        S.window_clips(list(range(50)), S.CORE)
    assert np.array_equal(S.window_clips(list(range(103)), S.TSA)[0], np.arange(16))
