"""aqa.data.doctor: a healthy root, a missing root, missing and corrupt files."""

import shutil

from aqa.data import doctor


def test_healthy_synthetic_root(synthetic_root, runs_dir):
    report = doctor.check("synthetic", str(synthetic_root), runs_dir)
    assert report.ok and report.found and report.fix == ""
    assert report.samples == {"train": 18, "test": 6}
    assert report.checked_files == 24 and report.missing_count == 0 and report.corrupt_count == 0
    lo, hi = report.ranges["train"]
    assert 0 < lo < hi < 110
    assert report.messages[0] == "24 annotated samples: 18 train, 6 test"


def test_missing_root_suggests_the_render_command(tmp_path, runs_dir):
    report = doctor.check("synthetic", str(tmp_path / "nope"), runs_dir)
    assert not report.found and not report.ok
    assert "python -m aqa demo" in report.fix


def test_folder_without_root(runs_dir):
    report = doctor.check("folder", "", runs_dir)
    assert not report.ok and "needs --data-root" in report.messages[0]


def test_missing_and_corrupt_files(synthetic_root, tmp_path, runs_dir):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    (root / "clips" / "dive_0000.mp4").unlink()
    (root / "clips" / "dive_0001.mp4").write_bytes(b"not a video at all")
    (root / "clips" / "dive_0002.mp4").write_bytes(b"")
    report = doctor.check("folder", str(root), runs_dir)
    assert report.found and not report.ok
    assert report.missing_count == 1 and report.missing[0].endswith("dive_0000.mp4")
    assert report.corrupt_count == 2
    assert any("empty file (0 bytes)" in c for c in report.corrupt)
    assert "--allow-missing" in report.fix  # a missing file comes first
    (root / "clips" / "dive_0000.mp4").write_bytes((synthetic_root / "clips" / "dive_0000.mp4")
                                                   .read_bytes())
    report = doctor.check("folder", str(root), runs_dir)
    assert report.corrupt_count == 2 and report.fix.startswith("ffmpeg -i ")
    report = doctor.check("folder", str(root), runs_dir, max_probe=3)
    assert report.checked_files == 3 and report.messages[-1] == "only 3 files were opened (max_probe)"
