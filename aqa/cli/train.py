"""``python -m aqa demo`` and ``python -m aqa train``: start a run (the demo, or any method);
``python -m aqa config show RUN``: a run's config as a file that ``train --config`` reads."""

from __future__ import annotations

import sys
import time

from aqa.cli import common
from aqa.cli import jobs as cli_jobs
from aqa.cli.common import print_json as _print_json
from aqa.cli.runs import follow as _follow

# The demo: tiny3d + linear head on the synthetic dives, sized to finish in a few minutes on
# two CPU cores and reach Spearman rho >= 0.7 on the held-out clips.
DEMO_METHOD, DEMO_DATASET = "regression", "synthetic"
DEMO_OVERRIDES = ["train.epochs=6", "train.batch_size=8", "optim.lr=0.002",
                  "optim.schedule=cosine", "train.log_every=10"]


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="render the synthetic dives and start a demo training run")
    common.add_runs_dir(p)
    common.add_json(p)
    p.add_argument("--follow", action="store_true", help="print the run's output until it ends")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config value of the demo run (repeatable)")

    p = sub.add_parser("train", help="start a training run as a detached process")
    p.add_argument("--method", default=None, help="registered method (see `aqa methods`); "
                                                  "required unless the --config file names it")
    p.add_argument("--dataset", default=None, help="registered dataset (see `aqa methods`); "
                                                   "required unless the --config file names it")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a config file (.toml, .yaml or .json: `aqa config show RUN` writes one); "
                        "--set and --data-root apply on top of it")
    p.add_argument("--data-root", default=None, help="the dataset's folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as train.epochs=5 (repeatable)")
    p.add_argument("--allow-missing", action="store_true",
                   help="train on the annotated samples that are present; the exclusions are "
                        "recorded in the run (see `aqa doctor`)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="submit a group of N runs that differ only in train.seed (the config's "
                        "seed, seed + 1, ..., seed + N - 1); `aqa compare` shows the group as one "
                        "row, mean ± std")
    cli_jobs.add_executor_args(p)
    p.add_argument("--follow", action="store_true", help="print the run's output until it ends")
    common.add_runs_dir(p)
    common.add_json(p)

    p = sub.add_parser("config", help="a run's config as a TOML/YAML/JSON file (`config show`)")
    config_sub = p.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    show = config_sub.add_parser("show", help="print a run's resolved config in a format that "
                                              "`aqa train --config FILE` reads back")
    show.add_argument("run", help="a run id (or a unique prefix/suffix of it)")
    show.add_argument("--format", default="toml", choices=("toml", "yaml", "json"),
                      help="the file format (default: toml)")
    common.add_runs_dir(show)


def config_values(args) -> dict | None:
    """Read ``--config`` into ``args``: the file's values, and ``args.method``/``args.dataset``
    from it where the command line gives none (a clash is an error, never a silent choice)."""
    from aqa.config_files import read_config_file
    from aqa.errors import ConfigError

    values = read_config_file(args.config) if getattr(args, "config", None) else None
    for key in ("method", "dataset"):
        given, in_file = getattr(args, key), (values or {}).get(key)
        if given and in_file and given != in_file:
            raise ConfigError(f"--{key} {given} but {args.config} says {key} = {in_file!r}; "
                              f"drop one of them")
        if not given and not in_file:
            where = f" or a {key!r} key in {args.config}" if values is not None else ""
            raise ConfigError(f"which {key}? give --{key}{where} (see `aqa methods`)")
        setattr(args, key, given or in_file)
    return values


def cmd_demo(args) -> int:
    from aqa.config import build_run_config
    from aqa.jobs import submit
    from aqa.registry import DATASETS
    from aqa.runs.store import resolve_runs_dir

    runs_dir = resolve_runs_dir(args.runs_dir)
    overrides = DEMO_OVERRIDES + list(args.overrides)
    cfg = build_run_config(DEMO_METHOD, DEMO_DATASET, overrides=overrides)
    entry = DATASETS.get(DEMO_DATASET)
    data = entry.resolve(cfg.data, runs_dir)
    if not args.json:
        print(f"rendering the synthetic dives into {data.root} (skipped if already there) ...")
    t0 = time.time()
    entry.prepare(data)
    path = submit(runs_dir, DEMO_METHOD, DEMO_DATASET, overrides=overrides,
                  argv=["aqa", "demo", *sys.argv[2:]])
    if args.json:
        _print_json({"run_id": path.name, "run_dir": str(path), "data_root": data.root})
    else:
        print(f"data ready in {time.time() - t0:.1f} s; started run {path.name}")
        print(f"watch it: python -m aqa runs logs {path.name} --follow")
    if args.follow:
        return _follow(path)
    return 0


def cmd_train(args) -> int:
    from aqa.errors import ConfigError
    from aqa.jobs import SubmitRequest, submit
    from aqa.runs.store import resolve_runs_dir

    values = config_values(args)
    overrides = args.overrides + (["data.allow_missing=true"] if args.allow_missing else [])
    if args.seeds is not None and args.follow:
        raise ConfigError("--follow shows one run; with --seeds follow each member with "
                          "`python -m aqa runs logs RUN --follow`")
    runs_dir = resolve_runs_dir(args.runs_dir)
    request = SubmitRequest(args.method, args.dataset, values=values, data_root=args.data_root,
                            overrides=overrides, gpus=args.gpus, nproc=args.nproc,
                            argv=["aqa", args.command, *sys.argv[2:]], executor=args.executor,
                            slurm=cli_jobs.slurm_args(args))
    try:
        if args.seeds is not None:
            return _train_seeds(args, runs_dir, request)
        path = submit(runs_dir, request)
    except ConfigError as exc:  # the file's own error (not --set's): say which file
        if values is not None and _file_error(args, values) == str(exc):
            raise ConfigError(f"{args.config}: {exc}") from None
        raise
    if args.json:
        _print_json({"run_id": path.name, "run_dir": str(path)})
    else:
        print(path.name)
    if args.follow:
        return _follow(path)
    return 0


def _train_seeds(args, runs_dir, request) -> int:
    """``train --seeds N``: a group of N runs, seeds train.seed + 0..N-1 (aqa.groups)."""
    from aqa.config import build_run_config
    from aqa.groups import seed_members, submit_group

    if args.seeds < 1:
        from aqa.errors import ConfigError
        raise ConfigError(f"--seeds {args.seeds}: give the number of runs, 1 or more "
                          "(e.g. --seeds 5)")
    base = build_run_config(request.method, request.dataset, overrides=request.overrides,
                            values=request.values).train.seed
    group_id, run_ids = submit_group(runs_dir, request, seed_members(base, args.seeds),
                                     kind="seeds", protocol="seeds", aggregate="mean")
    if args.json:
        _print_json({"group_id": group_id, "run_ids": run_ids,
                     "seeds": list(range(base, base + args.seeds)),
                     "run_dirs": [str(runs_dir / r) for r in run_ids]})
    else:
        print(f"group {group_id}: {args.seeds} runs, seeds {base}..{base + args.seeds - 1}")
        print("\n".join(run_ids))
        print(f"compare them: python -m aqa compare {group_id} [--members]")
    return 0


def _file_error(args, values: dict) -> str | None:
    from aqa.config import build_run_config
    from aqa.errors import ConfigError
    try:
        build_run_config(args.method, args.dataset, values=values)
    except ConfigError as exc:
        return str(exc)
    return None


def cmd_config(args) -> int:
    from aqa.config_files import dump_config
    from aqa.runs.store import find_run, read_run

    path = find_run(common.runs_dir(args), args.run)
    config = dict(read_run(path)["config"])
    header = [f"config of run {path.name}; train a copy: aqa train --config FILE"]
    group = config.get("group") or {}
    if group.get("id"):  # a copy is not one more member of the group
        del config["group"]
        header.append(f"(member {group.get('member')} of group {group['id']}; the group section "
                      "is left out: a copy trains on its own)")
    print(dump_config(config, args.format, header=header), end="")
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "config": cmd_config}
