"""The MTL-AQA adapter on the real annotation and split pickles, with frames made here."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aqa.data.mtl_aqa import MTLAQADataConfig, end_window_span
from aqa.errors import DatasetError
from aqa.registry import DATASETS
from conftest import SHARED_DATA

INFO = SHARED_DATA / "MTL-AQA"
PICKLES = ("final_annotations_dict_with_dive_number.pkl", "train_split_0.pkl", "test_split_0.pkl")


def jpg(path: Path, value: int) -> None:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, quality=95)


@pytest.fixture
def mtl_root(tmp_path):
    """CoRe's layout: info/ (symlinks to the shared pickles) and frames for four samples."""
    if not all((INFO / p).exists() for p in PICKLES):
        pytest.skip(f"the MTL-AQA pickles are not in {INFO} (../shared/data is absent)")
    (tmp_path / "info").mkdir()
    for p in PICKLES:
        (tmp_path / "info" / p).symlink_to(INFO / p)
    return tmp_path


def write_frames(root: Path, event: int, first: int, last: int) -> None:
    folder = root / "new" / "new_total_frames_256s" / f"{event:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(first, last + 1):
        jpg(folder / f"{n:08d}.jpg", n % 256)


def cfg_for(root, workspace, **kw):
    entry = DATASETS.get("mtl_aqa")
    return entry, entry.resolve(replace(MTLAQADataConfig(root=str(root)), **kw), workspace)


def test_splits_sizes_ranges_and_dd_groups(mtl_root, tmp_path):
    write_frames(mtl_root, 1, 1, 3)
    entry, cfg = cfg_for(mtl_root, tmp_path)
    train, test = entry.samples(cfg, "train"), entry.samples(cfg, "test")
    assert (len(train), len(test)) == (1059, 353)
    assert (min(s.score for s in test), max(s.score for s in test)) == (0.0, 104.5)
    assert {s.id for s in train}.isdisjoint(s.id for s in test)
    from aqa.data.exemplars import pool_by
    assert pool_by(train, "difficulty").pair_count() == 67562
    s = next(s for s in train if s.id == "01_02")
    assert (s.score, s.difficulty, s.meta["dive_number"]) == (86.4, 3.2, "407C")
    assert s.meta["judge_scores"].tolist() == [9.0, 8.5, 9.0, 9.0, 9.0, 9.0, 9.0]
    _, no_dd = cfg_for(mtl_root, tmp_path, use_difficulty=False)
    assert {s.difficulty for s in entry.samples(no_dd, "train")} == {1.0}


def test_core_window_reads_the_103_files_ending_at_end_frame(mtl_root, tmp_path):
    write_frames(mtl_root, 1, 8738 - 110, 8738 + 3)  # sample (1, 2): end_frame 8738
    entry, cfg = cfg_for(mtl_root, tmp_path, allow_missing=True, num_frames=103, jitter=3,
                         pipeline="square", frame_size=8, disk_cache="off")
    ds = entry.build(cfg, "train", train=False)
    assert [s.id for s in ds.samples][:1] == ["01_02"] and len(ds.excluded) > 1000
    i = [s.id for s in ds.samples].index("01_02")
    item = ds[i]
    assert item["video"].shape == (3, 103, 8, 8) and item["video"].dtype.is_floating_point is False
    # file n holds grey n % 256: the window is files 8636..8738
    assert item["video"][0, :, 4, 4].tolist() == [n % 256 for n in range(8636, 8739)]
    assert item["judge_scores"].shape == (7,) and set(item) == {
        "video", "score", "difficulty", "id", "judge_scores"}
    train = entry.build(cfg, "train", train=True, seed=0)
    firsts = {int(train[i]["video"][0, 0, 4, 4]) for _ in range(30)}
    assert firsts <= {n % 256 for n in range(8633, 8640)} and len(firsts) > 2  # shifted by -3..3


def test_missing_frames_refused_unless_allowed(mtl_root, tmp_path):
    write_frames(mtl_root, 1, 8600, 8741)
    entry, cfg = cfg_for(mtl_root, tmp_path, disk_cache="off")
    with pytest.raises(DatasetError, match=r"of 1059 MTL-AQA train samples have missing.*allow_missing"):
        entry.build(cfg, "train", train=True)


def test_tvv_pipeline_shape_from_frames(mtl_root, tmp_path):
    write_frames(mtl_root, 1, 8738 - 105, 8738 + 3)
    entry, cfg = cfg_for(mtl_root, tmp_path, allow_missing=True, disk_cache="off")
    ds = entry.build(cfg, "train", train=True)
    assert ds[0]["video"].shape == (3, 103, 224, 224)


def test_end_window_span_table():
    assert end_window_span(150, 103, 3, 1, None) == (45, 109, 3)
    assert end_window_span(150, 103, 0, 1, 300) == (48, 103, 0)
    assert end_window_span(60, 103, 3, 1, 300) == (1, 63, -43)  # near the start: moved in later
    assert end_window_span(300, 103, 3, 1, 301) == (195, 107, 3)  # past the last file: clipped


def test_layout_detection_and_errors(tmp_path, mtl_root):
    entry = DATASETS.get("mtl_aqa")
    with pytest.raises(DatasetError, match="--data-root"):
        entry.resolve(MTLAQADataConfig(), tmp_path)
    _, cfg = cfg_for(mtl_root, tmp_path)
    with pytest.raises(DatasetError, match="found no MTL-AQA frames or videos"):
        entry.samples(cfg, "train")
    (mtl_root / "frames" / "01_02").mkdir(parents=True)
    for n in range(112):
        jpg(mtl_root / "frames" / "01_02" / f"{n:05d}.jpg", n)
    s = next(s for s in entry.samples(cfg, "train") if s.id == "01_02")
    assert s.meta["layout"] == "musdl" and s.frames.count == 112 and s.window_start == 3


def fake_info(root: Path) -> None:
    """A two-sample annotation set in MUSDL's format (no dive_number)."""
    import pickle

    ann = {(1, k): dict(primary_view=0, start_frame=5, end_frame=20 + k, position=0, difficulty=2.0,
                        armstand=0, rotation_type=0, ss_no=1, tw_no=0, final_score=50.0 + k,
                        judge_scores=np.full(7, 7.0)) for k in (1, 2)}
    (root / "info").mkdir()
    pickle.dump(ann, open(root / "info" / "augmented_final_annotations_dict.pkl", "wb"))
    pickle.dump([(1, 1)], open(root / "info" / "train_split_0.pkl", "wb"))
    pickle.dump([(1, 2)], open(root / "info" / "test_split_0.pkl", "wb"))


def test_raw_event_and_trimmed_videos(tmp_path):
    from test_datasets_formats import write_video

    root = tmp_path / "mtl"
    root.mkdir()
    fake_info(root)
    (root / "videos").mkdir()
    write_video(root / "videos" / "01.mp4", n=30)  # frame index i is grey 20*i (mod 256)
    write_video(root / "videos" / "01_02.mp4", n=7)  # a trimmed test sample
    entry, cfg = cfg_for(root, tmp_path, num_frames=8, jitter=0, pipeline="square", frame_size=32,
                         disk_cache="off")
    (train,), (test,) = entry.samples(cfg, "train"), entry.samples(cfg, "test")
    assert train.meta["layout"] == "videos" and "dive_number" not in train.meta
    item = entry.build(cfg, "train", train=False)[0]
    # end_frame 21 -> frame files 14..21 -> video indices 13..20
    grey = item["video"][0, :, 16, 16].tolist()
    assert all(abs(g - (20 * i) % 256) <= 3 for g, i in zip(grey, range(13, 21)))
    assert test.video.name == "01_02.mp4" and test.window_start is None
    assert entry.build(cfg, "test", train=False)[0]["video"].shape == (3, 8, 32, 32)


def test_tpt_frames_long_windows_query_from_file_0_exemplar_from_file_3(tmp_path):
    """TPT's test loader reads a test query from file 0 and every exemplar (training split) from
    file 3; training adds randint(-3, 3) to the 3 (aqa_tpt dataloader_pair_MLT.py load_video)."""
    root = tmp_path / "mtl"
    root.mkdir()
    fake_info(root)
    for sid in ("01_01", "01_02"):
        (root / "frames_long" / sid).mkdir(parents=True)
        for n in range(109):
            jpg(root / "frames_long" / sid / f"{17977 + n:08d}.jpg", n)
    entry, cfg = cfg_for(root, tmp_path, pipeline="square", frame_size=8, num_frames=103,
                         disk_cache="off")
    (train,), (test,) = entry.samples(cfg, "train"), entry.samples(cfg, "test")
    assert (train.meta["layout"], train.window_start, test.window_start) == ("tpt", 3, 0)
    first = lambda ds: int(ds[0]["video"][:, 0].float().mean().round())  # noqa: E731
    assert first(entry.build(cfg, "test", train=False)) == 0
    assert first(entry.build(cfg, "train", train=False)) == 3
    shifted = entry.build(cfg, "train", train=True)
    assert {first(shifted) for _ in range(40)} == set(range(0, 7))  # 3 + randint(-3, 3)
