"""decord is optional, and what made the frames is recorded with them.

PyAV's scaler does not reproduce decord's resized pixels (bench/decord_vs_pyav.py: bilinear, the
closest filter, is off by up to 13-23 levels on the real dive), so a clip-cache entry made by
decord is never served to a PyAV reader, and a score says which one made its frames. Native-size
frames are identical (tests/test_decode_paths.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aqa import video, video_pyav
from aqa.data.base import ClipDataset, Sample, video_decoder
from aqa.data.transforms import build_pipeline
from aqa.errors import VideoError
from conftest import ROOT, shared_clip

SIZE = (64, 64)  # decord 0.6 cannot return a few small widths (48, 72, ...); 64 it can


@pytest.fixture
def no_decord(monkeypatch):
    """decord's import failing, in this process (what aqa.video learns on its first look)."""
    monkeypatch.setattr(video, "_decord_import", ["ImportError: no wheel for this platform"])


def test_without_decord_the_project_imports_and_reads_with_pyav(tmp_path):
    """A fresh interpreter where `import decord` fails, as on aarch64 or macOS arm64."""
    clip = shared_clip()
    code = f"""
import json, sys
sys.modules["decord"] = None  # `import decord` now raises ImportError
import aqa.cli, aqa.data.base, aqa.scoring, aqa.train.loop  # the project imports
from aqa import video
from aqa.errors import VideoError
frames = video.read_frames({str(clip)!r}, [0, 7, 20], (455, 256))
try:
    video.read_frames({str(clip)!r}, [0], decoder="decord")
    refused = ""
except VideoError as exc:
    refused = str(exc)
print(json.dumps({{"missing": video.decord_missing(), "info": list(video.probe({str(clip)!r})),
                  "decoder": video.frames_decoder((455, 256)), "sum": int(frames.sum()),
                  "shape": list(frames.shape), "refused": refused}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["missing"].startswith("ModuleNotFoundError") and "decord" in got["missing"]
    assert got["info"] == [21, 10.0, 500, 280]
    assert got["shape"] == [3, 256, 455, 3]
    assert got["sum"] == int(video_pyav.read(clip, [0, 7, 20], (455, 256), "bilinear").sum())
    assert got["decoder"].startswith("pyav ") and got["decoder"].endswith(" bilinear")
    assert "decord does not import here" in got["refused"] and "decoder='auto'" in got["refused"]


@pytest.mark.skipif(video.decord_missing() is not None, reason="decord is not installed here")
def test_pyav_does_not_reproduce_decords_resize():
    """Why the decoder is part of what the frames are: the closest filter still differs."""
    clip, idx = shared_clip(), [0, 10, 20]
    decord_px = video.read_frames(clip, idx, (455, 256), decoder="decord").astype(int)
    pyav_px = video_pyav.read(clip, idx, (455, 256), "bilinear").astype(int)
    assert 0 < np.abs(decord_px - pyav_px).mean() < 1  # the same picture, not the same pixels
    assert np.array_equal(video.read_frames(clip, idx, None, decoder="decord"),
                          video_pyav.read(clip, idx, None))  # native size: identical


def _dataset(clip: Path, cache: Path) -> ClipDataset:
    sample = Sample(id="dive", video=clip, score=1.0, split="test")
    return ClipDataset([sample], num_frames=8, frame_size=SIZE[0], disk_cache=cache,
                       pipeline=build_pipeline("square", SIZE[0], hflip=False))


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.npy"))


@pytest.mark.skipif(video.decord_missing() is not None, reason="decord is not installed here")
def test_a_cache_entry_made_by_decord_is_not_served_to_pyav(tmp_path, monkeypatch):
    clip, cache = shared_clip(), tmp_path / "cache"
    ds = _dataset(clip, cache)
    assert ds.decoder.startswith("decord ")
    positions, by_decord = ds.frames(0, "bilinear")
    [decord_entry] = _entries(cache)

    monkeypatch.setattr(video, "_decord_import", ["ImportError: simulated"])
    ds = _dataset(clip, cache)
    assert ds.decoder.startswith("pyav ") and ds.decoder.endswith(" bilinear")
    _, by_pyav = ds.frames(0, "bilinear")
    assert np.array_equal(by_pyav, video_pyav.read(clip, positions, SIZE, "bilinear"))
    assert not np.array_equal(by_pyav, by_decord)  # decord's entry was not served
    assert len(_entries(cache)) == 2  # PyAV's has a key of its own

    monkeypatch.undo()  # decord back: its entry, unchanged, is served again (no new entry)
    _, again = _dataset(clip, cache).frames(0, "bilinear")
    assert np.array_equal(again, by_decord) and len(_entries(cache)) == 2
    assert decord_entry in _entries(cache)


def test_video_decoder_names_what_resizes(no_decord):
    square = build_pipeline("square", 224)
    pyav = video.frames_decoder(None)
    assert video_decoder(square, "decord") == video.frames_decoder((224, 224))
    assert video_decoder(square, "decord").endswith(" bilinear")  # decord missing: PyAV's bilinear
    assert video_decoder(square, "area").endswith(" area")
    assert video_decoder(square, "pil") == f"{pyav} + PIL bilinear"
    assert video_decoder(build_pipeline("crop"), "decord") == pyav  # no resize: native size
    assert video_decoder(build_pipeline("tvv_cv2"), "decord") == f"{pyav} + cv2 nearest"
    with pytest.raises(VideoError, match="decord does not import here"):
        video.read_frames(shared_clip(), [0], decoder="decord")


def test_a_score_without_decord_says_what_resized_its_frames(tmp_path, no_decord):

    from aqa.config import build_run_config, to_dict
    from aqa.registry import METHODS
    from aqa.scoring import Scorer
    from aqa.train.checkpoint import save_checkpoint

    cfg = build_run_config("regression", "synthetic", overrides=["data.num_frames=8",
                                                                 "data.frame_size=64"])
    save_checkpoint(tmp_path / "best.pt", {"method": "regression", "config": to_dict(cfg),
                                           "model": METHODS.get("regression")(cfg).build_model()
                                           .state_dict()})
    result = Scorer.from_checkpoint(tmp_path / "best.pt").score(shared_clip())
    assert result.decoder == video.frames_decoder(SIZE) and result.decoder.endswith(" bilinear")
    assert result.frames.shape == (8, 64, 64, 3)
    assert np.array_equal(result.frames, video_pyav.read(shared_clip(), result.frame_indices,
                                                         SIZE, "bilinear"))
    assert "decord does not import here" in result.notes[-1]
