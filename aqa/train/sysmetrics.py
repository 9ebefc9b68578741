"""System metrics of a training run, logged by the loop as ordinary metric events (split "sys").

Every ``train.log_every`` steps rank 0 logs (``train.system_metrics=false`` turns it off):

    lr                the learning rate of the first parameter group (the head where a method
                      splits head and backbone), after the schedule; ``lr/<name>`` for each further
                      group (``lr/backbone``; ``lr/<index>`` for a group without a name)
    step_time         seconds per training step, the mean over the steps since the last log: from
                      the end of one step to the end of the next, the wait for the batch included
                      (evaluation and checkpoints between epochs are not steps and not counted)
    data_wait         seconds per step spent waiting for the DataLoader's next batch (same mean);
                      step_time - data_wait is the compute
    cpu_rss           resident memory of the training process in MiB (``/proc/self/statm``; Linux
                      only; DataLoader workers are separate processes and not included)
    gpu_util/<i>      percent of the last sample period a kernel ran on CUDA device ``i`` of the run
                      (NVML through ``torch.cuda.utilization``; the ``nvml`` extra)
    gpu_mem/<i>       MiB in use on device ``i`` by every process, as nvidia-smi shows it (NVML)
    gpu_reserved/<i>  MiB the training process's PyTorch allocator holds on its own device ``i``
                      (``torch.cuda.memory_reserved``; needs no NVML)

``i`` numbers the devices the run sees (``cuda:i``; ``run.json``'s ``resources.gpus[i]`` is the
machine's GPU). A series that cannot be measured is absent, never zero: on the CPU there is no
``gpu_*`` series, without NVML no ``gpu_util``/``gpu_mem``, off Linux no ``cpu_rss``. A query
that fails once is not asked again in this process.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, Iterator

import torch

MIB = 1024.0 * 1024.0
SPLIT = "sys"  # the metric events' split


def lr_metrics(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{"lr": ..., "lr/<name>": ...}``: the current lr of each parameter group."""
    out = {}
    for i, group in enumerate(optimizer.param_groups):
        name = "lr" if i == 0 else f"lr/{group.get('name') or i}"
        out[name] = float(group["lr"])
    return out


def cpu_rss_mib() -> float | None:
    """Resident memory of this process in MiB, or None where ``/proc`` does not say."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE") / MIB


class SystemMetrics:
    """Step timing and system readings for the loop. ``batches(loader)`` wraps the epoch's
    DataLoader (timing each wait for a batch), ``step_done()`` marks the end of each step, and
    ``sample(optimizer)`` returns the metrics since the previous sample."""

    def __init__(self, device: torch.device):
        self.device = device
        self._mark = time.perf_counter()
        self._busy = 0.0    # seconds of steps since the last sample
        self._wait = 0.0    # of which waiting for batches
        self._steps = 0
        self._nvml = device.type == "cuda"  # False once an NVML query failed
        self._rss = True                    # False once /proc did not answer

    def batches(self, loader: Iterable) -> Iterator:
        """The loader's batches, timing the wait for each (starting the workers included)."""
        start = self._mark = time.perf_counter()
        it = iter(loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            self._wait += time.perf_counter() - start
            yield batch
            start = time.perf_counter()

    def step_done(self) -> None:
        now = time.perf_counter()
        self._busy += now - self._mark
        self._mark = now
        self._steps += 1

    def sample(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        out = lr_metrics(optimizer)
        if self._steps:
            out["step_time"] = self._busy / self._steps
            out["data_wait"] = self._wait / self._steps
        self._busy = self._wait = 0.0
        self._steps = 0
        if self._rss:
            rss = cpu_rss_mib()
            self._rss = rss is not None
            if rss is not None:
                out["cpu_rss"] = rss
        if self.device.type == "cuda":
            out.update(self._gpu())
        return out

    def _gpu(self) -> dict[str, float]:
        out = {}
        own = self.device.index if self.device.index is not None else torch.cuda.current_device()
        out[f"gpu_reserved/{own}"] = torch.cuda.memory_reserved(own) / MIB
        if self._nvml:
            try:
                for i in range(torch.cuda.device_count()):
                    out[f"gpu_util/{i}"] = float(torch.cuda.utilization(i))
                    out[f"gpu_mem/{i}"] = torch.cuda.device_memory_used(i) / MIB
            except Exception:  # no nvidia-ml-py, no driver library, a GPU that does not say
                self._nvml = False
                out = {k: v for k, v in out.items() if k.startswith("gpu_reserved/")}
        return out
