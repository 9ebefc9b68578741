"""``python -m aqa protocol list|run|show``: the literature's cross-validation protocols (JIGSAWS
4-fold, LOSO, LOUO a task; AQA-7 per class) as groups of runs, and their numbers fold by fold
(the library side: ``aqa/protocols.py``)."""

from __future__ import annotations

import sys

from aqa.cli import common
from aqa.cli import jobs as cli_jobs
from aqa.cli.common import print_json as _print_json


EPOCH_TEXT = {"best": "each run's best epoch", "last": "each run's last epoch",
              "last10": "each run's mean over its last 10 epochs"}


def add_parsers(sub) -> None:
    actions = sub.add_parser(
        "protocol", help="cross-validation protocols: run one as a group of runs, show its folds"
    ).add_subparsers(dest="protocol_command", required=True, metavar="ACTION")

    p = actions.add_parser("list", help="the protocols: dataset, runs, how the number is formed")
    common.add_json(p)

    p = actions.add_parser("run", help="submit a protocol's folds (or classes) as one group of "
                                       "runs (one group a task for JIGSAWS)")
    p.add_argument("protocol", help="protocol name (see `aqa protocol list`)")
    p.add_argument("--method", default=None, help="registered method (see `aqa methods`); "
                                                  "required unless the --config file names it")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a config file every run starts from (`aqa config show RUN` writes one); "
                        "--set and --data-root apply on top, the protocol's keys last")
    p.add_argument("--task", default=None,
                   help="JIGSAWS task: Suturing, Needle_Passing, Knot_Tying (any case; S, NP, KT), a comma "
                        "list, or all (one group a task)")
    p.add_argument("--dataset", default=None,
                   help="optional: checked against the protocol's dataset")
    p.add_argument("--data-root", default=None, help="the dataset's folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run, such as train.epochs=5 (repeatable)")
    cli_jobs.add_executor_args(p)
    common.add_runs_dir(p)
    common.add_json(p)

    p = actions.add_parser("show", help="a protocol group's number and each fold's (or class's); "
                                        "no GROUP: every protocol group of the workspace")
    p.add_argument("groups", nargs="*", metavar="GROUP",
                   help="group ids (`aqa protocol run` prints them); several JIGSAWS groups of "
                        "one protocol and method, one a task, also give the across-task number")
    p.add_argument("--epoch", default="best", choices=tuple(EPOCH_TEXT),
                   help="each run's best epoch (its own selection rule), its last, or last10: "
                        "the mean of its last ten epochs' test rho (MUSDL's JIGSAWS number)")
    common.add_runs_dir(p)
    common.add_json(p)


def cmd_protocol(args) -> int:
    return {"list": _list, "run": _run, "show": _show}[args.protocol_command](args)


def _list(args) -> int:
    from aqa.protocols import PROTOCOLS

    rows = [{"name": p.name, "dataset": p.dataset, "kind": p.kind, "aggregate": p.aggregate,
             "about": p.about} for p in PROTOCOLS.values()]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']:<15} {r['dataset']:<8} {r['about']}")
    return 0


def _run(args) -> int:
    from aqa.cli.train import config_values
    from aqa.jobs import SubmitRequest
    from aqa.protocols import check_dataset, get, submit_protocol

    protocol = get(args.protocol)
    if args.config:  # the file's dataset must be the protocol's; its method fills --method
        from aqa.config_files import read_config_file

        check_dataset(protocol, read_config_file(args.config).get("dataset"))
    args.dataset = args.dataset or protocol.dataset
    check_dataset(protocol, args.dataset)
    values = config_values(args)  # --method from the file, or the "which method?" error
    request = SubmitRequest(args.method, args.dataset, values=values, data_root=args.data_root,
                            overrides=list(args.overrides), gpus=args.gpus, nproc=args.nproc,
                            executor=args.executor, slurm=cli_jobs.slurm_args(args),
                            argv=["aqa", "protocol", *sys.argv[2:]])
    groups = submit_protocol(common.runs_dir(args), args.protocol, request, task=args.task)
    if args.json:
        _print_json(groups)
        return 0
    for g in groups:
        title = f"{g['protocol']} {g['task']}".strip()
        print(f"{title}: group {g['group_id']}, {len(g['runs'])} runs "
              f"({'mean' if g['aggregate'] == 'mean' else 'Fisher-z mean'} of their rho)")
        print(f"  folds: {g['folds']}")
        for r in g["runs"]:
            print(f"  {r['member']:<14} {r['run_id']}")
    ids = " ".join(g["group_id"] for g in groups)
    print(f"see the folds: python -m aqa protocol show {ids}")
    return 0


def _show(args) -> int:
    from aqa.compare import SELECTIONS
    from aqa.protocols import group_result, protocol_groups, tasks_summary
    from aqa.runs import index

    root = common.runs_dir(args)
    runs = index.list_runs(root)
    ids = args.groups or list(protocol_groups(runs))
    results = [group_result(root, gid, epoch=args.epoch, runs=runs) for gid in ids]
    across = tasks_summary(results)
    if args.json:
        _print_json({"groups": results, "across_tasks": across})
        return 0
    if not results:
        print("no protocol groups yet; start one with `python -m aqa protocol run NAME ...`")
    for r in results:
        how = "mean" if r["aggregate"] == "mean" else "Fisher-z mean"
        std = f" ± {r['rho_std']:.4f}" if r.get("rho_std") is not None else ""
        print(f"{r['label']} · {r['method']} · group {r['group_id']} · {r['runs']} finished")
        print(f"  rho ({how} of the {'classes' if r['aggregate'] == 'fisher_z' else 'folds'}, "
              f"{EPOCH_TEXT[r['epoch']]}): {_num(r['rho'])}{std}")
        if r.get("rho_official") is not None:
            print(f"  rho official ({SELECTIONS['official']}): {_num(r['rho_official'])}; "
                  f"honest ({SELECTIONS['honest']}): {_num(r.get('rho_honest'))}")
        for m in r["members"]:
            print(f"    {str(m['member']):<18} rho {_num(m['rho'])}  epoch {m['epoch']}  "
                  f"{m['status']:<9} {m['run_id']}")
        if r.get("note"):
            print(f"  note: {r['note']}")
    if across:
        parts = ", ".join(f"{t} {_num(v)}" for t, v in across["per_task"].items())
        print(f"{across['label']}: {_num(across['rho'])} ({parts})")
    return 0


def _num(value) -> str:
    return "—" if value is None else f"{value:.4f}"


COMMANDS = {"protocol": cmd_protocol}
