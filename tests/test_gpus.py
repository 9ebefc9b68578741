"""GPU allocation on inventories the test supplies (no nvidia-smi), and `aqa gpus`."""

import json

import pytest

from aqa.errors import JobError
from aqa.jobs.gpus import allocate, check_request, mark_foreign, parse_gpus

TWO = [{"index": 0, "name": "A", "uuid": "u0", "total_mb": 80000, "free_mb": 70000, "util": 0},
       {"index": 1, "name": "A", "uuid": "u1", "total_mb": 80000, "free_mb": 79000, "util": 0}]
FOUR = TWO + [{"index": 2, "name": "A", "uuid": "u2", "total_mb": 80000, "free_mb": 79000},
              {"index": 3, "name": "A", "uuid": "u3", "total_mb": 80000, "free_mb": 10}]


@pytest.mark.parametrize("text, want", [(None, (None, 0)), ("", (None, 0)), ("0", (None, 0)),
                                        ("2", (None, 2)), ("0,2", ([0, 2], 2)), ("3,", ([3], 1))])
def test_parse_gpus(text, want):
    assert parse_gpus(text) == want


@pytest.mark.parametrize("text", ["x", "1,1", "-1", "-1,2"])
def test_parse_gpus_rejects(text):
    with pytest.raises(JobError, match="--gpus"):
        parse_gpus(text)


@pytest.mark.parametrize("held, req, want", [
    (set(), (None, 1), [1]),            # most free memory first
    (set(), (None, 2), [0, 1]),
    ({1}, (None, 1), [0]),
    ({0, 1}, (None, 1), None),          # wait
    (set(), ([0], 1), [0]),
    ({0}, ([0], 1), None),
    (set(), (None, 0), []),
])
def test_allocate_two_gpus(held, req, want):
    assert allocate(TWO, held, req) == want


def test_allocate_any_n_prefers_free_memory_then_index():
    assert allocate(FOUR, set(), (None, 2)) == [1, 2]
    assert allocate(FOUR, {1}, (None, 2)) == [0, 2]
    assert allocate(FOUR, {0, 1, 2}, (None, 2)) is None


def test_foreign_process_over_threshold_makes_a_gpu_busy():
    apps = [{"gpu_uuid": "u1", "pid": 999, "used_mb": 5000},
            {"gpu_uuid": "u0", "pid": 42, "used_mb": 30000}]  # 42 is one of ours
    inv = mark_foreign(TWO, apps, our_pids={42})
    assert [(g["foreign_mb"], g["foreign_pids"]) for g in inv] == [(0, []), (5000, [999])]
    assert allocate(inv, set(), (None, 1), busy_threshold_mb=1024) == [0]
    assert allocate(inv, {0}, (None, 1), busy_threshold_mb=1024) is None
    assert allocate(inv, {0}, (None, 1), busy_threshold_mb=8000) == [1]
    assert allocate(inv, set(), ([1], 1), busy_threshold_mb=1024) is None


def test_impossible_requests_fail_at_submit():
    with pytest.raises(JobError, match="has 2"):
        check_request((None, 3), TWO)
    with pytest.raises(JobError, match=r"\[5\] not found"):
        check_request(([0, 5], 2), TWO)
    with pytest.raises(JobError, match="has 0"):
        check_request((None, 1), [])
    check_request(([0, 1], 2), TWO)


def test_gpus_command_json_without_gpus(tmp_path):
    from aqa.cli import main
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["gpus", "--json", "--runs-dir", str(tmp_path)]) == 0
    info = json.loads(out.getvalue())
    assert set(info) == {"gpus", "busy_threshold_mb"} and info["busy_threshold_mb"] == 1024


# ------------------------------------------------- the GPU query: nvidia-smi, NVML, the cache

import os
import sys
import types

from aqa.jobs import gpus as gpus_mod

SMI = """#!/bin/sh
echo "$*" >> "{count}"
case "$*" in
  *--query-gpu*) printf '0, Fake A100, 81920, 80000, 3, GPU-aaa\\n1, Fake T4, 15360, 15000, [N/A], GPU-bbb\\n' ;;
  *--query-compute-apps*) printf 'GPU-aaa, 4242, 2048\\n' ;;
esac
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """A fake nvidia-smi first on PATH; returns a function counting its calls."""
    bindir, count = tmp_path / "bin", tmp_path / "smi-calls"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text(SMI.format(count=count))
    (bindir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpus_mod, "_cache", {})
    return lambda: len(count.read_text().splitlines()) if count.exists() else 0


def test_nvidia_smi_answers_are_parsed_and_cached(fake_smi, monkeypatch):
    monkeypatch.setenv("AQA_GPU_QUERY", "nvidia-smi")
    inv = gpus_mod.probe_gpus()
    assert inv == [{"index": 0, "name": "Fake A100", "total_mb": 81920.0, "free_mb": 80000.0,
                    "util": 3.0, "uuid": "GPU-aaa"},
                   {"index": 1, "name": "Fake T4", "total_mb": 15360.0, "free_mb": 15000.0,
                    "util": 0.0, "uuid": "GPU-bbb"}]
    assert gpus_mod.probe_compute_apps() == [{"gpu_uuid": "GPU-aaa", "pid": 4242, "used_mb": 2048.0}]
    assert fake_smi() == 2
    inv[0]["index"] = 7  # a caller changing its copy does not change the cache
    for _ in range(5):
        assert gpus_mod.probe_gpus()[0]["index"] == 0 and gpus_mod.probe_compute_apps()
    assert fake_smi() == 2
    gpus_mod.probe_gpus(max_age_s=0)
    assert fake_smi() == 3


def test_a_run_waiting_for_a_gpu_does_not_start_nvidia_smi_every_tick(fake_smi, monkeypatch,
                                                                      runs_dir, synthetic_root):
    from aqa.jobs import control, queue

    monkeypatch.setenv("AQA_GPU_QUERY", "nvidia-smi")
    spawned = []
    monkeypatch.setattr(queue, "spawn", lambda path, job: spawned.append(path))  # never trains
    path = control.submit(runs_dir, "regression", "synthetic", gpus="0,", start_now=False,
                          overrides=[f"data.root={synthetic_root}"])  # "0,": GPU 0 ("0": none)
    queue.enqueue(path)
    for _ in range(10):  # the scheduler's ticks: GPU 0 is busy (a foreign process holds 2 GB)
        assert queue.schedule_once(runs_dir) == {"started": [], "waiting": 1, "running": 0}
    assert fake_smi() == 2  # ten ticks: the submit's GPU query reused, one compute-apps query
    monkeypatch.setattr(gpus_mod.time, "monotonic", lambda: 1e12)  # QUERY_CACHE_S later
    queue.schedule_once(runs_dir)
    assert fake_smi() == 4 and spawned == []


class FakeNVML(types.ModuleType):
    """pynvml's calls that probe_* makes, over two devices (bytes names, as old pynvml)."""

    NVMLError = RuntimeError

    def __init__(self, fail_init=False):
        super().__init__("pynvml")
        self.fail_init, self.calls = fail_init, []
        self.devices = [("GPU-aaa", b"NVML A100", 80 * 2**30, 79 * 2**30, 7, [(4242, 2**30)]),
                        ("GPU-bbb", "NVML H100", 94 * 2**30, 90 * 2**30, 0, [(77, None)])]

    def nvmlInit(self):
        self.calls.append("init")
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetUUID(self, h):
        return h[0]

    def nvmlDeviceGetName(self, h):
        return h[1]

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=h[2], free=h[3], used=h[2] - h[3])

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=h[4], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in h[5]]


def test_nvml_answers_first_when_installed(fake_smi, monkeypatch):
    monkeypatch.delenv("AQA_GPU_QUERY", raising=False)
    nvml = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert gpus_mod.probe_gpus() == [
        {"index": 0, "name": "NVML A100", "total_mb": 81920.0, "free_mb": 80896.0, "util": 7.0,
         "uuid": "GPU-aaa"},
        {"index": 1, "name": "NVML H100", "total_mb": 96256.0, "free_mb": 92160.0, "util": 0.0,
         "uuid": "GPU-bbb"}]
    assert gpus_mod.probe_compute_apps() == [{"gpu_uuid": "GPU-aaa", "pid": 4242, "used_mb": 1024.0},
                                             {"gpu_uuid": "GPU-bbb", "pid": 77, "used_mb": 0.0}]
    assert fake_smi() == 0 and nvml.calls == ["init", "shutdown"] * 2


def test_nvidia_smi_answers_when_nvml_cannot(fake_smi, monkeypatch):
    monkeypatch.delenv("AQA_GPU_QUERY", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(fail_init=True))
    assert [g["name"] for g in gpus_mod.probe_gpus()] == ["Fake A100", "Fake T4"]
    assert fake_smi() == 1
    monkeypatch.setattr(gpus_mod, "_cache", {})
    monkeypatch.setenv("AQA_GPU_QUERY", "nvml")  # forced: a clear error, not a silent fallback
    with pytest.raises(JobError, match=r"AQA_GPU_QUERY=nvml but NVML does not answer: install the nvml extra"):
        gpus_mod.probe_gpus()
    monkeypatch.setenv("AQA_GPU_QUERY", "smi")
    with pytest.raises(JobError, match="use one of auto, nvml, nvidia-smi"):
        gpus_mod.probe_gpus()


def test_a_jobs_gpu_indices_are_in_pci_bus_order(monkeypatch):
    from aqa.jobs.process import child_env

    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    env = child_env([1, 3])
    assert (env["CUDA_VISIBLE_DEVICES"], env["CUDA_DEVICE_ORDER"]) == ("1,3", "PCI_BUS_ID")
    assert child_env([])["CUDA_VISIBLE_DEVICES"] == ""
