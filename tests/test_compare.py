"""aqa.compare: paper rows, metrics from predictions, per-class Fisher-z, exports."""

import json

import pytest

from aqa import compare, papers

PROVENANCES = {"paper", "paper (recalled)", "repo figure", "repo log", "reproduction"}


def test_reference_rows_carry_protocol_source_and_provenance():
    mtl = compare.reference_rows("mtl_aqa")
    assert len(mtl) == 9
    core = next(r for r in mtl if r["method"] == "CoRe" and r["protocol"] == "w/ DD")
    assert (core["rho"], core["rl2x100"], core["dataset"]) == (0.9512, 0.260, "MTL-AQA")
    assert core["source"].startswith("CoRe (Yu et al., ICCV 2021)")
    assert core["provenance"] == "paper (recalled)"
    for bench in papers.BENCHMARKS:
        for row in compare.reference_rows(bench):
            assert row["protocol"] and row["source"] and row["provenance"] in PROVENANCES
            assert "METHODS.md" not in row["source"]  # sources are papers and public files
    aqa7 = {r["method"]: r for r in compare.reference_rows("aqa7")}
    assert aqa7["USDL"]["per_class"]["Diving"] == 0.8099
    assert aqa7["CoRe"]["rl2x100"] == 2.12
    assert compare.reference_rows("synthetic") == []


def test_finediving_rows_keep_disagreeing_sources_apart():
    """TSA's 0.9203 is listed without dive number by one source and with it by two others: both
    are rows of their own, each with its source; the reproduction gap is a row too."""
    rows = [r for r in compare.reference_rows("finediving") if r["method"] == "TSA (FineDiving)"]
    at_9203 = {(r["protocol"], r["provenance"]) for r in rows if r["rho"] == 0.9203}
    assert at_9203 == {("without dive number", "paper (recalled)"),
                       ("with dive number", "repo figure")}
    assert any(r["rho"] == 0.9043 and r["provenance"] == "reproduction" and "#8" in r["source"]
               for r in rows)
    assert {r["protocol"] for r in rows} >= {"with dive number", "without dive number"}


def test_long_program_rows():
    rg = compare.reference_rows("rg")
    assert {r["protocol"].split(",")[0] for r in rg if r["method"] == "GDLT"} == set(papers.RG_APPARATUS)
    log = next(r for r in rg if r["method"] == "CoFInAl")
    assert log["rho"] == 0.8087 and log["provenance"] == "repo log"
    assert {r["protocol"].split(",")[0] for r in compare.reference_rows("fisv")} == {"TES", "PCS"}


def test_paper_fisher_z_of_per_class_lists():
    # the Fisher-z of USDL's list is 0.8102, of TPT's 0.8714, of CoRe's 0.8433
    fz = {r["method"]: compare.fisher_z_avg(r["per_class"]) for r in compare.reference_rows("aqa7")}
    assert round(fz["USDL"], 4) == 0.8102
    assert round(fz["TPT"], 4) == 0.8714
    assert round(fz["CoRe"], 4) == 0.8433


def test_benchmark_of():
    assert compare.benchmark_of("mtl_aqa") == "mtl_aqa"
    assert compare.benchmark_of("MTL-AQA") == "mtl_aqa"
    assert compare.benchmark_of("aqa7") == "aqa7"
    assert compare.benchmark_of("synthetic") is None
    assert compare.benchmark_of("finediving") == "finediving"
    assert compare.benchmark_of("fisv") == "fisv" and compare.benchmark_of("rg") == "rg"


def test_evaluate_predictions_literal():
    m = compare.evaluate_predictions([1, 2, 3, 4], [1, 2, 3, 5], n_boot=0)
    assert m["rho"] == 1.0
    assert m["l2"] == 0.25  # (5-4)^2 / 4
    assert m["rl2x100"] == pytest.approx(100 / 36)  # 100 * mean(((p - y) / 3)^2): y spans 1..4
    assert m["n"] == 4


def _seed_run(tmp_path, epoch=2):
    run_dir = tmp_path / "r1"
    (run_dir / "predictions").mkdir(parents=True)
    (run_dir / "predictions" / f"test_epoch_{epoch:03d}.csv").write_text(
        "id,true,pred,class\na,1,1.5,Diving\nb,2,2.5,Diving\nc,3,2.0,Diving\n"
        "d,10,11,Vault\ne,20,19,Vault\nf,30,33,Vault\n")
    run = {"id": "r1", "run_dir": str(run_dir), "method": "regression", "dataset": "aqa7",
           "best_epoch": epoch, "params": 1234, "started": 100.0, "ended": 160.0}
    metrics = [{"split": "test", "epoch": epoch, "name": "rho", "value": 0.5},
               {"split": "test", "epoch": epoch, "name": "accuracy", "value": 0.75}]
    return run, metrics


def test_run_row_from_predictions(tmp_path):
    run, metrics = _seed_run(tmp_path)
    row = compare.run_row(run, None, metrics, n_boot=200)
    assert row["epoch"] == 2 and row["source"] == "test_epoch_002.csv"
    assert row["l2"] == pytest.approx((0.25 + 0.25 + 1 + 1 + 1 + 9) / 6)
    assert row["accuracy"] == 0.75 and row["params"] == 1234 and row["train_time_s"] == 60.0
    assert row["per_class"] == {"Diving": 0.5, "Vault": 1.0}
    assert row["rho_lo"] <= row["rho"] <= row["rho_hi"]
    # Vault's rho of 1.0 cannot be Fisher-z transformed; the mean is over the finite ones
    assert row["rho_fz_avg"] == pytest.approx(0.5)


def test_exports(tmp_path):
    run, metrics = _seed_run(tmp_path)
    rows = [compare.run_row(run, 2, metrics, n_boot=0)] + compare.reference_rows("aqa7")[:1]
    md = compare.to_markdown(rows)
    assert md.splitlines()[0].startswith(
        "| run / reference | method | dataset | protocol | epoch | ρ |")
    assert "| paper (recalled): USDL | USDL | AQA-7 | per class, no DD | – | 0.8102 |" in md
    assert "RL2 (×100)" in md and "ρ Diving" in md and "ρ avg (Fisher-z)" in md
    tex = compare.to_latex(rows)
    assert r"\begin{tabular}" in tex and r"RL2 ($\times$100)" in tex and r"per class, no DD" in tex
    csv_text = compare.to_csv(rows)
    header = csv_text.splitlines()[0].split(",")
    assert header[:6] == ["run / reference", "method", "dataset", "protocol", "epoch", "ρ"]
    assert csv_text.splitlines()[2].startswith(
        'paper (recalled): USDL,USDL,AQA-7,"per class, no DD",,0.8102,')


def test_checkpoint_metrics():
    assert compare.checkpoint_metrics({"metrics": json.dumps({"rho": 0.9})}) == {"rho": 0.9}
    assert compare.checkpoint_metrics({"metrics": "oops"}) == {}


def _cli_run(runs_dir):
    """A finished regression run with test metrics and predictions at epochs 1 and 2."""
    from aqa.config import build_run_config, to_dict
    from aqa.runs import store
    from aqa.runs.events import EVENTS_FILE, EventWriter

    path = store.create_run(runs_dir, to_dict(build_run_config("regression", "synthetic")))
    ev = EventWriter(path / EVENTS_FILE)
    ev.emit("start", epochs=2, total_steps=4, params=99)
    for epoch, (rho, preds) in enumerate([(-0.5, "a,10,30\nb,20,10\nc,30,20\n"),
                                          (1.0, "a,10,11\nb,20,19\nc,30,33\n")], start=1):
        ev.metric("rho", rho, epoch=epoch, step=2 * epoch, split="test")
        (path / "predictions").mkdir(exist_ok=True)
        (path / "predictions" / f"test_epoch_{epoch:03d}.csv").write_text("id,true,pred\n" + preds)
    ev.emit("status", status="finished", epoch=2, step=4)
    ev.close()
    return path


def test_cli_compare_formats_and_errors(runs_dir, capsys, tmp_path):
    from aqa.cli import main

    path = _cli_run(runs_dir)
    assert main(["compare", path.name, "--epoch", "1", "--boot", "0", "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run / reference,method,dataset,protocol,epoch,ρ")
    assert "best epoch on test (papers' protocol)" in out[1]
    import csv
    row = next(csv.DictReader(out))
    assert (row["epoch"], row["ρ"]) == ("1", "-0.5")  # rho recomputed from the predictions
    assert main(["compare", path.name[-12:], "--paper", "MTL-AQA", "--format", "tex",
                 "--out", str(tmp_path / "t.tex")]) == 0
    tex = (tmp_path / "t.tex").read_text()
    # best epoch (2): rho 1.0 beats every paper row and is bold, with its CI beside it
    assert r"\textbf{1.0000} {\scriptsize [" in tex and r"\textbf{0.9607}" not in tex
    assert "TPT (Bai et al., ECCV 2022)" in tex
    assert main(["compare", "--paper", "finediving", "--format", "md"]) == 0
    assert "without dive number" in capsys.readouterr().out
    assert main(["compare", path.name, "--epoch", "7"]) == 2
    assert "no test metrics at epoch 7" in capsys.readouterr().err
    assert main(["compare", "--paper", "nope"]) == 2
    assert main(["compare"]) == 2


def test_run_rows_say_their_protocol():
    """Ground-truth labels used at test and the best-epoch selection are written in the row."""
    core = {"model": {"use_dd": True, "exemplar_rule": "difficulty"}, "train": {"val_fraction": 0}}
    assert compare.run_protocol(core) == ("w/ DD (ground-truth difficulty at test); exemplars by "
                                          "difficulty (ground truth at test); best epoch on test "
                                          "(papers' protocol)")
    fd = json.dumps({"model": {"exemplar_rule": "dive_number"}, "train": {"val_fraction": 0.1}})
    assert compare.run_protocol(fd) == ("exemplars by dive number (ground truth at test); best "
                                        "epoch on held-out 10% of train")
    assert compare.run_protocol(None) == "best epoch on test (papers' protocol)"
