"""``python -m aqa score`` and ``python -m aqa eval``: a checkpoint on one clip, or on a split."""

from __future__ import annotations

import sys
from pathlib import Path

from aqa.cli import common
from aqa.cli.common import print_json as _print_json
from aqa.cli.common import runs_dir as _runs_dir


def add_parsers(sub) -> None:
    p = sub.add_parser("score", help="score one clip with a checkpoint")
    p.add_argument("video", help="the clip (mp4, mov, avi, mkv, webm)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file (e.g. RUN/checkpoints/best.pt)")
    p.add_argument("--difficulty", type=float, default=None, help="the dive's difficulty degree")
    p.add_argument("--dive-number", default=None,
                   help="FineDiving TSA: the dive number (e.g. 107B): exemplars of that dive, the "
                        "official protocol; without it, exemplars by difficulty")
    p.add_argument("--start", type=int, default=None, help="first frame to use (0-based)")
    p.add_argument("--end", type=int, default=None, help="frame to stop before")
    p.add_argument("--start-s", type=float, default=None, metavar="S",
                   help="trim: the second to start at (instead of --start); only the frames of "
                        "the range are decoded")
    p.add_argument("--end-s", type=float, default=None, metavar="E",
                   help="trim: the second to stop before (instead of --end)")
    p.add_argument("--check-sport", action="store_true",
                   help="also ask the Kinetics-400 I3D whether the clip looks like the sport the "
                        "model was trained on (a warning if not; a few seconds more on a CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--tube", default=None, choices=["auto", "boxes", "motion", "full"],
                   help="TSA: the athlete's tube (default: the checkpoint's; a clip has no "
                        "boxes, so auto estimates it from motion; full = the whole frame)")
    common.add_json(p)

    p = sub.add_parser("eval", help="evaluate a run's best checkpoint (or a checkpoint file)")
    p.add_argument("ref", help="a run id (best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--data-root", default=None, help="the dataset's folder, if it moved")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", default=None, help="predictions CSV (default: the run's predictions/)")
    p.add_argument("--exemplars", default=None, choices=("dive_number", "difficulty"),
                   help="pair methods: choose the exemplars by the query's ground-truth dive "
                        "number (FineDiving's official test) or by its difficulty (without the "
                        "dive number); default: the run's model.exemplar_rule")
    common.add_runs_dir(p)
    common.add_json(p)


def cmd_score(args) -> int:
    from aqa.scoring import Scorer

    def progress(done: int, total: int) -> None:  # feature methods: the extraction of a program
        print(f"\rfeatures: {done}/{total} clips", end="\n" if done >= total else "",
              file=sys.stderr, flush=True)

    scorer = Scorer.from_checkpoint(args.checkpoint, device=args.device)
    result = scorer.score(
        args.video, difficulty=args.difficulty, start=args.start, end=args.end, tube=args.tube,
        progress=progress, dive_number=args.dive_number, start_s=args.start_s, end_s=args.end_s)
    check = None
    if args.check_sport:
        from aqa.sport import check_frames, scored_frames

        check = check_frames(scorer.cfg, result.frames, args.video, scored_frames(result))
    if args.json:
        _print_json({**result.to_dict(), **({"sport_check": check.to_dict()} if check else {})})
        return 0
    what = f"{result.target} " if result.contributions and result.target else ""
    print(f"{what}score {result.score:.2f}  ({result.method}, {Path(result.checkpoint).name})")
    if result.transitions:
        t = result.transitions
        print(f"  step transitions at frames {t['positions']} of the {t['frames_seen']} seen "
              f"(clip frames {t['frames']}"
              + (f", {t['seconds'][0]:.2f} s and {t['seconds'][1]:.2f} s)" if t["seconds"] else ")"))
    r = result.scored_range
    if r:
        print(f"  scored frames {r['start_frame']}–{r['end_frame'] - 1}"
              + (f" ({r['start_s']:.2f}–{r['end_s']:.2f} s)" if r["fps"] else ""))
    if result.protocol:
        print(f"  exemplars by {result.protocol}: " + ", ".join(
            f"{e['id']} ({e['score']:.2f})" for e in result.exemplars))
    if result.voters:
        print(f"  {len(result.voters)} voters: {min(result.voters):.2f}–{max(result.voters):.2f}, "
              f"std {result.spread:.2f}")
    if check:
        print(f"  {'sport' if check.ok is not False else 'WARNING'}: {check.message}")
    for note in result.notes:
        print(f"  note: {note}")
    c = result.contributions
    if c:
        print("  grades: " + ", ".join(f"{g:.1f} pts x {w:.2f}" for g, w in
                                       zip(c.get("grades", []), c.get("grade_weights", []))))
        top = sorted(range(len(c["per_clip"])), key=lambda i: -c["per_clip"][i])[:3]
        print("  clips giving the most points: " + ", ".join(
            f"{c['clip_seconds'][i]:.1f} s ({c['per_clip'][i]:.2f})" for i in top))
    print("  time: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    if result.decoder:
        print(f"  frames: {result.decoder}")
    return 0


def cmd_eval(args) -> int:
    from aqa.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.ref, split=args.split, runs_dir=_runs_dir(args),
                                 data_root=args.data_root, device=args.device, out=args.out,
                                 exemplars=args.exemplars)
    if args.json:
        _print_json(result)
        return 0
    m, (lo, hi) = result["metrics"], result["rho_ci95"]
    if "l2" not in m:  # a classifier (TSA on FR-FS): accuracy
        print(f"{result['checkpoint']} on {result['split']} ({result['samples']} clips): "
              + "  ".join(f"{k} {v:.4f}" for k, v in m.items())
              + f"\npredictions: {result['predictions']}")
        return 0
    print(f"{result['checkpoint']} on {result['split']} ({result['samples']} clips): "
          f"rho {m['rho']:.4f} [95% CI {lo:.4f}, {hi:.4f}]  L2 {m['l2']:.3f}  "
          f"RL2x100 {result['rl2_x100']:.3f}"
          + "".join(f"  {k} {m[k]:.4f}" for k in ("tiou_50", "tiou_75") if k in m)
          + f"\npredictions: {result['predictions']}")
    if result.get("protocol"):
        print("protocol: " + result["protocol"]["summary"])
    return 0


COMMANDS = {"score": cmd_score, "eval": cmd_eval}
