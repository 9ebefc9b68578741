"""Import the official USDL / MUSDL training checkpoints (nzl-thu/MUSDL) as usdl/musdl runs.

MTL-AQA ``main.py`` (``--save``) writes ``ckpts/{USDL,MUSDL}.pt``::

    {'epoch': int, 'i3d': state dict, 'evaluator': state dict, 'optimizer': Adam state dict,
     'rho_best': numpy float64 (scipy's spearmanr)}

    i3d        piergiaj InceptionI3d (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1a.bn.*``, ...,
               ``logits.conv3d.*`` with 157 classes, unused)
    evaluator  USDL: ``evaluator.layer{1,2,3}.{weight,bias}`` (1024 -> 256 -> 128 -> 101);
               MUSDL: ``evaluator.<judge>.layer{1,2,3}.*``, 7 judges x 21 bins

Both state dicts carry ``module.`` when trained on several GPUs (``nn.DataParallel``, the
default ``--gpu 0,1``). JIGSAWS ``main.py`` writes ``ckpts/<task>_{USDL,MUSDL}.pt`` with the four
cross-validation folds' models in ``nn.ModuleList``s: ``{'epoch', 'i3ds', 'evaluators',
'optimizer': [4 dicts], 'rho_best'}``, keys ``<fold>.[module.]<key>``, 25 bins (USDL) or
6 judges x 5 bins (MUSDL); the fold is chosen with ``--set data.fold=K`` (default 0, whose model
was tested on fold 0).

Read with ``aqa.official.load_official`` (weights only, numpy 1.x names allowed; nothing else is
unpickled); the optimizer is dropped. Every key and shape is checked against our
``DistributionModel`` (``backbone.*``, ``heads.<j>.{0,2,4}.*``) before a strict load.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch

from aqa.errors import CheckpointError, ConfigError
from aqa.registry import DATASETS, METHODS

LAYERS = {"layer1": "0", "layer2": "2", "layer3": "4"}  # MLP_block -> our nn.Sequential indices
_HEAD_KEY = re.compile(r"^evaluator\.(?:(\d+)\.)?(layer[123])\.(weight|bias)$")


def is_official_usdl(raw: dict) -> bool:
    """A MUSDL-repository checkpoint: MTL-AQA's ``i3d`` + ``evaluator`` (TSA-Net's files, which
    share those names, always hold a ``TSA_module`` entry) or JIGSAWS' ``i3ds`` + ``evaluators``."""
    if {"i3ds", "evaluators"} <= set(raw):
        return True
    return {"i3d", "evaluator"} <= set(raw) and "TSA_module" not in raw


def _strip(state: dict | None) -> dict:
    """Drop the ``module.`` prefix nn.DataParallel adds."""
    from aqa.models.official_files import strip_module

    return strip_module(state)


def _fold(state: dict, fold: int, what: str) -> dict:
    """The entries of fold ``fold`` of a JIGSAWS ModuleList state dict, without the prefix."""
    folds = sorted({int(k.split(".", 1)[0]) for k in state if k.split(".", 1)[0].isdigit()})
    if fold not in folds:
        raise CheckpointError(f"the JIGSAWS checkpoint's {what} has folds {folds}; "
                              f"data.fold={fold} is not one of them")
    return _strip({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"{fold}.")})


def official_parts(raw: dict, fold: int = 0) -> tuple[dict, dict, str]:
    """(i3d state, evaluator state, layout "mtl_aqa" | "jigsaws"), prefixes removed."""
    if {"i3ds", "evaluators"} <= set(raw):
        return _fold(raw["i3ds"], fold, "i3ds"), _fold(raw["evaluators"], fold, "evaluators"), "jigsaws"
    if not ({"i3d", "evaluator"} <= set(raw) and isinstance(raw["i3d"], dict)
            and isinstance(raw["evaluator"], dict)):
        raise CheckpointError("not a USDL/MUSDL checkpoint: expected 'i3d' and 'evaluator' "
                              f"(MTL-AQA) or 'i3ds' and 'evaluators' (JIGSAWS); found {sorted(raw)[:8]}")
    return _strip(raw["i3d"]), _strip(raw["evaluator"]), "mtl_aqa"


def head_shape(evaluator: dict) -> tuple[str, int, int]:
    """(method, heads, bins) read from the evaluator's keys and its last layer's shape."""
    judges, bins = set(), None
    for k, v in evaluator.items():
        m = _HEAD_KEY.match(k)
        if m is None:
            raise CheckpointError(f"unexpected evaluator key {k!r}: expected evaluator.layer{{1,2,3}}"
                                  ".weight/bias (USDL) or evaluator.<judge>.layer{1,2,3}.* (MUSDL)")
        judges.add(m.group(1))
        if m.group(2) == "layer3" and m.group(3) == "bias":
            bins = int(v.shape[0])
    if bins is None:
        raise CheckpointError("the evaluator has no layer3.bias: cannot tell its number of bins")
    if judges == {None}:
        return "usdl", 1, bins
    if None in judges:
        raise CheckpointError("the evaluator mixes USDL keys (evaluator.layerN) and MUSDL keys "
                              "(evaluator.<judge>.layerN)")
    return "musdl", len(judges), bins


def official_state(i3d: dict, evaluator: dict, model: torch.nn.Module) -> dict:
    """The official weights under ``model``'s (a DistributionModel's) keys, checked strictly."""
    from aqa.models.official_files import check_fit

    mapped = {f"backbone.{k}": v for k, v in i3d.items()}
    for k, v in evaluator.items():
        judge, layer, param = _HEAD_KEY.match(k).groups()
        mapped[f"heads.{judge or 0}.{LAYERS[layer]}.{param}"] = v
    return check_fit(mapped, model.state_dict(), "USDL/MUSDL with this config",
                     "; the head count and bins come from the file, the rest from the config")


def import_usdl(raw: dict, path: str | Path, method: str | None, runs_dir: Path, *,
                dataset: str | None = None, data_root: str | None = None,
                overrides: list[str] | None = None, out: str | Path | None = None) -> dict:
    """Write a run whose ``checkpoints/best.pt`` holds the official weights; returns
    {"checkpoint", "run_id", "notes", "method"}."""
    from aqa.config import build_run_config
    from aqa.models.official_files import plain, write_imported_run

    if not is_official_usdl(raw):
        raise CheckpointError(f"{path} is not an official USDL/MUSDL checkpoint: expected 'i3d' "
                              "and 'evaluator' (MTL-AQA main.py) or 'i3ds' and 'evaluators' "
                              f"(JIGSAWS main.py); found {sorted(raw)[:8]}")
    overrides = list(overrides or [])
    name = dataset or ("jigsaws" if {"i3ds", "evaluators"} <= set(raw) else "mtl_aqa")
    fold = 0
    for o in overrides:  # the fold decides which of JIGSAWS' four models is imported
        key, _, value = o.partition("=")
        if key.strip() == "data.fold":
            try:
                fold = int(value)
            except ValueError:
                raise ConfigError(f"data.fold={value!r} is not an integer") from None
    i3d, evaluator, layout = official_parts(raw, fold)
    found, heads, bins = head_shape(evaluator)
    method = method or found
    if method != found:
        raise CheckpointError(f"{path} is a{'n' if found == 'usdl' else ''} {found.upper()} "
                              f"checkpoint ({heads} head(s) of {bins} bins); import it with "
                              f"--method {found}")
    if layout == "jigsaws" and name != "jigsaws":
        raise ConfigError(f"{path} was trained on JIGSAWS (its four folds' models); import it with "
                          "--dataset jigsaws (its bins are JIGSAWS' score ranges)")
    if layout == "mtl_aqa" and name == "jigsaws":
        raise ConfigError(f"{path} is an MTL-AQA checkpoint (one model); import it with "
                          "--dataset mtl_aqa or another diving dataset")
    classes = tuple(i3d.get("logits.conv3d.weight", torch.zeros(400)).shape)[0]
    sets = ["backbone.name=i3d", "backbone.family=piergiaj", "backbone.input_norm=imagenet",
            "backbone.weights=", f"backbone.num_classes={classes}", f"model.num_bins={bins}"]
    if method == "musdl":
        sets.append(f"model.num_judges={heads}")
    notes: list[str] = []
    if layout == "mtl_aqa":  # the preprocessing the checkpoint was trained with, on any dataset
        from aqa.models.official_files import official_preprocessing

        sets += official_preprocessing(method, name, overrides, notes)
    if data_root:
        sets.append(f"data.root={data_root}")
    cfg = build_run_config(method, name, overrides=sets + overrides)
    if getattr(cfg.data, "pipeline", None) not in ("musdl", "crop"):
        raise ConfigError(f"dataset {name!r} has no data.pipeline for MUSDL's preprocessing "
                          "(455x256 resize and centre crop, ImageNet normalisation); the imported "
                          "model would see other pixels than it was trained on. Import it with "
                          "--dataset mtl_aqa (or another dataset with data.pipeline=musdl)")
    if layout == "jigsaws":
        notes.append(f"fold {fold} of the four JIGSAWS cross-validation models (--set data.fold=K "
                     "for another); its rho_best is the four folds' average")
    if data_root:
        entry = DATASETS.get(name)
        cfg = replace(cfg, data=entry.resolve(cfg.data, runs_dir))
    else:
        notes.append(f"no --data-root given: give it to `aqa eval` to evaluate on {name}")
    method_obj = METHODS.get(method)(cfg)
    model = method_obj.build_model()
    model.load_state_dict(official_state(i3d, evaluator, model), strict=True)
    value = plain(raw.get("rho_best"))
    metrics = {"rho": float(value)} if value is not None else {}
    epoch = int(plain(raw.get("epoch", 0)) or 0)
    out_ = write_imported_run(runs_dir, cfg, model.state_dict(), path, metrics=metrics,
                              epoch=epoch, notes=notes, out=out, best_metric="rho")
    return {**out_, "method": method}
