"""Bench: scoring one 103-frame 224x224 clip with CoRe, the official way vs the exemplar bank.

    python bench/score.py [--quick] [--repeats 3] [--voters 10]

official: for each of the 10 voters, the query and the exemplar go through I3D together
          (2 videos x 10 clips of 16 frames), then the tree -- CoRe's test loop.
bank:     the query goes through I3D once (10 clips); the tree compares it with the cached
          features of the same 10 exemplars.
Random I3D weights (the timing does not depend on them); both predictions are printed and must
agree. Then one training step as the official MTL config (batch 1: a query and an exemplar,
both directions), with its time and the process's peak RSS. The last line is one JSON object.
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[0] = str(Path(__file__).resolve().parents[1])



import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch


from aqa.config import build_run_config  # noqa: E402
from aqa.models.core import CoRe  # noqa: E402
from aqa.models.group_tree import decode  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="run each side once")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--voters", type=int, default=10)
    ap.add_argument("--frames", type=int, default=103)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    torch.manual_seed(0)
    cfg = build_run_config("core", "synthetic", overrides=[
        "backbone.weights=", f"data.num_frames={args.frames}", f"data.frame_size={args.size}"])
    method = CoRe(cfg)
    method.leaves = torch.tensor([[-30.0, -8.5], [-8.5, -6], [-6, -4.5], [-4.5, -3], [-3, -2.5],
                                  [-2.5, -1.5], [-1.5, -0.9118], [-0.9118, 0], [0, 0.9118],
                                  [0.9118, 1.5], [1.5, 2.5], [2.5, 3], [3, 4.5], [4.5, 6],
                                  [6, 8.5], [8.5, 30]], dtype=torch.float64)  # MTL-AQA w/ DD
    model = method.build_model().eval()
    shape = (1, 3, args.frames, args.size, args.size)
    query = torch.randint(0, 256, shape, dtype=torch.uint8)
    exemplars = [torch.randint(0, 256, shape, dtype=torch.uint8) for _ in range(args.voters)]
    ex_scores = torch.linspace(15.0, 25.0, args.voters)  # completeness of each exemplar
    dd = 3.2
    theta = cfg.model.score_range

    with torch.no_grad():
        bank = torch.cat([model.video_features(v) for v in exemplars])  # cached at training time

        def official() -> float:
            total = 0.0
            for v, s in zip(exemplars, ex_scores):
                f = model.video_features(torch.cat([query, v]))  # query and exemplar, 20 clips
                logp, delta = model.head(f[1:], f[:1], (s / theta)[None])
                total += float((s + decode(logp, delta, model.leaves)) * dd)
            return total / len(exemplars)

        def with_bank() -> float:
            f_q = model.video_features(query)  # 10 clips
            logp, delta = model.head(bank, f_q.expand(len(bank), -1), ex_scores / theta)
            return float(((ex_scores + decode(logp, delta, model.leaves)) * dd).mean())

        official_s, official_score = timed(official, repeats)
        bank_s, bank_score = timed(with_bank, repeats)

    method.set_train_mode(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = {"video": query, "exemplar_video": exemplars[0], "score": torch.tensor([60.0]),
             "difficulty": torch.tensor([dd]), "exemplar_score": torch.tensor([64.0]),
             "exemplar_difficulty": torch.tensor([dd])}
    t0 = time.perf_counter()
    loss = method.losses(model, batch)["loss"]
    loss.backward()
    opt.step()
    train_step_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"official {official_s:.2f} s -> {official_score:.4f}; bank {bank_s:.2f} s -> "
          f"{bank_score:.4f}; train step {train_step_s:.2f} s, peak RSS {peak_mb:.0f} MB",
          file=sys.stderr)
    print(json.dumps({"device": "cpu", "threads": torch.get_num_threads(), "frames": args.frames,
                      "size": args.size, "voters": args.voters, "repeats": repeats,
                      "official_s": round(official_s, 3), "bank_s": round(bank_s, 3),
                      "speedup": round(official_s / bank_s, 2),
                      "official_score": official_score, "bank_score": bank_score,
                      "train_step_s": round(train_step_s, 3),
                      "train_peak_rss_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main()
