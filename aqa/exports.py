"""Runs out to the tools people already use: TensorBoard event files and an MLflow store.

What an export holds, for either tool (docs/runs.md, "Exports"):

    metrics     every effective metric event (a resumed run's superseded ones dropped, by
                ``aqa.runs.events.effective_metrics``) as ``<split>/<name>`` at its step, with its
                event time; the epoch as the series ``epoch`` at every step that has a metric
    config      run.json's resolved config, flattened (``train.lr``): TensorBoard hparams,
                MLflow params
    files       run.json, stdout.log, checkpoints/ and predictions/ (TensorBoard: copied into
                ``<logdir>/<run id>/files/`` beside the event file; MLflow: artifacts)

An export goes to one place a run: TensorBoard ``<logdir>/<run id>/``, MLflow the run tagged
``aqa.run_id`` in the experiment. A second export into the same place is refused (nothing is
written) unless ``replace=True``, which deletes the earlier export first. Both libraries are
optional (``pip install 'aqa-studio[exports]'``) and imported only here, only when used.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from aqa.errors import ExportError
from aqa.runs import events as run_events
from aqa.runs import store

INSTALL_HINT = "pip install 'aqa-studio[exports]'"
RUN_TAG = "aqa.run_id"  # the MLflow tag that names the aqa run an MLflow run was exported from
FILES_DIR = "files"  # TensorBoard: the run's files, copied beside the event file
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "crashed": "FAILED",
                 "stopped": "KILLED"}  # others (queued, running) stay RUNNING


@dataclass
class RunExport:
    """What one run's export wrote."""

    run_id: str
    target: str  # "tensorboard" or "mlflow"
    where: str  # the TensorBoard run folder, or the MLflow run id
    metrics: int  # metric points written (the epoch series not counted)
    params: int
    files: int


# ---------------------------------------------------------------- what a run has to export

def metric_points(run_dir: Path) -> list[dict]:
    """The run's effective metric events as points: tag, value, step, epoch, t (seconds).

    Sorted by step (stable: events of one step keep their log order). A value written as null
    (NaN) comes back as NaN.
    """
    evs = run_events.read_events(Path(run_dir) / run_events.EVENTS_FILE)
    points = [{"tag": f"{e.get('split') or 'train'}/{e['name']}",
               "value": math.nan if e.get("value") is None else float(e["value"]),
               "step": int(e.get("step") or 0), "epoch": e.get("epoch"), "t": float(e["t"])}
              for e in run_events.effective_metrics(evs)]
    return sorted(points, key=lambda p: p["step"])


def epoch_points(points: list[dict]) -> list[dict]:
    """The ``epoch`` series: one point a step that has metrics (the epoch of its last metric)."""
    by_step: dict[int, dict] = {}
    for p in points:
        if p["epoch"] is not None:
            by_step[p["step"]] = {"tag": "epoch", "value": float(p["epoch"]), "step": p["step"],
                                  "epoch": p["epoch"], "t": p["t"]}
    return [by_step[s] for s in sorted(by_step)]


def flatten_config(config: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 0.001}``; lists as JSON, None as "None"."""
    from aqa.runs.query import flat_config

    return {k: v if isinstance(v, (bool, int, float, str)) else "None" if v is None
            else json.dumps(v, default=str) for k, v in flat_config(config, prefix).items()}


def run_files(run_dir: Path, checkpoints: bool = True) -> list[tuple[Path, str]]:
    """(file, its path in the export) for run.json, stdout.log, predictions/ and checkpoints/."""
    run_dir = Path(run_dir)
    out = [(run_dir / name, name) for name in (store.RUN_JSON, store.STDOUT_LOG)
           if (run_dir / name).is_file()]
    for folder in ("predictions",) + (("checkpoints",) if checkpoints else ()):
        for f in sorted((run_dir / folder).glob("*")):
            if f.is_file() and not f.name.startswith("."):  # no half-written temp files
                out.append((f, f"{folder}/{f.name}"))
    return out


def _runs(run_dirs: Iterable[Path]) -> list[tuple[Path, dict]]:
    return [(Path(d), store.read_run(Path(d))) for d in run_dirs]


# ---------------------------------------------------------------- TensorBoard

def _tensorboard():
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError as exc:
        raise ExportError(f"exporting to TensorBoard needs the tensorboard package ({exc}); "
                          f"install it with: {INSTALL_HINT}") from None
    return SummaryWriter, hparams


def to_tensorboard(run_dirs: Iterable[Path], logdir: Path, replace: bool = False,
                   checkpoints: bool = True) -> list[RunExport]:
    """Write each run to ``<logdir>/<run id>/``: its event file and ``files/``.

    Refuses (writing nothing) when a run's folder already exists, unless ``replace``.
    """
    SummaryWriter, hparams = _tensorboard()
    runs = _runs(run_dirs)
    logdir = Path(logdir)
    taken = [r["id"] for _, r in runs if (logdir / r["id"]).exists()]
    if taken and not replace:
        raise ExportError(f"already exported to {logdir}: {', '.join(taken)}; pass --replace to "
                          f"write them again, or choose another --logdir")
    out = []
    for run_dir, run in runs:
        dest = logdir / run["id"]
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        points = metric_points(run_dir)
        params = flatten_config(run.get("config") or {})
        with SummaryWriter(log_dir=str(dest)) as w:
            for p in points + epoch_points(points):
                w.add_scalar(p["tag"], p["value"], global_step=p["step"], walltime=p["t"])
            final = {}
            for p in points:
                if p["tag"].startswith("test/"):
                    final[p["tag"]] = p["value"]
            for summary in hparams(params, final):
                w.file_writer.add_summary(summary)
            w.add_text("run.json", _indent(json.dumps(run, indent=2, default=str)))
        files = run_files(run_dir, checkpoints)
        for src, rel in files:
            target = dest / FILES_DIR / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        out.append(RunExport(run["id"], "tensorboard", str(dest), len(points), len(params),
                             len(files)))
    return out


def _indent(text: str) -> str:
    """Markdown code block (TensorBoard's text plugin renders markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


# ---------------------------------------------------------------- MLflow

def _mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ExportError(f"exporting to MLflow needs the mlflow-skinny package ({exc}); "
                          f"install it with: {INSTALL_HINT}") from None
    return MlflowClient, Metric, Param, MlflowException


def default_tracking_uri(runs_dir: Path) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else an SQLite store in the workspace."""
    import os
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_dir) / 'mlflow.db'}"


def _artifact_root(tracking_uri: str) -> str | None:
    """A local SQLite store keeps its artifacts beside the database (``mlartifacts/``);
    MLflow's own default would be ./mlruns in whatever folder the command runs in."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def to_mlflow(run_dirs: Iterable[Path], tracking_uri: str, experiment: str = "aqa",
              replace: bool = False, checkpoints: bool = True) -> list[RunExport]:
    """Log each run as an MLflow run (named and tagged by its run id) in ``experiment``.

    Refuses (writing nothing) when the experiment already has a run tagged with one of the run
    ids, unless ``replace``, which deletes the earlier MLflow run first.
    """
    MlflowClient, Metric, Param, MlflowException = _mlflow()
    from aqa.runs.status import run_status

    runs = _runs(run_dirs)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            exp_id = client.create_experiment(experiment,
                                              artifact_location=_artifact_root(tracking_uri))
        elif exp.lifecycle_stage != "active":
            raise ExportError(f"MLflow experiment {experiment!r} is deleted in {tracking_uri}; "
                              f"restore it or choose another --experiment")
        else:
            exp_id = exp.experiment_id
        earlier = {r["id"]: exported_runs(client, exp_id, r["id"]) for _, r in runs}
        taken = [rid for rid, found in earlier.items() if found]
        if taken and not replace:
            raise ExportError(f"already exported to MLflow experiment {experiment!r} at "
                              f"{tracking_uri}: {', '.join(taken)}; pass --replace to write "
                              f"them again, or choose another --experiment")
        out = []
        for run_dir, run in runs:
            for old in earlier[run["id"]]:
                client.delete_run(old)
            out.append(_mlflow_run(client, exp_id, run_dir, run, run_status(run_dir),
                                   Metric, Param, checkpoints))
        return out
    except MlflowException as exc:
        raise ExportError(f"MLflow ({tracking_uri}): {exc.message}") from None


def exported_runs(client, experiment_id: str, run_id: str) -> list[str]:
    """MLflow run ids in the experiment exported from aqa run ``run_id`` (deleted ones not)."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'")
    return [r.info.run_id for r in found]


def _mlflow_run(client, exp_id, run_dir, run, status, Metric, Param, checkpoints) -> RunExport:
    points = metric_points(run_dir)
    params = flatten_config(run.get("config") or {})
    tags = {RUN_TAG: run["id"], "mlflow.runName": run["id"], "aqa.method": run.get("method"),
            "aqa.dataset": run.get("dataset"), "aqa.code_version": run.get("code_version"),
            "aqa.status": status}
    created = run.get("created")
    ml = client.create_run(exp_id, start_time=int(created * 1000) if created else None,
                           tags={k: str(v) for k, v in tags.items() if v is not None})
    mid = ml.info.run_id
    metrics = [Metric(p["tag"], p["value"], int(p["t"] * 1000), p["step"])
               for p in points + epoch_points(points)]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit: 1000 metrics
        client.log_batch(mid, metrics=metrics[i:i + 1000])
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):  # and 100 params
        client.log_batch(mid, params=items[i:i + 100])
    files = run_files(run_dir, checkpoints)
    for src, rel in files:
        folder = str(Path(rel).parent)
        client.log_artifact(mid, str(src), None if folder == "." else folder)
    end = max([p["t"] for p in points], default=created)
    if status in MLFLOW_STATUS:
        client.set_terminated(mid, MLFLOW_STATUS[status],
                              end_time=int(end * 1000) if end else None)
    return RunExport(run["id"], "mlflow", mid, len(points), len(params), len(files))
