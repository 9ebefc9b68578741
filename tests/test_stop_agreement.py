"""A stop asked of one rank is agreed by all, signal included.

In a multi-node job submitit's handler signals node 0's task only, and the c10d rendezvous does
not put rank 0 on node 0: the rank that writes the `stopped` status may never have seen the
signal. Two gloo processes here, the signal given to rank 1 only."""

import os
import signal

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from aqa.train.distributed import DistContext
from aqa.train.stopflag import StopFlag


def test_code_and_adopt():
    flag = StopFlag()
    assert flag.code == 0
    flag.adopt(0)
    assert not flag.requested and flag.signal is None
    flag.adopt(int(signal.SIGTERM))
    assert flag.requested and flag.signal == "SIGTERM" and flag.code == int(signal.SIGTERM)
    own = StopFlag()
    own._handle(signal.SIGINT, None)
    own.adopt(int(signal.SIGTERM))  # a rank keeps the signal it was given itself
    assert own.signal == "SIGINT"


def _thread(tid: int) -> tuple[str, bool] | None:
    """(name, whether it blocks SIGTERM) of thread ``tid`` of this process, from /proc; None
    when the thread has ended."""
    try:
        name = open(f"/proc/self/task/{tid}/comm").read().strip()
        status = open(f"/proc/self/task/{tid}/status").read()
    except FileNotFoundError:
        return None
    mask = int(status.split("SigBlk:")[1].split()[0], 16)
    return name, bool(mask >> (int(signal.SIGTERM) - 1) & 1)


def _rank(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    ctx = DistContext.from_env()
    before = set(os.listdir("/proc/self/task"))
    ctx.init(torch.device("cpu"))
    started = [int(t) for t in set(os.listdir("/proc/self/task")) - before]
    flag = StopFlag()
    if rank == 1:
        flag._handle(signal.SIGTERM, None)
    flag.adopt(ctx.agree_max(flag.code, torch.device("cpu")))
    # the process group's threads block the stop signals; the main thread still takes them
    # the group's I/O threads (gloo's socket loop; rank 0's store server too) block the stop
    # signals; the main thread still takes them. Threads torch names just "python" (thread
    # pools, which a thread started before may have started) are left out.
    io = {t for t in filter(None, map(_thread, started)) if t[0] != "python"}
    threads = ("gloo_tcp_loop" in {name for name, _ in io}, all(b for _, b in io),
               _thread(os.getpid())[1])
    out.put((rank, flag.requested, flag.signal, threads))
    tdist.barrier()
    ctx.close()


def test_a_signal_given_to_rank_1_is_recorded_by_rank_0():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got == [(0, True, "SIGTERM", (True, True, False)),
                   (1, True, "SIGTERM", (True, True, False))]
