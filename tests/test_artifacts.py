"""A run's artifacts: the predictions file's pred_class column, the numbers of the per-checkpoint
charts (scatter, error histogram, confusion matrix) against the CSV they come from, the System
figures, and the bounded reading of a large log."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from aqa import plotting
from aqa.compare import read_predictions
from aqa.evaluate import write_predictions
from aqa.runs import logtail
from ui import charts, comparing, runview

ROWS = [("a", 10.0, 12.5), ("b", 20.0, 18.0), ("c", 30.0, 33.0), ("d", 40.0, 39.0),
        ("e", 50.0, 47.5), ("f", 60.0, 61.0), ("g", 70.0, 70.0)]
# an FR-FS-like classification: labels 0/1, fall probabilities
CLS_ROWS = [("k1", 0.0, 0.2), ("k2", 0.0, 0.7), ("k3", 1.0, 0.9), ("k4", 1.0, 0.4),
            ("k5", 1.0, 0.6), ("k6", 0.0, 0.1)]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_regression_predictions_keep_their_three_columns(tmp_path):
    path = tmp_path / "test_epoch_001.csv"
    write_predictions(path, ROWS)
    assert path.read_text().splitlines()[0] == "id,true,pred"
    assert [r.get("pred_class") for r in read_predictions(path)] == [None] * len(ROWS)


def test_tsa_bce_head_writes_the_predicted_class(tmp_path):
    from test_tsa import method
    tsa = method("tsa", "frfs")
    assert tsa.head_kind == "bce"
    classes = tsa.predicted_classes([p for _, _, p in CLS_ROWS])
    assert classes == [0, 1, 1, 0, 1, 0]  # p > 0.5, the class the accuracy metric counts
    from aqa import metrics as M
    labels = [t for _, t, _ in CLS_ROWS]
    assert M.accuracy([p for _, _, p in CLS_ROWS], labels) == pytest.approx(
        np.mean(np.array(classes) == np.array(labels)))
    path = tmp_path / "test_epoch_001.csv"
    write_predictions(path, CLS_ROWS, classes)
    assert path.read_text().splitlines()[0] == "id,true,pred,pred_class"
    assert [r["pred_class"] for r in read_predictions(path)] == classes
    assert method("tsa", "frfs", "model.head=usdl", "train.best_metric=rho").predicted_classes([0.2, 0.9]) is None
    with pytest.raises(ValueError):  # one class a row, no more no less
        write_predictions(path, CLS_ROWS, classes[:-1])


def test_scatter_and_histogram_numbers_are_the_csvs(tmp_path):
    path = tmp_path / "test_epoch_002.csv"
    write_predictions(path, ROWS)
    raw = _csv(path)
    rows = read_predictions(path)
    scatter = comparing.scatter_figure("s", rows)
    assert list(scatter.data[0].x) == [float(r["true"]) for r in raw]
    assert list(scatter.data[0].y) == [float(r["pred"]) for r in raw]
    errors = [float(r["pred"]) - float(r["true"]) for r in raw]
    assert plotting.prediction_errors(rows).tolist() == errors
    hist = charts.error_histogram_figure("h", rows)
    bar = hist.data[0]
    assert sum(bar.y) == len(raw)
    edges, counts = plotting.error_histogram(errors)
    assert list(bar.y) == counts.tolist()
    lo = np.array(bar.x) - np.array(bar.width) / 2
    hi = np.array(bar.x) + np.array(bar.width) / 2
    for e in errors:  # every error is counted in the bar whose edges hold it
        i = min(int(np.searchsorted(edges, e, side="right")) - 1, len(counts) - 1)
        assert lo[i] - 1e-9 <= e <= hi[i] + 1e-9
    assert np.histogram(errors, bins=edges)[0].tolist() == list(bar.y)


def test_error_histogram_edge_cases():
    edges, counts = plotting.error_histogram([2.0, 2.0, float("nan")])
    assert counts.tolist() == [2] and edges[0] < 2.0 < edges[1]
    edges, counts = plotting.error_histogram([])
    assert len(edges) == 0 and len(counts) == 0
    edges, counts = plotting.error_histogram(np.arange(10_000.0) ** 3, max_bins=50)
    assert len(counts) <= 50 and counts.sum() == 10_000


def test_confusion_matrix_counts_each_pair(tmp_path):
    path = tmp_path / "test_epoch_001.csv"
    write_predictions(path, CLS_ROWS, [0, 1, 1, 0, 1, 0])
    rows = read_predictions(path)
    classes, counts = plotting.confusion_matrix([r["true"] for r in rows],
                                                [r["pred_class"] for r in rows])
    # true 0: k1 -> 0, k2 -> 1, k6 -> 0; true 1: k3 -> 1, k4 -> 0, k5 -> 1
    assert classes == [0, 1] and counts.tolist() == [[2, 1], [1, 2]]
    fig = charts.confusion_figure("c", rows)
    assert [list(r) for r in fig.data[0].z] == [[2, 1], [1, 2]]
    assert list(fig.data[0].x) == ["0", "1"] and list(fig.data[0].y) == ["0", "1"]
    # a class only one side has still gets its row and column
    classes, counts = plotting.confusion_matrix([0.0, 1.0], [2, 1])
    assert classes == [0, 1, 2] and counts.tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_system_figures_group_series_by_kind():
    def s(values):
        return {"step": list(range(1, len(values) + 1)), "epoch": [1] * len(values),
                "value": values}
    series = {("sys", "lr"): s([1e-3, 1e-3]), ("sys", "lr/backbone"): s([1e-4, 1e-4]),
              ("sys", "step_time"): s([0.5, 0.4]), ("sys", "data_wait"): s([0.1, 0.0]),
              ("sys", "cpu_rss"): s([900.0, 910.0]), ("sys", "gpu_util/0"): s([50.0, 60.0]),
              ("sys", "gpu_util/1"): s([55.0, 65.0]), ("sys", "gpu_mem/0"): s([8e3, 9e3]),
              ("sys", "gpu_reserved/0"): s([7e3, 7e3]), ("sys", "fan"): s([1.0, 2.0]),
              ("train", "loss"): s([1.0, 0.5])}
    system, rest = charts.split_system(series)
    assert set(rest) == {("train", "loss")} and len(system) == 10
    figs = dict(charts.system_figures(system))
    assert list(figs) == ["sys-lr", "sys-time", "sys-gpu_util", "sys-gpu_mem", "sys-cpu_rss",
                          "sys-fan"]
    names = {k: sorted(t.name for t in f.data) for k, f in figs.items()}
    assert names["sys-lr"] == ["lr", "lr/backbone"]
    assert names["sys-time"] == ["data_wait", "step_time"]
    assert names["sys-gpu_mem"] == ["gpu_mem/0", "gpu_reserved/0"]
    cpu = figs["sys-cpu_rss"].data[0]
    assert list(cpu.x) == [1, 2] and list(cpu.y) == [900.0, 910.0]


def test_tail_bytes_is_bounded_and_starts_at_a_line(tmp_path):
    log = tmp_path / "stdout.log"
    log.write_bytes(b"".join(b"line %06d\n" % i for i in range(100_000)))  # 1.2 MB
    whole = logtail.tail_bytes(log, 10 * 2**20)
    assert whole == log.read_bytes()
    tail = logtail.tail_bytes(log, 1000)
    assert len(tail) <= 1000 and tail.endswith(b"line 099999\n")
    assert tail.startswith(b"line ") and tail == log.read_bytes()[-len(tail):]


@pytest.mark.parametrize("ending", [b"\n", b""])
def test_tail_lines_reads_only_the_end(tmp_path, ending, monkeypatch):
    log = tmp_path / "stdout.log"
    body = b"".join(b"line %06d \xc3\xa9\n" % i for i in range(100_000))  # 1.4 MB
    log.write_bytes(body[:-1] + ending)
    lines = body[:-1].split(b"\n")
    for n in (1, 3, 5000, 100_000, 200_000):
        data, size = logtail.tail_lines(log, n)
        assert size == log.stat().st_size
        assert data == b"\n".join(lines[-n:]) + ending
    assert logtail.tail_lines(log, 0) == (b"", log.stat().st_size)
    reads = []
    real_open = open

    def counting_open(*a, **k):
        f = real_open(*a, **k)
        read = f.read
        f.read = lambda n=-1: reads.append(n) or read(n)
        return f

    monkeypatch.setattr("builtins.open", counting_open)
    logtail.tail_lines(log, 3)
    assert all(0 < n <= logtail.BLOCK for n in reads)  # never the whole file
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert logtail.tail_lines(empty, 5) == (b"", 0)


def test_runs_logs_prints_the_log_or_its_last_lines(tmp_path, capsys):
    from aqa.cli import main as cli
    from aqa.runs import store

    path = store.create_run(tmp_path, {"method": "regression", "dataset": "synthetic"})
    log = path / store.STDOUT_LOG
    body = b"".join(b"step %d \xe2\x9c\x93\n" % i for i in range(300_000))  # 4 MB, several blocks
    log.write_bytes(body)
    assert cli(["runs", "logs", path.name, "--runs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.encode() == body
    assert cli(["runs", "logs", path.name, "-n", "2", "--runs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "step 299998 \u2713\nstep 299999 \u2713\n"


def test_prediction_labels():
    assert runview.prediction_label("test_epoch_003.csv", 3) == "test, epoch 3 (best)"
    assert runview.prediction_label("test_epoch_004.csv", 3) == "test, epoch 4"
    assert runview.prediction_label("val_epoch_003.csv", 3) == "val, epoch 3"
    assert runview.prediction_label("test_eval_best.csv", 3) == "test, aqa eval of best.pt"
    assert runview.prediction_label("mine.csv", None) == "mine.csv"
