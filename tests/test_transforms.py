import numpy as np
import pytest
import torch
from PIL import Image

from aqa.data import transforms as T
from aqa.data.base import read_images
from aqa.errors import ConfigError


def halves(tmp_path, w=640, h=360):
    """A frame red on the left half, blue on the right, as a JPEG-free PNG."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    p = tmp_path / "f.png"
    Image.fromarray(a).save(p)
    return p


def test_tvv_quirk_is_256_wide_455_tall_and_bilinear():
    assert T.tvv_resize_size((455, 256)) == (256, 455)
    assert T.tvv_interpolation("nearest") == "bilinear"
    assert T.tvv_interpolation("bilinear") == "nearest"
    p = T.build_pipeline("tvv", 224)
    assert (p.decode_size, p.interpolation) == ((256, 455), "bilinear")
    assert T.build_pipeline("tvv_fixed").decode_size == (455, 256)


@pytest.mark.parametrize("name, decoded_hw", [("tvv", (455, 256)), ("musdl", (256, 455)),
                                              ("tvv_fixed", (256, 455))])
def test_pipelines_shapes_and_pixels(tmp_path, name, decoded_hw):
    pipe = T.build_pipeline(name, 224)
    interp = pipe.draw_interpolation(np.random.default_rng(0))
    frames = read_images([halves(tmp_path)] * 3, pipe.decode_size, interp)  # (T, H, W, 3)
    assert frames.shape == (3, *decoded_hw, 3)
    w = decoded_hw[1]
    assert frames[0, 10, 0].tolist() == [255, 0, 0] and frames[0, 10, w - 1].tolist() == [0, 0, 255]
    assert frames[0, 10, w // 2 - 6].tolist() == [255, 0, 0]  # the edge stays at the middle
    assert frames[0, 10, w // 2 + 6].tolist() == [0, 0, 255]
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (C, T, H, W)
    test = pipe.apply(clip, train=False, rng=np.random.default_rng(0))
    assert test.shape == (3, 3, 224, 224) and test.dtype == torch.uint8
    H, W = decoded_hw  # centre crop offsets: round((H-224)/2), round((W-224)/2)
    assert torch.equal(test, clip[:, :, round((H - 224) / 2):][:, :, :224,
                                   round((W - 224) / 2):round((W - 224) / 2) + 224])


def test_train_flip_and_crop_are_the_same_for_every_frame():
    clip = torch.arange(3 * 4 * 8 * 10, dtype=torch.float32).reshape(3, 4, 8, 10)
    clip[:, 1:] = clip[:, :1]  # four identical frames
    pipe = T.Pipeline("t", (10, 8), crop=5, random_crop=True, hflip=True)
    for seed in range(6):
        out = pipe.apply(clip, train=True, rng=np.random.default_rng(seed))
        assert out.shape == (3, 4, 5, 5)
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(4))


def test_functional_ops():
    clip = torch.arange(2 * 1 * 4 * 6).reshape(2, 1, 4, 6).to(torch.uint8)
    assert T.center_crop(clip, 2)[0, 0].tolist() == [[8, 9], [14, 15]]
    assert T.hflip(clip)[0, 0, 0].tolist() == [5, 4, 3, 2, 1, 0]
    assert T.resize(clip, 2, 3).shape == (2, 1, 2, 3)
    with pytest.raises(ValueError, match="does not fit"):
        T.crop(clip, 3, 0, 2, 2)
    white = torch.full((3, 1, 1, 1), 255, dtype=torch.uint8)
    assert torch.allclose(T.normalize(white, T.MINUS_ONE_ONE), torch.ones(3, 1, 1, 1))
    assert torch.allclose(T.normalize(white, T.IMAGENET).flatten(),
                          torch.tensor([(1 - .485) / .229, (1 - .456) / .224, (1 - .406) / .225]))


def test_musdl_draws_one_of_four_interpolations_repeatably():
    pipe = T.build_pipeline("musdl")
    draws = {pipe.draw_interpolation(np.random.default_rng(s)) for s in range(40)}
    assert draws == set(T.INTERPOLATIONS)
    assert pipe.crop == 224 and not pipe.random_crop


def test_musdl_tests_with_bilinear_unless_data_interpolation_says_otherwise():
    rng = np.random.default_rng(0)
    assert T.build_pipeline("musdl").draw_interpolation(rng, train=False) == "bilinear"
    official = T.build_pipeline("musdl", interpolation="random")  # the official test-time draw
    assert {official.draw_interpolation(np.random.default_rng(s), train=False)
            for s in range(40)} == set(T.INTERPOLATIONS)
    fixed = T.build_pipeline("musdl", interpolation="lanczos")
    assert {fixed.draw_interpolation(rng, train=t) for t in (True, False)} == {"lanczos"}
    assert T.build_pipeline("crop", 224).decode_size is None
    with pytest.raises(ConfigError, match="data.interpolation"):
        T.build_pipeline("musdl", interpolation="area")
