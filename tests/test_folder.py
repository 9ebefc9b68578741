from pathlib import Path

import pytest

from aqa.config import build_run_config
from aqa.data.folder import read_score_csv, safe_join
from aqa.errors import DatasetError
from aqa.registry import DATASETS


def write_csv(root: Path, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scores.csv").write_text(text)


def test_reads_rows_with_and_without_optional_columns(tmp_path):
    write_csv(tmp_path, "video,score,difficulty,split\na.mp4,80.5,3.2,train\nsub/b.mp4,40,,test\n")
    rows = read_score_csv(tmp_path, "scores.csv", 0.2, 0)
    assert [(s.id, s.score, s.difficulty, s.split) for s in rows] == [
        ("a", 80.5, 3.2, "train"), ("b", 40.0, 1.0, "test")]
    assert rows[1].video == (tmp_path / "sub" / "b.mp4").resolve()


def test_without_split_column_a_seeded_fraction_is_test(tmp_path):
    write_csv(tmp_path, "video,score\n" + "".join(f"c{i}.mp4,{i}\n" for i in range(100)))
    a = [s.split for s in read_score_csv(tmp_path, "scores.csv", 0.25, 7)]
    b = [s.split for s in read_score_csv(tmp_path, "scores.csv", 0.25, 7)]
    assert a == b and 15 <= a.count("test") <= 35


@pytest.mark.parametrize("text, message", [
    ("clip,score\na.mp4,1\n", "missing column"),
    ("video,score\na.mp4,good\n", "line 2: score/difficulty must be numbers"),
    ("video,score,split\na.mp4,1,dev\n", "split must be train, val or test"),
    ("video,score\n../../etc/passwd,1\n", "outside the dataset root"),
    ("video,score\n/etc/passwd,1\n", "outside the dataset root"),
])
def test_malformed_csv(tmp_path, text, message):
    write_csv(tmp_path, text)
    with pytest.raises(DatasetError, match=message):
        read_score_csv(tmp_path, "scores.csv", 0.2, 0)


def test_missing_root_and_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_score_csv(tmp_path / "nope", "scores.csv", 0.2, 0)
    with pytest.raises(DatasetError, match="no score file"):
        read_score_csv(tmp_path, "scores.csv", 0.2, 0)


def test_symlink_out_of_the_root_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(DatasetError):
        safe_join(tmp_path / "root", "link/secret.mp4")


def test_folder_needs_a_root():
    cfg = build_run_config("regression", "folder")
    with pytest.raises(DatasetError, match="--data-root"):
        DATASETS.get("folder").resolve(cfg.data, Path("/tmp"))


def test_synthetic_defaults_to_the_workspace(tmp_path):
    cfg = build_run_config("regression", "synthetic")
    resolved = DATASETS.get("synthetic").resolve(cfg.data, tmp_path)
    assert resolved.root == str((tmp_path / "datasets" / "synthetic").resolve())


def test_synthetic_dataset_yields_uint8_clips(synthetic_root):
    cfg = build_run_config("regression", "synthetic",
                           overrides=[f"data.root={synthetic_root}", "data.num_clips=24",
                                      "data.num_frames=8", "data.frame_size=32"])
    ds = DATASETS.get("synthetic").build(cfg.data, "train", train=True)
    item = ds[0]
    assert item["video"].shape == (3, 8, 32, 32) and str(item["video"].dtype) == "torch.uint8"
    assert len(ds) == 18 and len(DATASETS.get("synthetic").samples(cfg.data, "test")) == 6
