"""AQA-7, FR-FS, Fis-V, JIGSAWS and PD4T adapters on tiny trees written here in each format."""

import json
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from aqa.data.frfs import read_labels
from aqa.errors import DatasetError
from aqa.registry import DATASETS


def frames(folder: Path, n: int, name="img_{:05d}.jpg", start=1, value=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        v = i % 256 if value is None else value
        Image.fromarray(np.full((8, 8, 3), v, np.uint8)).save(folder / name.format(i), quality=95)


def dataset(name, root, workspace, **kw):
    entry = DATASETS.get(name)
    cfg = replace(entry.config_cls(root=str(root)), pipeline="square", frame_size=16,
                  disk_cache="off", **kw)
    return entry, entry.resolve(cfg, workspace)


def test_aqa7_per_class_all_class_and_normalised_scores(tmp_path):
    seven = tmp_path / "Seven"
    (seven / "Split_4").mkdir(parents=True)
    train = np.array([[1, 1, 21.6], [1, 2, 102.6], [2, 1, 14.585], [7, 1, 50.0]])
    test = np.array([[1, 3, 62.1], [6, 1, 99.36]])
    scipy.io.savemat(seven / "Split_4" / "split_4_train_list.mat", {"consolidated_train_list": train})
    scipy.io.savemat(seven / "Split_4" / "split_4_test_list.mat", {"consolidated_test_list": test})
    for cls, idx in (("diving", 1), ("diving", 2), ("gym_vault", 1), ("diving", 3)):
        frames(seven / f"{cls}-out" / f"{idx:03d}", 6)
    entry, cfg = dataset("aqa7", tmp_path, tmp_path, num_frames=4)  # finds Seven/
    assert cfg.root == str(seven)
    tr = entry.samples(cfg, "train")
    assert [(s.id, round(s.score, 3)) for s in tr] == [("diving_001", 0.0), ("diving_002", 100.0)]
    assert round(entry.samples(cfg, "test")[0].score, 3) == 50.0
    _, all_cfg = dataset("aqa7", seven, tmp_path, num_frames=4, class_name="all")
    tr_all = entry.samples(all_cfg, "train")
    assert [s.meta["class"] for s in tr_all] == ["diving", "diving", "gym_vault"]  # no trampoline
    assert round(tr_all[2].score, 3) == 50.0
    item = entry.build(all_cfg, "train", train=False)[2]
    assert item["video"].shape == (3, 4, 16, 16) and item["class_index"].item() == 1.0
    assert item["video"][0, :, 0, 0].tolist() == [1, 2, 3, 4]  # img_00001 .. img_00004
    with pytest.raises(DatasetError, match="sync_diving_10m_001"):
        entry.build(all_cfg, "test", train=False)  # its frames are missing


def test_frfs_labels_frames_and_boxes(tmp_path):
    root = tmp_path / "FRFS"
    root.mkdir()
    (root / "Train.csv").write_text("key,label\njump_a,1.0\njump_b,0.0\n")
    (root / "Test.csv").write_text("key,label\njump_c,0.8\n")
    for key in ("jump_a", "jump_b", "jump_c"):
        frames(root / "Images" / key, 5, name="{:05d}.jpg")
    (root / "FRFS_Boxes.json").write_text(json.dumps({"jump_a": [[1, 2, 3, 4, 5, 6, 7, 8]] * 5}))
    entry, cfg = dataset("frfs", tmp_path, tmp_path, num_frames=4)
    assert [(s.id, s.meta["label"]) for s in entry.samples(cfg, "train")] == [("jump_a", 1.0), ("jump_b", 0.0)]
    ds = entry.build(cfg, "train", train=True)
    a, b = ds[0], ds[1]
    assert set(a) == set(b) == {"video", "score", "difficulty", "id", "label", "boxes"}
    assert a["boxes"].shape == (4, 8) and b["boxes"].abs().sum() == 0
    assert entry.samples(cfg, "test")[0].score == 1.0  # 0.8 > 0.5
    (root / "Test.csv").unlink()
    (root / "Test.xls").write_text("key,label\n")  # a CSV renamed .xls
    with pytest.raises(DatasetError, match="Test.xls: not an OLE2 .xls file"):
        entry.samples(cfg, "test")


def write_video(path: Path, n: int = 10) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (20 * i) % 256, np.uint8), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())


def test_fisv_tes_pcs_targets(tmp_path):
    (tmp_path / "videos").mkdir()
    for n in (1, 2, 3):
        write_video(tmp_path / "videos" / f"{n}.mp4")
    (tmp_path / "fisv_scores.csv").write_text(
        "number,total,tes,pcs,ded\n1,60.5,30.0,31.5,1\n2,70,35,35,0\n3,50,25,26,1\n")
    (tmp_path / "train.txt").write_text("1 30.0 31.5 1\n2 35 35 0\n")
    (tmp_path / "test.txt").write_text("3 25 26 1\n")
    entry, cfg = dataset("fisv", tmp_path, tmp_path, num_frames=4)
    assert [(s.id, s.score) for s in entry.samples(cfg, "train")] == [("1", 30.0), ("2", 35.0)]
    _, pcs = dataset("fisv", tmp_path, tmp_path, num_frames=4, target="pcs")
    assert [s.score for s in entry.samples(pcs, "test")] == [26.0]
    item = entry.build(cfg, "test", train=False)[0]
    assert item["video"].shape == (3, 4, 16, 16) and item["pcs"].item() == 26.0
    with pytest.raises(DatasetError, match="data.target"):
        dataset("fisv", tmp_path, tmp_path, target="goe")


def test_jigsaws_folds_and_sub_scores(tmp_path):
    (tmp_path / "info").mkdir()
    names = [f"Suturing_B00{i}" for i in range(1, 9)]
    labels = {n: [1 + i % 5, 2, 3, 4, 5, 1] for i, n in enumerate(names)}
    folds = {"Suturing": [names[0:2], names[2:4], names[4:6], names[6:8]]}
    pickle.dump(labels, open(tmp_path / "info" / "label.pkl", "wb"))
    pickle.dump(folds, open(tmp_path / "info" / "splits.pkl", "wb"))
    for n in names[:3]:
        frames(tmp_path / "frames" / f"{n}_capture1", 20, name="{:05d}.jpg")
    entry, cfg = dataset("jigsaws", tmp_path, tmp_path, num_frames=5, fold=1, allow_missing=True)
    assert [s.id for s in entry.samples(cfg, "test")] == names[2:4]
    assert len(entry.samples(cfg, "train")) == 6 and entry.samples(cfg, "test")[0].score == 18.0
    ds = entry.build(cfg, "train", train=False)
    assert [s.id for s in ds.samples] == names[:2] and len(ds.excluded) == 4
    item = ds[0]
    assert item["sub_scores"].tolist() == [1, 2, 3, 4, 5, 1]
    assert item["video"][0, :, 0, 0].tolist() == [1, 5, 10, 15, 20]  # linspace(0, 19, 5) -> files


def test_pd4t_pecop_lists(tmp_path):
    (tmp_path / "gait" / "label").mkdir(parents=True)
    (tmp_path / "gait" / "label" / "train.list").write_text("p01_walk 2 40 1\np02_walk 0 12 2\n")
    (tmp_path / "gait" / "label" / "test.list").write_text("p03_walk 4 40 1\n")
    frames(tmp_path / "gait" / "1" / "p01_walk", 40)
    frames(tmp_path / "gait" / "2" / "p02_walk", 12)
    entry, cfg = dataset("pd4t", tmp_path, tmp_path, task="gait", num_frames=8)
    tr = entry.samples(cfg, "train")
    assert [(s.id, s.score, s.frames.count) for s in tr] == [("p01_walk", 2.0, 37), ("p02_walk", 0.0, 9)]
    assert entry.build(cfg, "train", train=True)[1]["label"].item() == 0.0
    with pytest.raises(DatasetError, match="p03_walk"):
        entry.build(cfg, "test", train=False)


def write_xls(path: Path, rows: list[tuple[str, float]]) -> None:
    """A BIFF8 .xls in an OLE2 container, as Excel writes it: a header row, keys in the shared
    string table (split by a CONTINUE record inside a string), labels as NUMBER and RK cells."""
    import struct

    def rec(rid, body):
        return struct.pack("<HH", rid, len(body)) + body

    strings = ["key", "label"] + [k for k, _ in rows]
    sst = struct.pack("<II", len(strings), len(strings)) + b"".join(
        struct.pack("<HB", len(s), 0) + s.encode("latin-1") for s in strings)
    cut = 8 + 3 + 3 + 3 + 5 + 3 + 2  # inside the first key's characters
    sst_recs = rec(0x00FC, sst[:cut]) + rec(0x003C, b"\x00" + sst[cut:])
    bof = lambda kind: rec(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0, 0, 0, 0))  # noqa: E731
    sheet = bof(0x10) + rec(0x00FD, struct.pack("<HHHI", 0, 0, 0, 0)) + rec(0x00FD, struct.pack("<HHHI", 0, 1, 0, 1))
    for r, (_, label) in enumerate(rows, start=1):
        sheet += rec(0x00FD, struct.pack("<HHHI", r, 0, 0, r + 1))
        if r % 2:
            sheet += rec(0x0203, struct.pack("<HHHd", r, 1, 0, label))
        else:  # RK: a float's top 30 bits
            bits = struct.unpack("<Q", struct.pack("<d", label))[0] >> 32
            sheet += rec(0x027E, struct.pack("<HHHI", r, 1, 0, bits & 0xFFFFFFFC))
    sheet += rec(0x000A, b"")
    name = b"Sheet1"
    head_len = len(bof(5)) + 4 + 8 + len(name)
    globals_ = bof(5) + rec(0x0085, struct.pack("<IBBBB", head_len + len(sst_recs) + 4, 0, 0, len(name), 0) + name) \
        + sst_recs + rec(0x000A, b"")
    book = (globals_ + sheet).ljust(4096, b"\x00")  # >= the mini-stream cutoff
    n = -(-len(book) // 512)
    END, FREE = 0xFFFFFFFE, 0xFFFFFFFF
    fat = [0xFFFFFFFD, END] + [3 + i for i in range(n - 1)] + [END]
    fat += [FREE] * (128 - len(fat))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\x00" * 10 + struct.pack("<IIIIIIII", 1, 1, 0, 4096, END, 0, END, 0)
              + struct.pack("<109I", 0, *([FREE] * 108)))

    def entry(name, kind, start, size, child=FREE):
        raw = name.encode("utf-16-le") + b"\x00\x00"
        return (raw.ljust(64, b"\x00") + struct.pack("<HBB", len(raw), kind, 1)
                + struct.pack("<III", FREE, FREE, child) + b"\x00" * 36 + struct.pack("<IIi", start, size, 0))

    directory = (entry("Root Entry", 5, END, 0, child=1) + entry("Workbook", 2, 2, len(book))).ljust(512, b"\x00")
    path.write_bytes(header + struct.pack("<128I", *fat) + directory + book.ljust(n * 512, b"\x00"))


def test_frfs_reads_the_distributed_xls_with_xlrd(tmp_path):
    """The sheets are read by xlrd, from BIFF8 as Excel writes it (write_xls above)."""
    import xlrd

    from aqa.data.frfs import read_xls

    root = tmp_path / "FRFS"
    root.mkdir()
    write_xls(root / "Train.xls", [("309_1_fall", 1.0), ("312_2", 0.0), ("400_3", 0.75)])
    assert xlrd.open_workbook(str(root / "Train.xls")).biff_version == 80  # BIFF8
    assert read_xls(root / "Train.xls", "Sheet1") == [["key", "label"], ["309_1_fall", 1.0],
                                                      ["312_2", 0.0], ["400_3", 0.75]]
    write_xls(root / "Test.xls", [("500_1", 0.25)])
    entry, cfg = dataset("frfs", tmp_path, tmp_path)
    assert [(s.id, s.meta["label"]) for s in entry.samples(cfg, "train")] == [
        ("309_1_fall", 1.0), ("312_2", 0.0), ("400_3", 1.0)]
    assert [s.score for s in entry.samples(cfg, "test")] == [0.0]
    with pytest.raises(DatasetError, match="no sheet 'Sheet2' \\(has Sheet1\\)"):
        read_xls(root / "Test.xls", "Sheet2")


def test_frfs_without_xlrd_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "xlrd", None)  # what `import xlrd` meets where it is absent
    write_xls(tmp_path / "Train.xls", [("a", 1.0)])
    with pytest.raises(DatasetError, match="Train.xls: reading .xls needs xlrd \\(pip install"):
        read_labels(tmp_path, "train")
    (tmp_path / "Train.csv").write_text("key,label\na,1.0\n")  # the CSV beside it needs nothing
    assert read_labels(tmp_path, "train") == [("a", 1.0)]


def test_aqa7_and_jigsaws_read_raw_videos_where_frames_were_not_extracted(tmp_path):
    """A sample whose frame folder is absent is read from its video (AQA-7: its first frames,
    as from the folder; JIGSAWS: spread uniformly over the trial, as MUSDL's linspace)."""
    seven = tmp_path / "Seven"
    (seven / "Split_4").mkdir(parents=True)
    scipy.io.savemat(seven / "Split_4" / "split_4_train_list.mat",
                     {"consolidated_train_list": np.array([[1, 1, 50.0], [1, 2, 60.0]])})
    scipy.io.savemat(seven / "Split_4" / "split_4_test_list.mat",
                     {"consolidated_test_list": np.array([[1, 3, 70.0]])})
    frames(seven / "diving-out" / "001", 6)
    (seven / "diving-out").mkdir(exist_ok=True)
    write_video(seven / "diving-out" / "002.mp4", n=10)  # beside the frame folders
    (seven / "videos" / "diving").mkdir(parents=True)
    write_video(seven / "videos" / "diving" / "003.mp4", n=10)  # or under videos/<class>/
    entry, cfg = dataset("aqa7", seven, tmp_path, num_frames=4)
    tr = entry.samples(cfg, "train")
    assert tr[0].is_frame_folder and tr[1].video == seven / "diving-out" / "002.mp4"
    assert entry.samples(cfg, "test")[0].video == seven / "videos" / "diving" / "003.mp4"
    item = entry.build(cfg, "train", train=False)[1]
    assert item["video"].shape == (3, 4, 16, 16)
    got = item["video"][0, :, 8, 8].float()
    assert torch.allclose(got, torch.tensor([0.0, 20, 40, 60]), atol=6), got  # frames 0..3

    (tmp_path / "jig" / "info").mkdir(parents=True)
    names = [f"Suturing_B00{i}" for i in range(1, 5)]
    pickle.dump({n: [1, 2, 3, 4, 5, 1] for n in names}, open(tmp_path / "jig" / "info" / "label.pkl", "wb"))
    pickle.dump({"Suturing": [[n] for n in names]}, open(tmp_path / "jig" / "info" / "splits.pkl", "wb"))
    (tmp_path / "jig" / "Suturing" / "video").mkdir(parents=True)
    write_video(tmp_path / "jig" / "Suturing" / "video" / "Suturing_B002_capture1.mp4", n=10)
    entry, cfg = dataset("jigsaws", tmp_path / "jig", tmp_path, num_frames=5, fold=1,
                         allow_missing=True)
    (s,) = entry.samples(cfg, "test")
    assert s.video.name == "Suturing_B002_capture1.mp4" and s.frames is None
    from aqa.video import sample_indices

    got = entry.build(cfg, "test", train=False)[0]["video"][0, :, 8, 8].float()
    want = torch.tensor([20.0 * i for i in sample_indices(10, 5)])  # spread over the 10 frames
    assert torch.allclose(got, want, atol=6), (got, want)
