"""``python -m aqa export tensorboard|mlflow RUN...``: runs out to TensorBoard or an MLflow store."""

from __future__ import annotations

import sys

from aqa.cli import common


def add_parsers(sub) -> None:
    export = sub.add_parser("export", help="export runs to TensorBoard or MLflow").add_subparsers(
        dest="export_target", required=True, metavar="TARGET")
    p = export.add_parser("tensorboard", help="write event files: <logdir>/<run id>/")
    p.add_argument("--logdir", default=None,
                   help="TensorBoard log folder (default: <runs-dir>/tensorboard)")
    _common(p)
    p = export.add_parser("mlflow", help="log runs to an MLflow tracking store")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<runs-dir>/mlflow.db)")
    p.add_argument("--experiment", default="aqa", help="MLflow experiment name (default aqa)")
    _common(p)


def _common(p) -> None:
    p.add_argument("run_ids", nargs="+", metavar="RUN",
                   help="run ids (or unique prefixes/suffixes)")
    p.add_argument("--replace", action="store_true",
                   help="replace an earlier export of the same run (default: refuse)")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="leave checkpoints/ out (run.json, stdout.log, predictions/ still go)")
    common.add_runs_dir(p)
    common.add_json(p)


def cmd_export(args) -> int:
    from dataclasses import asdict

    from aqa import exports
    from aqa.runs import store

    root = common.runs_dir(args)
    run_dirs = [store.find_run(root, ref) for ref in args.run_ids]
    if args.export_target == "tensorboard":
        logdir = args.logdir or root / "tensorboard"
        done = exports.to_tensorboard(run_dirs, logdir, replace=args.replace,
                                      checkpoints=not args.no_checkpoints)
        hint = f"view with: tensorboard --logdir {logdir}"
    else:
        uri = args.tracking_uri or exports.default_tracking_uri(root)
        done = exports.to_mlflow(run_dirs, uri, experiment=args.experiment,
                                 replace=args.replace, checkpoints=not args.no_checkpoints)
        hint = f"view with: mlflow ui --backend-store-uri {uri}"
    if args.json:
        common.print_json([asdict(d) for d in done])
        return 0
    for d in done:
        print(f"{d.run_id} -> {d.where}: {d.metrics} metric points, {d.params} params, "
              f"{d.files} files")
    print(hint, file=sys.stderr)
    return 0


COMMANDS = {"export": cmd_export}
