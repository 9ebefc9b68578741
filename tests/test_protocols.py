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
from aqa.errors import DatasetError
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
    assert "differs from MUSDL's published folds" in J.folds_source(cfg)
    assert J.folds_source(jigsaws_cfg(jig, tmp_path)[1]).startswith("MUSDL's published folds (no")
    names = [n for t in J.TASKS for n in trial_names()[t]]
    musdl = {t: [list(reversed(f)) for f in reversed(J.musdl_folds(t))] for t in J.TASKS}
    write_labels(tmp_path / "m", names, musdl)  # the same folds, in another order
    assert J.folds_source(jigsaws_cfg(tmp_path / "m", tmp_path)[1]) == \
        "info/splits.pkl: MUSDL's published folds"
    musdl["Suturing"][0].append(musdl["Suturing"][1].pop())  # one trial in another fold
    write_labels(tmp_path / "m", names, musdl)
    assert "differs" in J.folds_source(jigsaws_cfg(tmp_path / "m", tmp_path)[1])


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


def test_across_tasks_fisher_z_on_published_values():
    # MUSDL's JIGSAWS_avg.xls: S 0.71, NP 0.69, KT 0.71 -> 0.7035 across tasks
    assert P.across_tasks({"Suturing": 0.71, "Needle_Passing": 0.69,
                           "Knot_Tying": 0.71}) == pytest.approx(0.7035, abs=5e-5)
    assert P.across_tasks({"Suturing": 0.71, "Knot_Tying": None}) is None
    assert P.across_tasks({"Suturing": 0.71, "Knot_Tying": 1.0}) is None  # atanh(1) undefined
    results = [{"protocol": "jigsaws-louo", "method": "musdl", "task": t, "rho": r}
               for t, r in (("Suturing", 0.71), ("Needle_Passing", 0.69), ("Knot_Tying", 0.71))]
    summary = P.tasks_summary(results)
    assert summary["rho"] == pytest.approx(0.7035, abs=5e-5)
    assert summary["label"].startswith("jigsaws-louo across 3 tasks (Fisher-z")
    assert P.tasks_summary(results[:1]) is None  # one task: no across-task number
    assert P.tasks_summary([results[0], dict(results[1], method="usdl")]) is None


# ---------------------------------------------------------------- the command

def cli(*argv):
    from aqa.cli import main
    return main(list(argv))


@pytest.mark.parametrize("argv, message", [
    (["run", "jigsaws-loocv", "--method", "usdl"], "unknown protocol 'jigsaws-loocv'; choose one of "
                                                   "jigsaws-4fold, jigsaws-loso, jigsaws-louo"),
    (["run", "jigsaws-louo", "--method", "usdl", "--dataset", "mtl_aqa", "--task", "S"],
     "protocol jigsaws-louo runs on the jigsaws dataset, not mtl_aqa; mtl_aqa has no protocol"),
    (["run", "aqa7-per-class", "--method", "usdl", "--dataset", "jigsaws"],
     "jigsaws's protocols: jigsaws-4fold, jigsaws-loso, jigsaws-louo"),
    (["run", "jigsaws-louo", "--method", "usdl"], "runs on one JIGSAWS task: give --task"),
    (["run", "jigsaws-louo", "--method", "usdl", "--task", "Suturing,Sewing"],
     "--task 'Sewing': not a JIGSAWS task"),
    (["run", "aqa7-per-class", "--method", "core", "--task", "Suturing"], "has no tasks; drop --task"),
    (["run", "jigsaws-louo", "--method", "usdl", "--task", "S", "--set", "data.fold=2"],
     "sets data.fold for each of its runs"),
    (["show", "g-nope"], "no runs in group 'g-nope'"),
])
def test_protocol_errors_are_one_clear_line(runs_dir, capsys, argv, message):
    assert cli("protocol", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not [p for p in runs_dir.iterdir() if p.name[:1].isdigit()]  # no run created


def test_cli_run_submits_one_group_a_task_with_visible_folds(runs_dir, jig, capsys):
    from aqa.jobs import queue
    from aqa.runs import store

    queue.set_paused(runs_dir, True)  # queued, never started: no training here
    assert cli("protocol", "run", "jigsaws-loso", "--method", "usdl", "--task", "np,Knot-Tying",
               "--data-root", str(jig), "--set", "train.epochs=2", "--json") == 0
    groups = json.loads(capsys.readouterr().out)
    assert [(g["protocol"], g["task"], len(g["runs"])) for g in groups] == [
        ("jigsaws-loso", "Needle_Passing", 5), ("jigsaws-loso", "Knot_Tying", 5)]
    for g in groups:
        tested = []
        for k, r in enumerate(g["runs"]):
            cfg = store.read_run(runs_dir / r["run_id"])["config"]
            assert cfg["group"] == {"id": g["group_id"], "kind": "folds", "member": r["member"],
                                    "protocol": f"jigsaws-loso {g['task']}", "size": 5,
                                    "aggregate": "mean"}
            assert r["member"] == f"supertrial {k + 1}" and cfg["train"]["epochs"] == 2
            assert (cfg["data"]["task"], cfg["data"]["scheme"], cfg["data"]["fold"]) == (
                g["task"], "loso", k)
            entry, data = jigsaws_cfg(jig, runs_dir, task=g["task"], scheme="loso", fold=k)
            tested += [s.id for s in entry.samples(data, "test")]
            assert store.read_job(runs_dir / r["run_id"])["state"] == "queued"
        assert sorted(tested) == sorted(trial_names()[g["task"]])
    assert groups[0]["folds"] == "built from the trial names of info/label.pkl (loso)"
    assert cli("protocol", "show", groups[0]["group_id"]) == 0
    out = capsys.readouterr().out
    assert "jigsaws-loso Needle_Passing · usdl · group" in out and "0/5 finished" in out
    assert out.count("queued") == 5 and "supertrial 5" in out


def finish(path, *rhos):
    """Write a finished run's test rho of epochs 1, 2, ... into its event log (no training)."""
    from aqa.runs.events import EVENTS_FILE, EventWriter

    ev = EventWriter(path / EVENTS_FILE)
    ev.emit("start", epochs=len(rhos), total_steps=len(rhos), params=1)
    for epoch, rho in enumerate(rhos, start=1):
        ev.metric("rho", rho, epoch=epoch, step=epoch, split="test")
    ev.emit("status", status="finished", epoch=len(rhos), step=len(rhos))
    ev.close()


def test_show_chooses_the_honest_epoch_on_validation_like_compare(runs_dir, jig, capsys):
    """Runs with a validation split: `protocol show` and `compare` give the group the same
    numbers, the honest one at the epoch chosen on val (not the last, not test's best)."""
    from aqa.jobs import SubmitRequest
    from aqa.runs.events import EVENTS_FILE, EventWriter

    request = SubmitRequest("usdl", "jigsaws", data_root=str(jig), start_now=False)
    (group,) = P.submit_protocol(runs_dir, "jigsaws-louo", request, task="KT")
    test = {1: 0.50, 2: 0.70, 3: 0.60}  # test's best: epoch 2; last: epoch 3
    val = {1: 0.90, 2: 0.10, 3: 0.20}  # chosen on val: epoch 1
    for r in group["runs"]:
        ev = EventWriter(runs_dir / r["run_id"] / EVENTS_FILE)
        ev.emit("start", epochs=3, total_steps=3, params=1)
        for epoch in test:
            ev.metric("rho", val[epoch], epoch=epoch, step=epoch, split="val")
            ev.metric("rho", test[epoch], epoch=epoch, step=epoch, split="test")
        ev.emit("status", status="finished", epoch=3, step=3)
        ev.close()
    assert cli("protocol", "show", group["group_id"], "--json") == 0
    (result,) = json.loads(capsys.readouterr().out)["groups"]
    assert result["rho_honest"] == pytest.approx(0.50)  # epoch 1, chosen on val
    assert result["rho_official"] == pytest.approx(0.70)  # each run's best on test
    assert {m["epoch"] for m in result["members"]} == {1}  # best.pt's epoch: chosen on val
    assert cli("compare", group["group_id"], "--boot", "0", "--format", "json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["rho_honest"], row["rho_official"], row["rho"]) == pytest.approx(
        (result["rho_honest"], result["rho_official"], result["rho"]))


def test_jigsaws_4fold_last10_is_musdls_final_test_correlation(runs_dir, jig, capsys):
    """MUSDL's number: each epoch the mean of the four folds' test rho, then the mean of the
    last ten epochs' means; `--epoch last10` gets it as the folds' mean of their last-ten means."""
    import numpy as np

    from aqa.jobs import SubmitRequest

    request = SubmitRequest("musdl", "jigsaws", data_root=str(jig), start_now=False)
    (group,) = P.submit_protocol(runs_dir, "jigsaws-4fold", request, task="S")
    assert group["folds"].startswith("MUSDL's published folds")
    rng = np.random.default_rng(0)
    rho = rng.uniform(-0.2, 0.9, size=(4, 13))  # 4 folds x 13 epochs
    for r, fold in zip(group["runs"], rho):
        finish(runs_dir / r["run_id"], *fold)
    musdl = float(np.mean(rho.mean(axis=0)[-10:]))  # MUSDL's main.py order of averaging
    for epoch, expected in (("last10", musdl), ("last", rho[:, -1].mean()),
                            ("best", rho.max(axis=1).mean())):  # best: no val split, on test
        assert cli("protocol", "show", group["group_id"], "--epoch", epoch, "--json") == 0
        (result,) = json.loads(capsys.readouterr().out)["groups"]
        assert result["rho"] == pytest.approx(expected, abs=1e-9), epoch
        assert result["label"] == "jigsaws-4fold Suturing" and result["runs"] == "4/4"
        assert result["rho_official"] == pytest.approx(rho.max(axis=1).mean(), abs=1e-9)
        assert result["rho_honest"] == pytest.approx(rho[:, -1].mean(), abs=1e-9)  # no val split
    assert cli("protocol", "show", group["group_id"], "--epoch", "last10") == 0
    out = capsys.readouterr().out
    assert f"each run's mean over its last 10 epochs): {musdl:.4f}" in out
    assert out.count("epoch 4-13") == 4 and "fold 3" in out


def write_split_4(seven, classes):
    """AQA-7's Split_4 files with two train samples and one test sample of each class."""
    import numpy as np
    import scipy.io

    (seven / "Split_4").mkdir(parents=True, exist_ok=True)
    train = np.array([[c, i, 50.0 + i] for c in classes for i in (1, 2)], dtype=float)
    test = np.array([[c, 3, 60.0] for c in classes], dtype=float)
    scipy.io.savemat(seven / "Split_4" / "split_4_train_list.mat", {"consolidated_train_list": train})
    scipy.io.savemat(seven / "Split_4" / "split_4_test_list.mat", {"consolidated_test_list": test})
    return seven


def test_aqa7_per_class_show_gives_the_fisher_z_average_and_each_class(runs_dir, tmp_path, capsys):
    from aqa.data.aqa7 import CLASSES
    from aqa.jobs import SubmitRequest

    seven = write_split_4(tmp_path / "Seven", classes=range(1, 6))  # no sync_diving_10m
    request = SubmitRequest("usdl", "", data_root=str(seven), start_now=False)
    with pytest.raises(DatasetError, match=r"no samples of sync_diving_10m \(0 train, 0 test\)"):
        P.submit_protocol(runs_dir, "aqa7-per-class", request)
    assert not list(runs_dir.glob("2*"))  # nothing submitted
    write_split_4(seven, classes=range(1, 8))  # the six classes and trampoline (left out)
    (group,) = P.submit_protocol(runs_dir, "aqa7-per-class", request)
    assert [r["member"] for r in group["runs"]] == list(CLASSES)
    usdl = [0.8099, 0.7570, 0.6538, 0.7109, 0.9166, 0.8878]  # USDL's per-class rho (its paper)
    for r, rho in zip(group["runs"], usdl):
        finish(runs_dir / r["run_id"], rho)
    assert cli("protocol", "show", "--json") == 0  # no GROUP: every protocol group
    shown = json.loads(capsys.readouterr().out)
    (result,) = shown["groups"]
    assert result["label"] == "aqa7-per-class" and result["aggregate"] == "fisher_z"
    assert result["rho"] == pytest.approx(0.8102, abs=5e-5)  # USDL's "Avg. Corr."
    assert [(m["member"], m["rho"], m["status"]) for m in result["members"]] == [
        (c, pytest.approx(r), "finished") for c, r in zip(CLASSES, usdl)]
    assert shown["across_tasks"] is None
    assert cli("protocol", "show", group["group_id"]) == 0
    out = capsys.readouterr().out
    assert "rho (Fisher-z mean of the classes, each run's best epoch): 0.8102" in out
    assert "sync_diving_10m" in out and "0.8878" in out
    # Compare: the group is one row, labelled with the protocol, with the same number
    assert cli("compare", group["group_id"], "--boot", "0", "--format", "json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert "aqa7-per-class" in row["label"] and row["rho"] == pytest.approx(result["rho"])


@pytest.mark.parametrize("action", ["list", "run", "show"])
def test_protocol_commands_have_help(capsys, action):
    with pytest.raises(SystemExit) as exit_:
        cli("protocol", action, "--help")
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith(f"usage: python -m aqa protocol {action}")
    assert ("--runs-dir" in out) == (action != "list") and "--json" in out


def test_cli_run_from_a_config_file(runs_dir, jig, tmp_path, capsys):
    from aqa.jobs import queue
    from aqa.runs import store

    queue.set_paused(runs_dir, True)
    (tmp_path / "run.toml").write_text('method = "usdl"\ndataset = "jigsaws"\n'
                                       '[train]\nepochs = 3\n[data]\nfold = 3\n')
    assert cli("protocol", "run", "jigsaws-louo", "--config", str(tmp_path / "run.toml"),
               "--task", "kt", "--data-root", str(jig), "--json") == 0
    (group,) = json.loads(capsys.readouterr().out)
    configs = [store.read_run(runs_dir / r["run_id"])["config"] for r in group["runs"]]
    assert [c["data"]["fold"] for c in configs] == list(range(8))  # the protocol's keys win
    assert {(c["method"], c["train"]["epochs"]) for c in configs} == {("usdl", 3)}
    (tmp_path / "mtl.toml").write_text('method = "usdl"\ndataset = "mtl_aqa"\n')
    assert cli("protocol", "run", "jigsaws-louo", "--config", str(tmp_path / "mtl.toml"),
               "--task", "S") == 2
    assert "runs on the jigsaws dataset, not mtl_aqa" in capsys.readouterr().err
    (tmp_path / "none.toml").write_text('dataset = "jigsaws"\n')
    assert cli("protocol", "run", "jigsaws-louo", "--config", str(tmp_path / "none.toml"),
               "--task", "S") == 2
    assert "which method? give --method" in capsys.readouterr().err
