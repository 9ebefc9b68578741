"""System metrics the trainer logs (aqa.train.sysmetrics): a real tiny training in this process,
the off switch, the step timer against a loader that sleeps, and the GPU series against a faked
torch.cuda (there is no GPU here; on the CPU the GPU series must be absent, not zero)."""

from __future__ import annotations

import resource
import time

import pytest
import torch

from aqa.config import OptimConfig
from aqa.jobs import submit
from aqa.runs.events import read_events
from aqa.train import sysmetrics
from aqa.train.optim import lr_factor
from aqa.train.sysmetrics import SystemMetrics, lr_metrics
from conftest import FAST, SMALL_CLIPS

# 18 training clips in batches of 4: 5 steps an epoch; a log every 2 steps
SCHEDULE = ["optim.lr=0.001", "optim.schedule=step", "optim.step_size=1", "optim.gamma=0.5",
            "optim.backbone_lr_factor=0.1"]


def _train(runs_dir, synthetic_root, extra):
    from aqa.train.loop import main
    path = submit(runs_dir, "regression", "synthetic", start_now=False, overrides=FAST + [
        f"data.root={synthetic_root}", f"data.num_clips={SMALL_CLIPS}"] + extra)
    assert main(str(path)) == 0, (path / "stdout.log").read_text() if (path / "stdout.log").exists() else ""
    return [e for e in read_events(path / "events.jsonl") if e["type"] == "metric"]


def test_trainer_logs_system_metrics_every_log_every_steps(runs_dir, synthetic_root):
    metrics = _train(runs_dir, synthetic_root, SCHEDULE)
    sys_events = [e for e in metrics if e["split"] == "sys"]
    names = {e["name"] for e in sys_events}
    assert names == {"lr", "lr/backbone", "step_time", "data_wait", "cpu_rss"}, names
    assert not any(n.startswith("gpu") for n in names)  # the CPU: absent, not zero
    loss_steps = sorted(e["step"] for e in metrics if e["split"] == "train" and e["name"] == "loss")
    assert loss_steps == [2, 4, 6, 8, 10]
    for name in names:  # one of each, at every log step and only there
        assert sorted(e["step"] for e in sys_events if e["name"] == name) == loss_steps, name
    cfg = OptimConfig(lr=0.001, schedule="step", step_size=1, gamma=0.5)
    for e in sys_events:
        v = e["value"]
        if e["name"] in ("lr", "lr/backbone"):  # the schedule's lr of that epoch (stepped per epoch)
            want = 0.001 * lr_factor(e["epoch"] - 1, cfg, 2)
            assert v == pytest.approx(want * (0.1 if e["name"] == "lr/backbone" else 1.0))
        elif e["name"] == "step_time":
            assert 0 < v < 120  # seconds; generous: a shared CI machine can be slow
        elif e["name"] == "data_wait":
            step_time = next(s["value"] for s in sys_events
                             if s["name"] == "step_time" and s["step"] == e["step"])
            assert 0 <= v <= step_time
        else:  # cpu_rss in MiB: this process (the trainer ran here); at most its peak so far
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            assert 50 < v <= peak_mib + 1
    assert {e["epoch"]: e["value"] for e in sys_events if e["name"] == "lr"} == {1: 0.001, 2: 0.0005}


def test_off_switch_logs_no_system_metric(runs_dir, synthetic_root):
    metrics = _train(runs_dir, synthetic_root, ["train.system_metrics=false", "train.epochs=1"])
    assert not [e for e in metrics if e["split"] == "sys"]
    assert [e["step"] for e in metrics if e["name"] == "loss"] == [2, 4]  # the losses still are


class _SlowLoader:
    """Three batches, each taking ``wait`` seconds to arrive."""

    def __init__(self, wait):
        self.wait = wait

    def __iter__(self):
        for i in range(3):
            time.sleep(self.wait)
            yield i


def test_step_time_counts_the_wait_for_data_and_the_step():
    m = SystemMetrics(torch.device("cpu"))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    for _ in m.batches(_SlowLoader(0.03)):
        time.sleep(0.02)  # the step's compute
        m.step_done()
    out = m.sample(opt)
    assert out["lr"] == 0.25
    assert out["data_wait"] >= 0.03
    assert out["step_time"] >= out["data_wait"] + 0.02
    again = m.sample(opt)  # a sample resets the means: no step since, no time series point
    assert "step_time" not in again and "data_wait" not in again and again["lr"] == 0.25


def test_lr_names_per_parameter_group():
    a, b, c = (torch.nn.Parameter(torch.zeros(1)) for _ in range(3))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0, "name": "head"},
                           {"params": [b], "lr": 0.1, "name": "backbone"},
                           {"params": [c], "lr": 0.5}], lr=1.0)
    assert lr_metrics(opt) == {"lr": 1.0, "lr/backbone": 0.1, "lr/2": 0.5}


def _fake_cuda(monkeypatch, nvml_error=None):
    calls = []

    def util(i):
        calls.append(i)
        if nvml_error:
            raise nvml_error
        return 40 + i

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: (i + 1) * 512 * sysmetrics.MIB)
    monkeypatch.setattr(torch.cuda, "utilization", util)
    monkeypatch.setattr(torch.cuda, "device_memory_used", lambda i: (i + 2) * 1024 * sysmetrics.MIB)
    monkeypatch.setattr(sysmetrics, "cpu_rss_mib", lambda: None)  # off Linux: no cpu_rss
    return calls


def test_gpu_series_per_device_in_mib(monkeypatch):
    _fake_cuda(monkeypatch)
    m = SystemMetrics(torch.device("cuda:1"))
    out = m.sample(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert out == {"lr": 0.1, "gpu_reserved/1": 1024.0, "gpu_util/0": 40.0, "gpu_util/1": 41.0,
                   "gpu_mem/0": 2048.0, "gpu_mem/1": 3072.0}


def test_without_nvml_only_the_allocator_series_and_nvml_is_not_asked_again(monkeypatch):
    calls = _fake_cuda(monkeypatch, ModuleNotFoundError("nvidia-ml-py does not seem to be installed"))
    m = SystemMetrics(torch.device("cuda:0"))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert m.sample(opt) == {"lr": 0.1, "gpu_reserved/0": 512.0}
    assert m.sample(opt) == {"lr": 0.1, "gpu_reserved/0": 512.0}
    assert calls == [0]


def test_cpu_has_no_gpu_series_even_when_cuda_answers(monkeypatch):
    _fake_cuda(monkeypatch)
    out = SystemMetrics(torch.device("cpu")).sample(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert out == {"lr": 0.1}


def test_the_charts_know_the_trainers_split():
    from ui import charts
    assert charts.SYSTEM_SPLIT == sysmetrics.SPLIT
    assert charts.by_step("sys", "cpu_rss") and not charts.by_step("test", "rho")
