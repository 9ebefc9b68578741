"""The on-disk clip cache and the DataLoader settings."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aqa.data.base import ClipDataset, FrameSpan, Sample, loader_kwargs
from aqa.data.cache import ClipCache, clip_key, file_fingerprint
from aqa.data.transforms import build_pipeline
from test_datasets_formats import frames, write_video


def folder_sample(tmp_path, name="s1", n=12):
    frames(tmp_path / name, n)
    return Sample(id=name, video=tmp_path / name, score=1.0,
                  frames=FrameSpan(1, n, pattern="img_{:05d}.jpg"), window_start=2)


def test_a_later_epoch_reads_the_cache_not_the_frames(tmp_path, monkeypatch):
    s = folder_sample(tmp_path)
    kw = dict(num_frames=6, frame_size=8, cache=False, jitter=2, disk_cache=tmp_path / "cache")
    first = ClipDataset([s], train=True, seed=0, **kw)
    a = first[0]["video"]
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == 1 and np.load(entries[0]).shape == (10, 8, 8, 3)  # window + shifts
    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr("aqa.data.base.decode", no_decoding)  # only the cache can serve it now
    again = ClipDataset([s], train=True, seed=0, **kw)
    b = again[0]["video"]
    assert a.shape == b.shape == (3, 6, 8, 8)
    starts = {int(again[0]["video"][0, 0, 0, 0]) for _ in range(25)}
    assert starts <= {1, 2, 3, 4, 5} and len(starts) > 1  # window at 3 (img 3), shifted -2..2


def test_the_key_follows_content_and_transform(tmp_path):
    write_video(tmp_path / "a.mp4")
    fp = file_fingerprint(tmp_path / "a.mp4")
    k1 = clip_key(fp, [0, 1], (8, 8), "bilinear")
    assert k1 != clip_key(fp, [0, 1], (455, 256), "bilinear")
    assert k1 != clip_key(fp, [0, 1], (8, 8), "lanczos")
    write_video(tmp_path / "a.mp4", n=11)  # new content
    assert file_fingerprint(tmp_path / "a.mp4") != fp
    cache = ClipCache(tmp_path / "c")
    cache.put(k1, np.ones((2, 2, 2, 3), np.uint8))
    assert cache.get(k1).sum() == 24
    next((tmp_path / "c").rglob("*.npy")).write_bytes(b"torn")
    assert cache.get(k1) is None  # a corrupt entry is dropped and decoded again


def test_videos_decode_resized_and_load_with_two_workers(tmp_path):
    for n in range(4):
        write_video(tmp_path / f"v{n}.mp4", n=8 + n)  # different content, different keys
    samples = [Sample(id=f"v{n}", video=tmp_path / f"v{n}.mp4", score=float(n)) for n in range(4)]
    ds = ClipDataset(samples, 5, 32, train=False, cache=False,
                     pipeline=build_pipeline("tvv_fixed", 24), disk_cache=tmp_path / "cache")
    loader = DataLoader(ds, batch_size=2, **loader_kwargs(2, "cpu"))
    batches = list(loader)
    assert [b["video"].shape for b in batches] == [torch.Size([2, 3, 5, 24, 24])] * 2
    assert sorted(x for b in batches for x in b["id"]) == ["v0", "v1", "v2", "v3"]
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4
    assert loader_kwargs(2, "cuda")["pin_memory"] and not loader_kwargs(0, "cpu")["pin_memory"]


def test_video_resize_option_reaches_the_decoder_and_keys_the_cache(tmp_path):
    """data.video_resize: decord's resize by default (cache keys unchanged), a libswscale filter
    through PyAV when asked; the two give different pixels and never share a cache entry."""
    from aqa import video
    from aqa.config import build_run_config
    from aqa.data.base import ClipDataset, Sample
    from aqa.errors import ConfigError
    from conftest import shared_clip

    clip = shared_clip()
    sample = Sample(id="dive", video=clip, score=50.0, split="test")
    cache = tmp_path / "cache"
    kw = dict(num_frames=8, frame_size=48, cache=False, disk_cache=cache)
    plain = ClipDataset([sample], **kw)[0]["video"]
    fast = ClipDataset([sample], video_resize="fast_bilinear", **kw)[0]["video"]
    idx = video.sample_indices(video.probe(clip).num_frames, 8)
    expect = video.read_frames(clip, idx, (48, 48), interpolation="fast_bilinear")
    assert torch.equal(fast, torch.from_numpy(expect).permute(3, 0, 1, 2))
    assert not torch.equal(fast, plain)
    assert len(list(cache.rglob("*.npy"))) == 2  # one entry each: no stale reuse
    assert torch.equal(ClipDataset([sample], **kw)[0]["video"], plain)  # served from the cache
    with pytest.raises(ConfigError, match="video_resize"):
        ClipDataset([sample], video_resize="lanczos", **kw)
    with pytest.raises(ConfigError, match="data.video_resize"):
        build_run_config("regression", "synthetic", overrides=["data.video_resize=lanczos"])
