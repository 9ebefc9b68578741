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

    python bench/train_step.py --vs-official [--steps 1]

CoRe's parity step beside the official code's (docs/performance.md, Scoring and training): the
step of tests/test_parity_core.py (two ``losses`` + backward, one Adam step after the second:
step_per_update 2) on the parity weights (tests/parity_core_data.core_model) and three seeded
random 103x224x224 clips, batch 1, on the CPU, each step in a fresh child process (time, peak
RSS above the process's RSS before the step, the losses). "ours" is measured by this run; the
official side cannot run here (no official code in the repository): ``official_recorded`` holds
the numbers the official code gave on the same inputs, with the commit, command and machine.

    python bench/train_step.py --vs-official --method tpt [--steps 1]

TPT's step beside the official code's (baiyang4/aqa_tpt @cf6d163, RunPair.train's body for one
batch): ``TPT.losses`` on one (query, exemplar) pair (both directions: NLL, per-leaf MSE, the
ranking hinge and 0.05 x the spread of both decoder layers), backward, one Adam step with the
official groups (backbone, decoder, pair encoder 1e-4; cls, reg 1e-3), fix_bn, the official
dropouts (0.1; the masks drawn in the official order, ``torch.manual_seed(0)`` before the step), on
the parity weights (tests/parity_tpt_inputs.tpt_model), two seeded
random 103x224x224 clips cut into the official 20 clips of 8 frames, batch 1, on the CPU, a fresh
child process a step.
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
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


# yuxumin/CoRe @f7881a9, tools/helper.network_forward_train twice (Adam from tools/builder.
# build_opti_sche after the second), fed what its loader hands the model (ImageNet-normalised
# float clips, normalised outside the step), on the inputs parity_core_step makes; run from a
# scratch folder on the CPU with `.cuda()` a no-op and torchvideotransforms stubbed (unused):
# `python run_core.py train 224`, a fresh process a step, alternating with ours
# (`--vs-official --steps 1`), 2026-12-07 02:37-02:43 UTC on the quiet machine (AMD EPYC, 2
# cores, nothing else of ours running), torch 2.14.1, numpy 2.4.6. step_s, cpu_s and the peak are
# the medians of its two runs (100.861 s / 171.682 s / 8583.3 MB, 86.094 s / 150.110 s /
# 8350.5 MB); ours (channels-last I3D, the CPU default) gave 65.255 s / 115.222 s / 8416.0 MB
# and 49.797 s / 91.028 s / 8318.9 MB. An earlier session's run on the same kind of machine
# under load: 192.1 s / 171.5 s / 8421.3 MB, losses 154.90719604492188, 277.0403747558594.
OFFICIAL_CORE_STEP = {"commit": "yuxumin/CoRe@f7881a9",
                      "command": "python run_core.py train 224 (scratch runner, not in the "
                                 "repository; docs/performance.md)",
                      "step_s": 93.478, "cpu_s": 160.896, "peak_above_before_mb": 8466.9,
                      "losses": [154.90716552734375, 277.0399475097656],
                      "weights_l2": 197.10241899947545}


def _rss_mb() -> float:
    """This process's resident set size now, MB."""
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmRSS"))


def _step_result(t0: float, c0: float, before_mb: float, model: torch.nn.Module,
                 losses) -> dict:
    """What a parity step child prints: wall and CPU seconds since ``t0``/``c0``, the peak RSS
    above ``before_mb``, the losses and the L2 norm of every parameter after the step."""
    import resource

    step_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    w = torch.cat([p.detach().flatten().double() for p in model.parameters()])
    return {"step_s": round(step_s, 3), "cpu_s": round(cpu_s, 3),
            "peak_above_before_mb": round(peak - before_mb, 1), "losses": losses,
            "weights_l2": float(w.norm())}


def parity_core_step(size: int = 224) -> dict:
    """One CoRe parity step in this (fresh) process -> time, peak RSS, losses."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from parity_core_data import core_model

    from aqa.models.core import CoRe
    from aqa.models.group_tree import build_leaves
    from aqa.train.optim import build_optimizer

    torch.manual_seed(0)
    cfg = build_run_config("core", "mtl_aqa", overrides=[
        "backbone.weights=", "backbone.family=hassony2", "backbone.input_norm=imagenet"])
    g = torch.Generator().manual_seed(7)
    videos = [torch.randint(0, 256, (1, 3, 103, size, size), dtype=torch.uint8, generator=g)
              for _ in range(3)]
    scores, dd = [60.0, 75.6, 52.5], 3.0
    comp = [torch.tensor([s / dd], dtype=torch.float64).float() for s in scores]
    method = CoRe(cfg)
    method.leaves = build_leaves([abs(a / dd - b / dd) for i, a in enumerate(scores)
                                  for b in scores[i + 1:]], 5, 30.0)
    model = method.build_model()
    model.load_state_dict({**core_model().state_dict(), "leaves": method.leaves})
    opt = build_optimizer(method.param_groups(model), cfg.optim)
    method.set_train_mode(model)

    before, losses = _rss_mb(), []
    t0, c0 = time.perf_counter(), time.process_time()
    for q, e in ((0, 1), (2, 0)):  # what the loop does with accum_steps 2 and accum_sum
        batch = {"video": videos[q], "exemplar_video": videos[e],
                 "score": torch.tensor([scores[q]]), "difficulty": torch.tensor([dd]),
                 "exemplar_score": torch.tensor([scores[e]]),
                 "exemplar_difficulty": torch.tensor([dd]),
                 "completeness": comp[q], "exemplar_completeness": comp[e]}
        loss = method.losses(model, batch)["loss"]
        losses.append(float(loss.detach()))
        loss.backward()
    opt.step()
    return _step_result(t0, c0, before, model, losses)


# TPT: the inputs both sides get (parity_tpt_step and the official runner): query 60.0 and exemplar
# 75.6 at DD 3.0, bins from the same-DD differences of TPT_TRAIN_SCORES (Group_helper(deltas,
# depth=5, Max=30, Min=0)); two uint8 (3, 103, S, S) clips from torch.Generator seed 7.
TPT_SCORES, TPT_DD = (60.0, 75.6), 3.0
TPT_TRAIN_SCORES = (45.0, 52.5, 60.0, 66.0, 75.6, 81.0)
TPT_STARTS = tuple(range(0, 100, 5))  # the official 20 clip starts (MLTPair.load_data)

# baiyang4/aqa_tpt @cf6d163, train_pairencode1_decoder_1selfatt_self8head_ffn_sp_new.py:
# RunPair(args) as its __main__ builds it with the README flags (batch 1, --margin_factor 3.2,
# --d_model 512 --d_ffn 512 --num_cluster 5, hinge and multi-hinge on), our weights resumed from
# its results/<name>/checkpoint.pth (--use_checkpoint True), then RunPair.train() on a one-batch
# loader, stopped after its first optimizer.step(); the batch is what MLTPair.load_data and the
# collate hand the model (its ClipToTensor + Normalize of each clip, the 20 clips of 8 frames
# stacked, before the step). Dropout as the official model has it (0.1), torch.manual_seed(0)
# before the step on both sides: the masks come out the same (our pair encoder's one batch of
# both directions draws them in the order of the official two calls). Run from a scratch folder
# on the CPU with .cuda() a no-op, cv2, skimage, matplotlib, seaborn and torch.utils.tensorboard
# stubbed (imported, unused here) and einops 0.8.2 beside it: `python run_tpt_step.py` (not in
# the repository; docs/performance.md), a fresh process a step, alternating with ours
# (`--vs-official --method tpt --steps 1`), 2026-12-07 02:43-02:47 UTC on the quiet machine
# (AMD EPYC, 2 cores), torch 2.14.1, numpy 2.4.6. step_s, cpu_s and the peak are the medians of
# its two runs (44.650 s / 78.253 s / 8077.7 MB, 42.416 s / 75.316 s / 8089.9 MB); ours
# (channels-last I3D, the CPU default) gave 32.632 s / 57.898 s / 8077.7 MB and 26.836 s /
# 49.381 s / 8067.3 MB. The first runs, 01:54-01:59 UTC under load 2-4 with ours contiguous:
# official 50.601 / 80.458 s and 79.304 / 82.570 s, ours 64.624 / 78.923 s and 71.040 / 70.115 s.
# Losses:
# the terms summed as RunPair.train sums them (NLL of both directions, MSE over the leaves, hinge
# and spread over both layers), read from nn.NLLLoss / nn.MSELoss / RunPair.get_att_loss and the
# tensor loss_all.backward() was called on; weights_l2: every parameter after the step.
OFFICIAL_TPT_STEP = {"commit": "baiyang4/aqa_tpt@cf6d163",
                     "command": "python run_tpt_step.py (scratch runner, not in the repository; "
                                "docs/performance.md)",
                     "step_s": 43.533, "cpu_s": 76.785, "peak_above_before_mb": 8083.8,
                     "losses": {"loss": 35.88168716430664, "nll": 8.801202178001404,
                                "mse": 0.9154034706007224, "hinge": 25.663710594177246,
                                "sparsity": 10.027352333068848},
                     "weights_l2": 254.1614067353191}


def parity_tpt_step(size: int = 224, starts: list[int] | None = None) -> dict:
    """One TPT step (the official RunPair.train body) in this (fresh) process -> time, peak RSS,
    the loss terms and the weights' L2 norm after the Adam step."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from parity_tpt_inputs import tpt_model

    from aqa.models.group_tree import build_leaves
    from aqa.models.tpt import TPT
    from aqa.train.optim import build_optimizer

    torch.manual_seed(0)
    sets = ["backbone.weights=", "model.clip_starts=" + ",".join(map(str, starts or TPT_STARTS))]
    cfg = build_run_config("tpt", "mtl_aqa", overrides=sets)
    g = torch.Generator().manual_seed(7)
    videos = [torch.randint(0, 256, (3, 103, size, size), dtype=torch.uint8, generator=g)
              for _ in range(2)]
    dd, ts = TPT_DD, TPT_TRAIN_SCORES
    method = TPT(cfg)
    method.leaves = build_leaves([abs(a / dd - b / dd) for i, a in enumerate(ts)
                                  for b in ts[i + 1:]], cfg.model.depth, cfg.model.score_range)
    model = method.build_model()
    model.load_state_dict({**tpt_model().state_dict(), "leaves": method.leaves})
    opt = build_optimizer(method.param_groups(model), cfg.optim)
    method.set_train_mode(model)
    (sq, se), d = TPT_SCORES, torch.tensor([dd])
    batch = {"video": videos[0][None], "exemplar_video": videos[1][None],
             "score": torch.tensor([sq]), "difficulty": d,
             "exemplar_score": torch.tensor([se]), "exemplar_difficulty": d.clone()}

    torch.manual_seed(0)  # the dropout masks
    before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    out = method.losses(model, batch)
    out["loss"].backward()
    opt.step()
    return _step_result(t0, c0, before, model, {k: float(v.detach()) for k, v in out.items()})


def vs_official(steps: int, size: int = 224, method: str = "core",
                starts: list[int] | None = None) -> dict:
    import subprocess

    child = [sys.executable, __file__, "--parity-child", method, str(size)]
    if method == "tpt":
        child.append(",".join(map(str, starts or TPT_STARTS)))
    runs = []
    for i in range(max(1, steps)):
        proc = subprocess.run(child, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"the parity step failed: {proc.stderr.strip()[-500:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"ours, step {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    ours = {"side": "ours (measured now)", "step_s": med("step_s"), "cpu_s": med("cpu_s"),
            "peak_above_before_mb": med("peak_above_before_mb"), "losses": runs[0]["losses"],
            "runs": runs}
    if method == "tpt":
        rec = OFFICIAL_TPT_STEP
        n = len(starts) if starts else 20
        inputs = ("parity weights (tests/parity_tpt_inputs.tpt_model), 2 seeded random "
                  f"103x{size}x{size} clips as {n} clips of 8 frames, query {TPT_SCORES[0]} and "
                  f"exemplar {TPT_SCORES[1]} at DD {TPT_DD}, one Adam step, dropout 0.1 "
                  "(torch seed 0 before the step)")
        official_config = size == 224 and (not starts or tuple(starts) == TPT_STARTS)
    else:
        rec = OFFICIAL_CORE_STEP
        inputs = ("parity weights (tests/parity_core_data.core_model), 3 seeded random "
                  f"103x{size}x{size} clips, pairs (0, 1) then (2, 0), Adam after the second")
        official_config = size == 224
    ours["weights_l2"] = runs[0]["weights_l2"]
    out = {"method": method, "device": "cpu", "threads": torch.get_num_threads(), "batch": 1,
           "inputs": inputs, "ours": ours,
           "official_recorded": {"side": "official code, recorded (not run by this bench)", **rec}}
    if rec.get("step_s") and official_config:
        if method == "tpt":
            out["loss_rel_diff_vs_official"] = max(
                abs(ours["losses"][k] - v) / max(abs(v), 1e-12) for k, v in rec["losses"].items())
        else:
            out["loss_rel_diff_vs_official"] = max(abs(a - b) / abs(b) for a, b in
                                                   zip(ours["losses"], rec["losses"]))
        out["weights_l2_rel_diff_vs_official"] = (abs(ours["weights_l2"] - rec["weights_l2"])
                                                  / rec["weights_l2"])
        out["step_vs_official_recorded"] = round(med("step_s") / rec["step_s"], 3)
        if rec.get("cpu_s"):
            out["step_vs_official_recorded_cpu"] = round(med("cpu_s") / rec["cpu_s"], 3)
        out["peak_vs_official_recorded"] = round(med("peak_above_before_mb")
                                                 / rec["peak_above_before_mb"], 3)
        out["note"] = ("ratios against numbers recorded in another run of the same machine: "
                       "docs/performance.md has the interleaved measurement")
    return out


def main() -> None:
    if sys.argv[1:2] == ["--parity-child"]:  # --parity-child METHOD SIZE [STARTS]
        method, size = sys.argv[2], int(sys.argv[3])
        if method == "tpt":
            starts = [int(x) for x in sys.argv[4].split(",")] if len(sys.argv) > 4 else None
            out = parity_tpt_step(size, starts)
        else:
            out = parity_core_step(size)
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="core,tpt,tsa,pecop", help="comma-separated methods")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--steps", type=int, default=3, help="steps per row (the fastest after the "
                                                         "first is reported)")
    ap.add_argument("--dataset", default=None, help="shapes of this dataset (default: each "
                                                    "method's paper dataset)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override for every method, e.g. data.frame_size=112 (said in the JSON)")
    ap.add_argument("--vs-official", action="store_true",
                    help="a parity training step (ours, measured) beside the official code's "
                         "recorded numbers; --method picks it")
    ap.add_argument("--method", default="core", choices=["core", "tpt"],
                    help="with --vs-official: CoRe's step (default) or TPT's")
    ap.add_argument("--frame-size", type=int, default=224,
                    help="with --vs-official: clip size (the official numbers are for 224)")
    ap.add_argument("--clip-starts", default="",
                    help="with --vs-official --method tpt: clip starts, e.g. 0,95 for a quick "
                         "run (default the official 20; the official numbers are for those)")
    args = ap.parse_args()
    if args.vs_official:
        starts = [int(x) for x in args.clip_starts.split(",")] if args.clip_starts else None
        if starts and args.method != "tpt":
            ap.error("--clip-starts is for --method tpt")
        print(json.dumps(vs_official(args.steps, args.frame_size, args.method, starts),
                         indent=2))
        return
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
