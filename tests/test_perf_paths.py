"""The inference fast paths give exactly what the training paths give (bench/score.py measures
how much faster they are; docs/performance.md).

- I3D's max pools under no_grad: a max over strided views per dimension instead of ATen's
  max_pool3d_with_indices, and ReLU in place: bit-identical features, both families, adapters.
- USDL/MUSDL and TSA/Plain-Net in eval mode: all clips in one backbone batch instead of one call
  a clip: bit-identical outputs (BatchNorm on running statistics does not mix the batch).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aqa.models.i3d_net import I3D, separable_max_pool3d


@pytest.mark.parametrize("kernel,stride,ceil_mode", [
    ((3, 3, 3), (1, 1, 1), True), ((1, 3, 3), (1, 2, 2), True), ((3, 3, 3), (2, 2, 2), True),
    ((2, 2, 2), (2, 2, 2), True), ((3, 3, 3), (2, 2, 2), False), ((1, 3, 3), (1, 2, 2), False)])
def test_separable_max_pool_equals_aten(kernel, stride, ceil_mode):
    g = torch.Generator().manual_seed(0)
    pool = nn.MaxPool3d(kernel, stride, ceil_mode=ceil_mode)
    for shape in [(2, 3, 5, 9, 8), (1, 4, 4, 7, 7), (1, 2, 3, 3, 4), (1, 1, 3, 6, 5)]:
        x = torch.randn(shape, generator=g)  # negative values too: no zero-padding shortcut
        x[0, 0, 0, 0, 0] = float("nan") if shape[2] == 5 else x[0, 0, 0, 0, 0]
        got = separable_max_pool3d(x, kernel, stride, ceil_mode)
        want = pool(x)
        assert got.shape == want.shape, shape
        assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0)), shape
        assert got.is_contiguous()


@pytest.mark.parametrize("family,adapters", [("piergiaj", False), ("hassony2", True)])
def test_i3d_inference_path_is_bit_identical_to_the_autograd_path(family, adapters):
    torch.manual_seed(0)
    net = I3D(family, input_norm="imagenet", adapters=adapters).eval()
    video = torch.randint(0, 256, (1, 3, 8, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = net(video)  # separable pools, in-place ReLU
    x = net.normalize(video).requires_grad_(True)  # ATen's pool and ReLU (autograd needs them)
    slow = net(x)
    assert torch.equal(fast, slow.detach())
    slow.sum().backward()  # and the autograd path still backpropagates
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _only_top_training(model: nn.Module) -> nn.Module:
    """The top module in training mode (its per-clip loop), every submodule in eval."""
    model.eval()
    model.training = True
    return model


def _same(packed: torch.Tensor, per_clip: torch.Tensor, layout: str) -> bool:
    """Contiguous: bit for bit. Channels-last: oneDNN may block a batch of several clips
    differently from a batch of one (the order of float sums), so to float noise."""
    if layout == "contiguous":
        return torch.equal(packed, per_clip)
    return torch.allclose(packed, per_clip, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_usdl_eval_batches_its_clips_with_the_same_output(layout):
    from aqa.config import build_run_config
    from aqa.registry import METHODS

    cfg = build_run_config("musdl", "mtl_aqa", overrides=[
        "backbone.weights=", "data.num_frames=11", "data.frame_size=32", "model.clip_starts=0,3",
        "model.clip_len=8", f"backbone.memory_format={layout}"])
    torch.manual_seed(0)
    model = METHODS.get("musdl")(cfg).build_model().eval()
    assert not model.pack_clips  # the official one forward a clip while training
    video = torch.randint(0, 256, (1, 3, 11, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    calls = []
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        packed = model(video)
        assert len(calls) == 1  # one backbone call for the two clips
        per_clip = _only_top_training(model)(video)
        assert len(calls) == 3
    assert _same(packed, per_clip, layout)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("method", ["tsa", "plain"])
def test_tsa_eval_batches_its_clips_with_the_same_output(method, layout):
    from aqa.config import build_run_config
    from aqa.registry import METHODS

    cfg = build_run_config(method, "frfs", overrides=[
        "backbone.weights=", "data.num_frames=20", "data.frame_size=32", "model.clip_starts=0,4",
        "model.clip_len=16", f"backbone.memory_format={layout}"])
    torch.manual_seed(0)
    m = METHODS.get(method)(cfg)
    model = m.build_model().eval()
    batch = m.example_batch(1)
    tubes, _ = m.tubes(batch)
    with torch.no_grad():
        packed = model(batch["video"], tubes=tubes)
        per_clip = _only_top_training(model)(batch["video"], tubes=tubes)
    assert _same(packed, per_clip, layout)


def _motion_boxes_reference(video, window=4, threshold=0.3, quantile=0.02, margin=0.08,
                            min_side=0.25, noise=2.0):
    """motion_boxes as first written: the whole clip at once in one thread, the grey frames a
    float32 copy then np.mean over the channels, the temporal filter along the first axis, and
    np.quantile over the coordinates of each frame's moving pixels."""
    import numpy as np
    from scipy.ndimage import uniform_filter, uniform_filter1d

    from aqa.models.tubes import _grow, full_frame_boxes, rect_corners

    v = np.asarray(video, dtype=np.float32)
    v = v.mean(axis=3) if v.ndim == 4 else v
    t, h, w = v.shape
    if t < 2:
        return full_frame_boxes(t, w, h), False
    d = np.abs(np.diff(v, axis=0))
    motion = np.empty_like(v)
    motion[0], motion[-1] = d[0], d[-1]
    if t > 2:
        motion[1:-1] = (d[:-1] + d[1:]) / np.float32(2)
    motion = uniform_filter1d(motion, 2 * window + 1, axis=0, mode="nearest")
    motion = uniform_filter(motion, size=(1, 3, 3), mode="nearest")
    boxes = np.full((t, 4), np.nan)
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(t):
        peak = float(motion[i].max())
        if peak < noise:
            continue
        sel = motion[i] >= threshold * peak
        x0, x1 = np.quantile(xs[sel], [quantile, 1 - quantile])
        y0, y1 = np.quantile(ys[sel], [quantile, 1 - quantile])
        (bx0, bx1), (by0, by1) = (_grow(x0, x1, w, margin, min_side),
                                  _grow(y0, y1, h, margin, min_side))
        boxes[i] = bx0, by0, bx1, by1
    have = ~np.isnan(boxes[:, 0])
    if not have.any():
        return full_frame_boxes(t, w, h), False
    idx = np.flatnonzero(have)
    nearest = idx[np.abs(np.arange(t)[:, None] - idx[None, :]).argmin(axis=1)]
    boxes = uniform_filter1d(boxes[nearest], 2 * window + 1, axis=0, mode="nearest")
    return np.stack([rect_corners(*b) for b in boxes]), True


def _moving_block(dtype, t=30, h=48, w=64):
    import numpy as np

    rng = np.random.default_rng(3)
    video = rng.integers(0, 40, (t, h, w, 3)).astype(dtype)
    for i in range(t):  # a bright block moving right, with noise under it
        video[i, 10:30, 5 + i:25 + i] = 200 + rng.random((20, 20, 3)) * 50
    return video


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("cores", [1, 2, 3, 4])
def test_motion_boxes_equal_the_whole_clip_procedure(dtype, cores, monkeypatch):
    """Bands of rows and groups of frames in threads, quantiles from counts: the same boxes to
    the last bit as the whole clip in one thread with np.quantile, for any number of cores."""
    import numpy as np

    from aqa.models import tubes

    monkeypatch.setattr(tubes, "_cores", lambda: cores)
    video = _moving_block(dtype)
    want, found = _motion_boxes_reference(video)
    assert found
    layouts = [video, np.ascontiguousarray(video.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)]
    for v in layouts:  # (T, H, W, C) and the (C, T, H, W) clip's permuted view TSA passes
        got, got_found = tubes.motion_boxes(v)
        assert got_found and np.array_equal(got, want)
    rng = np.random.default_rng(cores)
    for k in range(60):  # small, odd shapes; still clips; grey (T, H, W) input
        shape = tuple(int(x) for x in (rng.integers(1, 9), rng.integers(1, 12),
                                       rng.integers(1, 12)))
        v = (rng.random(shape + (3,)) * rng.random() * 255).astype(dtype)
        if k % 5 == 0:
            v[:] = v[0]
        if k % 7 == 0:
            v = v[..., 0]
        want, want_found = _motion_boxes_reference(v)
        got, got_found = tubes.motion_boxes(v)
        assert got_found == want_found and np.array_equal(got, want), shape


def test_moving_pixels_cut_as_one_frame_at_a_time():
    """The cut of all frames at once equals ``m >= threshold * float(m.max())`` frame by frame,
    pixels just either side of the float32 rounding of the float64 cut included."""
    import numpy as np

    from aqa.models.tubes import _moving

    rng = np.random.default_rng(0)
    part = (rng.random((200, 4, 5)) * 255).astype(np.float32)
    for m in part:  # pixels on and next to the cut as numpy rounds it
        c = np.float32(0.3 * float(m.max()))
        m[0, :3] = [np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))]
    peaks, sel = _moving(part, 0.3)
    for m, p, s in zip(part, peaks, sel):
        assert p == float(m.max()) and np.array_equal(s, m >= 0.3 * float(m.max()))


def test_count_quantiles_equal_np_quantile():
    import numpy as np

    from aqa.models.tubes import _count_quantiles

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 4, 30) * (rng.random(30) < p) for p in (0.03, 0.2, 1.0)
            for _ in range(200)]
    rows += [np.eye(30, dtype=np.int64)[i] for i in range(30)]  # one pixel
    rows += [np.eye(30, dtype=np.int64)[i] * 2 for i in range(30)]  # one place, twice
    for _ in range(300):  # a few places far apart: large gaps between order statistics
        r = np.zeros(5000, np.int64)
        r[rng.choice(5000, int(rng.integers(1, 40)), replace=False)] = rng.integers(1, 5)
        rows.append(r)
    rows = [r for r in rows if r.sum() > 0]
    got = np.concatenate([_count_quantiles(np.stack([r for r in rows if len(r) == n]), 0.02)
                          for n in (30, 5000)])
    rows = [r for n in (30, 5000) for r in rows if len(r) == n]
    for r, g in zip(rows, got):
        coords = np.repeat(np.arange(len(r)), r)
        for q, value in zip((0.02, 0.98), g):
            want = np.quantile(coords, q)
            assert value == want and np.float64(value).tobytes() == np.float64(want).tobytes()


def test_tube_attention_by_index_equals_the_boolean_mask():
    """The attention gathers and writes back the masked cells by their flat indices: the same
    cells, the same order, the same output and gradients as boolean-mask indexing."""
    from aqa.models.tsa import TubeSelfAttention

    torch.manual_seed(0)
    att = TubeSelfAttention(8)
    nn.init.normal_(att.W[1].weight)  # not the identity start
    x = torch.randn(2, 8, 4, 5, 6, requires_grad=True)
    mask = torch.rand(2, 4, 5, 6) > 0.6
    mask[1] = False  # a sample without a tube stays as it was
    out = att(x, mask)

    ref = x.clone()
    for b in range(2):
        if mask[b].any():
            ref[b][:, mask[b]] = att.block(x[b][:, mask[b]].unsqueeze(0)).squeeze(0)
    assert torch.equal(out, ref)
    assert torch.equal(out[1], x[1])
    g_out = torch.autograd.grad(out.square().sum(), [x, att.g.weight])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, att.g.weight])
    assert all(torch.equal(a, b) for a, b in zip(g_out, g_ref))


@pytest.mark.parametrize("family", ["hassony2", "piergiaj"])
def test_i3d_channels_last_gives_the_contiguous_results_to_float_noise(family):
    """backbone.memory_format: the same forward and gradients in either layout (float sums in
    another order), a contiguous feature map either way, and 'auto' = channels-last on the CPU."""
    from aqa.errors import ConfigError

    nets = {}
    for layout in ("contiguous", "channels_last", "auto"):
        torch.manual_seed(0)
        nets[layout] = I3D(family, input_norm="imagenet", memory_format=layout)
    video = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    assert nets["auto"].channels_last(video) and not nets["contiguous"].channels_last(video)
    outs, grads, seen = {}, {}, {}
    for layout, net in nets.items():
        net.eval()  # BN on running statistics (CoRe's fix_bn); the parameters still train
        first = next(m for m in net.modules() if isinstance(m, nn.Conv3d))
        first.register_forward_hook(lambda m, a, o, k=layout: seen.__setitem__(
            k, o.is_contiguous(memory_format=torch.channels_last_3d)))
        fmap = net.features_at(video)
        assert fmap.is_contiguous()
        out = net.pool(fmap).flatten(2).mean(2)
        out.square().sum().backward()
        outs[layout] = out.detach()
        grads[layout] = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert torch.equal(outs["auto"], outs["channels_last"])
    assert torch.allclose(outs["channels_last"], outs["contiguous"], rtol=1e-5, atol=1e-6)
    assert seen == {"contiguous": False, "channels_last": True, "auto": True}
    for name, g in grads["contiguous"].items():
        scale = g.abs().max().item()
        assert (grads["channels_last"][name] - g).abs().max().item() <= 1e-4 * scale + 1e-9, name
    with pytest.raises(ConfigError, match="memory_format"):
        I3D(family, memory_format="nhwc")
