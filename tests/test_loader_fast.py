"""The loader's fast paths make exactly the pixels of the reference paths they replace.

- ``ClipDataset.__getitem__`` (``Pipeline.window`` + ``transforms.window_clip``, from a
  memory-mapped cache entry) against ``_item(i, clip(i, rng), rng)`` (flip then crop of the whole
  decoded clip, ``Pipeline.apply``), with the same draws, for every pipeline and cache mode;
- ``aqa.video_sws`` (decord's libswscale on PyAV's frames) against decord itself, and its
  fallback to decord when a file or frame does not fit.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aqa.data.base import ClipDataset, FrameSpan, Sample
from aqa.data.transforms import build_pipeline, window_clip
from conftest import SHARED_DATA


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth shapes plus grain: every pixel position differs from its neighbours."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 7 + y * 3) % 256, (x * x + y) % 256, (y * 11) % 256], -1)
    return ((base + rng.integers(0, 40, (h, w, 3))) % 256).astype(np.uint8)


@pytest.mark.parametrize("name", ["tvv", "tvv_fixed", "musdl", "square", "crop"])
@pytest.mark.parametrize("train", [True, False])
def test_window_clip_is_apply(name, train):
    rng = np.random.default_rng(1)
    pipe = build_pipeline(name, 16, hflip=True, resize=(30, 20))
    frames = rng.integers(0, 256, (9, 20, 30, 3), dtype=np.uint8)  # (P, H, W, 3)
    where = np.array([0, 2, 2, 5, 8])
    for seed in range(12):  # both flips, several crop positions
        ref = pipe.apply(torch.from_numpy(frames[where]).permute(3, 0, 1, 2), train,
                         np.random.default_rng(seed))
        flip, top, left, h, w = pipe.window(20, 30, train, np.random.default_rng(seed))
        fast = window_clip(frames, where, flip, top, left, h, w)
        assert fast.is_contiguous() and fast.dtype == torch.uint8
        assert torch.equal(fast, ref), (name, train, seed)


def test_window_clip_refuses_a_window_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        window_clip(np.zeros((2, 10, 10, 3), np.uint8), [0], False, 0, 0, 12, 12)


def frame_folder(root: Path, n: int, seed: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    tex = texture(rng, 30, 40 + 2 * n)
    for k in range(1, n + 1):
        Image.fromarray(tex[:, 2 * k:2 * k + 40]).save(root / f"{k:08d}.jpg", quality=90)
    return root


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
@pytest.mark.parametrize("name", ["tvv", "tvv_fixed", "musdl"])
def test_dataset_items_are_the_reference_items(tmp_path, cache, name):
    samples = [Sample(id=f"s{k}", video=frame_folder(tmp_path / f"s{k}", 16, k), score=float(k),
                      frames=FrameSpan(1, 16, pattern="{:08d}.jpg"), window_start=3)
               for k in range(2)]

    def dataset(train):
        return ClipDataset(samples, num_frames=8, frame_size=16, train=train, hflip=True,
                           cache=cache == "memory", seed=3, jitter=2,
                           pipeline=build_pipeline(name, 16, hflip=True, resize=(40, 30)),
                           disk_cache=tmp_path / f"cache_{train}" if cache == "disk" else None)

    for train in (True, False):
        fast, ref = dataset(train), dataset(train)
        for rnd in range(4):  # cold then warm cache entries; new draws each time at train
            for i in range(len(samples)):
                item = fast[i]
                rng = ref._rng(i)
                want = ref._item(i, ref.clip(i, rng), rng)
                assert torch.equal(item["video"], want["video"]), (cache, name, train, rnd, i)
                assert item["video"].is_contiguous()
    if cache == "disk":  # the warm reads were of memory-mapped entries
        assert fast._disk.get(next(iter(fast._disk.folder.rglob("*.npy"))).stem, mmap=True) \
            .__class__.__name__ == "memmap"


# ----------------------------------------------------------------- decord's resize, on PyAV

def write_clip(path: Path, n: int = 12, w: int = 160, h: int = 96, colorspace: int | None = None):
    import av

    rng = np.random.default_rng(0)
    tex = texture(rng, h, w + 3 * n)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": "5"}
        if colorspace is not None:
            s.codec_context.colorspace = colorspace
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[:, 3 * i:3 * i + w]), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


@pytest.fixture
def decord_lib():
    pytest.importorskip("decord")
    from aqa import video_sws

    if video_sws.library() is None:
        pytest.skip("decord's wheel has no bundled libswscale here")
    return video_sws


@pytest.mark.parametrize("colorspace", [None, 1])  # untagged (BT.601), BT.709
def test_video_sws_makes_decords_pixels(tmp_path, decord_lib, colorspace):
    from aqa import video

    path = write_clip(tmp_path / "c.mp4", colorspace=colorspace)
    for size in [(40, 72), (96, 56), (64, 64)]:  # (decord 0.6 cannot make widths 8, 72...)
        assert decord_lib.matches_decord(path, size)  # so the fast path is what ran
        indices = [0, 3, 4, 9, 11, 11, 2]
        fast = video.read_frames(path, indices, size)
        assert np.array_equal(fast, video.read_frames(path, indices, size, decoder="decord")), size


def test_video_sws_on_the_real_dive_clip(decord_lib):
    from aqa import video

    clip = SHARED_DATA / "clips" / "mtlaqa_diving_sample_500x280.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    indices = list(range(video.probe(clip).num_frames))
    for size in [(256, 455), (455, 256)]:
        assert decord_lib.matches_decord(clip, size)
        assert np.array_equal(video.read_frames(clip, indices, size),
                              video.read_frames(clip, indices, size, decoder="decord"))


def test_video_sws_falls_back_to_decord(tmp_path, decord_lib, monkeypatch):
    import av

    from aqa import video
    from aqa.video_common import DecoderMismatch

    path = write_clip(tmp_path / "c.mp4")
    with av.open(str(path)) as c:
        small = next(c.decode(video=0))
    pool = decord_lib.ScalerPool((40, 72))
    pool.submit(small, np.empty(pool.shape, np.uint8))
    other = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    with pytest.raises(DecoderMismatch):
        pool.submit(other, np.empty(pool.shape, np.uint8))  # another size than the first frame
    pool.close()

    want = video.read_frames(path, [1, 5], (40, 72), decoder="decord")

    def refuse(self, frame, dst):
        raise DecoderMismatch("a test")

    monkeypatch.setattr(decord_lib.ScalerPool, "submit", refuse)
    assert np.array_equal(video.read_frames(path, [1, 5], (40, 72)), want)  # decord read it


def test_a_worker_delivers_the_same_batches(tmp_path):
    """collate stacks into shared memory in a DataLoader worker; the batches are the same."""
    from torch.utils.data import DataLoader

    from aqa.data.base import collate

    samples = [Sample(id=f"s{k}", video=frame_folder(tmp_path / f"s{k}", 12, k), score=float(k),
                      frames=FrameSpan(1, 12, pattern="{:08d}.jpg"), window_start=2)
               for k in range(2)]
    ds = ClipDataset(samples, num_frames=6, frame_size=16, train=False, seed=1,
                     pipeline=build_pipeline("tvv_fixed", 16, hflip=False, resize=(40, 30)))
    here = list(DataLoader(ds, batch_size=2, collate_fn=collate))
    there = list(DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=1))
    assert torch.equal(here[0]["video"], there[0]["video"]) and here[0]["id"] == there[0]["id"]
    assert torch.equal(here[0]["score"], there[0]["score"]) and here[0]["video"].shape == (2, 3, 6, 16, 16)
