"""``python -m aqa features ...``: per-clip features of long programs.

Wired into ``aqa.cli`` through ``add_parsers(subparsers)`` and ``COMMANDS``::

    features extract --dataset fisv|rg|folder --data-root P --out DIR [--backbone i3d|swin3d]
                     [--weights kinetics400|FILE|""] [--download-weights] [--clip-len 32]
                     [--stride 16] [--fps 0] [--frame-size 224] [--align start|center] [--frames square|gdlt]
                     [--device auto|cpu|cuda|cuda:N,..]
                     [--follow] [--json]
    features recipe DIR [--json]          how the features in DIR were made (its recipe.json)

``extract`` is a run of the workspace (queued, stoppable, resumable: ``aqa runs resume RUN``
skips the videos already extracted); it prints the run id, and with ``--follow`` its output until
it ends.
"""

from __future__ import annotations

import sys

from aqa.cli import common


def add_parsers(sub) -> None:
    feats = sub.add_parser("features", help="extract per-clip features of whole programs (GDLT's layout)")
    fsub = feats.add_subparsers(dest="features_command", required=True, metavar="SUBCOMMAND")
    p = fsub.add_parser("extract", help="videos -> <out>/<name>.npy (T x D) + recipe.json, as a resumable run")
    p.add_argument("--dataset", required=True, help="fisv, rg or folder: whose videos to extract")
    p.add_argument("--data-root", required=True, help="the dataset's folder (label files and videos)")
    p.add_argument("--out", required=True, help="the feature folder to write (the dataset's data.features)")
    p.add_argument("--backbone", default="i3d", help="i3d (Kinetics-400 I3D, 1024-d; default) or "
                                                     "swin3d (torchvision Swin3D-T, 768-d)")
    p.add_argument("--weights", default="kinetics400",
                   help="kinetics400 (default), a weights file, or '' (random init: tests only)")
    p.add_argument("--download-weights", action="store_true",
                   help="swin3d: let torchvision download its Kinetics-400 weights")
    p.add_argument("--clip-len", type=int, default=32, help="frames a clip window (default 32)")
    p.add_argument("--stride", type=int, default=16, help="frames between window starts (default 16)")
    p.add_argument("--fps", type=float, default=0.0, help="resample videos to this rate first (0 = their own)")
    p.add_argument("--frame-size", type=int, default=224, help="frames resized to this square size (default 224)")
    p.add_argument("--frames", default="square", help="square (each frame resized whole) or gdlt "
                                                       "(GDLT's extractor: short side 256, centre crop 224x300, resize 224x224)")
    p.add_argument("--align", default="start", help="start (windows from frame 0) or center (the "
                                                     "unused frames split before and after, as GDLT's extractor)")
    p.add_argument("--norm", default="", help="input normalisation: unit_range or imagenet "
                                              "(default: the backbone's)")
    p.add_argument("--init-seed", type=int, default=0, help="seed of a random init (--weights '')")
    p.add_argument("--batch-clips", type=int, default=8, help="clips a forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (the GPUs the queue gives), "
                                                    "or cuda:N[,cuda:M] (one worker a GPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. train_labels=train.txt (repeatable)")
    p.add_argument("--follow", action="store_true", help="print the run's output until it ends")
    common.add_runs_dir(p)
    common.add_json(p, help="print the run id and directory as JSON")
    p = fsub.add_parser("recipe", help="print how the features in a folder were made")
    p.add_argument("folder", help="a feature folder")
    common.add_json(p)


def cmd_features(args) -> int:
    return {"extract": cmd_extract, "recipe": cmd_recipe}[args.features_command](args)


def cmd_extract(args) -> int:
    from aqa.cli.runs import follow
    from aqa.features.extract import Recipe
    from aqa.features.submit import submit_extraction

    recipe = Recipe(backbone=args.backbone, weights=args.weights, clip_len=args.clip_len,
                    stride=args.stride, fps=args.fps, frame_size=args.frame_size,
                    normalisation=args.norm, align=args.align, frames=args.frames, init_seed=args.init_seed,
                    download=args.download_weights)
    path = submit_extraction(common.runs_dir(args), args.dataset, args.data_root, args.out, recipe,
                             overrides=args.overrides, device=args.device,
                             batch_clips=args.batch_clips,
                             argv=["aqa", "features", *sys.argv[3:]])
    if args.json:
        common.print_json({"run_id": path.name, "run_dir": str(path)})
    else:
        print(path.name)
    if args.follow:
        return follow(path)
    return 0


def cmd_recipe(args) -> int:
    import json

    from aqa.data.features import recipe_of
    from aqa.errors import DatasetError

    recipe = recipe_of(args.folder)
    if recipe is None:
        raise DatasetError(f"{args.folder} has no recipe.json: its features were not made by "
                           "`aqa features extract` (an official release, or made elsewhere)")
    if args.json:
        common.print_json(recipe)
    else:
        print("\n".join(f"{k}: {json.dumps(v)}" for k, v in recipe.items()))
    return 0


COMMANDS = {"features": cmd_features}
