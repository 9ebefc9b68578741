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

from aqa import compare
from aqa import metrics as M
from aqa.config import build_run_config
from aqa.errors import ConfigError, RunError
from aqa.registry import DATASETS, METHODS
from aqa.data.base import collate  # noqa: F401  (its old home; the loop imports it here)
from aqa.runs.store import resolve_checkpoint  # noqa: F401  (its old home)
from aqa.train.checkpoint import load_checkpoint


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


def write_predictions(path: Path, rows: list[tuple[str, float, float]]) -> None:
    """``id,true,pred`` CSV, written to a temp file and renamed."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "true", "pred"])
        w.writerows(rows)
    os.replace(tmp, path)


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
    write_predictions(target, rows)
    out = {"checkpoint": str(ckpt), "split": split, "samples": len(rows), "metrics": result,
           "rho_ci95": [lo, hi], "rl2_x100": result["rl2"] * 100 if "rl2" in result else None,
           "predictions": str(target),
           "epoch": state.get("epoch"),
           "decoder": getattr(clips, "decoder", None)}  # what made the frames (video_decoder)
    protocol = method.eval_protocol()  # e.g. TPT's voters: how many, how many padded
    if protocol is not None:
        out["protocol"] = protocol
    return out


HIGHER_IS_BETTER = {"rho": True, "accuracy": True, "l2": False, "rl2": False, "tiou_50": True,
                    "tiou_75": True}


def _best(scored: list[tuple[float, int]], higher: bool) -> tuple[float, int]:
    """The best (value, epoch); on a tie the earliest epoch, as the loop's best.pt keeps it."""
    sign = 1 if higher else -1
    return max(scored, key=lambda ve: (sign * ve[0], -ve[1]))


def summarize(metric_rows: list[dict], best_metric: str = "rho",
              predictions_dir: str | Path | None = None) -> dict:
    """Best results of a run, both ways, from its metric rows (the index's or the event log's).

    official: each test metric's best over the epochs, independently (rho max, L2 and RL2 min,
              possibly from different epochs), as the papers' code reports them;
    honest:   one epoch, chosen by ``best_metric`` on the held-out validation split, with all its
              test metrics; None when the run had no validation split.
    With ``predictions_dir``, each gets the bootstrap 95% interval of its rho.
    """
    by_split: dict[str, dict[int, dict[str, float]]] = {}
    for r in metric_rows:
        if r.get("split") in ("val", "test") and r.get("value") is not None:
            by_split.setdefault(r["split"], {}).setdefault(r["epoch"], {})[r["name"]] = r["value"]
    test, val = by_split.get("test", {}), by_split.get("val", {})
    official = {}
    for name in ("rho", "l2", "rl2", "accuracy", "tiou_50", "tiou_75"):
        scored = [(m[name], e) for e, m in test.items() if name in m]
        if scored:
            value, epoch = _best(scored, HIGHER_IS_BETTER[name])
            official[name], official[f"{name}_epoch"] = value, epoch
    honest = None
    candidates = [(m[best_metric], e) for e, m in val.items() if best_metric in m and e in test]
    if candidates:
        _, epoch = _best(candidates, HIGHER_IS_BETTER.get(best_metric, True))
        honest = {"epoch": epoch, "selected_on": f"val {best_metric}", **test[epoch]}
    if predictions_dir is not None:
        for part, epoch in ((official, official.get("rho_epoch")),
                            (honest, (honest or {}).get("epoch"))):
            path = Path(predictions_dir) / f"test_epoch_{epoch:03d}.csv" if epoch else None
            if part is not None and path is not None and path.exists():
                recomputed = compare.predictions_metrics(path)  # cached per file
                if recomputed:
                    part["rho_ci95"] = [recomputed["rho_lo"], recomputed["rho_hi"]]
    return {"official": official, "honest": honest}
