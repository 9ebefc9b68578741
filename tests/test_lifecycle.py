"""Real training subprocesses on the synthetic dives with tiny3d: finish, stop, crash, resume."""

import os
import signal

import pytest

from aqa import video
from aqa.jobs import local
from aqa.runs import index, status, store
from aqa.runs.events import effective_metrics, read_events
from conftest import wait_for

pytestmark = pytest.mark.slow


def events(path):
    return read_events(path / "events.jsonl")


def wait_status(path, statuses, timeout=180):
    return wait_for(lambda: local.run_status(path) in statuses and local.run_status(path),
                    timeout=timeout, what=f"run status in {statuses}; log:\n" +
                    ((path / "stdout.log").read_text() if (path / "stdout.log").exists() else ""))


def epoch_rows(runs_dir, run_id, name="rho"):
    return sorted(r["epoch"] for r in index.run_metrics(runs_dir, run_id)
                  if r["name"] == name and r["split"] == "test")


def test_run_finishes_and_is_indexed(runs_dir, fast_overrides):
    path = local.submit(runs_dir, "regression", "synthetic", overrides=fast_overrides)
    assert wait_status(path, {"finished", "failed", "crashed"}) == "finished", \
        (path / "stdout.log").read_text()
    index.sync(runs_dir)
    row = index.get_run(runs_dir, path.name)
    assert row["status"] == "finished" and row["epoch"] == 2 and row["epochs"] == 2
    assert row["best_rho"] is not None
    assert epoch_rows(runs_dir, path.name) == [1, 2]
    assert {c["name"] for c in index.run_checkpoints(runs_dir, path.name)} >= {"last.pt", "best.pt"}
    assert (path / "predictions" / "test_epoch_002.csv").read_text().startswith("id,true,pred\n")
    start = next(e for e in events(path) if e["type"] == "start")
    assert start["decoder"] == video.frames_decoder((32, 32))  # the mp4 dives, resized 32x32
    log = (path / "stdout.log").read_text()
    assert "ETA" in log and "run finished" in log
    # evaluating best.pt again gives the rho the loop logged for that epoch
    from aqa.evaluate import evaluate_checkpoint
    result = evaluate_checkpoint(path.name, runs_dir=runs_dir)
    logged = [r["value"] for r in index.run_metrics(runs_dir, path.name)
              if r["name"] == "rho" and r["epoch"] == row["best_epoch"]]
    assert result["metrics"]["rho"] == pytest.approx(logged[0], abs=1e-6)
    assert result["rho_ci95"][0] <= result["metrics"]["rho"] <= result["rho_ci95"][1]
    assert (path / "predictions" / "test_eval_best.csv").exists()
    assert result["decoder"] == start["decoder"]  # the frames the run's predictions came from
    job = store.read_job(path)
    assert job["start_time"] and job["pid"]
    wait_for(lambda: not status.process_alive(job["pid"], job["start_time"]), what="process exit")


def test_the_trainer_is_let_go_before_the_process_group_is_destroyed(runs_dir, fast_overrides,
                                                                      monkeypatch):
    """On the way out the heartbeat thread is joined and the trainer (the model, DDP and with it
    the process group) freed before ``destroy_process_group``: nothing of torch.distributed is
    left to the interpreter's shutdown, where a rank aborted ("terminate called without an active
    exception") after a finished 2-node run."""
    import gc
    import threading

    from aqa.train import loop

    alive_at_close = []

    def close(self):
        gc.collect()
        alive_at_close.append(([t.name for t in threading.enumerate() if t.name == "aqa-heartbeat"],
                               sum(type(o) is loop.Trainer and o.run_dir == path.resolve()
                                   for o in gc.get_objects())))  # this run's trainer

    monkeypatch.setattr(loop.DistContext, "close", close)
    path = local.submit(runs_dir, "regression", "synthetic", start_now=False,
                        overrides=fast_overrides + ["train.epochs=1", "train.heartbeat_s=0.05"])
    assert loop.main(str(path)) == 0
    assert alive_at_close == [([], 0)]
    assert [e for e in events(path) if e["type"] == "heartbeat"]  # the thread did run
    assert events(path)[-1] == {**events(path)[-1], "type": "status", "status": "finished"}
    # the heartbeat ended before the final status: nothing written after it


def test_stop_checkpoints_and_ends_stopped(runs_dir, fast_overrides):
    path = local.submit(runs_dir, "regression", "synthetic",
                        overrides=fast_overrides + ["train.epochs=50"])
    wait_for(lambda: any(e["type"] == "metric" for e in events(path)), what="first metric")
    assert local.stop(path, grace_s=60) == "stopped"
    last = [e for e in events(path) if e["type"] == "status"][-1]
    assert last["status"] == "stopped" and last["signal"] == "SIGTERM"
    assert (path / "checkpoints" / "last.pt").exists()
    index.sync(runs_dir)
    assert index.get_run(runs_dir, path.name)["status"] == "stopped"


def test_kill_9_then_resume_completes_with_each_epoch_once(runs_dir, fast_overrides):
    epochs = 5
    overrides = fast_overrides + [f"train.epochs={epochs}", "data.frame_size=48",
                                  "data.num_frames=16"]
    path = local.submit(runs_dir, "regression", "synthetic", overrides=overrides)
    # kill -9 mid-epoch, after the first checkpoint and some steps of the next epoch
    wait_for(lambda: any(e["type"] == "checkpoint" for e in events(path)) and
             any(e["type"] == "metric" and e["epoch"] >= 2 and e["split"] == "train"
                 for e in events(path)), interval=0.02, what="epoch 2 under way")
    job = store.read_job(path)
    os.kill(job["pid"], signal.SIGKILL)
    wait_for(lambda: not status.process_alive(job["pid"], job["start_time"]), what="process gone")
    assert local.run_status(path) == "crashed"
    index.sync(runs_dir)
    assert index.get_run(runs_dir, path.name)["status"] == "crashed"

    local.resume(path)
    assert wait_status(path, {"finished", "failed", "crashed"}) == "finished", \
        (path / "stdout.log").read_text()
    index.sync(runs_dir)
    row = index.get_run(runs_dir, path.name)
    assert row["status"] == "finished" and row["epoch"] == epochs and row["attempts"] == 2
    assert epoch_rows(runs_dir, path.name) == list(range(1, epochs + 1))
    assert epoch_rows(runs_dir, path.name, "epoch_loss") == []  # train-split rows, checked below
    train_epochs = sorted(r["epoch"] for r in index.run_metrics(runs_dir, path.name)
                          if r["name"] == "epoch_loss")
    assert train_epochs == list(range(1, epochs + 1))
    # the same holds straight from the event log, without the index
    kept = [(m["epoch"], m["name"]) for m in effective_metrics(events(path)) if m["split"] == "test"]
    assert sorted(e for e, n in kept if n == "rho") == list(range(1, epochs + 1))
    steps = [m["step"] for m in effective_metrics(events(path))]
    assert steps == sorted(steps)  # no step logged twice out of order
    # the index rebuilt from scratch agrees
    index.rebuild(runs_dir)
    assert epoch_rows(runs_dir, path.name) == list(range(1, epochs + 1))


def test_two_process_gloo_run(runs_dir, fast_overrides):
    path = local.submit(runs_dir, "regression", "synthetic", overrides=fast_overrides, nproc=2)
    assert wait_status(path, {"finished", "failed", "crashed"}) == "finished", \
        (path / "stdout.log").read_text()
    evs = events(path)
    starts = [e for e in evs if e["type"] == "start"]
    assert len(starts) == 1 and starts[0]["rank_count"] == 2  # rank 0 alone writes events
    assert sorted(e["epoch"] for e in evs if e["type"] == "metric" and e["name"] == "rho") == [1, 2]
    job = store.read_job(path)
    assert "torch.distributed.run" in job["argv"] and "--standalone" in job["argv"]
    # both ranks evaluated their shard; rank 0 wrote every test clip's prediction
    rows = (path / "predictions" / "test_epoch_002.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == 6


def test_two_process_run_with_an_i3d_backbone_trains_past_the_first_step(runs_dir, fast_overrides):
    """I3D's logits layer is in the model but not in the features' graph: DistributedDataParallel
    must not stop at the second step on parameters that got no gradient."""
    over = [o for o in fast_overrides if not o.startswith("train.epochs")] + [
        "train.epochs=1", "backbone.name=i3d", "backbone.weights=", "backbone.family=piergiaj",
        "data.frame_size=64"]  # a last batch of one clip still has 2x2 cells for BatchNorm
    path = local.submit(runs_dir, "regression", "synthetic", overrides=over, nproc=2)
    assert wait_status(path, {"finished", "failed", "crashed"}, timeout=300) == "finished", \
        (path / "stdout.log").read_text()[-3000:]
    steps = [e["step"] for e in events(path) if e["type"] == "metric" and e["split"] == "train"]
    assert max(steps) >= 2


def test_failed_run_reports_its_reason(runs_dir, fast_overrides, tmp_path):
    overrides = [o for o in fast_overrides if not o.startswith("data.num_clips")]
    path = local.submit(runs_dir, "regression", "folder",
                        overrides=overrides + [f"data.root={tmp_path / 'nowhere'}"])
    assert wait_status(path, {"finished", "failed", "crashed"}) == "failed"
    last = [e for e in events(path) if e["type"] == "status"][-1]
    assert "does not exist" in last["message"] and "--data-root" in last["message"]


def test_resume_refuses_a_running_or_finished_run(runs_dir, fast_overrides):
    from aqa.errors import RunError
    path = local.submit(runs_dir, "regression", "synthetic", overrides=fast_overrides)
    with pytest.raises(RunError, match="running"):
        local.resume(path)
    wait_status(path, {"finished"})
    with pytest.raises(RunError, match="finished"):
        local.resume(path)
