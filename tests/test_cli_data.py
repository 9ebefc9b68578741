"""``doctor``, ``data extract-frames`` and ``data pecop-lists`` through their parsers."""

import argparse
import json
import shutil

import pytest

from aqa.cli import data as cli_data
from aqa.errors import AQAError
from test_checks import aqa7_tree
from test_datasets_formats import write_video


def run(argv, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    cli_data.add_parsers(sub)
    args = parser.parse_args(argv)
    code = cli_data.COMMANDS[args.command](args)
    return code, capsys.readouterr().out


def test_doctor_exit_codes_and_json(tmp_path, capsys):
    seven = aqa7_tree(tmp_path)
    code, out = run(["doctor", "--dataset", "aqa7", "--data-root", str(seven), "--set", "num_frames=4",
                     "--runs-dir", str(tmp_path), "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["missing_count"] == 5 and report["corrupt_count"] == 1
    code, out = run(["doctor", "--dataset", "aqa7", "--data-root", str(seven), "--set",
                     "data.num_frames=1", "--runs-dir", str(tmp_path), "--no-probe"], capsys)
    assert code == 1 and "missing: 4 samples" in out
    with pytest.raises(AQAError, match="expected KEY=VALUE"):
        run(["doctor", "--dataset", "aqa7", "--data-root", str(seven), "--set", "colour=red"], capsys)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_extract_frames_mtl_layout_is_resumable(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "01.mp4", n=6)
    write_video(tmp_path / "videos" / "2.mp4", n=4)
    argv = ["data", "extract-frames", "--dataset", "mtl_aqa", "--data-root", str(tmp_path),
            "--height", "32", "--json"]
    code, out = run(argv, capsys)
    frames = tmp_path / "new" / "new_total_frames_256s"
    assert code == 0 and len(json.loads(out)["done"]) == 2
    assert sorted(p.name for p in (frames / "01").iterdir()) == [f"{i:08d}.jpg" for i in range(1, 7)]
    assert len(list((frames / "02").iterdir())) == 4
    code, out = run(argv, capsys)
    assert code == 0 and len(json.loads(out)["skipped"]) == 2 and not json.loads(out)["done"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_extract_frames_folder_reports_a_bad_video(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in" / "a.mp4", n=3)
    (tmp_path / "in" / "b.mp4").write_bytes(b"junk")
    code, out = run(["data", "extract-frames", "--videos", str(tmp_path / "in"), "--out",
                     str(tmp_path / "out"), "--pattern", "img_%05d.jpg", "--height", "0"], capsys)
    assert code == 1 and "failed 1" in out and "b.mp4" in out
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir())[0] == "img_00001.jpg"
    assert not (tmp_path / "out" / "b").exists() and not list((tmp_path / "out").glob(".*partial"))


def test_pecop_lists_with_linked_frames(tmp_path, capsys):
    seven = aqa7_tree(tmp_path)
    out_dir = tmp_path / "pecop"
    code, out = run(["data", "pecop-lists", "--dataset", "aqa7", "--data-root", str(seven),
                     "--set", "num_frames=3", "--out", str(out_dir), "--link-frames",
                     "--runs-dir", str(tmp_path)], capsys)
    assert code == 0
    lines = (out_dir / "train.list").read_text().splitlines()
    assert lines[0] == "diving_001 11 3 0" and len(lines) == 7
    assert (out_dir / "0" / "diving_001" / "img_00003.jpg").resolve() == \
        (seven / "diving-out" / "001" / "img_00003.jpg").resolve()
    from aqa.data.pd4t import read_pecop_list
    assert read_pecop_list(out_dir / "test.list") == [("diving_008", 72, 3, "0")]
