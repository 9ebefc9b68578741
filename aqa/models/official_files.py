"""Official checkpoint files, the part every method module needs: reading one safely
(:func:`load_official`), checking mapped keys and shapes (:func:`check_fit`), the preprocessing an
official checkpoint was trained with (:func:`official_preprocessing`) and writing an imported
checkpoint as a run (:func:`write_imported_run`). It sits in the models layer so that each method
module can map its own official checkpoint; ``aqa.official`` (``import_checkpoint``) dispatches
to them.

Official training checkpoints hold numpy scalars (``rho_best`` from scipy) and sometimes an
argparse Namespace, which ``torch.load(weights_only=True)`` refuses. They are read with
``weights_only=True`` plus an explicit allowlist of exactly those globals; anything else in the
file is refused with a message, never unpickled.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.config import build_run_config, flat_fields, to_dict
from aqa.errors import CheckpointError, ConfigError
from aqa.runs import store

# What the official checkpoints contain besides tensors and containers: numpy scalars (scipy's
# rho, np.float64 minima), their dtypes, arrays, argparse Namespaces. Files written under numpy 1.x
# (every official checkpoint of 2020-2023) name numpy's modules by their old path
# ``numpy.core.multiarray``, which numpy 2 moved to ``numpy._core.multiarray``: the old names are
# allowed as (object, "old.dotted.name") pairs that resolve to the same numpy 2 objects.
_NUMPY_DTYPES = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGOSUV"]
_OFFICIAL_GLOBALS = [argparse.Namespace, np.dtype, np.ndarray,
                     np._core.multiarray.scalar, np._core.multiarray._reconstruct,
                     (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
                     (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                     *_NUMPY_DTYPES]


def _error_line(exc: Exception) -> str:
    """The part of torch's weights-only refusal that names what was refused (its first line is
    generic advice to unpickle anyway, which we never do)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln or "global" in ln]
    return (named[0] if named else lines[0] if lines else type(exc).__name__)[:300]


def load_official(path: str | Path) -> dict:
    """A checkpoint of an official implementation, read without executing pickled code: zip or
    legacy (pre-1.6) serialisation, storages tagged ``cuda:N`` mapped to the CPU, numpy 1.x or 2.x
    scalars. Anything outside the allowlist is refused before it is called."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file {path}")
    try:
        with torch.serialization.safe_globals(_OFFICIAL_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be imported safely: {_error_line(exc)}; only "
                              "tensors, numbers, numpy scalars and arrays and argparse Namespaces "
                              "are allowed in an official checkpoint (nothing was unpickled)") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def strip_module(state: dict | None) -> dict:
    """Drop the ``module.`` prefix nn.DataParallel adds."""
    return {k[7:] if k.startswith("module.") else k: v for k, v in (state or {}).items()}




def plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so our checkpoint holds plain values only."""
    if isinstance(value, np.generic):
        return value.item()
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return value




def i3d_state_for(backbone: torch.nn.Module, raw: dict, notes: list[str]) -> dict:
    """A bare I3D state dict (hassony2 ``model_rgb.pth`` or piergiaj ``rgb_i3d_pretrained.pt``)
    renamed to ``backbone``'s family; a logits layer of another class count (MUSDL/TSA's 157
    Charades classes) is replaced by the backbone's own, which CoRe never uses."""
    from aqa.models.i3d import family_of, hassony2_to_piergiaj, piergiaj_to_hassony2

    state = strip_module(raw)
    source, target = family_of(state), getattr(backbone, "family", None)
    if source == "piergiaj" and target == "hassony2":
        state = {piergiaj_to_hassony2(k): v for k, v in state.items()}
    elif source == "hassony2" and target == "piergiaj":
        state = {hassony2_to_piergiaj(k): v for k, v in state.items()}
    own = backbone.state_dict()
    logits = [k for k in own if k.startswith(("conv3d_0c_1x1.", "logits."))]
    if any(k in state and tuple(state[k].shape) != tuple(own[k].shape) for k in logits):
        notes.append(f"the file's logits layer ({tuple(state[logits[0]].shape)[0]} classes) is "
                     "not used by this method and was replaced by an unused 400-class one")
        state.update({k: own[k] for k in logits})
    return state


def check_fit(mapped: dict, own: dict, what: str, hint: str = "") -> dict:
    """``mapped`` completed with the BatchNorm counters older PyTorch files lack, after checking
    that its keys and shapes are exactly ``own``'s (else a CheckpointError naming what differs)."""
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in mapped:
            mapped[k] = v
    missing = [k for k in own if k not in mapped]
    unexpected = [k for k in mapped if k not in own]
    wrong = [k for k in own if k in mapped and tuple(mapped[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(f"the weights do not fit {what}: missing {missing[:5]} ({len(missing)}), "
                              f"unexpected {unexpected[:5]} ({len(unexpected)}), wrong shape "
                              f"{wrong[:5]}{hint}")
    return mapped


BINS = ("auto", "mtl_aqa", "exemplars")

# What the official CoRe/TPT test loops do to a frame (docs/datasets.md, Spatial pipelines): torch_videovision's
# Resize((455, 256)) through PIL (256 wide x 455 tall, bilinear) of the extracted frame, then a
# 224 centre crop. Videos are therefore decoded at full size and resized by PIL (video_resize=pil).
OFFICIAL_PREPROCESSING = {"core": {"data.pipeline": "tvv", "data.video_resize": "pil",
                                   "data.frame_size": "224"},
                          "tpt": {"data.pipeline": "tvv", "data.video_resize": "pil",
                                  "data.frame_size": "224"},
                          # MUSDL/USDL on MTL-AQA: PIL's 455x256 resize, centre crop 224 (docs/datasets.md,
                          # Spatial pipelines; the official test-time filter is a random draw, ours bilinear)
                          "usdl": {"data.pipeline": "musdl", "data.video_resize": "pil",
                                   "data.frame_size": "224"},
                          "musdl": {"data.pipeline": "musdl", "data.video_resize": "pil",
                                    "data.frame_size": "224"},
                          # FineDiving TSA: torch_videovision's Resize((200, 112)) (112 wide x 200
                          # tall), centre crop 112, 96 frames
                          "fdtsa": {"data.pipeline": "tvv", "data.video_resize": "pil",
                                    "data.frame_size": "112", "data.num_frames": "96",
                                    "data.resize": "200,112"}}


def official_preprocessing(method: str, dataset: str, overrides: list[str],
                           notes: list[str]) -> list[str]:
    """The ``--set`` overrides that give ``dataset`` the preprocessing ``method``'s official
    checkpoints were trained with. A dataset whose config cannot express it is refused (never
    scored another way silently); a user override of one of those keys is kept, with a note."""
    wanted = OFFICIAL_PREPROCESSING.get(method, {})
    keys = {k for k, *_ in flat_fields(build_run_config(method, dataset))}
    missing = [k for k in wanted if k not in keys]
    if missing:
        raise ConfigError(f"the {dataset} dataset has no {', '.join(missing)}: it cannot "
                          f"preprocess clips the way official {method} checkpoints were trained "
                          f"({', '.join(f'{k}={v}' for k, v in wanted.items())}); use a dataset "
                          "that can (folder, mtl_aqa, aqa7, ...)")
    given = {o.partition("=")[0].strip(): o.partition("=")[2].strip() for o in overrides}
    for k, v in wanted.items():
        if k in given and given[k] != v:
            notes.append(f"{k}={given[k]} as asked, but the official {method} code used {k}={v}: "
                         "predictions will differ from the official ones")
    return [f"{k}={v}" for k, v in wanted.items()]


def choose_bins(bins: str, dataset: str | None) -> str:
    if bins not in BINS:
        raise ConfigError(f"--bins {bins!r}: choose one of {', '.join(BINS)}")
    if bins == "exemplars" and not dataset:
        raise ConfigError("--bins exemplars needs --dataset (and --data-root): the bins are "
                          "built from that dataset's training split")
    if bins == "auto":  # a benchmark's own training split; for a user's clips, MTL-AQA's
        return "mtl_aqa" if dataset in (None, "folder", "synthetic") else "exemplars"
    return bins


OFFICIAL_METRICS = (("rho", "rho_best"), ("l2", "L2_min"), ("rl2", "RL2_min"))  # ours, the file's


def write_imported_run(runs_dir: Path, cfg, model_state: dict, path: str | Path, *,
                       metrics: dict | None = None, epoch: int = 0, notes: list[str] | None = None,
                       extras: dict | None = None, out: str | Path | None = None,
                       extra_run: dict | None = None, best_metric: str = "rho") -> dict:
    """An imported checkpoint as a run of its own: ``run.json``, ``checkpoints/best.pt`` (or
    ``out``), an event log with the file's metrics, one checkpoint event and a ``finished``
    status, so the index and the app list it like a trained run. ``metrics`` are keyed by the
    official names (``rho_best``, ``L2_min``, ``RL2_min``) or by ours (``rho``, ``accuracy``)."""
    from aqa.runs.events import EVENTS_FILE, EventWriter
    from aqa.train.checkpoint import save_checkpoint

    metrics, notes = dict(metrics or {}), list(notes or [])
    source = str(Path(path).resolve())
    run_path = store.create_run(runs_dir, to_dict(cfg), argv=["aqa", "import-checkpoint", str(path)],
                                extra={"imported_from": source, "notes": notes, **(extra_run or {})})
    target = Path(out) if out else run_path / "checkpoints" / "best.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    official = dict(OFFICIAL_METRICS).get(best_metric, best_metric)
    best = metrics[official] if official in metrics else metrics.get(best_metric)
    state = {"method": cfg.method, "config": to_dict(cfg), "model": model_state,
             "epoch": epoch, "step": 0, "metrics": metrics,
             "best": {"metric": best_metric, "value": best, "epoch": epoch},
             "imported_from": source, **(extras or {})}
    size = save_checkpoint(target, state)
    events = EventWriter(run_path / EVENTS_FILE)
    events.emit("start", imported=True, epochs=epoch, total_steps=0)
    for name_, key in OFFICIAL_METRICS:
        if metrics.get(key) is not None:
            events.metric(name_, metrics[key], epoch=epoch, step=0, split="test")
    for key, value in metrics.items():  # metrics already under our names
        if key not in {k for _, k in OFFICIAL_METRICS} and value is not None:
            events.metric(key, value, epoch=epoch, step=0, split="test")
    events.emit("checkpoint", path=str(target), epoch=epoch, step=0, size=size, metrics=metrics)
    events.emit("status", status="finished", message="imported " + Path(path).name)
    events.close()
    store.write_job(run_path, {"executor": "import", "state": "done", "started": time.time()})
    return {"checkpoint": str(target), "run_id": run_path.name, "notes": notes}
