"""A feature extraction as a run of the workspace: the job ``python -m aqa.train RUN_DIR`` runs
when ``run.json`` says ``"kind": "features"`` (``aqa.features.submit`` makes such runs).

It lives like a training run (docs/runs.md): the queue starts it, ``events.jsonl`` gets a
``start`` event (``total_steps`` = the videos), a ``heartbeat`` after each video (``step`` =
videos done, ``eta_s``) and a final ``status`` (finished, failed with its message, or stopped
with the signal), ``stdout.log`` one line a video; ``aqa runs stop`` sends SIGTERM (the video in
flight is dropped, finished files stay), ``aqa runs resume`` starts it again and the finished
videos are skipped. ``run.json``'s ``config`` holds ``dataset``, ``data`` (the resolved dataset
config), ``recipe`` (:class:`aqa.features.extract.Recipe` fields), ``out``, ``device`` and
``batch_clips``.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import fields
from pathlib import Path

from aqa.errors import AQAError, DatasetError
from aqa.runs import store
from aqa.runs.events import EventWriter

KIND = "features"
EVENTS_FILE = "events.jsonl"


def is_features_run(run_dir: str | Path) -> bool:
    try:
        return store.read_run(Path(run_dir)).get("kind") == KIND
    except AQAError:
        return False


def dataset_videos(dataset: str, data: dict) -> list[tuple[str, Path]]:
    """``(name, video)`` of every sample the dataset would read features for: ``rg`` and
    ``fisv`` every routine of both label files (all apparatus), ``folder`` every CSV row."""
    from aqa.registry import DATASETS

    entry = DATASETS.get(dataset)
    names = {f.name for f in fields(entry.config_cls)}
    cfg = entry.config_cls(**{k: v for k, v in data.items() if k in names})
    if hasattr(entry, "videos"):
        items = entry.videos(cfg)
    else:  # folder, synthetic: the clips of every split
        items = [(s.id, Path(s.video)) for split in ("train", "val", "test")
                 for s in entry.samples(cfg, split)]
    seen: dict[str, Path] = {}
    for name, path in items:
        seen.setdefault(name, path)
    if not seen:
        raise DatasetError(f"the {dataset} dataset at {cfg.root} lists no videos to extract")
    return list(seen.items())


def devices_for(device: str) -> list[str]:
    """The torch devices one run uses: ``cpu``; ``cuda``/``auto`` every GPU the job was given
    (CUDA_VISIBLE_DEVICES), one worker each; ``cuda:N[,cuda:M]`` those."""
    import torch

    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return ["cpu"]
    if not torch.cuda.is_available():
        raise AQAError(f"--device {device}: no CUDA device is visible to this run; use --device cpu")
    if device in ("cuda", "auto"):
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [d.strip() for d in device.split(",") if d.strip()]


def main(run_dir: str | Path, stop) -> int:
    """The job: extract every video of the run's dataset into its ``out`` folder. ``stop`` is
    the process's installed stop flag (``aqa.train.stopflag.STOP``: ``requested``, ``signal``)."""
    from aqa.features.extract import Recipe, extract_all

    STOP = stop
    run_path = Path(run_dir).resolve()
    events = EventWriter(run_path / EVENTS_FILE)
    try:
        spec = store.read_run(run_path)
        cfg = spec["config"]
        recipe = Recipe(**cfg["recipe"])
        items = dataset_videos(cfg["dataset"], cfg["data"])
        devices = devices_for(cfg.get("device", "auto"))
        t0 = time.time()
        resumed = (run_path / EVENTS_FILE).stat().st_size > 0
        events.emit("start", pid=__import__("os").getpid(), rank_count=len(devices),
                    device=",".join(devices), amp=False, epochs=1, steps_per_epoch=len(items),
                    total_steps=len(items), params=None, trainable=None,
                    resumed_step=0 if resumed else None, resumed_epoch=0 if resumed else None)
        print(f"extracting {len(items)} videos of {cfg['dataset']} with {recipe.backbone} "
              f"(clip {recipe.clip_len}, stride {recipe.stride}) on {', '.join(devices)} into "
              f"{cfg['out']}", flush=True)

        def on_video(done: int, total: int) -> None:
            rate = done / max(1e-9, time.time() - t0)
            events.emit("heartbeat", epoch=int(done == total), step=done, total_steps=total,
                        eta_s=(total - done) / rate if rate else None)

        result = extract_all(items, cfg["out"], recipe, devices,
                             batch_clips=int(cfg.get("batch_clips", 8)),
                             stop=lambda: STOP.requested,
                             log=lambda line: print(line, flush=True), on_video=on_video)
        done = result["done"] + result["skipped"]
        if result["stopped"] or STOP.requested:
            events.emit("status", status="stopped", epoch=0, step=done, signal=STOP.signal)
            print(f"run stopped after {done} of {result['total']} videos; resume it with "
                  f"`python -m aqa runs resume {run_path.name}`", flush=True)
            return 0
        if result["failed"]:
            message = (f"{len(result['failed'])} of {result['total']} videos could not be read, "
                       f"e.g. {result['failed'][0]}; fix or remove them, then resume the run "
                       "(finished videos are kept)")
            events.emit("status", status="failed", message=message)
            print(f"error: {message}", file=sys.stderr, flush=True)
            return 2
        events.emit("status", status="finished", epoch=1, step=done)
        print(f"run finished: {result['total']} videos in {result['out']} "
              f"({result['skipped']} kept from before)", flush=True)
        return 0
    except AQAError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        events.emit("status", status="failed", message=str(exc))
        return exc.exit_code
    except Exception as exc:
        traceback.print_exc()
        events.emit("status", status="failed", message=f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    finally:
        events.close()

