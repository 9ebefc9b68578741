"""The doctor's report on datasets with missing and corrupt files."""

import numpy as np
import pytest
import scipy.io

from aqa.data.checks import check_dataset
from test_datasets_formats import frames, write_video


def aqa7_tree(root):
    seven = root / "Seven"
    (seven / "Split_4").mkdir(parents=True)
    train = np.array([[1, i, 30.0 + i] for i in range(1, 8)])
    scipy.io.savemat(seven / "Split_4" / "split_4_train_list.mat", {"consolidated_train_list": train})
    scipy.io.savemat(seven / "Split_4" / "split_4_test_list.mat",
                     {"consolidated_test_list": np.array([[1, 8, 80.0]])})
    for i in (1, 2, 3, 8):
        frames(seven / "diving-out" / f"{i:03d}", 4)
    (seven / "diving-out" / "003" / "img_00002.jpg").write_bytes(b"not a jpeg")  # corrupt
    (seven / "diving-out" / "002" / "img_00004.jpg").unlink()  # one frame missing
    return seven


def test_report_names_missing_and_corrupt_and_the_fix(tmp_path):
    seven = aqa7_tree(tmp_path)
    r = check_dataset("aqa7", str(seven), tmp_path, overrides={"num_frames": 4})
    assert r.found and not r.ok
    assert r.samples == {"train": 7, "test": 1} and r.present == {"train": 1, "test": 1}
    assert r.missing_count == 5  # 002 (one frame) and 004..007 (no folder)
    assert r.missing[0].startswith("diving_002: ") and r.missing[0].endswith("img_00004.jpg")
    assert r.corrupt_count == 1 and "003/img_00002.jpg: not a readable image" in r.corrupt[0]
    norm = lambda s: (s - 21.6) / (102.6 - 21.6) * 100  # diving's range -> 0..100
    assert r.ranges["test"] == [pytest.approx(norm(80.0))] * 2
    assert r.ranges["train"] == [pytest.approx(norm(31.0)), pytest.approx(norm(37.0))]
    assert "--allow-missing" in r.fix
    d = r.to_dict()
    assert d["missing_count"] == 5 and isinstance(d["ranges"]["test"], list)
    assert "diving_002" in r.text() and "not ready" in r.text()


def test_clean_dataset_is_ok(tmp_path):
    seven = aqa7_tree(tmp_path)
    r = check_dataset("aqa7", str(seven), tmp_path, overrides={"num_frames": 1})
    # with one frame per sample only 004..007 are missing (the damaged frames are not read)
    assert r.missing_count == 4 and r.corrupt_count == 0
    assert r.present == {"train": 3, "test": 1}


def test_corrupt_video_and_unknown_root(tmp_path):
    (tmp_path / "clips").mkdir()
    write_video(tmp_path / "clips" / "a.mp4")
    write_video(tmp_path / "clips" / "b.mp4")
    (tmp_path / "clips" / "c.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "scores.csv").write_text(
        "video,score,split\nclips/a.mp4,1,train\nclips/b.mp4,2,test\nclips/c.mp4,3,train\n")
    r = check_dataset("folder", str(tmp_path), tmp_path)
    assert r.corrupt_count == 1 and r.corrupt[0].startswith(str((tmp_path / "clips" / "c.mp4").resolve()))
    assert r.fix.startswith("ffmpeg -i") and not r.ok
    gone = check_dataset("mtl_aqa", str(tmp_path / "nope"), tmp_path)
    assert not gone.found and "does not exist" in gone.messages[0] and gone.fix
