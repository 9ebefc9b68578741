"""``python -m aqa methods`` and ``python -m aqa plan``: what can be trained, and what a
configuration will cost (peak memory, step time) before it is launched."""

from __future__ import annotations

from aqa.cli import common
from aqa.cli.common import print_json as _print_json


def add_parsers(sub) -> None:
    p = sub.add_parser("methods", help="list registered methods, backbones and datasets")
    common.add_json(p)

    p = sub.add_parser("plan", help="estimate peak memory and step time of a config before "
                                    "launch, with and without each memory option")
    p.add_argument("--method", required=True, help="registered method (see `aqa methods`)")
    p.add_argument("--dataset", default="synthetic", help="registered dataset (shapes only; "
                                                          "no data is read)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as train.batch_size=4 (repeatable)")
    p.add_argument("--gpus", default=None, help="GPUs the run would use: a count or indices "
                                                "(default: CPU)")
    p.add_argument("--steps", type=int, default=3, help="dry-run steps per batch size (the "
                                                        "fastest after the first is timed)")
    common.add_json(p)


def cmd_methods(args) -> int:
    from aqa.registry import BACKBONES, DATASETS, METHODS, plugins

    info = {"methods": [{"name": n, "description": getattr(e, "description", ""),
                         "default_backbone": e.default_backbone} for n, e in METHODS.items()],
            "backbones": [{"name": n, "description": getattr(e, "description", "")}
                          for n, e in BACKBONES.items()],
            "datasets": [{"name": n, "description": getattr(e, "description", "")}
                         for n, e in DATASETS.items()]}
    if args.json:
        from aqa.plan import method_sizes

        for m in info["methods"]:  # parameter counts of each default configuration
            m.update(method_sizes(m["name"]))
        info["plugins"] = plugins()
        info["module_sizes_note"] = ("each method's default configuration built with "
                                     "backbone.weights=\"\" (random init, nothing loaded): "
                                     "parameter counts do not depend on the weights")
        _print_json(info)
        return 0
    for section, items in info.items():
        print(f"{section}:")
        for it in items:
            print(f"  {it['name']:<14} {it['description']}")
    for plugin in plugins():
        print(f"plugin {plugin['name']} ({plugin['group']}) from {plugin['distribution']} "
              f"{plugin['version']}")
    return 0


def cmd_plan(args) -> int:
    from aqa.config import build_run_config
    from aqa.jobs.gpus import probe_gpus
    from aqa.plan import format_plan, plan_for

    cfg = build_run_config(args.method, args.dataset, overrides=args.overrides)
    result = plan_for(cfg, args.gpus, probe_gpus(), steps=max(1, args.steps))
    if args.json:
        _print_json(result)
    else:
        print(format_plan(result))
    return 0


COMMANDS = {"methods": cmd_methods, "plan": cmd_plan}
