"""aqa.data.synthetic: the score formula, determinism, the CSV, resuming."""

import csv

import numpy as np
import pytest

from aqa.data.synthetic import CSV_COLUMNS, draw_dive, render_clip, render_dataset, score_of
from aqa.errors import DatasetError
from aqa.video import probe, read_clip

SMALL = dict(num_clips=4, num_frames=12, size=32, fps=12)


def read_rows(root):
    with open(root / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "entry_angle, splash, rotation, difficulty, expected",
    [
        (0.0, 2.0, 1.0, 3.6, 108.0),  # perfect dive: quality 10
        (20.0, 7.0, 0.9, 2.0, 33.0),  # 10 - 3 - 1 - 0.5 = 5.5 -> 3 * 5.5 * 2.0
        (40.0, 14.0, 0.8, 1.6, 0.0),  # 10 - 7.2 - 2 - 1 < 0: clipped to quality 0
        (10.0, 4.0, 1.0, 2.8, 69.72),  # 10 - 1.2 - 0.5 = 8.3 -> 3 * 8.3 * 2.8
    ],
)
def test_score_of(entry_angle, splash, rotation, difficulty, expected):
    assert score_of(entry_angle, splash, rotation, difficulty) == pytest.approx(expected)


def test_render_writes_clips_and_csv(tmp_path):
    root = render_dataset(tmp_path / "dives", seed=0, test_fraction=0.25, **SMALL)
    rows = read_rows(root)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert CSV_COLUMNS[:4] == ("video", "score", "difficulty", "split")
    assert [r["video"] for r in rows] == [f"clips/dive_{i:04d}.mp4" for i in range(4)]
    assert sorted(r["split"] for r in rows) == ["test", "train", "train", "train"]
    info = probe(root / rows[0]["video"])
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 32, 32, 12.0)
    for r in rows:
        args = (float(r["entry_angle"]), float(r["splash"]), float(r["rotation"]), float(r["difficulty"]))
        assert float(r["score"]) == pytest.approx(score_of(*args), abs=0.005)


def test_same_seed_same_dataset_other_seed_differs(tmp_path):
    a = render_dataset(tmp_path / "a", seed=3, **SMALL)
    b = render_dataset(tmp_path / "b", seed=3, **SMALL)
    c = render_dataset(tmp_path / "c", seed=4, **SMALL)
    assert (a / "scores.csv").read_text() == (b / "scores.csv").read_text()
    assert (a / "scores.csv").read_text() != (c / "scores.csv").read_text()
    video = "clips/dive_0001.mp4"
    assert (a / video).read_bytes() == (b / video).read_bytes()  # single-threaded x264
    assert np.array_equal(read_clip(a / video, 12), read_clip(b / video, 12))
    assert not np.array_equal(read_clip(a / video, 12), read_clip(c / video, 12))


def test_second_call_renders_nothing(tmp_path):
    root = render_dataset(tmp_path / "dives", seed=0, **SMALL)
    clips = sorted((root / "clips").glob("*.mp4"))
    before = [p.stat().st_mtime_ns for p in clips]
    done = []
    render_dataset(root, seed=0, progress=lambda i, n: done.append((i, n)), **SMALL)
    assert [p.stat().st_mtime_ns for p in clips] == before
    assert done[-1] == (4, 4)
    assert not list(root.rglob("*.tmp"))


def test_resume_renders_only_missing_clips(tmp_path):
    root = render_dataset(tmp_path / "dives", seed=0, **SMALL)
    first = (root / "clips/dive_0000.mp4").stat().st_mtime_ns
    (root / "clips/dive_0002.mp4").unlink()
    (root / "scores.csv").unlink()
    render_dataset(root, seed=0, **SMALL)
    assert (root / "clips/dive_0002.mp4").exists() and (root / "scores.csv").exists()
    assert (root / "clips/dive_0000.mp4").stat().st_mtime_ns == first


def test_other_arguments_rerender(tmp_path):
    root = render_dataset(tmp_path / "dives", seed=0, **SMALL)
    render_dataset(root, seed=0, **{**SMALL, "num_clips": 2})
    assert sorted(p.name for p in (root / "clips").iterdir()) == ["dive_0000.mp4", "dive_0001.mp4"]
    assert len(read_rows(root)) == 2


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(DatasetError, match="not empty"):
        render_dataset(tmp_path, **SMALL)


def test_render_clip_shape_and_splash_grows():
    frames = render_clip(draw_dive(0, 0), num_frames=24, size=64)
    assert frames.shape == (24, 64, 64, 3) and frames.dtype == np.uint8
    white = (frames.min(axis=3) > 240).reshape(24, -1).sum(axis=1)  # splash pixels per frame
    assert white[-1] > white[-4] > white[12] == 0
