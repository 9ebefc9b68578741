"""Pretext tasks on the command line (PECoP's VSPP), and the export of a pretrained backbone.

Wired into ``aqa.cli`` through ``add_parsers(subparsers)`` and ``COMMANDS``::

    pretrain --method pecop --dataset D [train's options]   a normal run (``aqa train``'s path)
    export-backbone RUN_OR_CKPT -o FILE [--official]        the backbone's strict-key state dict

``pretrain`` takes every option of ``train`` and refuses methods that are not pretext tasks; the
run it makes is an ordinary run (events, checkpoints, resume, the index and the app).
"""

from __future__ import annotations

import json
from pathlib import Path

from aqa.cli import common
from aqa.errors import CheckpointError, ConfigError


def add_parsers(sub) -> None:
    """Call after the ``train`` parser exists: ``pretrain`` inherits its options."""
    sub.add_parser("pretrain", parents=[sub.choices["train"]], add_help=False,
                   help="start a pretext-task run (PECoP's VSPP) whose backbone others fine-tune",
                   description="Train a pretext task (pecop). Fine-tune from the result with "
                               "`aqa train --method usdl ... --set backbone.weights=RUN_ID`.")
    p = sub.add_parser("export-backbone", help="write a run's (adapted) backbone as a state dict")
    p.add_argument("ref", help="a run id, run directory or checkpoint file")
    p.add_argument("-o", "--out", required=True, help="the .pt file to write")
    p.add_argument("--official", action="store_true",
                   help="PECoP's layout (model.<i3d key>, logits_p.*, logits_s.*) instead of "
                        "plain backbone keys")
    common.add_runs_dir(p)
    common.add_json(p)


def pretext_methods() -> list[str]:
    from aqa.registry import METHODS
    return [n for n, e in METHODS.items() if getattr(e, "pretext", False)]


def cmd_pretrain(args) -> int:
    from aqa.cli.train import cmd_train, config_values
    from aqa.registry import METHODS

    config_values(args)  # the method may come from the --config file
    entry = METHODS.get(args.method)
    if not getattr(entry, "pretext", False):
        raise ConfigError(f"{args.method!r} is not a pretext task; `aqa pretrain` runs "
                          f"{', '.join(pretext_methods())} (train {args.method} with `aqa train`)")
    return cmd_train(args)


def export_backbone(ref: str, out: str | Path, runs_dir: str | Path | None = None,
                    official: bool = False) -> dict:
    """Write the backbone of the checkpoint ``ref`` resolves to (``backbone.*`` keys without the
    prefix) to ``out`` as a plain state dict that ``backbone.weights`` loads strictly;
    ``official``: PECoP's ``model.``-prefixed layout with the pretext heads."""
    import torch

    from aqa.evaluate import resolve_checkpoint
    from aqa.models.adapters import HEADS, has_adapters, to_pecop_layout
    from aqa.runs.store import resolve_runs_dir
    from aqa.train.checkpoint import load_checkpoint

    ckpt = resolve_checkpoint(ref, resolve_runs_dir(runs_dir))
    state = load_checkpoint(ckpt)
    model = state["model"]
    backbone = {k[len("backbone."):]: v for k, v in model.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointError(f"{ckpt} has no backbone.* weights to export")
    if official:
        heads = {k: v for k, v in model.items() if k.split(".")[0] in HEADS}
        if not heads:
            raise CheckpointError(f"{ckpt} ({state.get('method')}) has no PECoP heads; export "
                                  "it without --official")
        backbone = to_pecop_layout(backbone, heads)
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save({k: v.detach().cpu().clone() for k, v in backbone.items()}, tmp)
    tmp.replace(out)
    return {"checkpoint": str(ckpt), "out": str(out), "tensors": len(backbone),
            "adapters": has_adapters(backbone), "method": state.get("method"),
            "family": (state.get("config") or {}).get("backbone", {}).get("family")}


def cmd_export_backbone(args) -> int:
    info = export_backbone(args.ref, args.out, args.runs_dir, args.official)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"wrote {info['tensors']} tensors ({'with' if info['adapters'] else 'without'} "
              f"adapters) of {info['checkpoint']} to {info['out']}")
        print(f"fine-tune from it: --set backbone.weights={info['out']}")
    return 0


COMMANDS = {"pretrain": cmd_pretrain, "export-backbone": cmd_export_backbone}
