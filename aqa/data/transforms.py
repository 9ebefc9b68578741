"""Clip transforms: pure functions on ``(C, T, H, W)`` tensors, and the historical pipelines.

Two layers (as in pytorchvideo): functional ops below, and :class:`Pipeline`, a small frozen
dataclass holding the parameters of one method's preprocessing. A pipeline has two halves:

- ``decode_size`` ``(width, height)`` and ``interpolation``: the resize done while decoding
  (in the video decoder, or by PIL for JPEG frames), so full-size frames never reach Python;
- :meth:`Pipeline.apply`: crop and flip on the decoded uint8 clip ``(C, T, H, W)``. The same
  random crop and flip are applied to every frame of a clip.

Normalisation is not part of the pipeline: clips stay uint8 and the backbone normalises on the
device (:func:`normalize` with :data:`IMAGENET` or :data:`MINUS_ONE_ONE`, chosen by backbone).

The pipelines (docs/datasets.md, Spatial pipelines):

    name     decode (W x H)   interpolation       train                 test
    square   S x S            bilinear            flip (if hflip)       -
    tvv      256 x 455        bilinear (*)        flip, random crop C   center crop C
    tvv_fixed 455 x 256       bilinear            flip, random crop C   center crop C
    tvv_cv2  256 x 455        cv2 nearest (***)   flip, random crop C   center crop C
    musdl    455 x 256        random of 4 (**)    flip, center crop C   center crop C
    crop     (none)           -                   center crop C         center crop C

(*) ``legacy_tvv_resize``: torch_videovision's ``Resize((455, 256))`` hands ``(256, 455)`` to
PIL, which reads it as (width, height): frames come out 256 wide and 455 tall; and its
interpolation names are swapped, so the default ``'nearest'`` is PIL BILINEAR. CoRe and TPT
trained on that; ``tvv_fixed`` is the landscape resize they meant. FineDiving-TSA's
``Resize((200, 112))`` (``resize=(200, 112)``, the ``finediving`` dataset's ``data.resize``)
likewise gives frames 112 wide and 200 tall, cropped to 112.
(**) MUSDL/TSA-Net draw one of NEAREST, BILINEAR, BICUBIC, LANCZOS for every frame, at test
time too (so their evaluation is not repeatable). Here training draws one per clip, and the test
uses bilinear; ``data.interpolation=random`` draws at test time too (seeded per sample, so still
repeatable), and a filter name fixes the filter at train and test (how the parity tests make the
official draw known).
(***) PECoP reads its frames with cv2 and hands torch_videovision numpy arrays, whose path calls
``cv2.resize(img, (256, 455), INTER_NEAREST)``: the same portrait squash, by cv2's nearest rule
(source pixel ``floor(x * src / dst)``, not PIL's pixel-centre rule), from the full-size decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # (mean, std) per RGB channel
MINUS_ONE_ONE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # maps [0, 1] to [-1, 1] (piergiaj I3D)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


# ----------------------------------------------------------------- functional ops, (C, T, H, W)

def to_float(clip: torch.Tensor) -> torch.Tensor:
    """uint8 ``(C, T, H, W)`` in 0..255 -> float32 in [0, 1]."""
    return clip.float().div_(255.0) if clip.dtype == torch.uint8 else clip.float()


def normalize(clip: torch.Tensor, mean_std: tuple = IMAGENET) -> torch.Tensor:
    """``(clip/255 - mean) / std`` per channel; ``clip`` is ``(C, T, H, W)`` or ``(B, C, T, H, W)``."""
    mean, std = (torch.tensor(v, dtype=torch.float32, device=clip.device) for v in mean_std)
    shape = (-1, 1, 1, 1)  # broadcast over T, H, W (and a leading batch dim)
    return (to_float(clip) - mean.view(shape)) / std.view(shape)


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right (the last axis is W)."""
    return clip.flip(-1)


def check_window(H: int, W: int, top: int, left: int, height: int, width: int) -> None:
    if top < 0 or left < 0 or top + height > H or left + width > W:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit a {H}x{W} frame")


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The same ``height x width`` window at ``(top, left)`` of every frame."""
    check_window(*clip.shape[-2:], top, left, height, width)
    return clip[..., top:top + height, left:left + width]


def center_position(H: int, W: int, size: int) -> tuple[int, int]:
    """``(top, left)`` of the central ``size x size`` window; offsets round down like
    torchvision's ``int(round((H - size) / 2))`` for even differences (455 -> 224: top 115)."""
    return int(round((H - size) / 2.0)), int(round((W - size) / 2.0))


def random_position(H: int, W: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """``(top, left)`` of a ``size x size`` window at a seeded random position."""
    return int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (:func:`center_position`)."""
    return crop(clip, *center_position(*clip.shape[-2:], size), size, size)


def window_clip(frames: np.ndarray, where, flip: bool, top: int, left: int, height: int,
                width: int) -> torch.Tensor:
    """``hflip`` (when ``flip``) then :func:`crop` of the frames ``frames[where]`` of a
    ``(P, H, W, 3)`` uint8 array (or memmap), as a contiguous ``(C, T, height, width)`` tensor:
    the pixels of ``Pipeline.apply`` on the permuted clip, copying only what the clip keeps
    (the window of the wanted frames, gathered once, then one transpose; the flip is of the
    small result)."""
    W = frames.shape[2]
    check_window(frames.shape[1], W, top, left, height, width)
    if flip:  # the window of the flipped frame, in the frame as stored
        left = W - left - width
    part = np.asarray(frames[np.asarray(where), top:top + height, left:left + width])  # (T, h, w, 3)
    clip = torch.from_numpy(np.ascontiguousarray(part.transpose(3, 0, 1, 2)))  # (C, T, h, w)
    return clip.flip(-1) if flip else clip


def resize(clip: torch.Tensor, height: int, width: int, mode: str = "bilinear") -> torch.Tensor:
    """Every frame resized to ``height x width`` (torch ``interpolate``; for tensors already in
    memory, e.g. a scored clip; datasets resize while decoding instead)."""
    x = to_float(clip) if clip.dtype == torch.uint8 else clip
    C, T = x.shape[:2]
    frames = x.permute(1, 0, 2, 3)  # (T, C, H, W)
    kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
    out = F.interpolate(frames, size=(height, width), mode=mode, **kwargs).permute(1, 0, 2, 3)
    if clip.dtype == torch.uint8:
        return out.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out


# ----------------------------------------------------------------- the torch_videovision quirk

def tvv_resize_size(size: tuple[int, int] = (455, 256)) -> tuple[int, int]:
    """The PIL ``(width, height)`` torch_videovision's ``Resize(size)`` really produces:
    it swaps the tuple, and PIL reads the swapped tuple as (width, height)."""
    h_meant, w_meant = size  # torch_videovision documents size as (h, w)
    return (w_meant, h_meant)  # -> (256, 455): 256 wide, 455 tall


def tvv_interpolation(name: str = "nearest") -> str:
    """The PIL filter torch_videovision really uses for its interpolation ``name`` (PIL input):
    ``'bilinear'`` gives NEAREST and anything else (its default ``'nearest'``) gives BILINEAR."""
    return "nearest" if name == "bilinear" else "bilinear"


CV2_NEAREST = "cv2_nearest"  # cv2.INTER_NEAREST's rule, computed here (cv2 is not a dependency)


def cv2_nearest(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, size=(w, h), interpolation=cv2.INTER_NEAREST)`` for an HxWxC array:
    destination pixel x takes source pixel ``floor(x * (1 / (w / W)))`` (in double, as cv2),
    clamped to the image."""
    (w, h), (H, W) = size, image.shape[:2]
    ys = np.minimum(np.floor(np.arange(h) * (1.0 / (h / H))).astype(np.int64), H - 1)
    xs = np.minimum(np.floor(np.arange(w) * (1.0 / (w / W))).astype(np.int64), W - 1)
    return image[ys][:, xs]


def pil_filter(name: str):
    from PIL import Image

    return {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS}[name]


def resize_image(image, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    """A PIL image (or HxWx3 uint8 array) resized to ``size=(width, height)``, as HxWx3 uint8."""
    from PIL import Image

    if interpolation == CV2_NEAREST:
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        return np.ascontiguousarray(cv2_nearest(array, size), dtype=np.uint8)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.size != tuple(size):
        image = image.resize(tuple(size), pil_filter(interpolation))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


# ----------------------------------------------------------------- pipelines

@dataclass(frozen=True)
class Pipeline:
    """One method's spatial preprocessing (see the module docstring for the table)."""

    name: str
    decode_size: tuple[int, int] | None  # (width, height) the decoder resizes to (None: none)
    interpolation: str = "bilinear"  # PIL filter name, or "random" (one of 4 per clip)
    crop: int = 0  # output size of the square crop (0 = no crop)
    random_crop: bool = False  # random crop position at train time (else centre)
    hflip: bool = False  # random horizontal flip (p = 0.5) at train time
    test_interpolation: str = ""  # the filter at test time when it differs ("" = interpolation)

    def draw_interpolation(self, rng: np.random.Generator, train: bool = True) -> str:
        name = self.interpolation if train or not self.test_interpolation else self.test_interpolation
        if name != "random":
            return name
        return INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]

    @property
    def flip_before_resize(self) -> bool:
        """cv2's nearest rule does not commute with a left-right flip, and torch_videovision
        flips first: a clip reader draws the flip (:meth:`draw_flip`) before decoding.
        ``ClipDataset.item_at`` (PECoP's reader) does; its cached whole-clip path flips the
        resized frames (the columns then differ by at most one source pixel)."""
        return self.interpolation == CV2_NEAREST and self.hflip

    def draw_flip(self, rng: np.random.Generator, train: bool) -> bool:
        return bool(train and self.hflip and rng.random() < 0.5)

    def window(self, H: int, W: int, train: bool, rng: np.random.Generator,
               flipped: bool | None = None) -> tuple[bool, int, int, int, int]:
        """``(flip, top, left, height, width)``: what :meth:`apply` does to ``H x W`` frames,
        drawn from ``rng`` as it draws (the flip, then the crop position); the window is in
        the flipped frame. ``flipped`` not None: the flip was drawn (and done) already."""
        flip = flipped is None and self.draw_flip(rng, train)
        if not self.crop:
            return flip, 0, 0, H, W
        if train and self.random_crop:
            return (flip, *random_position(H, W, self.crop, rng), self.crop, self.crop)
        return (flip, *center_position(H, W, self.crop), self.crop, self.crop)

    def apply(self, clip: torch.Tensor, train: bool, rng: np.random.Generator,
              flipped: bool | None = None) -> torch.Tensor:
        """Flip then crop the decoded uint8 clip ``(C, T, H, W)`` (same for every frame);
        ``flipped`` not None: the flip was drawn (and done) by the reader already."""
        flip, top, left, height, width = self.window(*clip.shape[-2:], train, rng, flipped)
        if flip:
            clip = hflip(clip)
        return crop(clip, top, left, height, width).contiguous()

    @property
    def out_size(self) -> tuple[int, int]:
        """(H, W) of the clips the pipeline yields."""
        if self.crop:
            return (self.crop, self.crop)
        return (self.decode_size[1], self.decode_size[0])


PIPELINES = ("square", "tvv", "tvv_fixed", "tvv_cv2", "musdl", "crop")


def build_pipeline(name: str, frame_size: int = 224, hflip: bool = True,
                   resize: tuple[int, int] = (455, 256), interpolation: str = "") -> Pipeline:
    """The pipeline ``name`` (:data:`PIPELINES`); ``frame_size`` is the crop (the square side for
    ``square``), ``resize`` the landscape (width, height) of the historical pipelines;
    ``interpolation`` (``data.interpolation``) overrides the pipeline's filter at train and test:
    a name of :data:`INTERPOLATIONS` or ``random``."""
    from dataclasses import replace

    if interpolation and interpolation not in (*INTERPOLATIONS, "random"):
        from aqa.errors import ConfigError
        raise ConfigError(f"data.interpolation={interpolation!r}: choose one of "
                          f"{', '.join(INTERPOLATIONS)} or random (empty: the pipeline's own)")
    pipe = _pipeline(name, frame_size, hflip, resize)
    if interpolation:
        pipe = replace(pipe, interpolation=interpolation, test_interpolation="")
    return pipe


def _pipeline(name: str, frame_size: int, hflip: bool, resize: tuple[int, int]) -> Pipeline:
    w, h = resize
    if name == "square":
        return Pipeline("square", (frame_size, frame_size), "bilinear", 0, False, hflip)
    if name == "tvv":  # legacy_tvv_resize: 256 wide x 455 tall, bilinear
        return Pipeline("tvv", tvv_resize_size((w, h)), tvv_interpolation("nearest"), frame_size,
                        True, hflip)
    if name == "tvv_fixed":
        return Pipeline("tvv_fixed", (w, h), "bilinear", frame_size, True, hflip)
    if name == "tvv_cv2":  # PECoP: cv2 frames through torch_videovision's numpy path
        return Pipeline("tvv_cv2", tvv_resize_size((w, h)), CV2_NEAREST, frame_size, True, hflip)
    if name == "musdl":  # random filter at train; bilinear at test (the official draws there too)
        return Pipeline("musdl", (w, h), "random", frame_size, False, hflip, "bilinear")
    if name == "crop":  # MUSDL's JIGSAWS: the frames as they are, centre-cropped
        return Pipeline("crop", None, "bilinear", frame_size, False, hflip)
    from aqa.errors import ConfigError
    raise ConfigError(f"unknown data.pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
