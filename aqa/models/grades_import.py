"""Import official GDLT (``xuangch/CVPR22_GDLT``) and CoFInAl (``ZhouKanglei/CoFInAl_AQA``)
checkpoints as gdlt / cofinal runs.

Both ``main.py`` save ``torch.save(model.state_dict(), './ckpt/<name>_best.pkl')``: a plain state
dict (no epoch, no metrics) under the names our models use (``in_proj.*``,
``transformer.{encoder,decoder}.layers.<i>.*``, ``prototype.weight``, ``regressor.*``; CoFInAl
adds ``regressor_revert.*``, ``regi.0.*``, ``regressori.0.*`` and the ``etf_vec1`` buffer).

What the shapes give: the feature dimension (``in_proj.0.weight``), the width, the number of
grade queries (``prototype.weight``), encoder and decoder layers. What they do not: the number of
attention heads (``model.n_head``, default 1 as ``options.py``), GDLT's grade values (always
linspace(0, 1, n_query)), CoFInAl's grade values (``model.grades``, the official
``--activate_regular_restrictions``: its scripts use 2 for Ball and Hoop, 3 for the others).
Give those with ``--set``; a ``--set`` that contradicts the file's shapes is refused.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from aqa.errors import CheckpointError, ConfigError
from aqa.registry import DATASETS, METHODS

COFINAL_KEYS = ("regressor_revert.weight", "etf_vec1")


def is_official_grades(raw: dict) -> bool:
    """A GDLT or CoFInAl state dict (grade queries over projected features)."""
    keys = set(_strip(raw))
    return {"prototype.weight", "regressor.weight", "in_proj.0.weight"} <= keys


def official_method(raw: dict) -> str:
    keys = set(_strip(raw))
    return "cofinal" if any(k in keys for k in COFINAL_KEYS) else "gdlt"


def _strip(raw: dict) -> dict:
    from aqa.models.official_files import strip_module

    return strip_module(raw)


def shape_settings(state: dict, method: str = "gdlt") -> dict[str, int | str]:
    """The config fields the state dict's shapes decide (CoFInAl: also whether it has the
    reversed head, the fine classes and the fine head's width)."""
    def layers(prefix: str) -> int:
        found = {int(m.group(1)) for k in state if (m := re.match(prefix + r"\.layers\.(\d+)\.", k))}
        return max(found) + 1 if found else 0

    try:
        out = {"in_dim": int(state["in_proj.0.weight"].shape[1]),
               "hidden_dim": int(state["in_proj.3.weight"].shape[0]),
               "n_query": int(state["prototype.weight"].shape[0]),
               "n_encoder": layers("transformer.encoder"),
               "n_decoder": layers("transformer.decoder")}
        if method == "cofinal":
            out.update(revert="true" if "regressor_revert.weight" in state else "false",
                       fine_bins=int(state["etf_vec1"].shape[0]),
                       fine_width=int(state["regressori.0.1.weight"].shape[0]))
        return out
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"not a GDLT/CoFInAl state dict: no {exc} of the expected shape") from None


def import_grades(raw: dict, path: str | Path, method: str | None, runs_dir: Path, *,
                  dataset: str | None = None, data_root: str | None = None,
                  overrides: list[str] | None = None, out: str | Path | None = None) -> dict:
    """Write a run whose ``checkpoints/best.pt`` holds the official weights; returns
    {"checkpoint", "run_id", "notes", "method"}."""
    from aqa.config import build_run_config
    from aqa.models.official_files import check_fit, write_imported_run

    state = _strip(raw)
    if not is_official_grades(state):
        raise CheckpointError(f"{path} is not an official GDLT/CoFInAl checkpoint: expected a "
                              "state dict with in_proj.*, prototype.weight, regressor.*; found "
                              f"{sorted(state)[:6]}")
    found = official_method(state)
    method = method or found
    if method != found:
        raise CheckpointError(f"{path} is a{'n' if found == 'gdlt' else ''} {found} checkpoint "
                              f"({'regressor_revert and etf_vec1 present' if found == 'cofinal' else 'no CoFInAl heads'}); "
                              f"import it with --method {found}")
    overrides = list(overrides or [])
    given = {o.partition("=")[0].strip(): o.partition("=")[2].strip() for o in overrides}
    shapes = shape_settings(state, method)
    for key, value in shapes.items():
        if f"model.{key}" in given and given[f"model.{key}"] != str(value):
            raise ConfigError(f"--set model.{key}={given[f'model.{key}']} contradicts the "
                              f"checkpoint, whose weights have {key} = {value}; drop that --set")
    sets = [f"model.{k}={v}" for k, v in shapes.items()]
    if method == "cofinal":  # its fine head was trained attending across the batch (the official layout)
        sets.append("model.batch_attention=true")
    name = dataset or "rg"
    if data_root:
        sets.append(f"data.root={data_root}")
    cfg = build_run_config(method, name, overrides=sets + overrides)
    m = cfg.model
    if m.hidden_dim % m.n_head:
        raise ConfigError(f"model.n_head={m.n_head} does not divide the checkpoint's width "
                          f"{m.hidden_dim}; give the head count it was trained with "
                          "(--set model.n_head=N: official default 1; CoFInAl's Fis-V scripts 7)")
    notes = [f"model.n_head={m.n_head} (a checkpoint does not record it; the official default is "
             "1: give --set model.n_head=N if it was trained with another)"]
    if method == "cofinal":
        notes.append("model.batch_attention=true: the official fine head attends across the "
                     "programs of a training batch; at evaluation each program attends to itself, "
                     "as in the official test loop (batch of one)")
        notes.append(f"model.grades={m.grades} (the official --activate_regular_restrictions, not "
                     "recorded in the file: the scripts use sigmoid (2) for Ball and Hoop, arcl1 (3) "
                     "for Clubs, Ribbon and Fis-V)")
    if data_root:
        cfg = replace(cfg, data=DATASETS.get(name).resolve(cfg.data, runs_dir))
    else:
        notes.append(f"no --data-root given: give it to `aqa eval` to evaluate on {name}")
    method_obj = METHODS.get(method)(cfg)
    model = method_obj.build_model()
    own = model.state_dict()
    mapped = check_fit(dict(state), own, f"{method} with this config",
                       "; the sizes come from the file, n_head and the grades from --set")
    model.load_state_dict(mapped, strict=True)
    result = write_imported_run(runs_dir, cfg, model.state_dict(), path, notes=notes, out=out)
    return {**result, "method": method}
