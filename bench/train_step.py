"""Bench: time and peak memory of one training step, per method, with and without each memory
option (amp, checkpointing, freeze_bn, accumulation, all together).

    python bench/train_step.py [--methods core,tpt,tsa,pecop] [--device auto] [--steps 3]
                               [--set data.frame_size=112 ...]

Each method runs its default (paper) configuration with random backbone weights (time and memory
do not depend on the weights' values) on its paper dataset's shapes (no data is read), on
``method.example_batch``. On CUDA: the official per-step batch size, peak = PyTorch's reserved
memory (``torch.cuda.max_memory_reserved``). On the CPU: batch 1 (said so in the JSON), peak = the
peak RSS of a fresh child process above its baseline -- not a GPU number. "base" is the config
with every memory option off; each other row turns one on. A method that is not registered is
reported as such. Progress goes to stderr; stdout is one JSON object.
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from aqa.config import apply_overrides, build_run_config  # noqa: E402
from aqa.errors import AQAError  # noqa: E402
from aqa.plan import measure  # noqa: E402
from aqa.registry import METHODS  # noqa: E402

PAPER_DATASET = {"tsa": "frfs", "plain": "frfs", "pecop": "pd4t"}  # else mtl_aqa


def option_rows(cfg, device: torch.device, official_batch: int) -> list[tuple[str, list[str], str]]:
    """(option, overrides on top of base, why not) -- why-not empty where the row is measured."""
    cuda = device.type == "cuda"
    ckpt = hasattr(cfg.backbone, "checkpointing")
    b, a = cfg.train.batch_size, cfg.optim.accum_steps
    rows = [("base", [], ""),
            ("amp", ["train.amp=true"], "" if cuda else "CUDA only"),
            ("checkpointing", ["backbone.checkpointing=true"],
             "" if ckpt else f"backbone {cfg.backbone.name} has none"),
            ("freeze_bn", ["backbone.freeze_bn=true"], ""),
            ("accum", ["train.batch_size=1", f"optim.accum_steps={a * b}"],
             "" if b > 1 else "per-step batch is 1 already")]
    together = [x for name, o, why in rows[1:] if not why for x in o]
    rows.append(("all", together, "" if together else "no option applies"))
    return rows


def bench_method(name: str, device: torch.device, steps: int, extra: list[str],
                 dataset: str | None) -> dict:
    if name not in METHODS.names():
        return {"method": name, "status": "not registered",
                "note": "not in this checkout's registry; re-run after it is merged"}
    dataset = dataset or PAPER_DATASET.get(name, "mtl_aqa")
    official = build_run_config(name, dataset, overrides=["backbone.weights="])
    batch = official.train.batch_size if device.type == "cuda" else 1
    off = ["train.amp=false", "backbone.freeze_bn=false"]
    if hasattr(official.backbone, "checkpointing"):
        off.append("backbone.checkpointing=false")
    base = apply_overrides(official, off + [f"train.batch_size={batch}"] + extra)
    out = {"method": name, "status": "ok", "dataset": dataset, "backbone": base.backbone.name,
           "official_batch_size": official.train.batch_size,
           "official_accum_steps": official.optim.accum_steps, "batch_size": batch,
           "frames": base.data.num_frames, "frame_size": base.data.frame_size, "rows": []}
    for option, overrides, why in option_rows(base, device, official.train.batch_size):
        row = {"option": option, "overrides": overrides}
        if why:
            out["rows"].append({**row, "status": "n/a", "note": why})
            continue
        cfg = apply_overrides(base, overrides)
        t0 = time.perf_counter()
        try:
            (point,) = measure(cfg, device, (cfg.train.batch_size,), steps=steps)
        except AQAError as exc:
            out["rows"].append({**row, "status": "error", "note": str(exc)})
            continue
        row.update(status="oom" if point.get("oom") else "ok", batch_size=cfg.train.batch_size,
                   accum_steps=cfg.optim.accum_steps,
                   **{k: round(v, 4 if k == "step_s" else 1) for k, v in point.items()
                      if k in ("step_s", "peak_mb", "allocated_mb")})
        if option == "accum" and "step_s" in row:  # time of one optimizer update
            row["update_s"] = round(row["step_s"] * cfg.optim.accum_steps, 4)
        out["rows"].append(row)
        print(f"{name} {option}: {row.get('step_s')} s, {row.get('peak_mb')} MB "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="core,tpt,tsa,pecop", help="comma-separated methods")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--steps", type=int, default=3, help="steps per row (the fastest after the "
                                                         "first is reported)")
    ap.add_argument("--dataset", default=None, help="shapes of this dataset (default: each "
                                                    "method's paper dataset)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override for every method, e.g. data.frame_size=112 (said in the JSON)")
    args = ap.parse_args()
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    results = [bench_method(m.strip(), device, args.steps, args.overrides, args.dataset)
               for m in args.methods.split(",") if m.strip()]
    info = {"device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "threads": torch.get_num_threads(), "steps": args.steps, "overrides": args.overrides,
            "batch": ("official per-step batch size of each method" if device.type == "cuda"
                      else "batch 1 on the CPU (not the official batch size)"),
            "peak": ("torch.cuda.max_memory_reserved, MB" if device.type == "cuda" else
                     "peak RSS of a child process above its baseline, MB: a CPU number, not a "
                     "GPU one"),
            "weights": "random init (time and memory do not depend on the weights' values)",
            "methods": results}
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
