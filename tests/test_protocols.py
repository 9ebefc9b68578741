"""Cross-validation protocols (aqa/protocols.py, the JIGSAWS schemes of aqa/data/jigsaws.py):
folds built on JIGSAWS-shaped trial names written here, the Fisher-z aggregate on known values,
the protocol command's submit (runs created, not started) and its errors."""

import hashlib
import json
import pickle
from dataclasses import replace

import pytest

from aqa import protocols as P
from aqa.data import jigsaws as J
from aqa.errors import ConfigError, DatasetError
from aqa.registry import DATASETS

# The 103 trials of MUSDL's label.pkl (nzl-thu/MUSDL@205868a JIGSAWS/data/info/label.pkl): every
# user B..I with supertrials 001..005, less these (JIGSAWS has no Needle_Passing of user G).
# Built from this list, not from MUSDL_FOLDS, so the folds are checked against a separate source.
MISSING = {"Suturing": "H002", "Needle_Passing": "B005 E002 F002 F005 G001 G002 G003 G004 G005 "
                                                 "H001 H003 I001",
           "Knot_Tying": "B005 H001 H002 I004"}


def trial_names() -> dict[str, list[str]]:
    """JIGSAWS names: 39 Suturing, 28 Needle_Passing, 36 Knot_Tying (label.pkl's counts)."""
    return {task: [f"{task}_{u}{t:03d}" for u in J.USERS for t in range(1, 6)
                   if f"{u}{t:03d}" not in MISSING[task].split()] for task in J.TASKS}


def write_labels(root, names, splits=None):
    (root / "info").mkdir(parents=True, exist_ok=True)
    labels = {n: [1 + (i + j) % 5 for j in range(6)] for i, n in enumerate(names)}
    with open(root / "info" / "label.pkl", "wb") as f:
        pickle.dump(labels, f)
    if splits is not None:
        with open(root / "info" / "splits.pkl", "wb") as f:
            pickle.dump(splits, f)
    return labels


def jigsaws_cfg(root, workspace, **kw):
    entry = DATASETS.get("jigsaws")
    cfg = replace(entry.config_cls(root=str(root)), disk_cache="off", allow_missing=True, **kw)
    return entry, entry.resolve(cfg, workspace)


@pytest.fixture
def jig(tmp_path):
    names = [n for task in J.TASKS for n in trial_names()[task]]
    write_labels(tmp_path / "jig", names)
    return tmp_path / "jig"


def test_trial_counts_match_musdl_labels():
    counts = {t: len(v) for t, v in trial_names().items()}
    assert counts == {"Suturing": 39, "Needle_Passing": 28, "Knot_Tying": 36}


@pytest.mark.parametrize("scheme, key", [("loso", 2), ("louo", 1)])
@pytest.mark.parametrize("task", J.TASKS)
def test_every_trial_in_exactly_one_test_fold_and_no_group_on_both_sides(jig, tmp_path, scheme,
                                                                         key, task):
    entry, cfg = jigsaws_cfg(jig, tmp_path, task=task, scheme=scheme)
    folds = J.folds_of(cfg)
    tested = [n for _, _, names in folds for n in names]
    assert sorted(tested) == sorted(trial_names()[task])  # each trial once
    for k, label, names in folds:
        fold_cfg = replace(cfg, fold=k)
        test = entry.samples(fold_cfg, "test")
        train = entry.samples(fold_cfg, "train")
        assert [s.id for s in test] == names
        assert len(test) + len(train) == len(trial_names()[task])
        held = {J.parse_trial(s.id)[key] for s in test}
        assert len(held) == 1  # one supertrial / one user a fold
        assert held.isdisjoint(J.parse_trial(s.id)[key] for s in train)
        assert str(held.pop()) in label  # "supertrial 3", "user D"
    expected = {"loso": 5, "louo": 7 if task == "Needle_Passing" else 8}[scheme]
    assert len(folds) == expected


def test_folds_are_deterministic_whatever_the_label_order(tmp_path):
    names = trial_names()["Suturing"]
    write_labels(tmp_path / "a", names)
    write_labels(tmp_path / "b", list(reversed(names)))
    for scheme in ("loso", "louo", "4fold"):
        a = J.folds_of(jigsaws_cfg(tmp_path / "a", tmp_path, scheme=scheme)[1])
        b = J.folds_of(jigsaws_cfg(tmp_path / "b", tmp_path, scheme=scheme)[1])
        assert a == b


def test_louo_fold_of_a_missing_user_is_a_clear_error(jig, tmp_path):
    entry, cfg = jigsaws_cfg(jig, tmp_path, task="Needle_Passing", scheme="louo", fold=5)
    with pytest.raises(DatasetError, match="no trials in user G.*folds with trials: 0, 1, 2, 3, 4, 6, 7"):
        entry.samples(cfg, "test")
    with pytest.raises(DatasetError, match=r"data.fold must be 0..4 with data.scheme=loso"):
        jigsaws_cfg(jig, tmp_path, scheme="loso", fold=5)
    with pytest.raises(DatasetError, match="unknown data.scheme 'loocv'"):
        jigsaws_cfg(jig, tmp_path, scheme="loocv")


def test_a_name_that_is_not_a_jigsaws_trial_is_named(tmp_path):
    write_labels(tmp_path / "j", ["Suturing_B001", "Suturing_X1"])
    with pytest.raises(DatasetError, match="'Suturing_X1' is not a JIGSAWS trial name"):
        J.folds_of(jigsaws_cfg(tmp_path / "j", tmp_path, scheme="louo")[1])


def test_4fold_reads_splits_pkl_and_falls_back_to_musdls_published_folds(jig, tmp_path):
    entry, cfg = jigsaws_cfg(jig, tmp_path, task="Knot_Tying")  # no splits.pkl in jig
    folds = J.folds_of(cfg)
    assert [label for _, label, _ in folds] == ["fold 0", "fold 1", "fold 2", "fold 3"]
    assert [len(n) for _, _, n in folds] == [9, 9, 9, 9]
    assert folds[0][2][0] == "Knot_Tying_B001"
    own = {"Knot_Tying": [["Knot_Tying_B001"], ["Knot_Tying_B002"], ["Knot_Tying_B003"], []]}
    write_labels(tmp_path / "own", ["Knot_Tying_B001", "Knot_Tying_B002", "Knot_Tying_B003"], own)
    _, cfg = jigsaws_cfg(tmp_path / "own", tmp_path, task="Knot_Tying")
    assert [n for _, _, n in J.folds_of(cfg)] == own["Knot_Tying"][:3]  # the empty fold left out


def test_musdl_folds_restate_the_published_splits_pkl():
    """Against nzl-thu/MUSDL@205868a JIGSAWS/data/info/splits.pkl (md5 082b2894...), read with
    ``pickle.load`` and hashed as ``sha256(json.dumps({task: [sorted(fold) for fold in folds]
    for task in sorted(s)}, sort_keys=True))`` -> b93688048ec2...; the counts as documented."""
    restated = {t: [sorted(f"{t}_{c}" for c in fold.split()) for fold in J.MUSDL_FOLDS[t]]
                for t in sorted(J.MUSDL_FOLDS)}
    digest = hashlib.sha256(json.dumps(restated, sort_keys=True).encode()).hexdigest()
    assert digest == "b93688048ec297cd3ca48266b2aa19f204e2c6075e4dc1aeeeecc881d097b9e6"
    assert {t: [len(f) for f in v] for t, v in restated.items()} == {
        "Knot_Tying": [9, 9, 9, 9], "Needle_Passing": [7, 7, 7, 7], "Suturing": [9, 10, 10, 10]}
    for t, folds in restated.items():  # a partition of the task's trials
        flat = [n for f in folds for n in f]
        assert len(flat) == len(set(flat)) and sorted(flat) == sorted(trial_names()[t])


def test_fisher_z_aggregate_on_published_values():
    # AQA-7 per-class rho of USDL and TPT (their papers' tables) -> their "Avg. Corr."
    usdl = [0.8099, 0.7570, 0.6538, 0.7109, 0.9166, 0.8878]
    tpt = [0.8969, 0.8043, 0.7336, 0.6965, 0.9456, 0.9545]
    assert P.aggregate(usdl, "fisher_z") == pytest.approx(0.8102, abs=5e-5)
    assert P.aggregate(tpt, "fisher_z") == pytest.approx(0.8714, abs=5e-5)
    # MUSDL's JIGSAWS_avg.xls: S 0.71, NP 0.69, KT 0.71 -> 0.7035 across tasks
    assert P.across_tasks({"Suturing": 0.71, "Needle_Passing": 0.69,
                           "Knot_Tying": 0.71}) == pytest.approx(0.7035, abs=5e-5)
    assert P.aggregate([0.5, 0.7, 0.9], "mean") == pytest.approx(0.7)
    assert P.aggregate([0.5, None], "mean") is None
    with pytest.raises(ConfigError, match="unknown aggregate 'median'"):
        P.aggregate([0.5], "median")
