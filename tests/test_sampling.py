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


def test_vspp_literal_table():
    # 32 frames, 4 segments of 8; segment 2 (clip frames 8..16) at rate 3, the rest at 1
    # (frame i of the segment is `rate` after frame i-1; more tables in test_pecop.py)
    idx = S.vspp_indices(200, 10, fr=1, rate=3, segment=2)
    assert idx[:8] == list(range(10, 18))
    assert idx[8:17] == [20, 23, 26, 29, 32, 35, 38, 41, 44]
    assert idx[17:20] == [45, 46, 47] and len(idx) == 32
    assert S.vspp_indices(20, 15, fr=2, rate=1, segment=4, clip_len=8, max_segment=4)[:4] == [15, 17, 19, 0]


def test_draw_vspp_labels():
    rng = np.random.default_rng(0)
    draws = [S.draw_vspp(rng, 100, fr=3) for _ in range(200)]
    assert {d.pace for d in draws} == {0, 1, 3, 4}  # pace class fr-1 = 2 never occurs
    assert {d.segment for d in draws} == {0, 1, 2, 3}
    assert all(len(d.indices) == 32 and max(d.indices) < 100 for d in draws)


@pytest.mark.parametrize("name", sorted(S.PLANS))
def test_every_plan_on_a_21_frame_clip_and_an_exact_fit(name):
    plan = S.PLANS[name]
    short = S.offset_window(0, 21, plan.window)  # the 21-frame dive clip
    assert S.window_clips(short, plan).max() == 20 and short == sorted(short)
    exact = S.offset_window(0, plan.window, plan.window)
    assert exact == list(range(plan.window))


def test_real_dive_clip_samples_to_every_method_clip_shape():
    from aqa.video import probe, read_frames
    from conftest import shared_clip

    path = shared_clip()
    n = probe(path).num_frames
    assert n == 21
    for name, plan in S.PLANS.items():
        window = S.core_window(n, n, length=plan.window) if name != "jigsaws" else \
            S.linspace_indices(n, plan.window)
        clips = S.window_clips(window, plan)  # (n_clips, clip_len)
        frames = read_frames(path, clips.ravel().tolist(), size=(112, 112))
        assert frames.shape == (clips.size, 112, 112, 3)
        assert frames.reshape(*clips.shape, 112, 112, 3).shape[:2] == (len(plan.starts), plan.clip_len)
