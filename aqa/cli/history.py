"""A researcher's history on the command line: official checkpoints, configs and training logs.

Wired into ``aqa.cli`` through ``add_parsers(subparsers)`` and ``COMMANDS``::

    import-checkpoint FILE [--method M] [--dataset D]            an official checkpoint as a run
    import-config SOURCE_OR_YAML [-o FILE] [-- OFFICIAL FLAGS]   the equivalent --set overrides (or a config file)
    import-log FILE --method M [--dataset D] [--name N]          each session as a finished run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aqa.cli import common
from aqa.cli.common import print_json as _print_json
from aqa.cli.common import runs_dir as _runs_dir


def add_parsers(sub) -> None:
    p = sub.add_parser("import-checkpoint", help="import an official checkpoint (CoRe's MTL_CoRe.pth, ...)")
    p.add_argument("file", help="the official checkpoint")
    p.add_argument("--method", default=None,
                   help="the method it belongs to (core, tpt, tsa, plain, pecop, usdl, musdl, gdlt, cofinal, fdtsa; detected when omitted)")
    p.add_argument("--dataset", default=None, help="dataset whose training split becomes the exemplar bank")
    p.add_argument("--data-root", default=None, help="that dataset's folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the imported model (repeatable)")
    p.add_argument("--out", default=None, help="where to write the checkpoint (default: a new run)")
    p.add_argument("--device", default="cpu", help="device for building the exemplar bank")
    p.add_argument("--bins", default="auto", choices=("auto", "mtl_aqa", "exemplars"),
                   help="CoRe/TPT: the group tree's bins: mtl_aqa (the MTL-AQA training split's, "
                        "which the released checkpoints used), exemplars (the --dataset's "
                        "training split); auto: exemplars for a benchmark dataset (mtl_aqa, "
                        "aqa7, ...), mtl_aqa for a folder of clips or no dataset")
    common.add_runs_dir(p)
    common.add_json(p)

    p = sub.add_parser("import-config",
                       help="an official config/flags (CoRe's MTL_CoRe.yaml, TPT/TSA-Net/MUSDL/"
                            "PECoP/GDLT/CoFInAl flags) as --set overrides",
                       description="Map an official implementation's options to this project's "
                                   "config. SOURCE is a CoRe YAML file (configs/MTL_CoRe.yaml, "
                                   "or a saved experiments/.../config.yaml) or one of core, tpt, "
                                   "tsa, musdl, musdl-jigsaws, pecop, gdlt, cofinal; the official command-line "
                                   "flags follow after --, e.g. `aqa import-config tpt -- "
                                   "--epoch_num=250 --d_model=512`. Options with no equivalent "
                                   "and unknown options are named in the output.")
    p.add_argument("source", help="a CoRe YAML file or an official source name")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="the official flags (after --)")
    p.add_argument("-o", "--out", default=None,
                   help="also write the resolved config to this file: .toml/.yaml/.yml for "
                        "`aqa train --config FILE`; .json: the whole result (method, dataset, "
                        "overrides, unmapped options, the resolved config)")
    common.add_json(p)

    p = sub.add_parser("import-log", help="an official training log as a run with its "
                                          "per-epoch metrics")
    p.add_argument("file", help="the log (CoRe's train output, TPT's, TSA-Net's train.log, "
                                "MUSDL's exp/*.log, PECoP's output)")
    p.add_argument("--method", required=True,
                   help="the method whose official code wrote it (core, tpt, tsa, plain, usdl, "
                        "musdl, pecop, gdlt, cofinal): chooses the format")
    p.add_argument("--dataset", default=None,
                   help="the dataset it trained on (default: mtl_aqa for core/tpt/usdl/musdl, "
                        "frfs for tsa/plain, pd4t for pecop, rg for gdlt/cofinal)")
    p.add_argument("--name", default=None, help="a label for the run (default: the file name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config of the run it came from, e.g. the lines of `aqa import-config` "
                        "(repeatable)")
    common.add_runs_dir(p)
    common.add_json(p)


def cmd_import(args) -> int:
    from aqa.importers import import_checkpoint

    result = import_checkpoint(args.file, args.method, _runs_dir(args), dataset=args.dataset,
                               data_root=args.data_root, overrides=args.overrides, out=args.out,
                               device=args.device, bins=args.bins)
    if args.json:
        _print_json(result)
        return 0
    print(f"imported {args.file} as run {result['run_id']}: {result['checkpoint']}")
    for note in result["notes"]:
        print(f"  note: {note}")
    return 0


def _own_options(args) -> None:
    """Our -o/--json given between SOURCE and ``--`` (REMAINDER keeps them in ``flags``)."""
    flags, i = list(args.flags), 0
    while i < len(flags) and flags[i] != "--":
        if flags[i] in ("-o", "--out") and i + 1 < len(flags):
            args.out = flags[i + 1]
            del flags[i:i + 2]
        elif flags[i] == "--json":
            args.json = True
            del flags[i]
        else:
            i += 1
    args.flags = [f for j, f in enumerate(flags) if not (f == "--" and "--" not in flags[:j])]


def cmd_import_config(args) -> int:
    from aqa.config import build_run_config, to_dict
    from aqa.official_config import format_result, import_config, source_of

    _own_options(args)
    source, file = source_of(args.source)
    result = import_config(source, file, args.flags)
    if args.out:
        cfg = build_run_config(result["method"], result["dataset"], overrides=result["overrides"])
        if Path(args.out).suffix.lower() in (".toml", ".yaml", ".yml"):  # a `train --config` file
            from aqa.config_files import write_config_file
            write_config_file(to_dict(cfg), args.out, header=_file_header(result))
        else:
            Path(args.out).write_text(json.dumps({**result, "config": to_dict(cfg)}, indent=2,
                                                 default=str) + "\n")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_result(result))
        if args.out:
            print(f"# written to {args.out}")
    return 0


def _file_header(result: dict) -> list[str]:
    """The comment lines of a config file written by import-config: where it came from, and
    every official option it could not carry."""
    verb = "pretrain" if result["method"] == "pecop" else "train"
    lines = [f"{result['source']} options as this project's config; run it: aqa {verb} "
             "--config THIS_FILE [--data-root P]"]
    lines += [f"no equivalent (not applied): {m['option']} = {m['value']!r}: {m['reason']}"
              for m in result["no_equivalent"]]
    if result["unknown"]:
        lines.append(f"unknown (ignored): {', '.join(result['unknown'])}")
    return lines


def cmd_import_log(args) -> int:
    from aqa.history import import_log

    result = import_log(args.file, args.method, args.runs_dir, dataset=args.dataset,
                        name=args.name, overrides=args.overrides)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    log = result["log"]
    print(f"{args.file}: {log['format']} log, {log['lines']} lines, {log['sessions']} "
          f"session(s), {log['not_understood']} line(s) not understood")
    for example in log["not_understood_examples"]:
        print(f"  not understood: {example}")
    for run in result["runs"]:
        best = run["best"]
        value = "-" if best["value"] is None else f"{best['value']:.4f} (epoch {best['epoch']})"
        print(f"imported {run['name']} as run {run['run_id']}: {run['epochs']} epochs, "
              f"{run['metrics']} metric values, best test {best['metric']} {value}")
        for note in run["notes"]:
            print(f"  note: {note}")
    return 0


COMMANDS = {"import-checkpoint": cmd_import, "import-config": cmd_import_config, "import-log": cmd_import_log}
