"""Memory planning: how much memory and time a training step of a config needs, before launch.

``plan(cfg, device, gpus)`` builds the model of ``cfg`` (random initialisation: the weights'
values do not change memory or time) and runs a short dry run -- forward, backward and
optimizer step on ``method.example_batch`` -- at two small per-step batch sizes, then fits

    peak(B) = fixed + per_sample * B        step_time(B) = t0 + t_sample * B

and reads both at the configured batch size. It does that for the config as given and for each
memory option that keeps the maths the same:

    amp            mixed precision (float16 autocast + GradScaler); CUDA only
    checkpointing  gradient checkpointing of the backbone (I3D: each Mixed block recomputed)
    freeze_bn      backbone BatchNorm in eval mode (no batch statistics kept for backward)
    accum          per-step batch B / k with optim.accum_steps x k: the same effective batch;
                   read from the fit (per-step memory depends on the per-step batch only)

On CUDA the peak is ``torch.cuda.max_memory_reserved`` (what the GPU must hold; the allocated
peak is reported too) plus ``CUDA_CONTEXT_MB`` for the CUDA context; on the CPU it is the peak
RSS of a child process above what it held before building the model -- a CPU number, not a GPU
one. Where GPUs are given (their inventory entries, ``aqa.jobs.gpus``), each row says whether it
fits in the smallest free memory among them. Device and inventory are arguments, so tests (and
the app) pass their own.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from aqa.config import RunConfig, apply_overrides, build_run_config, to_dict
from aqa.errors import AQAError, ConfigError, RunError

CUDA_CONTEXT_MB = 600.0  # what the CUDA context and kernels take outside PyTorch's allocator
FIT_BATCHES = (1, 2)  # per-step batch sizes of the dry run
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ options

def memory_options(cfg: RunConfig, device: torch.device) -> list[dict]:
    """The memory options for ``cfg`` on ``device``: ``{name, overrides, status, note}`` where
    status is ``apply`` (measured as a row), ``on`` (already on in the config) or ``n/a``."""
    out = []

    def add(name: str, on: bool, usable: bool, overrides: list[str], note: str) -> None:
        status = "on" if on else ("apply" if usable else "n/a")
        out.append({"name": name, "overrides": overrides if status == "apply" else [],
                    "status": status, "note": note})

    cuda = device.type == "cuda"
    add("amp", cfg.train.amp and cuda, cuda, ["train.amp=true"],
        "float16 autocast + loss scaling; halves most activations" if cuda
        else "CUDA only: on the CPU the loop trains in float32 whatever train.amp says")
    has_ckpt = hasattr(cfg.backbone, "checkpointing")
    add("checkpointing", has_ckpt and cfg.backbone.checkpointing, has_ckpt,
        ["backbone.checkpointing=true"],
        "recompute each backbone block in backward: less activation memory, about 30% slower"
        if has_ckpt else f"backbone {cfg.backbone.name!r} has no gradient checkpointing")
    add("freeze_bn", cfg.backbone.freeze_bn, True, ["backbone.freeze_bn=true"],
        "backbone BatchNorm in eval mode: running statistics fixed (a change of the maths "
        "where batch statistics mattered)")
    return out


def accum_factors(batch_size: int) -> list[int]:
    """k > 1 dividing ``batch_size``: per-step batch B / k with k times the accumulation."""
    return [k for k in range(2, batch_size + 1) if batch_size % k == 0]


# ------------------------------------------------------------------ measuring

def _train_step(method, model, optimizer, scaler, batch: dict, amp: bool, grad_clip: float) -> None:
    """One step as ``aqa.train.loop`` does it (autocast, scaled backward, clip, step)."""
    ctx = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    with ctx:
        loss = method.losses(model, batch)["loss"]
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _warm_up_runtime() -> None:
    """Load the CPU kernels' libraries and thread pools (a tiny 3D conv net forward, backward
    and optimizer steps), so the peak RSS above the baseline is the model's and the step's,
    not theirs."""
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.ReLU())
    net(torch.rand(2, 3, 4, 8, 8)).mean().backward()
    for opt in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):  # the first step
        opt(net.parameters(), lr=0.0).step()  # imports torch._dynamo: ~150 MB of RSS


def measure_here(cfg: RunConfig, device: torch.device, batch_sizes=FIT_BATCHES,
                 steps: int = 3) -> list[dict]:
    """Dry-run training steps of ``cfg`` in this process, at each of ``batch_sizes`` (ascending):
    ``[{batch_size, step_s, peak_mb[, allocated_mb] | oom}]``. ``step_s`` is the fastest of the
    steps after the first (which also creates the optimizer state; a shared machine's load
    only ever adds time). CPU peaks are this process's peak RSS
    above what it held before the model was built: only meaningful in a fresh process."""
    from aqa.registry import METHODS
    from aqa.train.optim import build_optimizer

    cuda = device.type == "cuda"
    amp = cfg.train.amp and cuda
    torch.manual_seed(cfg.train.seed)
    if cuda:
        gc.collect()  # the previous dry run's model and optimizer state, before the counters
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
    if not cuda:
        _warm_up_runtime()
    rss0 = _maxrss_mb()
    method = METHODS.get(cfg.method)(cfg)
    model = method.build_model().to(device)
    optimizer = build_optimizer(method.param_groups(model), cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    method.set_train_mode(model)
    out = []
    for b in batch_sizes:
        row: dict[str, Any] = {"batch_size": b}
        try:
            batch = method.example_batch(b, device)
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for _ in range(max(1, steps)):
                t0 = time.perf_counter()
                _train_step(method, model, optimizer, scaler, batch, amp, cfg.optim.grad_clip)
                if cuda:
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            row["step_s"] = min(times[1:] or times)  # the least disturbed step after the first
            if cuda:
                row["peak_mb"] = (torch.cuda.max_memory_reserved(device)) / 2**20
                row["allocated_mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            else:
                row["peak_mb"] = _maxrss_mb() - rss0
            del batch
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            row["oom"] = True
            out.append(row)
            break  # a larger batch would not fit either
        out.append(row)
    return out


def measure(cfg: RunConfig, device: torch.device, batch_sizes=FIT_BATCHES, steps: int = 3,
            isolate: bool = True) -> list[dict]:
    """``measure_here`` in a fresh child process (the default: on the CPU peak RSS only rises,
    and on CUDA the caller -- the app's server -- keeps no CUDA context or cached memory, and
    an out-of-memory leaves nothing behind) or, with ``isolate=False``, in this one (CUDA)."""
    if not isolate:
        return measure_here(cfg, device, batch_sizes, steps)
    request = {"config": to_dict(cfg), "device": str(device), "batch_sizes": list(batch_sizes),
               "steps": steps}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", "from aqa.plan import _child; _child()"],
                          input=json.dumps(request), capture_output=True, text=True, env=env,
                          cwd=str(ROOT))
    lines = proc.stdout.strip().splitlines()
    reply = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if proc.returncode != 0 or "rows" not in reply:
        if reply.get("error"):
            raise ConfigError(f"the dry run of {cfg.method}: {reply['error']}")
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RunError(f"the dry run of {cfg.method} failed (exit {proc.returncode}): "
                       + " | ".join(tail))
    return reply["rows"]


def _child() -> None:
    """Entry of the measuring child: a request as JSON on stdin, one JSON line on stdout."""
    request = json.loads(sys.stdin.read())
    values = request["config"]
    try:
        cfg = build_run_config(values["method"], values["dataset"], values=values)
        rows = measure_here(cfg, torch.device(request["device"]), request["batch_sizes"],
                            request["steps"])
    except AQAError as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(2)
    except torch.cuda.OutOfMemoryError:  # the model and optimizer alone do not fit
        rows = [{"batch_size": request["batch_sizes"][0], "oom": True}]
    print(json.dumps({"rows": rows}))


# ------------------------------------------------------------------ fitting and the plan

def fit(rows: list[dict], key: str) -> tuple[float, float] | None:
    """(fixed, per_sample) of ``key`` over the batch sizes of ``rows``; None without two
    measured points. A negative slope (noise) is read as zero."""
    pts = [(r["batch_size"], r[key]) for r in rows if key in r]
    if len(pts) < 2:
        return None
    (b1, y1), (b2, y2) = pts[0], pts[-1]
    slope = max(0.0, (y2 - y1) / (b2 - b1))
    return y1 - slope * b1, slope


def _budget_mb(gpus: list[dict]) -> float | None:
    return min(g.get("free_mb", 0.0) for g in gpus) if gpus else None


def _row(name: str, overrides: list[str], measured: list[dict], batch: int, accum: int,
         k: int, device: torch.device, budget: float | None, ddp_mb: float) -> dict:
    per_step = batch // k
    row: dict[str, Any] = {"option": name, "overrides": overrides, "batch_size": per_step,
                           "accum_steps": accum * k, "effective_batch": batch * accum}
    mem, tim = fit(measured, "peak_mb"), fit(measured, "step_s")
    at = {r["batch_size"]: r for r in measured if "peak_mb" in r}
    if per_step not in at and mem is None:  # the dry run ran out of memory before two points
        row.update(peak_mb=None, step_s=None, fits=False if budget is not None else None,
                   note=f"out of memory at batch {measured[-1]['batch_size']} in the dry run")
        return row
    extra = (CUDA_CONTEXT_MB + ddp_mb) if device.type == "cuda" else 0.0
    if per_step in at:  # measured at this very batch: the point, not the fit
        peak, step = at[per_step]["peak_mb"] + extra, at[per_step]["step_s"] * k
    else:
        peak = mem[0] + mem[1] * per_step + extra
        step = (tim[0] + tim[1] * per_step) * k  # k micro-steps per optimizer step
    row.update(peak_mb=round(peak, 1), step_s=round(step, 4),
               fits=None if budget is None else bool(peak <= budget))
    if device.type == "cuda":
        alloc = fit(measured, "allocated_mb")
        row["allocated_mb"] = (round(at[per_step]["allocated_mb"], 1) if per_step in at else
                               round(alloc[0] + alloc[1] * per_step, 1) if alloc else None)
    return row


def plan(cfg: RunConfig, device: torch.device | str, gpus: list[dict] | None = None,
         inventory: list[dict] | None = None, steps: int = 3, isolate: bool = True,
         accum_rows: bool = True, progress=None) -> dict:
    """The memory plan of ``cfg`` on ``device`` (see the module docstring). ``gpus``: inventory
    entries (``free_mb``) of the GPUs the run would use (none for a CPU run); ``inventory``: all
    of the machine's (``aqa.jobs.gpus.probe_gpus()``), for the notes. ``progress(done, total,
    name)``: before each configuration's dry run and once at the end."""
    from aqa.registry import METHODS

    device = torch.device(device)
    gpus = list(gpus or [])
    cfg = apply_overrides(cfg, ["backbone.weights="])  # random init: nothing to load
    method = METHODS.get(cfg.method)(cfg)
    model = method.build_model()  # config errors surface here, before any dry run
    sizes = method.module_sizes(model)
    del model
    budget = _budget_mb(gpus) if device.type == "cuda" else None
    ddp_mb = 4.0 * sizes["trainable"] / 2**20 if len(gpus) > 1 else 0.0  # DDP gradient buckets
    b, a = cfg.train.batch_size, cfg.optim.accum_steps
    options = memory_options(cfg, device)
    configs = [("as configured", [])]
    applied = [o for o in options if o["status"] == "apply"]
    configs += [(f"+{o['name']}", o["overrides"]) for o in applied]
    if len(applied) > 1:
        configs.append(("+" + " +".join(o["name"] for o in applied),
                        [x for o in applied for x in o["overrides"]]))
    rows, dry = [], []
    for i, (name, overrides) in enumerate(configs):
        if progress is not None:
            progress(i, len(configs), name)
        c = apply_overrides(cfg, overrides) if overrides else cfg
        measured = measure(c, device, FIT_BATCHES, steps=steps, isolate=isolate)
        dry.append({"option": name, "points": measured})
        rows.append(_row(name, overrides, measured, b, a, 1, device, budget, ddp_mb))
        if accum_rows and (name == "as configured" or name == configs[-1][0]):
            for k in accum_factors(b):
                rows.append(_row(f"{name} +accum x{k}", overrides
                                 + [f"train.batch_size={b // k}", f"optim.accum_steps={a * k}"],
                                 measured, b, a, k, device, budget, ddp_mb))
    if progress is not None:
        progress(len(configs), len(configs), "done")
    notes = ["model built with random weights: the weights' values do not change memory or time"]
    if device.type == "cpu":
        notes.append("measured on the CPU (peak RSS of a child process above its baseline): a "
                     "CPU estimate is not a GPU number; amp is CUDA only and was not measured")
        if inventory:
            notes.append(f"this machine has {len(inventory)} GPU(s) but the run would use the "
                         "CPU: pass --gpus (or choose GPUs) to plan for them")
        else:
            notes.append("this machine reports no GPU: the numbers are the CPU run's")
    else:
        notes.append(f"GPU peak = reserved by PyTorch + {CUDA_CONTEXT_MB:.0f} MB for the CUDA "
                     "context" + (f" + {ddp_mb:.0f} MB of DDP gradient buckets" if ddp_mb else ""))
    notes.append("accumulation rows are read from the fit (same effective batch, per-step "
                 "memory of the smaller batch; time per optimizer step)")
    fitting = [r["option"] for r in rows if r.get("fits")]
    return {"method": cfg.method, "dataset": cfg.dataset, "device": str(device),
            "gpus": [{k: g.get(k) for k in ("index", "name", "free_mb", "total_mb")} for g in gpus],
            "budget_mb": budget, "batch_size": b, "accum_steps": a,
            "frames": cfg.data.num_frames, "frame_size": cfg.data.frame_size,
            "module_sizes": sizes, "options": options, "rows": rows, "dry_run": dry,
            "fitting": fitting, "notes": notes}


def method_sizes(name: str, dataset: str = "synthetic") -> dict:
    """``{"config": the default config's method/backbone/dataset, "module_sizes": {...}}`` of
    method ``name``, built with ``backbone.weights=""`` (random init, nothing loaded), or
    ``{"module_sizes": None, "error": ...}`` where its default configuration does not build."""
    from aqa.registry import METHODS

    try:
        cfg = build_run_config(name, dataset, overrides=["backbone.weights="])
        method = METHODS.get(name)(cfg)
        sizes = method.module_sizes(method.build_model())
    except (AQAError, RuntimeError, ValueError) as exc:
        return {"module_sizes": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"sizes_config": {"backbone": cfg.backbone.name, "dataset": dataset,
                             "frames": cfg.data.num_frames, "frame_size": cfg.data.frame_size},
            "module_sizes": sizes}


def format_plan(p: dict) -> str:
    """The plan as a table for the terminal."""
    unit = "GPU MB" if p["device"].startswith("cuda") else "CPU MB"
    lines = [f"{p['method']} on {p['dataset']}: batch {p['batch_size']} x accum "
             f"{p['accum_steps']}, {p['frames']} frames at {p['frame_size']} px, device "
             f"{p['device']}; {p['module_sizes']['total']:,} parameters"]
    if p["budget_mb"] is not None:
        lines.append(f"free memory of the chosen GPU(s): {p['budget_mb']:.0f} MB")
    lines.append(f"{'OPTION':<44} {'BATCH':>5} {'ACCUM':>5} {unit:>9} {'STEP S':>8}  FITS")
    for r in p["rows"]:
        peak = "oom" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        step = "-" if r["step_s"] is None else f"{r['step_s']:.3f}"
        fits = {True: "yes", False: "no", None: "-"}[r["fits"]]
        lines.append(f"{r['option']:<44} {r['batch_size']:>5} {r['accum_steps']:>5} {peak:>9} "
                     f"{step:>8}  {fits}")
    for o in p["options"]:
        if o["status"] != "apply":
            lines.append(f"  {o['name']}: {'already on' if o['status'] == 'on' else 'n/a'} "
                         f"({o['note']})")
    if p["budget_mb"] is not None:
        lines.append("fits: " + (", ".join(p["fitting"]) or "none of these; lower "
                                 "data.frame_size/num_frames or use more GPUs"))
    lines += [f"note: {n}" for n in p["notes"]]
    return "\n".join(lines)


def plan_for(cfg: RunConfig, gpus_arg: str | None, inventory: list[dict], steps: int = 3,
             progress=None) -> dict:
    """The plan of a run launched with ``--gpus gpus_arg`` on a machine with ``inventory``
    (what ``aqa plan`` and the app's launch form call); ``progress``: see :func:`plan`."""
    device, gpus = plan_device(gpus_arg, inventory)
    return plan(cfg, device, gpus, inventory, steps=steps, progress=progress)


def plan_device(gpus_arg: str | None, inventory: list[dict]) -> tuple[torch.device, list[dict]]:
    """The device a run with ``--gpus gpus_arg`` would use, and the inventory entries of its
    GPUs (``aqa.jobs.gpus.choose_gpus``)."""
    from aqa.jobs.gpus import choose_gpus

    chosen = choose_gpus(gpus_arg, inventory)
    if not chosen:
        return torch.device("cpu"), []
    if not torch.cuda.is_available():
        raise ConfigError("--gpus asks for GPUs but PyTorch sees no CUDA device here; plan "
                          "without --gpus for a CPU estimate")
    entries = [g for g in inventory if g["index"] in chosen]
    return torch.device(f"cuda:{chosen[0]}"), entries
