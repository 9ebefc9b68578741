"""``finediving``: the official layout, key normalisation, the sample contract, dives whose images
disagree with their labels, the doctor, pairs' exemplar keys and the two exemplar protocols."""

import argparse
import json
import pickle
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from aqa.cli import data as cli_data
from aqa.data import finediving as F
from aqa.data.checks import check_dataset
from aqa.data.exemplars import choose_exemplars, pool_by
from aqa.data.pairs import PairDataset
from aqa.errors import ConfigError, DatasetError
from aqa.registry import DATASETS
from tests.finediving_fixture import make_finediving

SMALL = {"n_frames": (30, 50), "size": (40, 24)}


def config(root, ws, **kw):
    entry = DATASETS.get("finediving")
    cfg = replace(entry.config_cls(), root=str(root), disk_cache="off", **kw)
    return entry, entry.resolve(cfg, ws)


@pytest.fixture(scope="module")
def fd(tmp_path_factory):
    root = tmp_path_factory.mktemp("fd")
    info = make_finediving(root, **SMALL)
    entry, cfg = config(root, tmp_path_factory.mktemp("ws"), num_frames=16)
    return root, info, entry, cfg


def write_split(root, name, entries):
    with open(root / "Annotations" / name, "wb") as f:
        pickle.dump(entries, f)


@pytest.mark.parametrize("entry, key", [
    ((1, 3), ("01", 3)), (("1", "3"), ("01", 3)), (("01", np.int64(3)), ("01", 3)),
    ((np.int64(14), 55), ("14", 55)), ((b"02", 1), ("02", 1)),
    ((" FINADivingWorldCup2021_Men3m_final_r1 ", 2), ("FINADivingWorldCup2021_Men3m_final_r1", 2)),
])
def test_keys_normalise(entry, key):
    assert F.normalise_key(entry) == key


@pytest.mark.parametrize("entry", [("01",), ("01", "x"), ("", 1), (None, 1), ("01", 1.5), 7])
def test_bad_keys_are_value_errors(entry):
    with pytest.raises(ValueError):
        F.normalise_key(entry)


def test_step_transits_follow_first_appearance():
    assert F.step_transits([0, 0, 1, 1, 1, 2]).tolist() == [1, 4]
    assert F.step_transits([0, 0, 1, 1]).tolist() == [1, 1]  # two steps: both the same
    assert F.step_transits([5, 5, 3, 3, 7, 3]).tolist() == [1, 3]  # not sorted by value
    with pytest.raises(ValueError, match="single value 2"):
        F.step_transits([2, 2, 2])
    assert F.sampled_positions(489, 592, 5).tolist() == [0, 25, 51, 77, 103]  # floor


def test_sample_contract(fd):
    root, info, entry, cfg = fd
    train, test = entry.samples(cfg, "train"), entry.samples(cfg, "test")
    assert [s.id for s in train] == [F.sample_id(k) for k in info["train"]]
    assert len(train) == 6 and len(test) == 3
    s = train[1]
    dive, score, dd, _, labels = info["annotations"][info["train"][1]]
    assert s.id == "FINADivingWorldCup2021_Men3m_final_r1_1" and s.split == "train"
    assert (s.score, s.difficulty, s.meta["dive_number"]) == (score, dd, dive)
    assert isinstance(s.meta["dive_number"], str)
    assert s.meta["transits"].dtype == np.int64 and s.meta["transits"].shape == (2,)
    assert s.meta["frame_labels"].shape == (16,)
    positions = F.sampled_positions(0, len(labels) - 1, 16)
    assert s.meta["frame_labels"].tolist() == labels[positions].tolist()
    assert s.frames.count == 16 and s.window_start == 0
    item = entry.build(cfg, "train", train=True)[1]
    assert item["video"].shape == (3, 16, 112, 112) and item["video"].dtype == torch.uint8
    assert item["transits"].dtype == torch.float32
    assert item["transits"].tolist() == s.meta["transits"].tolist()
    assert item["frame_labels"].tolist() == s.meta["frame_labels"].tolist()


def test_split_entries_in_either_spelling(fd, tmp_path):
    root, info, entry, cfg = fd
    other = tmp_path / "fd"
    make_finediving(other, **SMALL)
    write_split(other, "train_split.pkl", [(1, 0), ("FINADivingWorldCup2021_Men3m_final_r1",
                                                    np.int64(1)), ("2", "2")])
    _, cfg2 = config(other, tmp_path / "ws", num_frames=16)
    samples = entry.samples(cfg2, "train")
    assert [s.id for s in samples] == ["01_0", "FINADivingWorldCup2021_Men3m_final_r1_1", "02_2"]
    events = [s.meta["event"] for s in samples]
    assert events == ["01", "FINADivingWorldCup2021_Men3m_final_r1", "02"]
    assert samples[2].video == other / "FINADiving_MTL_256s" / "02" / "2"
    assert all("problem" not in s.meta for s in samples)
    assert entry.check_notes(cfg2)[1] == ("train split: 2 entries spell their key differently "
                                          "from the annotation (e.g. (1, 0) for ('01', 0)); "
                                          "matched after normalising")


def test_split_entry_matching_no_annotation_names_it(fd, tmp_path):
    make_finediving(tmp_path / "fd", **SMALL)
    write_split(tmp_path / "fd", "test_split.pkl", [("01", 0), ("Tokyo2020_Women10m", 4)])
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws")
    with pytest.raises(DatasetError, match=r"split entry \('Tokyo2020_Women10m', 4\) matches no "
                                           r"annotation"):
        entry.samples(cfg, "test")


def test_numeric_event_spellings_share_one_dive(tmp_path):
    info = make_finediving(tmp_path / "fd", **SMALL)
    ann = dict(info["annotations"])
    ann[(1, 0)] = list(ann[("01", 0)])  # the same dive under an int event: accepted once
    path = tmp_path / "fd" / "Annotations" / "fine-grained_annotation_aqa.pkl"
    with open(path, "wb") as f:
        pickle.dump(ann, f)
    write_split(tmp_path / "fd", "train_split.pkl", [(1, 0), ("1", 4)])
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws", num_frames=16)
    assert [s.id for s in entry.samples(cfg, "train")] == ["01_0", "01_4"]
    ann[(1, 0)][1] = 1.0  # now they disagree
    with open(path, "wb") as f:
        pickle.dump(ann, f)
    with pytest.raises(DatasetError, match=r"keys \('01', 0\) and \(1, 0\) both name dive"):
        entry.samples(cfg, "train")


def test_annotation_files_in_the_root_and_missing_ones(tmp_path):
    make_finediving(tmp_path / "fd", annotations_in_root=True, **SMALL)
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws", num_frames=16)
    assert len(entry.samples(cfg, "test")) == 3
    (tmp_path / "fd" / "test_split.pkl").unlink()
    with pytest.raises(DatasetError, match="no FineDiving split file .*test_split.pkl"):
        entry.samples(cfg, "test")
    report = check_dataset("finediving", str(tmp_path / "fd"), tmp_path / "ws")
    assert not report.found and not report.ok
    assert "no FineDiving split file" in report.messages[0] and "docs/datasets.md" in report.fix
    with pytest.raises(DatasetError, match="needs --data-root"):
        config("", tmp_path / "ws")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DatasetError, match="FINADiving_MTL_256s: no frame folder"):
        config(tmp_path / "bare", tmp_path / "ws")


def test_fine_grained_annotation_dicts_and_array_splits(tmp_path):
    info = make_finediving(tmp_path / "fd", **SMALL)
    fine = {k: {"action_type": v[0], "dive_score": v[1], "difficulty": v[2],
                "steps_transit_frames": v[3], "frames_labels": v[4], "sub-action_types": {1: "x"}}
            for k, v in info["annotations"].items()}
    with open(tmp_path / "fd" / "Annotations" / "fine.pkl", "wb") as f:
        pickle.dump(fine, f)
    write_split(tmp_path / "fd", "test_split.pkl", np.array(info["test"], dtype=object))
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws", num_frames=16)
    want = [(s.id, s.score, s.meta["transits"].tolist()) for s in entry.samples(cfg, "test")]
    assert len(want) == 3
    cfg = replace(cfg, annotations="Annotations/fine.pkl")
    got = [(s.id, s.score, s.meta["transits"].tolist()) for s in entry.samples(cfg, "test")]
    assert got == want


def test_malformed_annotation_is_a_dataset_error(tmp_path):
    info = make_finediving(tmp_path / "fd", **SMALL)
    ann = dict(info["annotations"])
    ann[("01", 0)] = ["107B", 80.0]
    with open(tmp_path / "fd" / "Annotations" / "fine-grained_annotation_aqa.pkl", "wb") as f:
        pickle.dump(ann, f)
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws")
    with pytest.raises(DatasetError, match=r"annotation of \('01', 0\) should be \[dive_number"):
        entry.samples(cfg, "train")


def test_resize_and_crop_checked():
    with pytest.raises(ConfigError, match="frame_size=224 does not fit the 112x200 frames"):
        F.check_resize(F.FineDivingDataConfig(frame_size=224))
    with pytest.raises(ConfigError, match="give width,height"):
        F.check_resize(F.FineDivingDataConfig(resize=[200]))
    F.check_resize(F.FineDivingDataConfig(frame_size=224, resize=[455, 256]))


def test_images_not_matching_labels_are_refused_or_left_out(tmp_path, capsys):
    info = make_finediving(tmp_path / "fd", extra_images={("01", 4): 4}, **SMALL)
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws", num_frames=16)
    bad = [s for s in entry.samples(cfg, "train") if "problem" in s.meta]
    n = len(info["annotations"][("01", 4)][4])
    assert [s.id for s in bad] == ["01_4"]
    assert bad[0].meta["problem"] == (f"{n + 4} frame images but {n} frame labels in the "
                                      "annotation: download this dive's frames again (FineDiving "
                                      "issue #1)")
    with pytest.raises(DatasetError, match=r"1 of 6 FineDiving train dives do not match their "
                                           r"annotation: 01_4 \("):
        entry.build(cfg, "train", train=True)
    ds = entry.build(replace(cfg, allow_missing=True), "train", train=True)
    assert len(ds) == 5 and ds.excluded == ["01_4"]
    assert len(entry.build(cfg, "test", train=False)) == 3  # the test split is unaffected

    report = check_dataset("finediving", str(tmp_path / "fd"), tmp_path / "ws")
    assert report.found and not report.ok
    assert report.invalid_count == 1 and report.invalid[0].startswith("01_4: ")
    assert report.present == {"train": 5, "test": 3}
    assert "--allow-missing" in report.fix
    assert "not matching the annotation: 1 samples" in report.text()

    parser = argparse.ArgumentParser()
    cli_data.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", "--dataset", "finediving", "--data-root",
                              str(tmp_path / "fd"), "--runs-dir", str(tmp_path), "--json"])
    assert cli_data.cmd_doctor(args) == 1
    assert json.loads(capsys.readouterr().out)["invalid_count"] == 1


def test_gaps_in_frame_numbers_are_a_problem(tmp_path):
    make_finediving(tmp_path / "fd", **SMALL)
    folder = tmp_path / "fd" / "FINADiving_MTL_256s" / "02" / "2"
    sorted(folder.iterdir())[5].unlink()
    entry, cfg = config(tmp_path / "fd", tmp_path / "ws")
    (s,) = [s for s in entry.samples(cfg, "train") if s.id == "02_2"]
    assert "(gaps); the frames are indexed by number" in s.meta["problem"]


def test_doctor_on_a_healthy_root(fd, tmp_path):
    root, info, entry, cfg = fd
    report = check_dataset("finediving", str(root), tmp_path)
    assert report.ok and report.samples == {"train": 6, "test": 3}
    assert report.messages[0] == "9 annotated samples: 6 train, 3 test"
    assert report.messages[1] == ("annotation: 9 dives in 4 events; keys by two-digit event code "
                                  "(5) and by event name (4), normalised")
    # every file the 96 positions read, each opened once: all files of these short dives
    assert report.checked_files == sum(len(a[4]) for a in info["annotations"].values())


def test_doctor_on_a_missing_folder(fd, tmp_path):
    root = tmp_path / "fd"
    make_finediving(root, **SMALL)
    shutil.rmtree(root / "FINADiving_MTL_256s" / "01" / "8")
    report = check_dataset("finediving", str(root), tmp_path / "ws")
    assert report.missing_count == 1 and report.missing[0].startswith("01_8: ")


def test_pairs_carry_the_exemplars_extra_keys(fd):
    root, info, entry, cfg = fd
    clips = entry.build(cfg, "train", train=True)
    np.random.seed(0)
    item = PairDataset(clips, "dive_number")[0]
    ex = [s for s in clips.samples if s.id != "01_0"
          and s.meta["dive_number"] == clips.samples[0].meta["dive_number"]]
    assert len(ex) == 1  # 01_0's only same-dive partner
    assert item["exemplar_transits"].tolist() == ex[0].meta["transits"].tolist()
    assert item["exemplar_frame_labels"].tolist() == ex[0].meta["frame_labels"].tolist()
    assert item["exemplar_transits"].dtype == torch.float32


def test_protocols_by_dive_number_and_by_difficulty(fd):
    root, info, entry, cfg = fd
    train, test = entry.samples(cfg, "train"), entry.samples(cfg, "test")
    rng = np.random.default_rng(0)
    by_dive, by_dd = pool_by(train, "dive_number"), pool_by(train, "difficulty")
    assert sorted(by_dive.groups) == ["107B", "205B", "305C"]
    assert sorted(by_dd.groups) == [2.8, 3.0, 3.1]
    q = test[0]  # 107B, DD 3.1: both protocols give the same group here
    got = {s.id for s in choose_exemplars(q, by_dive, 10, rng).samples}
    assert got == {s.id for s in train if s.meta["dive_number"] == "107B"}
    unseen = test[-1]  # 5253B, DD 3.4: in no training dive
    assert unseen.meta["dive_number"] == "5253B" and unseen.difficulty == 3.4
    got = {s.id for s in choose_exemplars(unseen, by_dive, 10, rng).samples}
    assert got == {s.id for s in train}  # a dive number never seen: the whole training split
    got = {s.id for s in choose_exemplars(unseen, by_dd, 10, rng).samples}
    assert got == {s.id for s in train if s.difficulty == 3.1}  # the nearest DD


def test_a_run_says_which_dives_it_left_out(tmp_path, capsys):
    from aqa.config import build_run_config, to_dict
    from aqa.runs import events, store
    from aqa.train.loop import main

    make_finediving(tmp_path / "fd", extra_images={("01", 4): 4}, **SMALL)
    cfg = build_run_config("regression", "finediving", overrides=[
        f"data.root={tmp_path / 'fd'}", "data.allow_missing=true", "data.num_frames=8",
        "data.disk_cache=off", "train.epochs=1", "train.batch_size=4", "train.device=cpu"])
    run = store.create_run(tmp_path / "runs", to_dict(cfg))
    assert main(str(run)) == 0
    assert ("left out of train (data.allow_missing): 1 samples, e.g. 01_4; see `python -m aqa "
            "doctor`") in capsys.readouterr().out
    (ev,) = [e for e in events.read_events(run / events.EVENTS_FILE) if e["type"] == "excluded"]
    assert ev["samples"] == {"train": ["01_4"], "test": []}
