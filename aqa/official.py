"""Import the official implementations' checkpoints as checkpoints of this project: loading
(:func:`load_official`), checking (:func:`check_fit`) and writing the imported run
(:func:`write_imported_run`) for every method; each method module owns its key mapping
(``core.core_state``, ``tpt.tpt_state``, ``tsa_import.official_tsa_state``,
``usdl_import.official_state``, ``fdtsa_import.fdtsa_state``, ``grades_import`` (GDLT, CoFInAl); PECoP's adapted I3D is read by ``i3d.read_pecop_heads``).

    python -m aqa import-checkpoint MTL_CoRe.pth --method core [--dataset mtl_aqa --data-root P]

Official training checkpoints hold numpy scalars (``rho_best`` from scipy) and sometimes an
argparse Namespace, which ``torch.load(weights_only=True)`` refuses. They are read with
``weights_only=True`` plus an explicit allowlist of exactly those globals; anything else in the
file is refused with a message, never unpickled. Weights are then mapped key by key.

The import makes a run directory (``run.json``, an event log with one checkpoint event and a
``finished`` status), so the imported checkpoint is listed in the index and the app like a
trained one. With a dataset given, its training split becomes the exemplar bank (pair methods),
so the checkpoint can score a clip with no dataset on disk.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from aqa.config import build_run_config
from aqa.errors import CheckpointError, ConfigError
from aqa.registry import DATASETS, METHODS
from aqa.runs import store
from aqa.models.official_files import (BINS, OFFICIAL_METRICS,  # noqa: F401  (re-exported)
                                       OFFICIAL_PREPROCESSING, check_fit, choose_bins,
                                       i3d_state_for, load_official, official_preprocessing,
                                       plain, strip_module, write_imported_run)


def import_checkpoint(path: str | Path, method: str, runs_dir: str | Path, *,
                      dataset: str | None = None, data_root: str | None = None,
                      overrides: list[str] | None = None, out: str | Path | None = None,
                      device: str = "cpu", bins: str = "auto") -> dict:
    """Import ``path`` as a ``method`` checkpoint; returns {"checkpoint", "run_id", "notes"}.
    ``method`` None: detected from the file (FineDiving TSA's four parts, TSA-Net/Plain-Net
    ``best.pt``, TPT's ``model`` + ``backbone`` checkpoint, MUSDL/USDL ``i3d`` + ``evaluator``, PECoP ``gait_adapter``, else CoRe).

    CoRe and TPT (pair methods with a group tree): the run records the preprocessing the official
    code trained and tested with (torch_videovision's resize, see :func:`official_preprocessing`),
    whatever dataset supplies the exemplars; ``bins`` says where the tree's bins come from:
    ``mtl_aqa`` (the MTL-AQA training split's, shipped), ``exemplars`` (the ``dataset``'s training
    split, as the official code builds them from the split it trains on) or ``auto`` (exemplars
    for a benchmark dataset such as ``mtl_aqa`` or ``aqa7``; for a folder of clips, or no
    dataset, the MTL-AQA bins, which the released checkpoints were trained with)."""
    from aqa.models import tsa_import, usdl_import
    from aqa.models.core import core_state
    from aqa.models.tpt import is_official_tpt, tpt_state

    from aqa.models import fdtsa_import

    raw = None
    if method in ("fdtsa", None):  # FineDiving TSA: base_model + psnet_model + decoder + regressor_delta
        raw = load_official(path)
        if method is None and fdtsa_import.related_family(raw):
            fdtsa_import.fdtsa_state(raw, None)  # refuses, naming the family
        if method is not None or fdtsa_import.is_official_fdtsa(raw):
            return fdtsa_import.import_fdtsa(raw, path, store.resolve_runs_dir(runs_dir),
                                             dataset=dataset, data_root=data_root,
                                             overrides=overrides, out=out, device=device)
    if method in ("gdlt", "cofinal", None):  # a plain state dict of grade queries over features
        from aqa.models import grades_import

        raw = raw if raw is not None else load_official(path)
        if method is not None or grades_import.is_official_grades(raw):
            return grades_import.import_grades(raw, path, method, store.resolve_runs_dir(runs_dir),
                                               dataset=dataset, data_root=data_root,
                                               overrides=overrides, out=out)
    if method in ("usdl", "musdl", None):  # MUSDL's i3d + evaluator (no TSA_module), or JIGSAWS'
        raw = raw if raw is not None else load_official(path)
        if method is not None or usdl_import.is_official_usdl(raw):
            return usdl_import.import_usdl(raw, path, method, store.resolve_runs_dir(runs_dir),
                                           dataset=dataset, data_root=data_root,
                                           overrides=overrides, out=out)
    if method in ("tsa", "plain", None):
        raw = raw if raw is not None else load_official(path)
        if method is not None or tsa_import.is_official_tsa(raw):
            return tsa_import.import_tsa(raw, path, method, store.resolve_runs_dir(runs_dir),
                                         dataset=dataset, data_root=data_root,
                                         overrides=overrides, out=out)
        from aqa.models.adapters import is_pecop_layout

        method = ("tpt" if is_official_tpt(raw) else
                  "pecop" if is_pecop_layout(raw) else "core")
    if method == "pecop":
        return import_pecop(path, runs_dir, dataset=dataset, data_root=data_root,
                            overrides=overrides, out=out)
    if method not in ("core", "tpt"):
        raise ConfigError(f"importing official {method!r} checkpoints is not supported yet; "
                          "supported: core, tpt, tsa, plain, pecop, usdl, musdl, gdlt, cofinal, fdtsa (I3D weight files load "
                          "directly with --set backbone.weights=FILE)")
    raw = raw if raw is not None else load_official(path)
    runs_dir = store.resolve_runs_dir(runs_dir)
    name = dataset or ("mtl_aqa" if "mtl_aqa" in DATASETS.names() else "folder")
    sets = ["backbone.name=i3d", "backbone.family=hassony2", "backbone.input_norm=imagenet",
            "backbone.weights="]
    notes: list[str] = []
    sets += official_preprocessing(method, name, overrides or [], notes)
    if data_root:
        sets.append(f"data.root={data_root}")
    cfg = build_run_config(method, name, overrides=sets + list(overrides or []))
    method_obj = METHODS.get(method)(cfg)
    clips = None
    if dataset:
        entry = DATASETS.get(dataset)
        cfg = replace(cfg, data=entry.resolve(cfg.data, runs_dir))
        method_obj.cfg = cfg
        clips = entry.build(cfg.data, "train", train=False)
        method_obj.wrap_dataset(clips, "train", clips)  # bins from the training split
    bins = choose_bins(bins, dataset)
    if bins == "mtl_aqa":
        from aqa.models.group_tree import mtl_aqa_leaves

        method_obj.leaves = mtl_aqa_leaves(cfg.model.use_dd).to(method_obj.leaves.dtype)
        notes.append("bins: the MTL-AQA training split's (those the released checkpoints were "
                     f"trained with, {'with' if cfg.model.use_dd else 'without'} DD); pass "
                     "--bins exemplars to build them from the exemplar dataset's training split")
    elif dataset:
        notes.append(f"bins: built from {dataset}'s training split ({len(clips)} samples), as the "
                     "official code builds them from the split it trains on")
    if not dataset:
        notes.append("no dataset given: no exemplar bank; give --dataset and --data-root to "
                     "score clips with this checkpoint")
    model = method_obj.build_model()
    mapped, more = (tpt_state if method == "tpt" else core_state)(raw, model)
    notes += more
    model.load_state_dict(mapped, strict=True)
    model.to(device).eval()
    extras = {}
    if clips is not None:
        method_obj._pool_clips = clips
        method_obj.on_eval_start(model, torch.device(device))
        extras = method_obj.checkpoint_extras(model)
    metrics = {k: plain(raw[k]) for _, k in OFFICIAL_METRICS if k in raw}
    epoch = int(plain(raw.get("epoch", 0)) or 0)
    return write_imported_run(runs_dir, cfg, model.cpu().state_dict(), path, metrics=metrics,
                              epoch=epoch, notes=notes, extras=extras, out=out,
                              extra_run={"bins": bins})


def import_pecop(path: str | Path, runs_dir: str | Path, *, dataset: str | None = None,
                 data_root: str | None = None, overrides: list[str] | None = None,
                 out: str | Path | None = None) -> dict:
    """A PECoP checkpoint (the official ``gait_adapterNN.pth.tar``: the adapted I3D and its pace
    and segment heads) as a ``pecop`` run: fine-tune any I3D method from it with
    ``--set backbone.weights=RUN_ID``, or continue its pretext task."""
    load_official(path)  # refuses anything but tensors and plain values, before anything else
    runs_dir = store.resolve_runs_dir(runs_dir)
    name = dataset or ("pd4t" if "pd4t" in DATASETS.names() else "folder")
    sets = [f"backbone.weights={Path(path).resolve()}"] + ([f"data.root={data_root}"] if data_root else [])
    cfg = build_run_config("pecop", name, overrides=sets + list(overrides or []))
    from aqa.models.i3d import read_pecop_heads

    if not read_pecop_heads(cfg.backbone.weights):
        raise CheckpointError(f"{path} is not a PECoP checkpoint: no pace and segment heads "
                              "(logits_p, logits_s); an I3D weight file loads with --set "
                              "backbone.weights=FILE in any I3D method")
    model = METHODS.get("pecop")(cfg).build_model()  # loads the adapted I3D and both heads
    cfg = replace(cfg, backbone=replace(cfg.backbone, weights=""))  # the run holds them now
    notes = ["the adapted I3D and the pace/segment heads come from the file; fine-tune with "
             "--set backbone.weights=<this run id>"]
    return write_imported_run(runs_dir, cfg, model.state_dict(), path, notes=notes, out=out,
                              best_metric="accuracy")
