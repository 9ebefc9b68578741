"""Groups of runs (aqa.groups, aqa.compare.group_rows), `aqa train --seeds`, `aqa compare
--members/--ledger`, and the known public reproduction gaps (aqa.papers.GAPS).

Nothing trains here: member runs are written directly (run.json, events, predictions), and the
CLI's submissions are created with the queue's start replaced by a recorder."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pytest

from aqa import compare, papers
from aqa.config import build_run_config, to_dict
from aqa.errors import ConfigError
from aqa.groups import seed_members, submit_group
from aqa.jobs import SubmitRequest
from aqa.runs import store
from aqa.runs.events import EVENTS_FILE, EventWriter


def write_member(runs_dir, group: dict, test_rho: list[float], status: str = "finished",
                 val_rho: list[float] | None = None, rl2: list[float] | None = None):
    """A run of ``group`` (the config's group section) with test (and val) metrics per epoch."""
    cfg = build_run_config("regression", "synthetic",
                           overrides=[f"group.{k}={v}" for k, v in group.items()]
                           + (["train.val_fraction=0.2"] if val_rho else []))
    path = store.create_run(runs_dir, to_dict(cfg))
    ev = EventWriter(path / EVENTS_FILE)
    ev.emit("start", epochs=len(test_rho), total_steps=len(test_rho), params=42)
    ev.emit("status", status="running")
    for epoch, rho in enumerate(test_rho, start=1):
        ev.metric("rho", rho, epoch=epoch, step=epoch, split="test")
        ev.metric("l2", 10.0 * epoch, epoch=epoch, step=epoch, split="test")
        if rl2:
            ev.metric("rl2", rl2[epoch - 1], epoch=epoch, step=epoch, split="test")
        if val_rho:
            ev.metric("rho", val_rho[epoch - 1], epoch=epoch, step=epoch, split="val")
    if status == "finished":
        ev.emit("status", status="finished", epoch=len(test_rho), step=len(test_rho))
    ev.close()
    return path


def seed_group(runs_dir, rhos: list[float], unfinished: int = 0, gid: str = "g-20261206-120000-abcd",
               aggregate: str = "mean", kind: str = "seeds") -> list:
    """A group: one finished member per last-epoch test rho, then ``unfinished`` running ones."""
    size = len(rhos) + unfinished
    paths = []
    for i, rho in enumerate(rhos + [0.1] * unfinished):
        group = {"id": gid, "kind": kind, "protocol": kind, "member": str(i), "size": size,
                 "aggregate": aggregate}
        paths.append(write_member(runs_dir, group, [rho / 2, rho],
                                  status="finished" if i < len(rhos) else "running"))
    return paths


def member_row(rho, member, status="finished", l2=None, gid="g1", aggregate="mean", kind="seeds",
               size=3):
    return {"label": f"run{member}", "kind": "run", "method": "regression", "dataset": "synthetic",
            "protocol": "best epoch on test (papers' protocol)", "rho": rho, "l2": l2,
            "status": status, "group": {"id": gid, "kind": kind, "protocol": kind,
                                        "member": str(member), "size": size,
                                        "aggregate": aggregate}}


# ---------------------------------------------------------------- the config section

def test_group_section_defaults_and_choices():
    cfg = build_run_config("regression", "synthetic")
    assert to_dict(cfg)["group"] == {"id": "", "kind": "", "protocol": "", "member": "",
                                     "size": 0, "aggregate": ""}
    with pytest.raises(ConfigError, match="group.kind='repeats' is not one of '' \\(none\\), seeds"):
        build_run_config("regression", "synthetic", overrides=["group.kind=repeats"])
    with pytest.raises(ConfigError, match="group.aggregate='median'"):
        build_run_config("regression", "synthetic", overrides=["group.aggregate=median"])
    with pytest.raises(ConfigError, match="needs group.kind and group.aggregate"):
        build_run_config("regression", "synthetic", overrides=["group.id=g-1"])
    with pytest.raises(ConfigError, match="group.size must be"):
        build_run_config("regression", "synthetic", overrides=["group.size=-1"])


# ---------------------------------------------------------------- submit_group

def test_submit_group_members_seeds_and_idempotence(runs_dir):
    request = SubmitRequest("regression", "synthetic", overrides=["train.epochs=2"],
                            start_now=False, submission_id="form-1")
    members = seed_members(7, 3)
    assert members == [("7", ["train.seed=7"]), ("8", ["train.seed=8"]), ("9", ["train.seed=9"])]
    gid, ids = submit_group(runs_dir, request, members, kind="seeds", protocol="seeds")
    assert re.fullmatch(r"g-\d{8}-\d{6}-[0-9a-f]{4}", gid)
    configs = [store.read_run(runs_dir / i)["config"] for i in ids]
    assert [c["train"]["seed"] for c in configs] == [7, 8, 9]
    assert all(c["train"]["epochs"] == 2 for c in configs)
    assert [c["group"] for c in configs] == [
        {"id": gid, "kind": "seeds", "protocol": "seeds", "member": m, "size": 3,
         "aggregate": "mean"} for m in ("7", "8", "9")]
    # the same form sent twice: the first group's runs and id, nothing new
    again = submit_group(runs_dir, request, members, kind="seeds", protocol="seeds")
    assert again == (gid, ids)
    assert len([p for p in runs_dir.iterdir() if (p / "run.json").exists()]) == 3


def test_submit_group_refuses_before_writing(runs_dir):
    request = SubmitRequest("regression", "synthetic", start_now=False)
    bad = [("a", ["train.epochs=2"]), ("b", ["train.epochs=0"])]
    with pytest.raises(ConfigError, match="train.epochs must be at least 1"):
        submit_group(runs_dir, request, bad, kind="folds", protocol="x")
    with pytest.raises(ConfigError, match="group kind 'repeats'"):
        submit_group(runs_dir, request, [("a", [])], kind="repeats", protocol="x")
    with pytest.raises(ConfigError, match="group aggregate 'max'"):
        submit_group(runs_dir, request, [("a", [])], kind="folds", protocol="x", aggregate="max")
    with pytest.raises(ConfigError, match="distinct labels"):
        submit_group(runs_dir, request, [("a", []), ("a", [])], kind="folds", protocol="x")
    with pytest.raises(ConfigError, match="at least 1 run"):
        seed_members(0, 0)
    assert not any((p / "run.json").exists() for p in runs_dir.iterdir())


# ---------------------------------------------------------------- folding a group into one row

def test_group_row_mean_and_std_against_numpy():
    rows = [member_row(0.61, 0, l2=30.0), {"label": "solo", "rho": 0.2},
            member_row(0.72, 1, l2=20.0), member_row(0.83, 2, l2=10.0)]
    folded = compare.group_rows(rows)
    assert [r["label"] for r in folded][1] == "solo" and len(folded) == 2
    g = folded[0]
    assert g["kind"] == "group" and g["runs"] == "3/3" and g["n_runs"] == 3 and g["size"] == 3
    assert g["rho"] == pytest.approx(np.mean([0.61, 0.72, 0.83]))
    assert g["rho_std"] == pytest.approx(np.std([0.61, 0.72, 0.83], ddof=1))
    assert g["l2"] == pytest.approx(20.0) and g["l2_std"] == pytest.approx(10.0)
    assert [m["label"] for m in g["members"]] == ["run0", "run1", "run2"]
    assert "mean ± std over 3 seeds" in g["protocol"] and "note" not in g


def test_unfinished_members_are_counted_out_and_said():
    g = compare.fold_group([member_row(0.5, 0), member_row(0.7, 1), member_row(0.99, 2, "running")])
    assert g["runs"] == "2/3" and g["label"].endswith("2/3 finished")
    assert g["rho"] == pytest.approx(0.6) and g["rho_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert g["note"] == "1 of 3 runs not finished: not in the numbers"
    one = compare.fold_group([member_row(0.5, 0), member_row(None, 1, "queued")])
    assert one["rho"] == 0.5 and one["rho_std"] is None and one["runs"] == "1/3"
    none = compare.fold_group([member_row(None, 0, "running")])
    assert "rho" not in none and none["runs"] == "0/3"


def test_a_rerun_of_a_member_counts_once():
    rows = [member_row(0.1, 0, "crashed"), member_row(0.5, 1), member_row(0.6, 0)]
    g = compare.fold_group(rows)
    assert g["runs"] == "2/3" and g["rho"] == pytest.approx(0.55)


def test_fisher_z_group_by_hand():
    rhos = {"Diving": 0.5, "Vault": 0.8, "Ski": 0.9}
    rows = [member_row(r, c, kind="classes", aggregate="fisher_z") for c, r in rhos.items()]
    g = compare.fold_group(rows)
    z = (0.5 * math.log(1.5 / 0.5) + 0.5 * math.log(1.8 / 0.2) + 0.5 * math.log(1.9 / 0.1)) / 3
    assert g["rho"] == pytest.approx((math.exp(2 * z) - 1) / (math.exp(2 * z) + 1))
    assert g["rho"] == pytest.approx(0.77791, abs=1e-5)  # tanh(mean(0.5493, 1.0986, 1.4722))
    assert g["rho_std"] == pytest.approx(np.std([0.5, 0.8, 0.9], ddof=1))  # of the values
    assert g["per_class"] == rhos and "Fisher-z mean ± std over 3 classes" in g["protocol"]
    perfect = compare.fold_group([member_row(1.0, 0, aggregate="fisher_z"),
                                  member_row(0.5, 1, aggregate="fisher_z")])
    assert perfect["rho"] is None and "Fisher z is undefined" in perfect["note"]


def test_selection_metrics_both_protocols():
    test = [(1, "rho", 0.9), (2, "rho", 0.5), (3, "rho", 0.7), (1, "l2", 5.0), (2, "l2", 3.0),
            (3, "l2", 4.0), (1, "rl2", 0.02), (2, "rl2", 0.01), (3, "rl2", 0.03)]
    rows = [{"split": "test", "epoch": e, "name": n, "value": v} for e, n, v in test]
    last = compare.selection_metrics(rows)
    assert (last["rho_official"], last["l2_official"]) == (0.9, 3.0)  # each metric's own best
    assert last["rl2x100_official"] == pytest.approx(1.0)
    assert (last["rho_honest"], last["l2_honest"]) == (0.7, 4.0)  # no val split: the last epoch
    assert last["honest_epoch"] == "3 (last epoch)"
    val = rows + [{"split": "val", "epoch": e, "name": "rho", "value": v}
                  for e, v in ((1, 0.2), (2, 0.8), (3, 0.4))]
    held = compare.selection_metrics(val)
    assert (held["rho_honest"], held["honest_epoch"]) == (0.5, "2 (val rho)")


def test_group_exports_carry_n_and_std():
    g = compare.fold_group([member_row(0.5, 0, l2=2.0), member_row(0.7, 1, l2=4.0),
                            member_row(None, 2, "running")])
    rows = [g] + compare.reference_rows("mtl_aqa")[:1]
    text = compare.to_csv(rows)
    assert text.splitlines()[0].split(",")[:8] == [
        "run / reference", "method", "dataset", "protocol", "runs (finished / group)", "ρ",
        "ρ std", "L2"]
    values = next(csv.DictReader(io.StringIO(text)))
    assert values["runs (finished / group)"] == "2/3"
    assert float(values["ρ std"]) == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert "| 2/3 | 0.6000 ± 0.1414 | 3.00 ± 1.41 |" in compare.to_markdown(rows)
    assert r"0.6000 $\pm$ 0.1414" in compare.to_latex(rows)


# ---------------------------------------------------------------- the ledger

def test_gaps_are_public_issue_rows_beside_their_papers():
    for gap in papers.GAPS:
        assert gap.provenance == "public issue" and "issue #" in gap.source
        assert gap.benchmark in papers.BENCHMARKS and gap.reported and gap.setup
        assert any(r.method == gap.method for r in papers.rows(gap.benchmark)), gap
    tpt = papers.gaps("mtl_aqa", "TPT")[0]
    assert (tpt.reproduced_rho, tpt.paper_rho) == (0.9581, 0.9607) and "aqa_tpt issue #1" in tpt.source
    fd = papers.gaps("finediving")[0]
    assert fd.reproduced_rho == 0.904310 and fd.rl2x100 == pytest.approx(0.4178)
    assert papers.gaps("aqa7", "CoRe")[0].reproduced_rho is None  # the thread has an image only
    ours = compare.fold_group([member_row(0.5, 0), member_row(0.7, 1)])
    ours.update(rho_official=0.8, rho_honest=0.6, rho_official_std=0.01)
    ledger = compare.ledger_rows("mtl_aqa", [ours])
    labels = [r["label"] for r in ledger]
    last_tpt = max(i for i, r in enumerate(ledger) if r.get("kind") == "paper" and r["method"] == "TPT")
    assert [r["kind"] for r in ledger[last_tpt + 1:]] == ["gap", "gap", "group"]
    assert ledger[-1]["rho_official"] == 0.8 and "rho" not in ledger[-1]
    md = compare.to_markdown(ledger)
    assert "public issue: TPT" in labels and "0.9581" in md and "0.8000 ± 0.0100" in md


# ---------------------------------------------------------------- the CLI

def test_cli_compare_folds_a_group_and_lists_members(runs_dir, capsys):
    from aqa.cli import main

    paths = seed_group(runs_dir, [0.6, 0.8], unfinished=1)
    assert main(["compare", paths[0].name, "--boot", "0", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["kind"] == "group" and row["runs"] == "2/3" and row["n_runs"] == 2
    assert row["rho"] == pytest.approx(0.7) and row["rho_std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert row["rho_official"] == pytest.approx(0.7) and len(row["members"]) == 3
    assert main(["compare", "g-20261206-120000-abcd", "--members", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 1 + 3 and lines[2].startswith("member 0 (finished): ")
    assert lines[4].startswith("member 2 (") and "(finished)" not in lines[4]
    assert main(["compare", "g-20990101-000000-0000"]) == 2
    assert "no run of group g-20990101-000000-0000" in capsys.readouterr().err
    assert main(["compare", paths[1].name, "--ledger", "--paper", "mtl_aqa", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "public issue: TPT" in md and "ρ official (best on test)" in md and "2/3" in md
    assert main(["compare", paths[1].name, "--ledger"]) == 2  # synthetic: no benchmark
    assert "add --paper BENCHMARK" in capsys.readouterr().err


def test_cli_compare_honest_epoch_is_chosen_on_held_out_data(runs_dir, capsys):
    from aqa.cli import main

    group = {"id": "g-20261206-130000-0001", "kind": "seeds", "protocol": "seeds", "size": 1,
             "aggregate": "mean", "member": "0"}
    write_member(runs_dir, group, [0.9, 0.5, 0.7], val_rho=[0.1, 0.8, 0.3])
    assert main(["compare", group["id"], "--boot", "0", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["rho_official"], row["rho_honest"]) == (0.9, 0.5)
    assert row["members"][0]["honest_epoch"] == "2 (val rho)"
    # --epoch best is best.pt's epoch: chosen on the held-out split (not the index's test best)
    assert (row["members"][0]["epoch"], row["rho"]) == (2, 0.5)


@pytest.fixture
def no_start(monkeypatch):
    """Submissions create their runs; the queue's start only records them (nothing trains)."""
    from aqa.jobs import control
    started = []
    monkeypatch.setattr(control, "start", lambda path, queue_run=True: started.append(path))
    return started


def test_cli_train_seeds(runs_dir, tmp_path, capsys, no_start):
    from aqa.cli import main

    assert main(["train", "--method", "regression", "--dataset", "synthetic", "--seeds", "0"]) == 2
    assert "--seeds 0: give the number of runs, 1 or more" in capsys.readouterr().err
    assert main(["train", "--method", "regression", "--dataset", "synthetic", "--seeds", "2",
                 "--follow"]) == 2
    assert "with --seeds follow each member" in capsys.readouterr().err
    assert not no_start
    config = tmp_path / "run.toml"
    config.write_text('method = "regression"\ndataset = "synthetic"\n[train]\nseed = 7\nepochs = 2\n')
    assert main(["train", "--config", str(config), "--seeds", "3", "--set", "optim.lr=0.01",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seeds"] == [7, 8, 9] and len(out["run_ids"]) == 3 and len(no_start) == 3
    configs = [store.read_run(runs_dir / i)["config"] for i in out["run_ids"]]
    assert [(c["train"]["seed"], c["train"]["epochs"], c["optim"]["lr"]) for c in configs] == [
        (7, 2, 0.01), (8, 2, 0.01), (9, 2, 0.01)]
    assert {c["group"]["id"] for c in configs} == {out["group_id"]}
    # `config show` of a member trains a copy, not one more member
    assert main(["config", "show", out["run_ids"][1], "--format", "json"]) == 0
    shown = capsys.readouterr().out
    assert "group" not in json.loads(shown) and json.loads(shown)["train"]["seed"] == 8
