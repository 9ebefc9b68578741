"""Import the official TSA-Net ``best.pt`` (Shunli-Wang/TSA-Net train.py) as a tsa/plain run.

The file is ``{'epoch', 'i3d', 'evaluator', 'TSA_module', 'optimizer', 'rho_best'}``:

    i3d          piergiaj InceptionI3d state dict (``Conv3d_1a_7x7.conv3d.weight``, ...,
                 ``logits.conv3d.*`` with 157 classes), ``module.``-prefixed after DataParallel
    evaluator    ``evaluator.layer{1,2,3}.{weight,bias}`` (MLP_block; layer3 has 1 output: the
                 sigmoid fall classifier), also possibly ``module.``-prefixed
    TSA_module   ``NL_1D.g.*``, ``NL_1D.W.0.*``, ``NL_1D.W.1.*`` (BatchNorm1d), or None for a
                 Plain-Net run (trained without ``--TSA``)
    rho_best     the best test *accuracy* (named rho), often a numpy scalar

It is read with ``weights_only=True`` plus the importers' allowlist (numpy scalars), never fully
unpickled; the optimizer state is dropped. The weights are mapped key by key onto ``TSANet``
(``backbone.*``, ``head.mlp.{0,2,4}.*``, ``tsa.*``) and loaded strictly.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from aqa.errors import CheckpointError
from aqa.registry import DATASETS, METHODS

HEAD_LAYERS = {"layer1": "mlp.0", "layer2": "mlp.2", "layer3": "mlp.4"}


def is_official_tsa(raw: dict) -> bool:
    return isinstance(raw, dict) and {"i3d", "evaluator"} <= set(raw)


def _strip(state: dict | None) -> dict:
    """Drop the ``module.`` prefix nn.DataParallel adds."""
    from aqa.models.official_files import strip_module

    return strip_module(state)


def official_tsa_state(raw: dict, model: torch.nn.Module) -> dict:
    """The official file's weights under ``model``'s (a TSANet's) keys, checked strictly."""
    from aqa.models.official_files import check_fit

    own = model.state_dict()
    mapped = {f"backbone.{k}": v for k, v in _strip(raw["i3d"]).items()}
    for k, v in _strip(raw["evaluator"]).items():
        parts = k.split(".")  # evaluator.layer1.weight
        if len(parts) != 3 or parts[0] != "evaluator" or parts[1] not in HEAD_LAYERS:
            raise CheckpointError(f"unexpected evaluator key {k!r}: expected "
                                  "evaluator.layer{1,2,3}.weight/bias (the FR-FS MLP_block)")
        mapped[f"head.{HEAD_LAYERS[parts[1]]}.{parts[2]}"] = v
    for k, v in _strip(raw.get("TSA_module")).items():
        if not k.startswith("NL_1D."):
            raise CheckpointError(f"unexpected TSA_module key {k!r}: expected NL_1D.g/W.0/W.1")
        mapped["tsa." + k[len("NL_1D."):]] = v
    return check_fit(mapped, own, "TSA-Net")


def import_tsa(raw: dict, path: str | Path, method: str | None, runs_dir: Path, *,
               dataset: str | None = None, data_root: str | None = None,
               overrides: list[str] | None = None, out: str | Path | None = None) -> dict:
    """Write a run whose ``checkpoints/best.pt`` holds the official TSA-Net/Plain-Net weights;
    returns {"checkpoint", "run_id", "notes", "method"}."""
    from aqa.config import build_run_config
    from aqa.models.official_files import plain, write_imported_run

    if not is_official_tsa(raw):
        raise CheckpointError(f"{path} is not an official TSA-Net checkpoint: expected 'i3d' and "
                              f"'evaluator' entries; found {sorted(raw)[:8]}")
    has_tsa = bool(raw.get("TSA_module"))
    found = "tsa" if has_tsa else "plain"
    if method is None:
        method = found
    if method != found:
        raise CheckpointError(f"{path} is a {'TSA-Net' if has_tsa else 'Plain-Net (no TSA_module)'} "
                              f"checkpoint; import it with --method {found}")
    notes = []
    i3d = _strip(raw["i3d"])
    evaluator = _strip(raw["evaluator"])
    out_dim = tuple(evaluator.get("evaluator.layer3.weight", torch.zeros(1, 1)).shape)[0]
    classes = tuple(i3d.get("logits.conv3d.weight", torch.zeros(400)).shape)[0]
    sets = ["backbone.name=i3d", "backbone.family=piergiaj", "backbone.input_norm=imagenet",
            "backbone.weights=", f"backbone.num_classes={classes}"]
    if out_dim == 1:
        sets.append("model.head=bce")
    else:  # a distribution head (the paper's TSA-USDL on MTL-AQA / AQA-7)
        sets += ["model.head=usdl", f"model.num_bins={out_dim}", "train.best_metric=rho"]
    if data_root:
        sets.append(f"data.root={data_root}")
    name = dataset or ("frfs" if out_dim == 1 else "mtl_aqa")
    cfg = build_run_config(method, name, overrides=sets + list(overrides or []))
    if data_root:
        cfg = replace(cfg, data=DATASETS.get(name).resolve(cfg.data, runs_dir))
    else:
        notes.append(f"no --data-root given: give it to `aqa eval` to evaluate on {name}")
    model = METHODS.get(method)(cfg).build_model()
    model.load_state_dict(official_tsa_state(raw, model), strict=True)
    metric = "accuracy" if out_dim == 1 else "rho"
    value = plain(raw.get("rho_best"))
    metrics = {metric: float(value)} if value is not None else {}
    epoch = int(plain(raw.get("epoch", 0)) or 0)
    out_ = write_imported_run(runs_dir, cfg, model.state_dict(), path, metrics=metrics,
                              epoch=epoch, notes=notes, out=out, best_metric=metric)
    return {**out_, "method": method}
