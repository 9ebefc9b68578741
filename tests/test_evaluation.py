"""Best results two ways: the papers' protocol (each test metric's best, independently) and an
honest one (one epoch chosen on a held-out validation split)."""

import pytest

from aqa.data.base import holdout_indices
from aqa.evaluate import summarize


def rows(split, epoch, **metrics):
    return [{"split": split, "epoch": epoch, "name": k, "value": v} for k, v in metrics.items()]


def test_official_and_honest_bests():
    metric_rows = (rows("test", 1, rho=0.80, l2=50.0, rl2=0.010) +
                   rows("test", 2, rho=0.90, l2=60.0, rl2=0.012) +
                   rows("test", 3, rho=0.85, l2=40.0, rl2=0.008) +
                   rows("val", 1, rho=0.70) + rows("val", 2, rho=0.60) + rows("val", 3, rho=0.75))
    s = summarize(metric_rows)
    assert s["official"] == {"rho": 0.90, "rho_epoch": 2, "l2": 40.0, "l2_epoch": 3,
                             "rl2": 0.008, "rl2_epoch": 3}  # three metrics from two epochs
    assert s["honest"] == {"epoch": 3, "selected_on": "val rho", "rho": 0.85, "l2": 40.0,
                           "rl2": 0.008}


def test_without_validation_there_is_no_honest_result():
    assert summarize(rows("test", 1, rho=0.5))["honest"] is None


def test_holdout_is_seeded_and_disjoint():
    kept, held = holdout_indices(10, 0.3, seed=1)
    assert len(held) == 3 and sorted(kept + held) == list(range(10))
    assert holdout_indices(10, 0.3, seed=1) == (kept, held)


@pytest.mark.slow
def test_a_run_with_a_validation_split(runs_dir, fast_overrides):
    from aqa.jobs import local
    from aqa.runs import index
    from conftest import wait_for
    path = local.submit(runs_dir, "regression", "synthetic",
                        overrides=fast_overrides + ["train.val_fraction=0.25"])
    wait_for(lambda: local.run_status(path) in ("finished", "failed", "crashed"), timeout=300)
    assert local.run_status(path) == "finished", (path / "stdout.log").read_text()[-2000:]
    index.sync(runs_dir)
    metric_rows = index.run_metrics(runs_dir, path.name)
    assert {r["split"] for r in metric_rows} == {"train", "val", "test", "sys"}  # sys: the trainer's system metrics
    s = summarize(metric_rows, "rho", path / "predictions")
    assert s["honest"]["epoch"] in (1, 2) and "rho_ci95" in s["official"]
    assert (path / "predictions" / "val_epoch_002.csv").read_text().count("\n") == 1 + 4  # 18*0.25
    import torch
    best = torch.load(path / "checkpoints" / "best.pt", weights_only=True)["best"]
    assert best["selected_on"] == "val" and best["epoch"] == s["honest"]["epoch"]


def test_ties_go_to_the_earliest_epoch():
    s = summarize(rows("test", 1, rho=0.5, l2=3.0) + rows("test", 2, rho=0.5, l2=3.0) +
                  rows("val", 1, rho=0.4) + rows("val", 2, rho=0.4))
    assert (s["official"]["rho_epoch"], s["official"]["l2_epoch"], s["honest"]["epoch"]) == (1, 1, 1)
