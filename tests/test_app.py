"""AppTest: every page on an empty and a seeded workspace, launching, scoring, bad uploads.

The seeded workspace is written directly (run directories, events, job.json, a checkpoint built
from an untrained tiny3d model), so only the launch test starts a real training process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from aqa.config import build_run_config, to_dict
from aqa.runs import status, store
from aqa.runs.events import EVENTS_FILE, EventWriter
from conftest import FAST, SMALL_CLIPS, finish_task, wait_for

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "launch", "runs", "compare", "score", "data"]
TINY = ["data.num_frames=8", "data.frame_size=32"]


def app(page: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()  # st.navigation registers the pages on the first run
    at.switch_page(f"app_pages/{page}.py")
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------- seeding

def _write_checkpoint(run_path: Path, cfg) -> Path:
    from aqa.registry import METHODS
    from aqa.train.checkpoint import save_checkpoint

    model = METHODS.get(cfg.method)(cfg).build_model()
    path = run_path / "checkpoints" / "best.pt"
    save_checkpoint(path, {"method": cfg.method, "config": to_dict(cfg),
                           "model": model.state_dict(), "epoch": 2, "step": 10})
    return path


def finish_with_checkpoint(runs_dir: Path, path: Path, ckpt: Path, epoch: int, step: int) -> None:
    """Record ``ckpt`` as the checkpoint of run ``path`` and the run as finished, in the index."""
    from aqa.runs import index

    ev = EventWriter(path / EVENTS_FILE)
    ev.emit("checkpoint", path=str(ckpt.relative_to(path)), epoch=epoch, step=step,
            size=ckpt.stat().st_size, metrics={"rho": 0.5})
    ev.emit("status", status="finished", epoch=epoch, step=step)
    ev.close()
    index.sync(runs_dir)


def seed_run(runs_dir: Path, kind: str, synthetic_root: Path) -> Path:
    """A run that looks ``finished``, ``running`` (this pid) or ``crashed`` (a dead pid)."""
    cfg = build_run_config("regression", "synthetic",
                           overrides=TINY + [f"data.root={synthetic_root}", "train.epochs=3",
                                             f"data.num_clips={SMALL_CLIPS}"])
    path = store.create_run(runs_dir, to_dict(cfg))
    ev = EventWriter(path / EVENTS_FILE)
    ev.emit("start", epochs=3, total_steps=30, params=12345)
    ev.emit("status", status="running")
    for step in range(1, 21):
        ev.metric("loss", 1.0 / step, epoch=1 + step // 10, step=step, split="train")
    for epoch, rho in ((1, 0.5), (2, 0.7)):
        ev.metric("rho", rho, epoch=epoch, step=10 * epoch, split="test")
        ev.metric("l2", 100.0 / epoch, epoch=epoch, step=10 * epoch, split="test")
        ev.metric("rl2", 0.05 / epoch, epoch=epoch, step=10 * epoch, split="test")
        (path / "predictions" / f"test_epoch_{epoch:03d}.csv").write_text(
            "id,true,pred\na,10,12\nb,20,18\nc,30,33\nd,40,39\ne,50,47\n")
    ckpt = _write_checkpoint(path, cfg)
    ev.emit("checkpoint", path=str(ckpt.relative_to(path)), epoch=2, step=20,
            size=ckpt.stat().st_size, metrics={"rho": 0.7, "l2": 50.0, "rl2": 0.025})
    ev.emit("heartbeat", epoch=2, step=20, total_steps=30, eta_s=12.0)
    if kind == "finished":
        ev.emit("status", status="finished", epoch=3, step=30)
    ev.close()
    (path / store.STDOUT_LOG).write_text("epoch 1/3 step 10/30 loss 0.1\nepoch 2 test rho 0.7\n")
    if kind == "running":
        pid = os.getpid()
    else:
        proc = subprocess.Popen(["true"])
        proc.wait()
        pid = proc.pid
    start = status.process_start_time(pid) if kind == "running" else 1
    store.write_job(path, {"executor": "local", "pid": pid, "pgid": pid, "start_time": start,
                           "host": socket.gethostname(), "gpus": [], "nproc": 1,
                           "started": time.time() - 60, "state": "started", "attempts": []})
    return path


@pytest.fixture
def seeded(runs_dir, synthetic_root) -> dict[str, Path]:
    return {kind: seed_run(runs_dir, kind, synthetic_root)
            for kind in ("finished", "running", "crashed")}


# ---------------------------------------------------------------- every page renders

@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_empty_workspace(runs_dir, page):
    at = app(page)
    no_exception(at)
    assert at.title, f"{page} rendered no title"


def test_home_offers_the_demo_on_empty_workspace(runs_dir):
    at = app("home")
    assert [b.label for b in at.button] == ["Start the demo run on the synthetic dives"]


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_seeded_workspace(seeded, page):
    at = app(page)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]


def test_seeded_statuses_and_run_pages(seeded):
    from aqa.runs import index

    statuses = {Path(r["run_dir"]).name: r["status"] for r in index.list_runs(store.resolve_runs_dir())}
    assert sorted(statuses.values()) == ["crashed", "finished", "running"]
    for kind, path in seeded.items():
        at = app("runs", run=path.name)
        no_exception(at)
        assert at.title[0].value == f"Run {path.name}"
        assert at.button(key="stop").disabled == (kind != "running")
        assert at.button(key="resume").disabled == (kind not in ("crashed",))
        assert any("metric points" in c.value for c in at.caption)
        if kind == "crashed":
            assert "This run crashed" in at.error[0].value


def _chart_tick(runs_dir: str, run_id: str) -> None:
    from pathlib import Path

    from ui import runview

    runview.live(Path(runs_dir), run_id, Path(runs_dir) / run_id, active=False)


def test_a_chart_tick_opens_the_index_once(seeded, monkeypatch):
    """Each tick of the live chart: one index connection and one migration check."""
    from aqa.runs import index

    calls = {"connect": 0, "migrate": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(index, "_connect", counted("connect", index._connect))
    monkeypatch.setattr(index, "migrate", counted("migrate", index.migrate))
    path = seeded["running"]
    at = AppTest.from_function(_chart_tick, args=(str(path.parent), path.name), default_timeout=60)
    for tick in (1, 2):
        at.run()
        no_exception(at)
        assert any("26 metric points" in c.value for c in at.caption), [c.value for c in at.caption]
        assert calls == {"connect": tick, "migrate": tick}


def test_runs_table_filters(seeded):
    at = app("runs")
    no_exception(at)
    assert any(c.value == "3 of 3 runs" for c in at.caption), [c.value for c in at.caption]
    at.multiselect(key="f_status").set_value(["crashed"]).run()
    assert any(c.value == "1 of 3 runs" for c in at.caption)


def test_compare_table_has_ci_and_paper_rows(seeded):
    at = app("compare")
    no_exception(at)
    table = at.dataframe[0].value
    assert "ρ 95% CI" in table.columns and "RL2 (×100)" in table.columns
    assert (table["dataset"] == "MTL-AQA").sum() == 9 and "protocol" in table.columns
    assert "provenance" in table.columns
    assert at.get("download_button")


def test_compare_draws_its_charts_when_their_section_is_opened(seeded):
    import json

    at = app("compare")
    no_exception(at)
    chosen = at.multiselect(key="cmp_runs").value
    assert len(chosen) >= 2 and not at.get("plotly_chart")  # closed: no chart, no Plotly
    for key in ("x_curves", "x_scatter"):
        at.session_state[key] = True
    at.run()
    no_exception(at)
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curves = next(f for f in figs if "by epoch" in f["layout"]["title"]["text"])
    assert at.selectbox(key="cmp_metric").value == "rho (test)"
    assert sorted(t["name"] for t in curves["data"]) == sorted(chosen)
    # one predicted-vs-true scatter a chosen run (each has its epoch's predictions file)
    assert len(figs) == 1 + len(chosen)


def test_data_page_extracts_mtl_aqa_frames(runs_dir, synthetic_root, tmp_path):
    import shutil
    root = tmp_path / "MTL-AQA"
    (root / "videos").mkdir(parents=True)
    shutil.copy(synthetic_root / "clips" / "dive_0000.mp4", root / "videos" / "01.mp4")
    at = app("data")
    at.selectbox(key="ds").set_value("mtl_aqa").run()
    at.text_input(key="ds_root").set_value(str(root))
    at.button(key="prepare").click().run()
    no_exception(at)
    frames = sorted((root / "new" / "new_total_frames_256s" / "01").iterdir())
    assert [f.name for f in frames[:2]] == ["00000001.jpg", "00000002.jpg"] and len(frames) == 24
    assert at.success[0].value.startswith("Prepared ")


def test_data_doctor_and_prepare(runs_dir, synthetic_root):
    at = app("data")
    at.text_input(key="ds_root").set_value(str(synthetic_root))
    finish_task(at.button(key="doctor").click().run(), "doctor")  # it runs in the background
    no_exception(at)
    assert "Data ready: 24 annotated samples: 18 train, 6 test" in at.success[0].value


# ---------------------------------------------------------------- launch

def test_launch_form_refuses_bad_values(runs_dir, synthetic_root):
    at = app("launch")
    at.selectbox(key="method").set_value("regression").run()
    prefix = "regression:synthetic:tiny3d:None"
    at.text_input(key=f"{prefix}:optim.lr").set_value("-1")
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    no_exception(at)
    assert at.error[-1].value == "Not launched: optim.lr must be positive"
    at.text_input(key=f"{prefix}:optim.lr").set_value("fast")
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    assert at.error[-1].value == "Not launched: optim.lr: expected float, got 'fast'"
    assert store.list_run_dirs(runs_dir) == []


@pytest.mark.slow
def test_launch_form_submits_a_real_run(runs_dir, synthetic_root):
    from aqa import jobs
    from aqa.jobs.local import run_status

    at = app("launch")
    at.selectbox(key="method").set_value("regression").run()
    at.text_input(key="data_root").set_value(str(synthetic_root)).run()
    prefix = "regression:synthetic:tiny3d:None"
    values = dict(v.split("=") for v in FAST)
    values.update({"train.epochs": "1", "data.num_clips": str(SMALL_CLIPS)})
    for key, value in values.items():
        widget = at.get_by_key(f"{prefix}:{key}") if hasattr(at, "get_by_key") else None
        widget = widget or at.text_input(key=f"{prefix}:{key}")
        widget.set_value(int(value) if widget.type == "number_input" else value)
    token = at.session_state["token:launch"]
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    no_exception(at)
    runs = store.list_run_dirs(runs_dir)
    assert len(runs) == 1
    spec = store.read_run(runs[0])
    assert spec["config"]["train"]["epochs"] == 1 and spec["config"]["data"]["frame_size"] == 32
    # the same submission again (a form sent twice) does not start a copy
    again = jobs.submit(runs_dir, "regression", "synthetic", data_root=str(synthetic_root),
                        overrides=[f"{k}={v}" for k, v in values.items()], submission_id=token)
    assert again == runs[0] and len(store.list_run_dirs(runs_dir)) == 1
    # st.switch_page to the run's page (AppTest records the query but stays on the page)
    assert at.query_params["run"] == runs[0].name
    wait_for(lambda: run_status(runs[0]) == "finished", timeout=180, what="the run to finish")


# ---------------------------------------------------------------- score

def _upload_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("aqa-upload-*")}


def _score(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="upload").set_value((name, data, "video/mp4"))
    at.run()
    if at.button(key="score_btn").disabled:  # refused when it was read (the page says why)
        return at
    return finish_task(at.button(key="score_btn").click().run(), "score")


def test_score_page_scores_an_upload(seeded, synthetic_root):
    before = _upload_dirs()
    at = app("score")
    clip = synthetic_root / "clips" / "dive_0003.mp4"
    at = _score(at, "dive.mp4", clip.read_bytes())
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert at.main.metric[0].label == "Predicted score"
    float(at.main.metric[0].value)
    assert _upload_dirs() == before
    assert "needs a pair method" in at.info[-1].value  # head to head: honest, disabled
    assert at.button(key="h2h_btn").disabled


def _short_clip(tmp_path: Path) -> bytes:
    from aqa.data.synthetic import draw_dive, render_clip, write_mp4

    path = tmp_path / "short.mp4"
    write_mp4(path, render_clip(draw_dive(0, 0), num_frames=2, size=32), fps=12)
    return path.read_bytes()


def test_bad_uploads_show_a_message(seeded, synthetic_root, tmp_path):
    good = (synthetic_root / "clips" / "dive_0003.mp4").read_bytes()
    cases = {
        "empty.mp4": (b"", "the file is empty (0 bytes)"),
        "random.mp4": (os.urandom(4096), "cannot open as a video"),
        "truncated.mp4": (good[: len(good) // 3], ""),
        "notes.mp4": (b"these are my notes, not a video\n" * 20, "cannot open as a video"),
        "short.mp4": (_short_clip(tmp_path), "at least 4 are needed"),
    }
    before = _upload_dirs()
    at = app("score")
    for name, (data, message) in cases.items():
        at = _score(at, name, data)
        no_exception(at)
        assert at.error, f"{name}: no error message shown"
        assert message in at.error[0].value, (name, at.error[0].value)
        assert not at.main.metric, f"{name}: a score was shown"
        assert _upload_dirs() == before, f"{name}: a temporary file was left behind"
    at = _score(at, "dive.mp4", good)  # still usable afterwards
    assert not at.error and at.main.metric[0].label == "Predicted score"


def test_queued_runs_show_their_queue_position(runs_dir, synthetic_root):
    from aqa.jobs import queue, submit
    queue.set_paused(runs_dir, True)  # nothing starts: both runs wait
    first = submit(runs_dir, "regression", "synthetic", overrides=[f"data.root={synthetic_root}"])
    second = submit(runs_dir, "regression", "synthetic", overrides=[f"data.root={synthetic_root}"])
    at = app("runs")
    no_exception(at)
    table = at.dataframe[0].value
    status = dict(zip(table["id"], table["status"]))
    assert status[first.name].endswith("queued #1") and status[second.name].endswith("queued #2")
    at = app("runs", run=second.name)
    no_exception(at)
    assert at.metric[0].value.endswith("queued #2")


def test_launch_offers_slurm_when_sbatch_is_on_the_path(runs_dir, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    (runs_dir / "workspace.toml").write_text('[slurm]\npartition = "gpu"\ntime = "4:00:00"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    at = app("launch")
    at.radio(key="executor").set_value("slurm").run()
    no_exception(at)
    assert at.text_input(key="sl_partition").value == "gpu"
    assert at.text_input(key="sl_time").value == "4:00:00"


def test_score_page_offers_tsa_the_tube_and_says_which_was_used(runs_dir, synthetic_root):
    """A TSA checkpoint: the page asks which athlete tube to use for an upload (no boxes), and
    the result says which one the score rests on."""

    cfg = build_run_config("tsa", "synthetic", overrides=TINY + [
        "backbone.name=tiny3d", "model.clip_starts=0,4", "model.clip_len=4",
        f"data.root={synthetic_root}", f"data.num_clips={SMALL_CLIPS}"])
    path = store.create_run(runs_dir, to_dict(cfg))
    ckpt = _write_checkpoint(path, cfg)
    finish_with_checkpoint(runs_dir, path, ckpt, epoch=2, step=20)
    at = app("score")
    assert at.radio(key="tube").options == ["Estimated from motion", "The whole frame"]
    at.radio(key="tube").set_value("The whole frame")
    at = _score(at, "dive.mp4", (synthetic_root / "clips" / "dive_0003.mp4").read_bytes())
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    float(at.main.metric[0].value)
    assert any("whole frame" in c.value for c in at.caption), [c.value for c in at.caption]


def test_score_page_scores_a_program_with_a_feature_method(runs_dir, tmp_path):
    """A GDLT checkpoint trained on recorded-recipe features: the upload is turned into features
    with that recipe (a progress bar), then the score and its contributions over the timeline."""
    from aqa.jobs import submit
    from aqa.runs import index
    from aqa.train.loop import main
    from features_fixture import make_program_videos
    from test_gdlt import TINY as GDLT_TINY, program_dataset

    videos = make_program_videos(tmp_path / "videos", [f"Ball_{k:03d}" for k in range(1, 5)],
                                 num_frames=20, size=(40, 48))
    program_dataset(tmp_path / "rg", videos)
    path = submit(runs_dir, "gdlt", "rg", data_root=str(tmp_path / "rg"), start_now=False,
                  overrides=GDLT_TINY + ["train.epochs=1"])
    assert main(str(path)) == 0
    index.sync(runs_dir)
    at = app("score")
    assert not [c for c in at.checkbox if c.key == "use_dd"]  # no difficulty for a program
    at = _score(at, "routine.mp4", videos[-1].read_bytes())
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert at.main.metric[0].label == "Predicted TOTAL"
    float(at.main.metric[0].value)
    assert len(at.get("plotly_chart")) == 1
    assert any("clips of 8 frames" in c.value for c in at.caption), [c.value for c in at.caption]


def test_score_page_draws_fdtsa_step_transitions_and_lists_exemplars(runs_dir, synthetic_root):
    """A FineDiving TSA checkpoint with its exemplar bank: the page asks for the dive number,
    draws the predicted transitions over the frames the model saw and lists the exemplars."""
    import torch

    from aqa.registry import METHODS
    from aqa.train.checkpoint import save_checkpoint

    cfg = build_run_config("fdtsa", "synthetic", overrides=TINY + [
        "backbone.name=tiny3d", "backbone.width=64", "model.clip_len=2",
        "model.clip_starts=0,1,2,3,4,5,6,6,6", "model.voter_number=3",
        f"data.root={synthetic_root}", f"data.num_clips={SMALL_CLIPS}"])
    path = store.create_run(runs_dir, to_dict(cfg))
    method = METHODS.get("fdtsa")(cfg)
    model = method.build_model().eval()
    method.on_eval_start(model, torch.device("cpu"))  # the bank: the training split's maps
    ckpt = path / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, {"method": "fdtsa", "config": to_dict(cfg), "model": model.state_dict(),
                           "epoch": 2, "step": 10, **method.checkpoint_extras(model)})
    finish_with_checkpoint(runs_dir, path, ckpt, epoch=2, step=10)
    at = app("score")
    at.text_input(key="dive_number").set_value("")
    at = _score(at, "dive.mp4", (synthetic_root / "clips" / "dive_0003.mp4").read_bytes())
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    float(at.main.metric[0].value)
    assert any("Predicted step transitions" in m.value for m in at.markdown)
    assert [c.key for c in at.get("plotly_chart")] == ["voters", "steps"]  # spread, steps
    assert any("chosen by difficulty" in m.value for m in at.markdown)
    assert len(at.dataframe[0].value) == 3  # the three exemplars
    assert any("no difficulty given" in c.value for c in at.caption), [c.value for c in at.caption]
