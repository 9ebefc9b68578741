import torch

from aqa.config import build_run_config
from aqa.models.base import count_parameters
from aqa.registry import BACKBONES, METHODS


def test_every_backbone_maps_clips_to_features():
    for name, entry in BACKBONES.items():
        model = entry.build(entry.config_cls())
        video = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8)
        assert model(video).shape == (2, model.out_dim), name


def test_every_method_trains_and_predicts_on_tiny3d():
    for name, entry in METHODS.items():
        cfg = build_run_config(name, "synthetic")
        method = entry(cfg)
        model = method.build_model()
        batch = {"video": torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8),
                 "score": torch.tensor([30.0, 60.0]), "difficulty": torch.tensor([2.0, 3.0]),
                 "id": ["a", "b"]}
        losses = method.losses(model, batch)
        losses["loss"].backward()
        assert losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
        assert method.predict(model, batch).shape == (2,)


def test_tiny3d_parameter_count():
    # 3x3x3 convs without bias + BN: 3*16*27 + 16*32*27 + 32*64*27 + 64*64*27 + 2*(16+32+64+64)
    model = BACKBONES.get("tiny3d").build(BACKBONES.get("tiny3d").config_cls())
    assert count_parameters(model) == 1296 + 13824 + 55296 + 110592 + 352


def test_backbone_freeze_keeps_only_the_head_trainable():
    cfg = build_run_config("regression", "synthetic", overrides=["backbone.freeze=true"])
    model = METHODS.get("regression")(cfg).build_model()
    assert count_parameters(model, trainable_only=True) == 64 + 1
