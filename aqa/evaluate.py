"""Evaluation: a model's predictions on a split, and the metrics of docs/methods.md, Evaluation.

``predict_rows`` is what the training loop's per-epoch evaluation runs; ``evaluate_checkpoint``
runs the same on a saved checkpoint (``python -m aqa eval RUN_OR_CKPT``): it rebuilds the model
and the dataset from the checkpoint's config, predicts the split, and reports rho with its
bootstrap 95% interval, L2 and RL2, writing a predictions CSV beside the checkpoint's run.
"""

from __future__ import annotations

import csv
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Subset

from aqa import metrics as M
from aqa.metrics import HIGHER_IS_BETTER, summarize  # noqa: F401  (their old home; torch-free there)
from aqa.config import build_run_config
from aqa.errors import ConfigError
from aqa.registry import DATASETS, METHODS
from aqa.data.base import collate  # noqa: F401  (its old home; the loop imports it here)
from aqa.runs.store import resolve_checkpoint  # noqa: F401  (its old home)
from aqa.train.checkpoint import load_checkpoint
from aqa.allocator import reuse_freed_memory


@torch.no_grad()
def predict_rows(method, model: torch.nn.Module, dataset, device: torch.device, batch_size: int,
                 num_workers: int = 0, indices: Sequence[int] | None = None,
                 autocast=None) -> list[tuple[str, float, float]]:
    """(id, true score, predicted score) for ``dataset`` (or its ``indices``), model in eval mode.
    The caller has run ``method.on_eval_start``."""
    subset = Subset(dataset, list(indices)) if indices is not None else dataset
    loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate, pin_memory=device.type == "cuda")
    rows = []
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                 for k, v in batch.items()}
        if autocast is not None:
            with autocast():
                pred = method.predict(model, batch)
        else:
            pred = method.predict(model, batch)
        rows += list(zip(batch["id"], batch["score"].tolist(), pred.float().tolist()))
    return rows


def write_predictions(path: Path, rows: list[tuple[str, float, float]],
                      classes: Sequence[int] | None = None) -> None:
    """``id,true,pred`` CSV, written to a temp file and renamed. A classification method's
    ``classes`` (``Method.predicted_classes``: one a row) add a last column ``pred_class``."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        if classes is None:
            w.writerow(["id", "true", "pred"])
            w.writerows(rows)
        else:
            w.writerow(["id", "true", "pred", "pred_class"])
            w.writerows((*r, c) for r, c in zip(rows, classes, strict=True))
    os.replace(tmp, path)


@reuse_freed_memory()
def evaluate_checkpoint(ref: str | Path, *, split: str = "test", runs_dir: str | Path | None = None,
                        data_root: str | None = None, device: str = "cpu",
                        batch_size: int | None = None, out: str | Path | None = None,
                        exemplars: str | None = None) -> dict:
    """Evaluate a checkpoint on ``split``; returns metrics, the rho CI and where predictions went.
    ``exemplars``: a pair method's exemplar rule for this evaluation (``model.exemplar_rule``,
    e.g. FineDiving's ``dive_number`` or ``difficulty``), written in the result's protocol."""
    ckpt = resolve_checkpoint(ref, runs_dir)
    state = load_checkpoint(ckpt, map_location=device)
    cfg = build_run_config(state["method"], state["config"]["dataset"], values=state["config"])
    from aqa.scoring import weights_from_checkpoint

    cfg = weights_from_checkpoint(cfg, state["model"])  # the checkpoint holds every weight
    if data_root:
        cfg = replace(cfg, data=replace(cfg.data, root=str(Path(data_root).resolve())))
    if exemplars:
        if not hasattr(cfg.model, "exemplar_rule"):
            raise ConfigError(f"--exemplars: {cfg.method} does not score against exemplars")
        cfg = replace(cfg, model=replace(cfg.model, exemplar_rule=exemplars))
    entry = DATASETS.get(cfg.dataset)
    train = entry.build(cfg.data, "train", train=False)
    clips = entry.build(cfg.data, split, train=False)
    method = METHODS.get(cfg.method)(cfg)
    method.wrap_dataset(train, "train", train)  # pair methods: the exemplar pool and its bins
    dataset = method.wrap_dataset(clips, split, train)
    model = method.build_model()
    model.load_state_dict(state["model"])
    dev = torch.device(device)
    model.to(dev).eval()
    method.on_eval_start(model, dev)
    rows = predict_rows(method, model, dataset, dev, batch_size or cfg.train.batch_size,
                        cfg.data.num_workers)
    y, p = [r[1] for r in rows], [r[2] for r in rows]
    result = {**method.eval_metrics(p, y), **method.extra_metrics(method.take_eval_extras())}
    lo, hi = M.bootstrap_ci(p, y)
    target = Path(out) if out else ckpt.parent.parent / "predictions" / f"{split}_eval_{ckpt.stem}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(target, rows, method.predicted_classes([r[2] for r in rows]))
    out = {"checkpoint": str(ckpt), "split": split, "samples": len(rows), "metrics": result,
           "rho_ci95": [lo, hi], "rl2_x100": result["rl2"] * 100 if "rl2" in result else None,
           "predictions": str(target),
           "epoch": state.get("epoch"),
           "decoder": getattr(clips, "decoder", None)}  # what made the frames (video_decoder)
    protocol = method.eval_protocol()  # e.g. TPT's voters: how many, how many padded
    if protocol is not None:
        out["protocol"] = protocol
    return out

