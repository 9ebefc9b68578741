"""Import an official FineDiving TSA checkpoint (xujinglin/FineDiving @a2b8057) as an ``fdtsa``
run.

The file is what tools/helper.py ``save_checkpoint`` writes (``last.pth`` / a best one):

    base_model        I3D_backbone state dict: ``backbone.<hassony2 I3D key>``
    psnet_model       PSNet: ``inc.conv.conv.*``, ``down{1..4}.mpconv.1.conv.*``, ``tas.layer{1,2,3}.*``
    decoder           decoder_fuser: ``model.{0,1,2}.{norm_q,norm_v,attn.*,norm2,mlp.fc1,mlp.fc2}.*``
    regressor_delta   MLP_score: ``layer{1,2,3}.*``
    optimizer, epoch, epoch_best_aqa, rho_best, L2_min, RL2_min (numpy scalars)

The training loop wraps the four modules in ``nn.DataParallel`` before it saves, so every key
of a trained checkpoint starts with ``module.`` (dropped here). The file is read with
``weights_only=True`` plus the official-checkpoint allowlist (numpy scalars), never fully
unpickled; the optimizer state is dropped. With ``--dataset`` (finediving) the training split
becomes the exemplar bank, so the run scores clips and ``aqa eval`` needs no second pass over it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from aqa.errors import CheckpointError
from aqa.registry import DATASETS, METHODS

PARTS = (("base_model", ""), ("psnet_model", "psnet."), ("decoder", "decoder."),
         ("regressor_delta", "regressor."))


BOOKKEEPING = {"optimizer", "epoch", "epoch_best_aqa", "rho_best", "L2_min", "RL2_min"}


def is_official_fdtsa(raw: dict) -> bool:
    return isinstance(raw, dict) and {p for p, _ in PARTS} <= set(raw)


def related_family(raw: dict) -> str | None:
    """The FineDiving-TSA descendant a checkpoint of the same container style comes from, which
    this importer does not read: T²CR (XuHuangbiao/T2CR: ``base_model``, ``taa``, ``regressor``,
    ``decoder``) or an MCoRe-style file (Lumos0507/HP-MCoRe and kin: ``decoder1``,
    ``regressor_delta1``, ...); None for anything else."""
    if not isinstance(raw, dict) or "base_model" not in raw:
        return None
    if "taa" in raw:
        return "T²CR (base_model, taa, regressor, decoder)"
    numbered = sorted(k for k in raw if k.rstrip("0123456789") in ("decoder", "regressor_delta")
                      and k[-1:].isdigit())
    if numbered:
        return f"an MCoRe-style model ({', '.join(numbered[:4])}, ...)"
    return None


def fdtsa_state(raw: dict, model: torch.nn.Module) -> dict:
    """The official file's weights under ``model``'s (an FDTSAModel's) keys, checked strictly."""
    from aqa.models.official_files import check_fit, strip_module

    if not is_official_fdtsa(raw):
        family = related_family(raw)
        raise CheckpointError(("a checkpoint of " + family + ", a descendant of FineDiving TSA "
                               "that cannot be imported yet" if family else
                               "not a FineDiving TSA checkpoint: expected 'base_model', "
                               "'psnet_model', 'decoder' and 'regressor_delta'; found "
                               f"{sorted(raw)[:8]}"))
    extra = sorted(k for k, v in raw.items() if k not in {p for p, _ in PARTS} | BOOKKEEPING
                   and isinstance(v, dict) and v)
    if extra:
        raise CheckpointError(f"the file holds FineDiving TSA's four parts and also {extra[:5]}: "
                              "a model built on FineDiving TSA with more modules, which this "
                              "importer would drop; it cannot be imported as fdtsa")
    mapped = {}
    for part, prefix in PARTS:
        for k, v in strip_module(raw[part]).items():
            if part == "base_model" and not k.startswith("backbone."):
                k = "backbone." + k  # a bare I3D state dict saved as base_model
            mapped[prefix + k] = v
    return check_fit(mapped, model.state_dict(), "FineDiving TSA",
                     hint=" (an official FineDiving TSA checkpoint has the hassony2 I3D, PSNet on 9 "
                          "clips and 96 frames, a 3-block decoder of width 64)")


def import_fdtsa(raw: dict, path: str | Path, runs_dir: Path, *, dataset: str | None = None,
                 data_root: str | None = None, overrides: list[str] | None = None,
                 out: str | Path | None = None, device: str = "cpu") -> dict:
    """Write a run whose ``checkpoints/best.pt`` holds the official weights (and, with a
    dataset, the exemplar bank of its training split); returns {"checkpoint", "run_id",
    "notes", "method"}."""
    from aqa.config import build_run_config
    from aqa.models.official_files import OFFICIAL_METRICS, official_preprocessing, plain
    from aqa.models.official_files import write_imported_run

    notes: list[str] = []
    name = dataset or ("finediving" if "finediving" in DATASETS.names() else "folder")
    sets = ["backbone.name=i3d", "backbone.family=hassony2", "backbone.input_norm=imagenet",
            "backbone.weights="]
    sets += official_preprocessing("fdtsa", name, overrides or [], notes)
    if data_root:
        sets.append(f"data.root={data_root}")
    cfg = build_run_config("fdtsa", name, overrides=sets + list(overrides or []))
    method = METHODS.get("fdtsa")(cfg)
    model = method.build_model()
    model.load_state_dict(fdtsa_state(raw, model), strict=True)
    model.to(device).eval()
    extras = {}
    if dataset:
        entry = DATASETS.get(dataset)
        cfg = replace(cfg, data=entry.resolve(cfg.data, runs_dir))
        method.cfg = cfg
        clips = entry.build(cfg.data, "train", train=False)
        method.wrap_dataset(clips, "train", clips)
        method._pool_clips = clips
        method.on_eval_start(model, torch.device(device))
        extras = method.checkpoint_extras(model)
        notes.append(f"exemplar bank: {dataset}'s training split ({len(clips)} dives)")
    else:
        notes.append("no dataset given: no exemplar bank; give --dataset finediving and "
                     "--data-root to score clips with this checkpoint")
    metrics = {k: plain(raw[k]) for _, k in OFFICIAL_METRICS if k in raw}
    epoch = int(plain(raw.get("epoch", 0)) or 0)
    result = write_imported_run(runs_dir, cfg, model.cpu().state_dict(), path, metrics=metrics,
                                epoch=epoch, notes=notes, extras=extras, out=out,
                                extra_run={"exemplar_protocol": cfg.model.exemplar_rule})
    return {**result, "method": "fdtsa"}
