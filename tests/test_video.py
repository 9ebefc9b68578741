"""aqa.video: probing, reading by index, sampling, and the errors a user sees."""

from pathlib import Path

import numpy as np
import pytest

from aqa.errors import VideoError
from aqa.video import VideoInfo, probe, read_clip, read_frames, sample_indices

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared/data/clips/mtlaqa_diving_sample_500x280.mp4"


def write_counter_clip(path: Path, num_frames: int = 10, width: int = 64, height: int = 48) -> Path:
    """An H.264 clip whose frame i has a white bar i + 1 rows high on black (frame id in pixels)."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "0", "threads": "1"}
        for i in range(num_frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[: 4 * (i + 1)] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_ids(frames: np.ndarray) -> list[int]:
    """Recover the frame number of each counter-clip frame from its bar height."""
    rows_white = (frames[:, :, :, 0].mean(axis=2) > 127).sum(axis=1)  # (T,)
    return [int(round(r / 4)) - 1 for r in rows_white]


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_counter_clip(tmp_path / "counter.mp4")


def test_probe(clip):
    assert probe(clip) == VideoInfo(num_frames=10, fps=12.0, width=64, height=48)


def test_read_frames_shape_dtype_and_order(clip):
    frames = read_frames(clip, [7, 2, 2, 9, 0])
    assert frames.shape == (5, 48, 64, 3)
    assert frames.dtype == np.uint8
    assert frame_ids(frames) == [7, 2, 2, 9, 0]


def test_read_frames_resizes_in_the_decoder(clip):
    frames = read_frames(clip, [3, 1], size=(32, 24))
    assert frames.shape == (2, 24, 32, 3)
    assert frame_ids(np.repeat(frames, 2, axis=1)) == [3, 1]  # half height: bars of 2 rows


def test_read_clip_resamples(clip):
    frames = read_clip(clip, 20)
    assert frames.shape == (20, 48, 64, 3)
    assert frame_ids(frames) == [i // 2 for i in range(20)]


@pytest.mark.parametrize("bad", [10, -1])
def test_index_out_of_range_names_file_index_and_count(clip, bad):
    with pytest.raises(VideoError, match=rf"counter\.mp4.*index {bad}.*10 frames"):
        read_frames(clip, [0, bad])


@pytest.mark.parametrize(
    "available, wanted, expected",
    [
        (103, 103, list(range(103))),
        (200, 10, [0, 22, 44, 66, 88, 111, 133, 155, 177, 199]),
        (10, 4, [0, 3, 6, 9]),
        (9, 1, [4]),
        (3, 7, [0, 0, 0, 1, 1, 2, 2]),
    ],
)
def test_sample_indices_table(available, wanted, expected):
    assert sample_indices(available, wanted) == expected


def test_sample_indices_repeats_short_video_uniformly():
    indices = sample_indices(21, 103)
    assert len(indices) == 103
    assert indices[0] == 0 and indices[-1] == 20
    assert indices == sorted(indices)
    assert sorted(set(np.bincount(indices))) == [4, 5]  # every frame 103 // 21 or one more times


def test_sample_indices_of_empty_video_is_a_video_error():
    with pytest.raises(VideoError, match="0 frames"):
        sample_indices(0, 16)


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match=r"nope\.mp4.*no such video file"):
        probe(tmp_path / "nope.mp4")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4.*0 bytes"):
        read_clip(path, 8)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"noise\.mp4.*cannot open"):
        probe(path)


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n")
    with pytest.raises(VideoError, match=r"notes\.mp4"):
        read_frames(path, [0])


def test_truncated_file(tmp_path, clip):
    data = clip.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"truncated\.mp4") as info:
        read_clip(path, 8)
    assert info.value.__cause__ is not None  # decord's error is chained, not swallowed


def test_real_mtlaqa_sample_probes():
    if not SAMPLE.exists():
        pytest.skip(f"sample clip not found at {SAMPLE} (the shared data folder is not mounted)")
    info = probe(SAMPLE)
    assert (info.num_frames, info.width, info.height) == (21, 500, 280)
    assert read_clip(SAMPLE, 4, size=(250, 140)).shape == (4, 140, 250, 3)


@pytest.mark.parametrize("width", [16, 24, 48])
def test_widths_decord_cannot_return_fall_back_to_pyav(clip, width):
    # decord 0.6 cannot return frames 16, 24 or 48 pixels wide; PyAV decodes them instead
    frames = read_frames(clip, [3, 0, 3], size=(width, width))
    assert frames.shape == (3, width, width, 3)
    reference = read_frames(clip, [3, 0, 3], size=(32, 32)).astype(float)
    # the same frames, in the asked order: compare brightness means at a common size
    assert np.allclose(frames.reshape(3, -1).mean(1), reference.reshape(3, -1).mean(1), atol=6)
    assert (frames[0] == frames[2]).all()


# --- containers decord cannot read, portrait phone clips, variable frame rate --------------

def ffmpeg(*args: str) -> None:
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def ffmpeg_frames(path: Path, width: int, height: int) -> np.ndarray:
    """What ffmpeg shows (autorotated), as (T, H, W, 3)."""
    raw = path.with_suffix(".raw")
    ffmpeg("-i", str(path), "-pix_fmt", "rgb24", "-f", "rawvideo", str(raw))
    return np.fromfile(raw, np.uint8).reshape(-1, height, width, 3)


def test_rotated_portrait_mov_with_audio_decodes_upright(tmp_path, clip):
    stored = tmp_path / "stored.mp4"  # 64x48 as stored, with an AAC audio track
    ffmpeg("-i", str(clip), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-shortest", "-c:v", "copy", "-c:a", "aac", str(stored))
    mov = tmp_path / "phone.mov"  # a display matrix saying: show it turned by 90 degrees
    ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(mov))
    info = probe(mov)
    assert (info.width, info.height, info.num_frames) == (48, 64, 10)
    shown = ffmpeg_frames(mov, 48, 64)  # (10, 64, 48, 3): portrait
    ours = read_frames(mov, list(range(10)))
    assert ours.shape == (10, 64, 48, 3)
    assert np.abs(ours.astype(int) - shown).mean() < 2
    assert read_frames(mov, [3, 1], size=(24, 32)).shape == (2, 32, 24, 3)


def test_gif_decodes_through_pyav(tmp_path, clip):
    gif = tmp_path / "clip.gif"
    ffmpeg("-i", str(clip), str(gif))
    assert probe(gif).num_frames == 10 and (probe(gif).width, probe(gif).height) == (64, 48)
    assert frame_ids(read_frames(gif, [9, 0, 4])) == [9, 0, 4]
    assert read_clip(gif, 4, size=(32, 24)).shape == (4, 24, 32, 3)


def test_variable_frame_rate_counts_frames_not_time(tmp_path):
    import av

    path = tmp_path / "vfr.mp4"
    pts = [0, 1, 2, 5, 6, 10, 11, 20, 21, 22]  # irregular gaps, time base 1/12
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "0", "threads": "1"}
        for i, t in enumerate(pts):
            image = np.zeros((48, 64, 3), np.uint8)
            image[: 4 * (i + 1)] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert probe(path).num_frames == 10
    assert frame_ids(read_frames(path, list(range(10)))) == list(range(10))


def test_audio_only_file_is_a_video_error(tmp_path):
    wav = tmp_path / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac", str(wav))
    with pytest.raises(VideoError, match=r"sound\.m4a"):
        probe(wav)
