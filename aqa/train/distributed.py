"""Process-group setup for runs started by torchrun (one process a GPU, or gloo on the CPU)."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls) -> "DistContext":
        return cls(rank=int(os.environ.get("RANK", 0)), world=int(os.environ.get("WORLD_SIZE", 1)),
                   local_rank=int(os.environ.get("LOCAL_RANK", 0)))

    def init(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            with stop_signals_to_main_thread():  # the group's I/O threads start here
                dist.init_process_group(backend, timeout=timedelta(minutes=10))

    def barrier(self) -> None:
        if self.enabled:
            with stop_signals_to_main_thread():  # NCCL's first collective makes its communicator
                dist.barrier()

    def agree_max(self, value: int, device: torch.device) -> int:
        """The largest ``value`` over the ranks, on every rank."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signals_to_main_thread() -> Iterator[None]:
    """Threads started inside block SIGTERM and SIGINT (a thread keeps the mask it was created
    with), so the kernel hands a stop to the main thread, whose Python handler sets the stop
    flag, and never to a communication thread, whose blocking socket call it would interrupt.
    The main thread's mask is restored on exit; a stop that arrived meanwhile is delivered then."""
    if not hasattr(signal, "pthread_sigmask"):  # no per-thread masks on this platform
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
