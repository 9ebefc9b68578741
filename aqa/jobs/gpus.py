"""What GPUs the machine has, and choosing some for a run.

``probe_gpus`` and ``probe_compute_apps`` ask NVML (``pynvml``, the ``nvml`` extra) when it is
installed and answers, else nvidia-smi (``AQA_GPU_QUERY=nvml|nvidia-smi`` forces one; ``auto``
is the default). Both number GPUs in PCI bus order, which is why a job's environment sets
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (``process.child_env``). Their answers are cached for
``QUERY_CACHE_S`` seconds in the process, so a scheduler polling every half second while a run
waits does not start nvidia-smi twice a tick. Everything else here is pure: ``allocate`` takes the inventory,
the GPUs this workspace's running jobs hold and a request, and returns indices or None (wait).
A GPU that a process this project did not start holds (``foreign_mb`` above the workspace's
``[gpus] busy_threshold_mb``) is not handed out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

from aqa.errors import JobError

DEFAULT_BUSY_THRESHOLD_MB = 1024.0
QUERY_CACHE_S = 5.0  # how long a GPU query's answer is reused within one process
QUERIES = ("auto", "nvml", "nvidia-smi")  # AQA_GPU_QUERY

_cache: dict[str, tuple[float, list[dict]]] = {}
_cache_lock = threading.Lock()


def _smi(args: list[str]) -> list[list[str]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, *args, "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[p.strip() for p in line.split(",")] for line in out.strip().splitlines() if line]


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "[N/A]"
        return 0.0


def _gpus_smi() -> list[dict]:
    rows = _smi(["--query-gpu=index,name,memory.total,memory.free,utilization.gpu,uuid"])
    return [{"index": int(r[0]), "name": r[1], "total_mb": _num(r[2]), "free_mb": _num(r[3]),
             "util": _num(r[4]), "uuid": r[5]} for r in rows if len(r) >= 6]


def _apps_smi() -> list[dict]:
    rows = _smi(["--query-compute-apps=gpu_uuid,pid,used_memory"])
    return [{"gpu_uuid": r[0], "pid": int(r[1]), "used_mb": _num(r[2])}
            for r in rows if len(r) >= 3 and r[1].isdigit()]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml(what: str) -> list[dict] | None:
    """``what`` ("gpus" or "apps") through NVML; None when NVML is not installed or fails."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # pynvml.NVMLError: no driver, no library
        return None
    mb = 1024.0 * 1024.0
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):  # NVML's index: PCI bus order, as nvidia-smi
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = _text(pynvml.nvmlDeviceGetUUID(h))
            if what == "gpus":
                memory = pynvml.nvmlDeviceGetMemoryInfo(h)
                try:
                    util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                except Exception:  # not supported on this GPU: nvidia-smi's "[N/A]"
                    util = 0.0
                out.append({"index": i, "name": _text(pynvml.nvmlDeviceGetName(h)),
                            "total_mb": memory.total / mb, "free_mb": memory.free / mb,
                            "util": util, "uuid": uuid})
            else:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    used = getattr(proc, "usedGpuMemory", None) or 0
                    out.append({"gpu_uuid": uuid, "pid": int(proc.pid), "used_mb": used / mb})
        return out
    except Exception:  # a driver error mid-query: nvidia-smi answers instead
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def gpu_query() -> str:
    """``AQA_GPU_QUERY``: auto (NVML when it answers, else nvidia-smi), nvml or nvidia-smi."""
    query = os.environ.get("AQA_GPU_QUERY", "auto").strip() or "auto"
    if query not in QUERIES:
        raise JobError(f"AQA_GPU_QUERY={query!r}: use one of {', '.join(QUERIES)}")
    return query


def _query(what: str, max_age_s: float) -> list[dict]:
    query = gpu_query()
    key = f"{what}:{query}"
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < max_age_s:
            return [dict(g) for g in hit[1]]
    result = _nvml(what) if query in ("auto", "nvml") else None
    if result is None and query == "nvml":
        raise JobError("AQA_GPU_QUERY=nvml but NVML does not answer: install the nvml extra "
                       "(pip install \"aqa-studio[nvml]\") and check the NVIDIA driver, or unset "
                       "AQA_GPU_QUERY")
    if result is None:
        result = _gpus_smi() if what == "gpus" else _apps_smi()
    with _cache_lock:
        _cache[key] = (time.monotonic(), result)
    return [dict(g) for g in result]


def probe_gpus(max_age_s: float = QUERY_CACHE_S) -> list[dict]:
    """[{index, name, uuid, total_mb, free_mb, util}] in PCI bus order; [] without GPUs. An
    answer at most ``max_age_s`` old is reused (0: ask now)."""
    return _query("gpus", max_age_s)


def probe_compute_apps(max_age_s: float = QUERY_CACHE_S) -> list[dict]:
    """[{gpu_uuid, pid, used_mb}]: every process holding GPU memory (cached like probe_gpus)."""
    return _query("apps", max_age_s)


def mark_foreign(inventory: list[dict], apps: list[dict], our_pids: set[int]) -> list[dict]:
    """The inventory with ``foreign_mb`` and ``foreign_pids`` added: memory held by processes
    that are not ours (``our_pids``: every pid of this workspace's jobs)."""
    out = []
    for g in inventory:
        mine = [a for a in apps if a["gpu_uuid"] == g.get("uuid")]
        foreign = [a for a in mine if a["pid"] not in our_pids]
        out.append({**g, "foreign_mb": sum(a["used_mb"] for a in foreign),
                    "foreign_pids": sorted(a["pid"] for a in foreign)})
    return out


def parse_gpus(text: str | None) -> tuple[list[int] | None, int]:
    """``--gpus`` syntax: "0,2" asks for those GPUs, "2" for any two, "" / "0" / None for none.

    Returns (explicit indices or None, count).
    """
    if text is None or str(text).strip() in ("", "0", "cpu"):
        return None, 0
    text = str(text).strip()
    try:
        if "," in text:
            idx = [int(x) for x in text.split(",") if x.strip()]
            if len(set(idx)) != len(idx) or min(idx) < 0:
                raise ValueError
            return idx, len(idx)
        count = int(text)
        if count < 0:
            raise ValueError
        return None, count
    except ValueError:
        raise JobError(f"--gpus {text!r}: give a count (2 = any two) or a list of indices "
                       "(0,2 = those two)") from None


def check_request(request: tuple[list[int] | None, int], inventory: list[dict]) -> None:
    """Raise if the machine can never satisfy ``request`` (so it does not wait forever)."""
    explicit, count = request
    have = {g["index"] for g in inventory}
    if explicit is not None:
        missing = [i for i in explicit if i not in have]
        if missing:
            raise JobError(f"GPU(s) {missing} not found; this machine has "
                           f"{sorted(have) or 'no GPUs'} (see `python -m aqa gpus`)")
    elif count > len(have):
        raise JobError(f"asked for {count} GPU(s) but this machine has {len(have)} "
                       "(see `python -m aqa gpus`)")


def allocate(inventory: list[dict], held: set[int], request: tuple[list[int] | None, int],
             busy_threshold_mb: float = DEFAULT_BUSY_THRESHOLD_MB) -> list[int] | None:
    """GPU indices for ``request`` = (explicit indices or None, count), or None: wait.

    A GPU is free when no job of this workspace holds it (``held``) and processes we did not
    start use at most ``busy_threshold_mb`` of it. "Any N" takes the N free GPUs with the most
    free memory (ties: lowest index). [] for a CPU request.
    """
    explicit, count = request
    if count == 0:
        return []
    free = [g for g in inventory if g["index"] not in held
            and g.get("foreign_mb", 0.0) <= busy_threshold_mb]
    if explicit is not None:
        ok = {g["index"] for g in free}
        return sorted(explicit) if set(explicit) <= ok else None
    if len(free) < count:
        return None
    ranked = sorted(free, key=lambda g: (-g.get("free_mb", 0.0), g["index"]))
    return sorted(g["index"] for g in ranked[:count])


def choose_gpus(text: str | None, inventory: list[dict]) -> list[int]:
    """Indices for a run now, ignoring what is busy: the ones asked for, or the ``count`` with
    the most free memory. (The queue uses ``allocate``, which waits for busy GPUs.)"""
    request = parse_gpus(text)
    if request[1] == 0:
        return []
    check_request(request, inventory)
    return allocate(inventory, set(), request, busy_threshold_mb=float("inf")) or []
