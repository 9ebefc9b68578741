"""The two ways aqa.video reads frames agree: PyAV's seek-to-keyframe path (the default for
native-size reads) returns exactly decord's pixels on files with B-frames and several GOPs, for
windows that start mid-GOP, clips spread over the file, unsorted and repeated indices."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from aqa import video, video_pyav
from conftest import SHARED_DATA

INDEX_SETS = {
    "window_mid_gop": list(range(37, 37 + 41)),
    "clips_spread": [s + k for s in (0, 30, 61, 95) for k in range(8)],
    "unsorted_repeats": [90, 3, 3, 52, 26, 119, 0, 52],
    "last_frames": [117, 118, 119],
    "core_clips_in_window": [20 + s + k for s in (0, 10, 20, 30) for k in range(16)],
}


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory) -> Path:
    """120 frames of a moving test pattern, 160x96 H.264 with B-frames and a keyframe every 25."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x96:rate=25", "-frames:v", "120", "-c:v", "libx264",
                    "-g", "25", "-bf", "3", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


CODECS = {  # codec -> ffmpeg options: B-frames or hidden frames, several GOPs
    "hevc": ["-c:v", "libx265", "-x265-params", "keyint=25:bframes=3:log-level=error"],
    "mpeg4": ["-c:v", "mpeg4", "-g", "25", "-bf", "2", "-q:v", "4"],
    "mpeg2": ["-c:v", "mpeg2video", "-g", "25", "-bf", "2", "-q:v", "4"],
}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_other_codecs_match_decord_too(tmp_path, codec):
    """Non-reference frames are skipped differently by each decoder, and MPEG-PS seeks are
    inexact (the reader decodes it from the start): the pixels must be the frames asked for."""
    path = tmp_path / f"{codec}.{'mpg' if codec == 'mpeg2' else 'mp4'}"
    out = subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                          "testsrc2=size=160x96:rate=25", "-frames:v", "90", *CODECS[codec],
                          "-pix_fmt", "yuv420p", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode {codec}: {out.stderr.strip()[:200]}")
    import av

    idx = [3, 40, 41, 42, 60, 77, 88]
    with av.open(str(path)) as c:  # the truth: every frame, in order, no seeking or skipping
        every = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    truth = np.stack([every[i] for i in idx])
    got = video.read_frames(path, idx, decoder="pyav")
    assert np.array_equal(got, truth), f"{codec}: max diff {np.abs(got - truth.astype(int)).max()}"
    if codec != "mpeg2":  # decord seeks MPEG-PS inexactly and returns other frames there
        assert np.array_equal(video.read_frames(path, idx, decoder="decord"), truth)


def _videos(gop_clip):
    real = SHARED_DATA / "clips" / "mtlaqa_diving_sample_500x280.mp4"
    return [gop_clip] + ([real] if real.exists() else [])


@pytest.mark.parametrize("name", sorted(INDEX_SETS))
def test_pyav_seek_path_matches_decord_pixels(gop_clip, name):
    for path in _videos(gop_clip):
        n = video.probe(path).num_frames
        idx = [i % n for i in INDEX_SETS[name]]
        a = video.read_frames(path, idx, decoder="decord")
        b = video.read_frames(path, idx, decoder="pyav")
        assert a.shape == b.shape == (len(idx),) + a.shape[1:]
        assert np.array_equal(a, b), f"{path.name} {name}: max diff {np.abs(a - b.astype(int)).max()}"
        assert np.array_equal(video.read_frames(path, idx), b)  # auto = pyav at native size


def test_the_index_finds_the_keyframes_and_reads_seek(gop_clip, monkeypatch):
    pts, keys = video_pyav.frame_index(gop_clip)
    assert len(pts) == 120 and keys == [0, 25, 50, 75, 100]
    # a read near the end seeks: decoding from the start is never used
    monkeypatch.setattr(video_pyav, "_decode_from_start", lambda *a: pytest.fail("decoded from 0"))
    video.read_frames(gop_clip, [101, 110], decoder="pyav")


def test_resized_reads_keep_decords_pixels_unless_an_interpolation_is_asked(gop_clip):
    idx = [5, 40, 77]
    decord_px = video.read_frames(gop_clip, idx, (64, 48), decoder="decord")
    assert np.array_equal(video.read_frames(gop_clip, idx, (64, 48)), decord_px)
    bilinear = video.read_frames(gop_clip, idx, (64, 48), interpolation="bilinear")
    assert bilinear.shape == decord_px.shape
    assert np.abs(bilinear.astype(int) - decord_px).mean() < 8  # the same picture
    area = video.read_frames(gop_clip, idx, (64, 48), interpolation="area")
    assert not np.array_equal(area, bilinear)  # the option reaches the scaler


def test_bad_decoder_options(gop_clip, monkeypatch):
    with pytest.raises(ValueError, match="decoder must be one of"):
        video.read_frames(gop_clip, [0], decoder="opencv")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        video.read_frames(gop_clip, [0], (32, 32), interpolation="lanczos9")
    with pytest.raises(ValueError, match="needs decoder"):
        video.read_frames(gop_clip, [0], (32, 32), decoder="decord", interpolation="area")
    monkeypatch.setenv("AQA_DECODER", "decord")
    assert np.array_equal(video.read_frames(gop_clip, [3]),
                          video.read_frames(gop_clip, [3], decoder="pyav"))


def test_a_seek_that_overshoots_falls_back_to_decoding_from_the_start(tmp_path, monkeypatch):
    """MPEG-PS seeks land past the frame asked for; were it treated as seekable, the reader must
    notice (the first frame after the seek is past the one wanted) and decode from the start."""
    import av

    path = tmp_path / "ps.mpg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x96:rate=25", "-frames:v", "90", *CODECS["mpeg2"],
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    monkeypatch.setattr(video_pyav, "SEEKABLE_FORMATS", video_pyav.SEEKABLE_FORMATS + ("mpeg",))
    calls = []
    real = video_pyav._decode_from_start
    monkeypatch.setattr(video_pyav, "_decode_from_start", lambda *a: calls.append(1) or real(*a))
    idx = [30, 31, 60]
    with av.open(str(path)) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert np.array_equal(video.read_frames(path, idx, decoder="pyav"),
                          np.stack([every[i] for i in idx]))
    assert calls  # the fallback ran
