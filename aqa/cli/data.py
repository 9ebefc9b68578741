"""``python -m aqa doctor`` and ``python -m aqa data ...``: check and prepare datasets.

Wired into ``aqa.cli`` through ``add_parsers(subparsers)`` and ``COMMANDS``::

    doctor --dataset D --data-root P [--set key=value] [--no-probe] [--json]
    data extract-frames --dataset mtl_aqa --data-root P [--workers N] [--height 256]
    data extract-frames --videos DIR --out DIR [--pattern img_%05d.jpg]
    data pecop-lists --dataset mtl_aqa --data-root P --out DIR [--link-frames]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aqa.cli import common
from aqa.cli.common import runs_dir as _runs_dir
from aqa.errors import ConfigError, DatasetError


def _common(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, default=None,
                   help="registered dataset (mtl_aqa, aqa7, finediving, frfs, fisv, jigsaws, pd4t, folder, synthetic)")
    p.add_argument("--data-root", default=None, help="the dataset's folder as distributed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="data config value such as class_name=all or layout=core (repeatable)")
    common.add_runs_dir(p)


def add_parsers(sub) -> None:
    p = sub.add_parser("doctor", help="check a dataset: found, missing, corrupt, score ranges, the fix")
    _common(p)
    p.add_argument("--no-probe", action="store_true", help="check that files exist, without opening them")
    p.add_argument("--max-probe", type=int, default=None, help="open at most this many files")
    common.add_json(p, help="print the report as JSON")

    data = sub.add_parser("data", help="prepare datasets: extract frames, write PECoP lists")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = dsub.add_parser("extract-frames", help="videos -> frame folders (resumable, parallel, progress bar)")
    _common(p, dataset_required=False)
    p.add_argument("--videos", default=None, help="a folder of videos (instead of --dataset)")
    p.add_argument("--out", default=None, help="output folder for --videos (one sub-folder a video)")
    p.add_argument("--pattern", default="%08d.jpg", help="frame file name, ffmpeg style (default %%08d.jpg)")
    p.add_argument("--height", type=int, default=256, help="frame height in pixels (0 = native)")
    p.add_argument("--workers", type=int, default=2, help="videos extracted at the same time")
    common.add_json(p, help="print the result as JSON")

    p = dsub.add_parser("pecop-lists", help="write PECoP's 'sample_name label num_frames num_p' lists")
    _common(p)
    p.add_argument("--out", required=True, help="folder for train.list and test.list")
    p.add_argument("--link-frames", action="store_true",
                   help="also link each sample's frames as <out>/<num_p>/<sample>/img_00001.jpg ...")
    common.add_json(p, help="print the written paths as JSON")


def _overrides(dataset: str, pairs: list[str]) -> dict:
    from dataclasses import fields

    from aqa.config import parse_value
    from aqa.registry import DATASETS

    import typing
    cls = DATASETS.get(dataset).config_cls
    types = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().removeprefix("data.")
        if not sep or key not in names:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(names))}")
        out[key] = parse_value(value, types[key], f"data.{key}")
    return out


def _resolved(args):
    from dataclasses import replace

    from aqa.registry import DATASETS

    entry = DATASETS.get(args.dataset)
    cfg = entry.config_cls()
    if args.data_root:
        cfg = replace(cfg, root=args.data_root)
    cfg = replace(cfg, **_overrides(args.dataset, args.overrides))
    return entry, entry.resolve(cfg, _runs_dir(args))


def cmd_doctor(args) -> int:
    from aqa.data.checks import check_dataset

    report = check_dataset(args.dataset, args.data_root, _runs_dir(args),
                           overrides=_overrides(args.dataset, args.overrides),
                           probe=not args.no_probe, max_probe=args.max_probe)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


def cmd_extract_frames(args) -> int:
    from aqa.data import prepare

    if args.videos:
        if not args.out:
            raise DatasetError("--videos needs --out: the folder to write one frame folder a video into")
        jobs = prepare.folder_jobs(Path(args.videos), Path(args.out))
    elif args.dataset == "mtl_aqa":
        if not args.data_root:
            raise DatasetError("--dataset mtl_aqa needs --data-root: the folder holding videos/")
        jobs = prepare.mtl_aqa_jobs(Path(args.data_root).expanduser().resolve())
    else:
        raise DatasetError("give --dataset mtl_aqa --data-root P (videos/ -> CoRe's frame layout), "
                           "or --videos DIR --out DIR")
    result = prepare.extract_frames(jobs, height=args.height, pattern=args.pattern,
                                    workers=args.workers, progress=not args.json)
    if args.json:
        print(json.dumps(vars(result), indent=2))
    else:
        print(f"extracted {len(result.done)}, already done {len(result.skipped)}, failed {len(result.failed)}")
        for line in result.failed:
            print(f"  {line}")
    return 1 if result.failed else 0


def cmd_pecop_lists(args) -> int:
    from aqa.data.prepare import write_pecop_lists

    entry, cfg = _resolved(args)
    by_split = {split: entry.samples(cfg, split) for split in ("train", "test")}
    written = write_pecop_lists(by_split, Path(args.out).expanduser().resolve(), args.link_frames)
    if args.json:
        print(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
    else:
        for split, path in written.items():
            print(f"{split}: {len(by_split[split])} samples -> {path}")
    return 0


def cmd_data(args) -> int:
    return {"extract-frames": cmd_extract_frames, "pecop-lists": cmd_pecop_lists}[args.data_command](args)


COMMANDS = {"doctor": cmd_doctor, "data": cmd_data}
