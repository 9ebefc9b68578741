"""Bench: what scoring a clip costs beyond the backbone, per method; TPT's query against CoRe's.

    python bench/score.py [--quick] [--repeats 3] [--methods core,tpt,...] [--clip FILE]
                          [--size 224] [--vs-official-test]

score_vs_network (TSA): the same end-to-end score divided by one pass of the network itself
    (backbone, tube attention between its two stages, head) on the same tensor and tube.
score_vs_backbone (per method): ``Scorer.score(clip)`` end to end (probe, decode at the size the
    pipeline needs, uint8 -> float, the model, the voters, the result) divided by ONE bare pass
    of the method's backbone over the clips the method cuts from the same clip tensor (the
    tensor decoded once before timing; the backbone normalises the uint8 pack itself). Both are
    timed interleaved in this process, ``--repeats`` times, medians. Each method runs its paper
    configuration (frames, size, backbone) with random weights (the timing does not depend on
    them) from a checkpoint written here, with an exemplar bank of random rows for the bank
    methods (core, tpt, fdtsa); ``--size`` overrides the frame size of every method.
tpt_vs_core_query: the same 103-frame clip tensor through the same I3D (one module, ImageNet
    input norm): TPT's 20 clips of 8 frames against CoRe's 10 clips of 16 (160 frames each),
    interleaved, medians.
--allocator-ab: only each method's score alternately with the C library's malloc defaults and
    with freed memory reused (aqa.allocator): median seconds and page faults a score;
    ``--in-thread`` scores on a worker thread, as the app's server does.
--vs-official-test: only CoRe's test path (the bank once, then the query) on the inputs the
    official test loop was run on, beside that run's recorded score and times (OFFICIAL_CORE_TEST).

Both sides of each ratio run under the allocator setting of ``Scorer.score`` (aqa.allocator);
``AQA_ALLOCATOR=system`` measures both with the C library's defaults instead.
``--quick`` runs each side once. Progress goes to stderr; the last line is one JSON object with
``score_vs_backbone`` (CoRe's ratio), ``tpt_vs_core_query`` and ``methods`` (each method's
``score_vs_backbone`` and both times, or why it was not measured).
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from aqa.allocator import available as allocator_reuse  # noqa: E402
from aqa.allocator import reuse_freed_memory  # noqa: E402
from aqa.config import build_run_config, to_dict  # noqa: E402
from aqa.data.base import Sample  # noqa: E402
from aqa.errors import AQAError  # noqa: E402
from aqa.models import bank as B  # noqa: E402
from aqa.registry import METHODS  # noqa: E402
from aqa.scoring import Scorer  # noqa: E402
from aqa.train.checkpoint import save_checkpoint  # noqa: E402

METHOD_NAMES = ("core", "tpt", "tsa", "usdl", "musdl", "fdtsa", "regression", "pecop")
PAPER_DATASET = {"tsa": "frfs", "fdtsa": "finediving", "pecop": "pd4t"}  # else mtl_aqa
MTL_LEAVES = torch.tensor([[-30.0, -8.5], [-8.5, -6], [-6, -4.5], [-4.5, -3], [-3, -2.5],
                           [-2.5, -1.5], [-1.5, -0.9118], [-0.9118, 0], [0, 0.9118],
                           [0.9118, 1.5], [1.5, 2.5], [2.5, 3], [3, 4.5], [4.5, 6], [6, 8.5],
                           [8.5, 30]], dtype=torch.float64)  # MTL-AQA with DD
BANK_SIZE = 12  # exemplars in the random bank (all of difficulty 3.0, so 10 voters exist)
DIFFICULTY = 3.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_clip() -> Path:
    """The real dive of ../shared/data if it is there, else a synthetic clip written here."""
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / \
        "mtlaqa_diving_sample_500x280.mp4"
    if real.exists():
        return real
    from aqa.data.synthetic import render_dataset

    root = render_dataset(Path(tempfile.mkdtemp(prefix="bench_score_")), num_clips=1, size=224)
    return sorted(root.rglob("*.mp4"))[0]


def clip_pack(model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """The clips a method's model cuts from ``video`` (1, C, T, H, W) for its backbone, in one
    batch (N, C, L, H, W); the whole tensor for a model that feeds it as it is."""
    starts = getattr(model, "clip_starts", None) or getattr(model, "starts", None)
    if not starts:
        return video
    length = model.clip_len
    return torch.cat([video[:, :, s:s + length] for s in starts])


def random_bank(method, model, batch: dict) -> dict:
    """An exemplar bank of BANK_SIZE rows shaped like this model's features of ``batch``: the
    clip's own features plus noise (one pass of the model, which also warms it up)."""
    g = torch.Generator().manual_seed(0)
    samples = [Sample(id=f"ex{i}", video=Path(""), score=40.0 + 3 * i, difficulty=DIFFICULTY)
               for i in range(BANK_SIZE)]
    with torch.no_grad():
        if method.name == "fdtsa":
            _, maps, pred = model.video_units(batch["video"])
        else:
            maps, pred = model.video_features(batch["video"]), None
    feats = maps.float().repeat(BANK_SIZE, *([1] * (maps.dim() - 1)))
    feats = feats + 0.01 * torch.randn(feats.shape, generator=g)
    out = B.bank_from(samples, feats, "difficulty")
    if pred is not None:
        out["transits"] = pred.repeat(BANK_SIZE, 1)
    return out


def scorer_for(name: str, size: int | None, folder: Path, clip: Path) -> Scorer:
    """A Scorer of ``name``'s paper configuration with random weights (and a random bank)."""
    overrides = ["backbone.weights="]
    if name == "regression":
        overrides.append("backbone.name=i3d")
    if size:
        overrides.append(f"data.frame_size={size}")
    cfg = build_run_config(name, PAPER_DATASET.get(name, "mtl_aqa"), overrides=overrides)
    torch.manual_seed(0)
    method = METHODS.get(name)(cfg)
    if hasattr(method, "leaves"):
        method.leaves = MTL_LEAVES.clone()
    model = method.build_model().eval()
    state = {"method": name, "config": to_dict(cfg), "model": model.state_dict()}
    path = folder / f"{name}.pt"
    save_checkpoint(path, state)
    scorer = Scorer.from_checkpoint(path)
    if name in ("core", "tpt", "fdtsa"):  # the bank best.pt would carry
        batch = scorer._batch(clip, DIFFICULTY)[0]
        scorer.state["exemplar_bank"] = random_bank(method, scorer.model, batch)
    return scorer


def timed(fn, cpu: list | None = None) -> tuple[float, object]:
    """(wall seconds, fn()); with ``cpu``, this process's CPU seconds appended to it (on a
    machine shared with other work the CPU time varies much less than the wall time)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return wall, out


def as_scored(fn):
    """``fn`` run under the allocator setting ``Scorer.score`` runs under (aqa.allocator: freed
    memory reused during the call, handed back after it), so both sides of a ratio get it."""
    def run():
        with reuse_freed_memory():
            return fn()
    return run


def bench_method(name: str, clip: Path, repeats: int, size: int | None, folder: Path) -> dict:
    if name not in METHODS.names():
        return {"status": "not registered"}
    t0 = time.perf_counter()
    try:
        scorer = scorer_for(name, size, folder, clip)
        batch = scorer._batch(clip, DIFFICULTY)[0]  # the clip tensor, decoded once, untimed
    except AQAError as exc:
        return {"status": "error", "note": str(exc)}
    backbone = scorer.model.backbone
    pack = clip_pack(scorer.model, batch["video"])
    score_s, back_s, score_cpu, back_cpu, score = [], [], [], [], None
    with torch.no_grad():
        try:
            scorer.score(clip, difficulty=DIFFICULTY)  # warm-up: first-call allocations
        except AQAError as exc:  # a method that scores no clip (pecop)
            return {"status": "n/a", "note": str(exc)}
        backbone(pack)
        # TSA: also the network itself (the backbone with the tube attention between its two
        # stages, and the head) on the same tensor and the tube estimated before timing
        tubes = scorer.method.tubes(batch)[0] if name == "tsa" else None
        net_s, net_cpu = [], []
        for _ in range(repeats):  # interleaved: the two sides see the same machine load
            s, result = timed(lambda: scorer.score(clip, difficulty=DIFFICULTY), score_cpu)
            score_s.append(s)
            score = result.score
            back_s.append(timed(as_scored(lambda: backbone(pack)), back_cpu)[0])
            if tubes is not None:
                net_s.append(timed(as_scored(lambda: scorer.model(batch["video"], tubes=tubes)),
                                   net_cpu)[0])
    med = statistics.median
    out = {"status": "ok", "frames": tuple(batch["video"].shape[2:]),
           "backbone_input": list(pack.shape), "score_s": round(med(score_s), 3),
           "backbone_s": round(med(back_s), 3),
           "score_vs_backbone": round(med(score_s) / med(back_s), 3),
           "score_cpu_s": round(med(score_cpu), 3), "backbone_cpu_s": round(med(back_cpu), 3),
           "score_vs_backbone_cpu": round(med(score_cpu) / med(back_cpu), 3),
           "score_runs_s": [round(x, 3) for x in score_s],
           "backbone_runs_s": [round(x, 3) for x in back_s],
           "stages_s": {k: round(v, 3) for k, v in result.timings.items()}, "score": score}
    if net_s:
        out.update({"network_s": round(med(net_s), 3), "network_cpu_s": round(med(net_cpu), 3),
                    "score_vs_network": round(med(score_s) / med(net_s), 3),
                    "score_vs_network_cpu": round(med(score_cpu) / med(net_cpu), 3),
                    "network_vs_backbone": round(med(net_s) / med(back_s), 3)})
    log(f"{name}: score {out['score_s']} s, backbone {out['backbone_s']} s -> "
        f"{out['score_vs_backbone']} (CPU {out['score_vs_backbone_cpu']}; "
        f"{time.perf_counter() - t0:.0f} s)")
    return out


def allocator_ab(clip: Path, methods: list[str], repeats: int, size: int | None,
                 in_thread: bool) -> dict:
    """Each method's ``Scorer.score`` alternately with the C library's defaults
    (``AQA_ALLOCATOR=system``, read at each call) and with freed memory reused: median wall
    seconds and minor page faults a score, ``repeats`` scores each, after one warm-up."""
    import os
    import resource
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1) if in_thread else None
    out = {"in_thread": in_thread, "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
           "repeats": repeats, "clip": clip.name, "methods": {}}
    saved = os.environ.get("AQA_ALLOCATOR")
    try:
        with tempfile.TemporaryDirectory(prefix="bench_score_") as folder:
            for name in methods:
                try:
                    scorer = scorer_for(name, size, Path(folder), clip)

                    def once():
                        work = lambda: scorer.score(clip, difficulty=DIFFICULTY)  # noqa: E731
                        return pool.submit(work).result() if pool else work()

                    once()
                except AQAError as exc:
                    out["methods"][name] = {"status": "n/a", "note": str(exc)}
                    continue
                runs = {"system": [], "reuse": []}
                faults = {"system": [], "reuse": []}
                for i in range(2 * repeats):
                    mode = ("system", "reuse")[i % 2]
                    os.environ["AQA_ALLOCATOR"] = mode
                    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    runs[mode].append(timed(once)[0])
                    faults[mode].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
                med = statistics.median
                row = {k: {"s": round(med(v), 3), "runs_s": [round(x, 3) for x in v],
                           "faults": int(med(faults[k]))} for k, v in runs.items()}
                row["reuse_vs_system"] = round(med(runs["reuse"]) / med(runs["system"]), 3)
                out["methods"][name] = row
                log(f"{name}: defaults {row['system']['s']} s ({row['system']['faults']} faults), "
                    f"reused {row['reuse']['s']} s ({row['reuse']['faults']} faults) -> "
                    f"{row['reuse_vs_system']}")
    finally:
        if saved is None:
            os.environ.pop("AQA_ALLOCATOR", None)
        else:
            os.environ["AQA_ALLOCATOR"] = saved
        if pool:
            pool.shutdown()
    return out


def tpt_vs_core(clip: Path, repeats: int, size: int) -> dict:
    """TPT's and CoRe's query features of the same clip tensor through one I3D."""
    from aqa.models.base import clip_features

    cfg = build_run_config("tpt", "mtl_aqa", overrides=["backbone.weights=",
                                                        f"data.frame_size={size}"])
    torch.manual_seed(0)
    tpt = METHODS.get("tpt")(cfg).build_model().eval()
    core_cfg = build_run_config("core", "mtl_aqa", overrides=["backbone.weights="]).model
    video = torch.randint(0, 256, (1, 3, cfg.data.num_frames, size, size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))

    def core_query():
        return clip_features(tpt.backbone, video, core_cfg.clip_starts, core_cfg.clip_len)

    tpt_s, core_s, tpt_cpu, core_cpu = [], [], [], []
    with torch.no_grad():
        core_query(), tpt.video_features(video)  # warm-up
        for _ in range(repeats):
            tpt_s.append(timed(as_scored(lambda: tpt.video_features(video)), tpt_cpu)[0])
            core_s.append(timed(as_scored(core_query), core_cpu)[0])
    med = statistics.median
    t, c = med(tpt_s), med(core_s)
    log(f"query: TPT 20x8 {t:.2f} s, CoRe 10x16 {c:.2f} s -> {t / c:.3f} "
        f"(CPU {med(tpt_cpu) / med(core_cpu):.3f})")
    return {"tpt_query_s": round(t, 3), "core_query_s": round(c, 3),
            "tpt_vs_core_query": round(t / c, 3),
            "tpt_vs_core_query_cpu": round(med(tpt_cpu) / med(core_cpu), 3),
            "tpt_runs_s": [round(x, 3) for x in tpt_s],
            "core_runs_s": [round(x, 3) for x in core_s],
            "clips": {"tpt": f"{len(tpt.clip_starts)} x {tpt.clip_len}",
                      "core": f"{len(core_cfg.clip_starts)} x {core_cfg.clip_len}"}}


def test_clips(size: int, voters: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A query and ``voters`` exemplars, uint8 (1, 3, 103, size, size), torch.Generator seed 0
    (what the official CoRe test loop was run on: OFFICIAL_CORE_TEST)."""
    g = torch.Generator().manual_seed(0)
    shape = (1, 3, 103, size, size)
    query = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    return query, [torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
                   for _ in range(voters)]


# CoRe's official test loop run by the official code itself (network_forward_test of
# yuxumin/CoRe @f7881a9: the query through I3D again beside each voter), on the inputs of
# ``core_test_vs_official`` (the parity weights of tests/parity_core_data.core_model; a query and
# 10 exemplars of random uint8 103x224x224 frames, torch.Generator seed 0, ImageNet-normalised as
# its loader does; exemplar completeness 15..25, DD 3.0; Group_helper on their differences).
# Command: a scratch runner outside the repository, `python run_core.py test 224 10`, on the
# 2-core AMD EPYC of docs/performance.md, 2026-12-07. ``runs``: each of its runs, wall and CPU s.
OFFICIAL_CORE_TEST = {"commit": "yuxumin/CoRe@f7881a9",
                      "command": "python run_core.py test 224 10 (scratch runner, not in the "
                                 "repository; docs/performance.md)",
                      "voters": 10, "score": 93.0092041015625,
                      "runs": [[154.357, 288.755], [150.744, 281.695]]}


def core_test_vs_official(size: int = 224, voters: int = 10, repeats: int = 1) -> dict:
    """Our test path for the inputs of OFFICIAL_CORE_TEST: the bank (each exemplar through I3D
    once, as ``aqa eval`` does for the whole training split) and a query (its 10 clips once, then
    the tree against the voters' bank rows), with the official code's recorded numbers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from parity_core_data import core_model

    from aqa.models.group_tree import build_leaves

    query, exemplars = test_clips(size, voters)
    completeness = torch.linspace(15.0, 25.0, voters)
    cfg = build_run_config("core", "mtl_aqa", overrides=[
        "backbone.weights=", "backbone.family=hassony2", "backbone.input_norm=imagenet",
        f"model.voter_number={voters}"])
    method = METHODS.get("core")(cfg)
    values = completeness.tolist()
    method.leaves = build_leaves([abs(a - b) for i, a in enumerate(values) for b in values[i + 1:]],
                                 cfg.model.depth, cfg.model.score_range)
    model = method.build_model()
    model.load_state_dict({**core_model().state_dict(), "leaves": method.leaves})
    model.eval()
    samples = [Sample(id=f"ex{i}", video=Path(""), score=float(c) * DIFFICULTY,
                      difficulty=DIFFICULTY) for i, c in enumerate(values)]
    batch = {"id": ["query"], "difficulty": torch.tensor([DIFFICULTY]), "video": query}
    bank_s, query_s, bank_cpu, query_cpu, score = [], [], [], [], None
    with torch.no_grad():
        for _ in range(repeats):
            wall, feats = timed(lambda: torch.cat([model.video_features(v) for v in exemplars]),
                                bank_cpu)
            bank_s.append(wall)
            method._bank = B.bank_from(samples, feats, "difficulty")
            wall, pred = timed(lambda: method.predict(model, batch), query_cpu)
            query_s.append(wall)
            score = float(pred[0])
    med = statistics.median
    out = {"size": size, "voters": voters, "repeats": repeats,
           "ours": {"bank_s": round(med(bank_s), 3), "bank_cpu_s": round(med(bank_cpu), 3),
                    "query_s": round(med(query_s), 3), "query_cpu_s": round(med(query_cpu), 3),
                    "score": score},
           "official_recorded": OFFICIAL_CORE_TEST}
    runs = OFFICIAL_CORE_TEST["runs"]
    if runs and size == 224 and voters == OFFICIAL_CORE_TEST["voters"]:
        off_wall, off_cpu = med(r[0] for r in runs), med(r[1] for r in runs)
        out["score_abs_diff_vs_official"] = abs(score - OFFICIAL_CORE_TEST["score"])
        out["query_vs_official_loop"] = round(med(query_s) / off_wall, 3)
        out["query_vs_official_loop_cpu"] = round(med(query_cpu) / off_cpu, 3)
        out["query_and_bank_vs_official_loop"] = round((med(query_s) + med(bank_s)) / off_wall, 3)
        out["note"] = ("ratios against the official numbers recorded in another process on the "
                       "same machine; the bank is built once for a whole test set (1,059 training "
                       "videos for MTL-AQA's 353 test queries), the official loop pays its voters "
                       "on every query")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="run each side once")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHOD_NAMES))
    ap.add_argument("--clip", default=None, help="video to score (default: the real dive of "
                                                 "../shared/data, else a synthetic clip)")
    ap.add_argument("--size", type=int, default=None,
                    help="frame size for every method (default: each method's paper size)")
    ap.add_argument("--query-size", type=int, default=224, help="frame size of the TPT vs CoRe "
                                                                "query (default 224)")
    ap.add_argument("--no-query", action="store_true", help="skip the TPT vs CoRe query")
    ap.add_argument("--vs-official-test", action="store_true",
                    help="only CoRe's test path beside the official test loop's recorded numbers "
                         "(the parity weights, 10 voters, 224 px)")
    ap.add_argument("--allocator-ab", action="store_true",
                    help="only the allocator A/B: each method's Scorer.score alternately with "
                         "the C library's defaults and with freed memory reused (aqa.allocator)")
    ap.add_argument("--in-thread", action="store_true",
                    help="--allocator-ab: score on a worker thread, as the app's server does "
                         "(run it under `aqa app`'s GLIBC_TUNABLES to measure the app)")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    if args.allocator_ab:
        clip = Path(args.clip) if args.clip else default_clip()
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        print(json.dumps(allocator_ab(clip, methods, repeats, args.size, args.in_thread)))
        return
    if args.vs_official_test:
        print(json.dumps(core_test_vs_official(args.size or 224, 10, repeats)))
        return
    clip = Path(args.clip) if args.clip else default_clip()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_score_") as folder:
        for name in methods:
            results[name] = bench_method(name, clip, repeats, args.size, Path(folder))
    out = {"device": "cpu", "threads": torch.get_num_threads(), "repeats": repeats,
           "timing": "wall-clock medians, interleaved; *_cpu: this process's CPU seconds",
           "clip": clip.name, "weights": "random init (timing does not depend on the values)",
           "baseline": "one pass of the method's backbone over the clips it cuts from the same "
                       "uint8 clip tensor, decoded before timing",
           "allocator": ("freed memory reused during each call on both sides (aqa.allocator)"
                         if allocator_reuse() else "the C library's defaults (AQA_ALLOCATOR="
                         "system, or not glibc)"),
           "score_vs_backbone": results.get("core", {}).get("score_vs_backbone"),
           "methods": {k: v for k, v in results.items()},
           "per_method_score_vs_backbone": {k: v.get("score_vs_backbone")
                                            for k, v in results.items()},
           "per_method_score_vs_backbone_cpu": {k: v.get("score_vs_backbone_cpu")
                                                for k, v in results.items()}}
    if not args.no_query:
        out.update(tpt_vs_core(clip, repeats, args.query_size))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
