"""TSA-Net blocks: tube masks against hand-made tables, the attention's limits (an all-true mask
is a non-local block over the whole map, an all-false one is the plain network)."""

import numpy as np
import pytest
import torch

from aqa.models.tsa import TSANet, TubeSelfAttention, fill_convex, tube_mask


def test_fill_convex_includes_the_edges_and_truncates_vertices():
    m = fill_convex(np.array([[3.9, 3.2], [10.5, 3.0], [10.0, 10.9], [3.0, 10.0]]), 14, 14)
    assert m.sum() == 64 and m[3:11, 3:11].all()  # cells 3..10 on both axes
    tri = fill_convex(np.array([[0, 0], [4, 0], [0, 4], [0, 4]]), 6, 6)
    assert tri.astype(int).tolist()[:5] == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0],
                                            [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                                            [1, 0, 0, 0, 0, 0]]
    assert fill_convex(np.array([[2, 5]] * 4), 6, 6).sum() == 1  # a point


def test_tube_mask_ors_groups_of_four_frames():
    boxes = np.zeros((32, 8))
    boxes[:] = [0, 0, 45, 0, 45, 25, 0, 25]   # cell (0, 0) .. (0.98, 0.97) -> cell 0,0 only
    boxes[5] = [320, 180, 365, 180, 365, 205, 320, 205]  # frame 5: cell (7, 7) (x/45.7, y/25.7)
    mask = tube_mask(boxes, starts=(0, 16), clip_len=16, t_ratio=4)
    assert mask.shape == (8, 14, 14)
    assert mask[1, 7, 7] and not mask[0, 7, 7] and not mask[2, 7, 7]  # frames 4-7 only
    assert all(mask[t, 0, 0] for t in range(8) if t != 1) and mask[1, 0, 0]


def nonlocal_full(tsa, x):
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    return torch.cat([tsa.block(flat[i:i + 1]) for i in range(b)]).reshape(x.shape)


def test_all_true_mask_is_a_non_local_block_over_the_whole_map():
    torch.manual_seed(0)
    tsa = TubeSelfAttention(8).eval()
    with torch.no_grad():
        tsa.W[1].weight.normal_()
        tsa.W[1].bias.normal_()
        tsa.W[1].running_var.fill_(2.0)
    x = torch.randn(2, 8, 4, 3, 3)
    with torch.no_grad():
        out = tsa(x, torch.ones(2, 4, 3, 3, dtype=torch.bool))
        assert torch.allclose(out, nonlocal_full(tsa, x), atol=1e-5)
        assert not torch.allclose(out, x)
        assert torch.equal(tsa(x, torch.zeros(2, 4, 3, 3, dtype=torch.bool)), x)


def test_zero_initialised_bn_makes_it_start_as_the_identity():
    tsa = TubeSelfAttention(8).eval()
    x = torch.randn(1, 8, 4, 3, 3)
    with torch.no_grad():
        assert torch.allclose(tsa(x, torch.ones(1, 4, 3, 3, dtype=torch.bool)), x)


def rel(a, b):
    """Relative difference (random-init I3D features are tiny, so absolute tolerances mislead)."""
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def i3d():
    from aqa.models.i3d import I3D
    torch.manual_seed(0)
    return I3D(family="piergiaj", num_classes=400).eval()


def test_all_false_mask_equals_the_plain_network(i3d):
    video = torch.randint(0, 256, (1, 3, 32, 112, 112), dtype=torch.uint8)
    tsa_net = TSANet(i3d, use_tsa=True, starts=(0, 16)).eval()
    plain = TSANet(i3d, use_tsa=False, starts=(0, 16)).eval()
    with torch.no_grad():
        tsa_net.tsa.W[1].weight.fill_(1.0)  # not the identity any more where the mask is set
        a = plain(video)
        h = i3d.features_at(video[:, :, :16], "MaxPool3d_4a_3x3").shape  # (1, 480, 4, 7, 7)
        mask_off = torch.zeros(1, 2 * h[2], h[3], h[4], dtype=torch.bool)
        b = tsa_net(video, mask_off)
        c = tsa_net(video, torch.ones_like(mask_off))
    assert a.shape == (1, 1024)
    assert rel(a, b) < 1e-5 and rel(a, c) > 1e-3
    # the plain network is the per-clip I3D feature averaged over clips
    with torch.no_grad():
        per_clip = torch.stack([i3d(video[:, :, s:s + 16]) for s in (0, 16)], 1).mean(1)
    assert rel(a, per_clip) < 1e-5


def test_official_clip_order_interleaves_clips(i3d):
    video = torch.randint(0, 256, (1, 3, 32, 64, 64), dtype=torch.uint8)
    off = torch.zeros(1, 8, 4, 4, dtype=torch.bool)  # the attention is the identity here
    with torch.no_grad():
        plain = TSANet(i3d, use_tsa=False, starts=(0, 16))(video)
        fixed = TSANet(i3d, use_tsa=True, starts=(0, 16)).eval()(video, off)
        bug = TSANet(i3d, use_tsa=True, starts=(0, 16), clip_order_bug=True).eval()(video, off)
    assert rel(fixed, plain) < 1e-5 and rel(fixed, bug) > 1e-3
