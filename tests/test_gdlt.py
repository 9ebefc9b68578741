"""GDLT: defaults, the grade mix and triplet loss by hand, training on the RG fixture (resume,
eval), per-grade and per-clip contributions, and importing an official state dict."""

from __future__ import annotations

import json
import os

import pytest
import torch

from aqa.config import build_run_config
from aqa.errors import CheckpointError, ConfigError
from aqa.models.grades import grade_mix, hardest_triplet_loss
from aqa.registry import METHODS
from tests.features_fixture import make_rg

TINY = ["model.hidden_dim=16", "model.in_dim=1024", "data.clip_num=8", "train.batch_size=4",
        "train.epochs=2", "train.log_every=1", "train.heartbeat_s=5", "train.device=cpu"]


@pytest.fixture
def rg_root(tmp_path):
    root = tmp_path / "rg"
    make_rg(root, n_train=6, n_test=3, t_range=(4, 12), seed=0)
    return root


def test_defaults_are_the_readme_command():
    cfg = build_run_config("gdlt", "rg")
    m, o, t = cfg.model, cfg.optim, cfg.train
    assert (m.n_encoder, m.n_decoder, m.n_query, m.n_head, m.hidden_dim, m.dropout,
            m.alpha, m.margin, m.score_scale) == (1, 2, 4, 1, 256, 0.3, 1.0, 1.0, 25.0)
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.schedule, o.min_lr_factor) == \
        ("sgd", 1e-2, 0.9, 1e-4, "cosine", 0.01)
    assert (t.epochs, t.batch_size, cfg.data.clip_num) == (250, 32, 68)


def test_grade_mix_by_hand():
    grades = torch.linspace(0, 1, 4)
    score, w = grade_mix(torch.zeros(1, 4), grades)  # equal sigmoids: a quarter each
    assert w.tolist() == [[0.25] * 4] and float(score) == pytest.approx(0.5)
    score, w = grade_mix(torch.tensor([[0.0, 0.0, 0.0, 2.0]]), grades)
    s = 1 / (1 + torch.exp(torch.tensor(-2.0)))  # (0 + 1/3 + 2/3) x sigmoid(0) + 1 x s, over the sum
    assert float(score) == pytest.approx(float((0.5 + s) / (1.5 + s)), rel=1e-6)


def test_hardest_triplet_loss_by_hand():
    # two labels; rows 0,1 of label 0 at 90 degrees (d+ = 1), row 2 of label 1 opposite row 0
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # each row: hardest positive 1 (90 degrees), nearest negative 1 (90 degrees) -> relu(1-1+m)
    assert float(hardest_triplet_loss(x, labels, 0.5)) == pytest.approx(0.5)
    # all labels distinct (CoFInAl's loss_align 2): d+ = 0, nearest other row at distance 1
    assert float(hardest_triplet_loss(x, torch.arange(4), 1.5)) == pytest.approx(0.5)


def test_a_video_dataset_is_refused_with_a_message():
    cfg = build_run_config("gdlt", "synthetic")
    with pytest.raises(ConfigError, match="reads clip features"):
        METHODS.get("gdlt")(cfg).wrap_dataset(object(), "train", None)


def test_trains_resumes_and_evaluates_on_the_rg_fixture(runs_dir, rg_root):
    from aqa.evaluate import evaluate_checkpoint
    from aqa.jobs import submit
    from aqa.runs import store
    from aqa.train.loop import main

    path = submit(runs_dir, "gdlt", "rg", data_root=str(rg_root), start_now=False,
                  overrides=TINY + ["train.epochs=1"])
    assert main(str(path)) == 0
    last = torch.load(path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 1
    spec = store.read_run(path)  # ask for one more epoch: the loop resumes from last.pt
    spec["config"]["train"]["epochs"] = 2
    (path / store.RUN_JSON).write_text(json.dumps(spec))
    assert main(str(path)) == 0
    events = [json.loads(line) for line in (path / "events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e.get("type") == "start"]
    assert starts[-1]["resumed_epoch"] == 1
    epochs = sorted({e["epoch"] for e in events if e.get("type") == "metric" and e.get("name") == "rho"})
    assert epochs == [1, 2]
    result = evaluate_checkpoint(path / "checkpoints" / "last.pt")
    assert result["samples"] == 3 and result["metrics"]["l2"] > 0  # in raw points


def test_score_clip_contributions_add_up_to_the_score():
    cfg = build_run_config("gdlt", "rg", overrides=["model.hidden_dim=16"])
    method = METHODS.get("gdlt")(cfg)
    torch.manual_seed(0)
    model = method.build_model().eval()
    x = torch.rand(1, 20, 1024)
    with torch.no_grad():
        out = method.score_clip(model, {"features": x, "length": torch.tensor([20])})
    c = out["contributions"]
    assert len(c["per_clip"]) == 20 and len(c["attention"]) == 4
    assert sum(c["per_clip"]) == pytest.approx(out["score"], rel=1e-5)
    assert sum(c["grade_shares"]) == pytest.approx(out["score"], rel=1e-5)
    assert c["grades"] == pytest.approx([0, 25 / 3, 50 / 3, 25])
    assert sum(c["grade_weights"]) == pytest.approx(1.0)


def _official_file(tmp_path, **sizes):
    from aqa.models.gdlt import GDLTConfig, GDLTModel
    from tests.parity_gdlt_inputs import fill, write_checkpoint

    return write_checkpoint(fill(GDLTModel(GDLTConfig(**sizes)), 3), tmp_path / "Ball_best.pkl")


def test_import_then_eval_on_rg(tmp_path, runs_dir, rg_root):
    from aqa.cli import main as cli
    from aqa.evaluate import evaluate_checkpoint

    path = _official_file(tmp_path, n_decoder=1, n_query=5)
    assert cli(["import-checkpoint", str(path), "--dataset", "rg", "--data-root", str(rg_root),
                "--runs-dir", str(runs_dir), "--json"]) == 0
    run = next(p for p in runs_dir.iterdir() if p.is_dir())
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["method"] == "gdlt"
    assert (state["config"]["model"]["n_query"], state["config"]["model"]["n_decoder"]) == (5, 1)
    result = evaluate_checkpoint(run)
    assert result["samples"] == 3 and result["metrics"]["l2"] > 0


def test_import_refuses_heads_that_do_not_divide_and_contradicting_sizes(tmp_path, runs_dir):
    path = _official_file(tmp_path)
    from aqa.official import import_checkpoint

    with pytest.raises(ConfigError, match="n_head=3 does not divide"):
        import_checkpoint(path, "gdlt", runs_dir, overrides=["model.n_head=3"])
    with pytest.raises(ConfigError, match="n_query=6 contradicts the checkpoint"):
        import_checkpoint(path, "gdlt", runs_dir, overrides=["model.n_query=6"])
    with pytest.raises(CheckpointError, match="--method gdlt"):
        import_checkpoint(path, "cofinal", runs_dir)
    result = import_checkpoint(path, None, runs_dir, overrides=["model.n_head=8"])
    state = torch.load(result["checkpoint"], weights_only=True)
    assert state["config"]["model"]["n_head"] == 8


def test_a_malicious_pickle_is_refused_without_running(tmp_path, runs_dir):
    from aqa.official import import_checkpoint
    from tests.legacy_pickle import save_as_numpy1

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    save_as_numpy1({"prototype.weight": torch.zeros(4, 8), "regressor.weight": Evil()},
                   tmp_path / "evil.pkl")
    with pytest.raises(CheckpointError, match="cannot be imported safely"):
        import_checkpoint(tmp_path / "evil.pkl", "gdlt", runs_dir)
    assert not (tmp_path / "pwned").exists()


def program_dataset(root, videos):
    """An rg root whose features were extracted from ``videos`` with a recorded recipe (a
    random-init I3D, 8-frame clips every 4 frames at 32 px: seconds on a CPU)."""
    import numpy as np

    from aqa.features.extract import Recipe, extract_video, load_backbone, recipe_record

    recipe = Recipe(backbone="i3d", weights="", clip_len=8, stride=4, frame_size=32)
    encoder, identity = load_backbone(recipe)
    folder = root / "swintx_avg_fps25_clip32"
    folder.mkdir(parents=True)
    for v in videos:
        np.save(folder / f"{v.stem}.npy", extract_video(v, recipe, encoder=encoder))
    (folder / "recipe.json").write_text(json.dumps(recipe_record(recipe, identity)))
    header = "Video_Name Difficulty_Score Execution_Score Total_Score"
    rows = [f"{v.stem} {3 + i:.3f} {5 + i / 2:.3f} {8 + 1.5 * i:.3f}" for i, v in enumerate(videos)]
    (root / "train.txt").write_text("\n".join([header] + rows[:-1]) + "\n")
    (root / "test.txt").write_text("\n".join([header] + rows[-1:]) + "\n")


def test_an_uploaded_program_is_scored_with_the_checkpoints_recipe(tmp_path, runs_dir):
    from aqa.jobs import submit
    from aqa.scoring import Scorer
    from aqa.train.loop import main
    from tests.features_fixture import make_program_videos

    videos = make_program_videos(tmp_path / "videos", [f"Ball_{k:03d}" for k in range(1, 5)],
                                 num_frames=20, size=(40, 48))
    program_dataset(tmp_path / "rg", videos)
    path = submit(runs_dir, "gdlt", "rg", data_root=str(tmp_path / "rg"), start_now=False,
                  overrides=TINY + ["train.epochs=1"])
    assert main(str(path)) == 0
    state = torch.load(path / "checkpoints" / "best.pt", weights_only=True)
    assert state["feature_recipe"]["clip_len"] == 8  # saved with the model
    calls = []
    result = Scorer.from_checkpoint(path / "checkpoints" / "best.pt").score(
        videos[-1], progress=lambda done, total: calls.append((done, total)))
    c = result.contributions
    n = len(c["per_clip"])
    assert n == (29 - 8) // 4 + 1  # the last program has 20 + 3 x 3 frames: 6 windows
    assert len(c["clip_seconds"]) == n and c["clip_seconds"] == sorted(c["clip_seconds"])
    assert sum(c["per_clip"]) == pytest.approx(result.score, rel=1e-5)
    assert calls and calls[-1] == (n, n) and result.target == "total"


def test_aqa_score_prints_a_programs_grades_and_refuses_trimming(tmp_path, runs_dir, capsys):
    from aqa.cli import main as cli
    from aqa.jobs import submit
    from aqa.train.loop import main
    from tests.features_fixture import make_program_videos

    videos = make_program_videos(tmp_path / "videos", [f"Ball_{k:03d}" for k in range(1, 4)],
                                 num_frames=16, size=(40, 48))
    program_dataset(tmp_path / "rg", videos)
    path = submit(runs_dir, "gdlt", "rg", data_root=str(tmp_path / "rg"), start_now=False,
                  overrides=TINY + ["train.epochs=1"])
    assert main(str(path)) == 0
    best = str(path / "checkpoints" / "best.pt")
    capsys.readouterr()
    assert cli(["score", str(videos[0]), "--checkpoint", best, "--difficulty", "2.0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("total score ") and "grades: 0.0 pts x" in out
    assert "difficulty given (2) is not used" in out and "clips giving the most points" in out
    assert cli(["score", str(videos[0]), "--checkpoint", best, "--start", "3"]) != 0
    assert "trimming is not supported" in capsys.readouterr().err


def test_an_imported_checkpoint_without_a_recipe_cannot_score_an_upload(tmp_path, runs_dir):
    from aqa.official import import_checkpoint
    from aqa.scoring import Scorer
    from tests.features_fixture import make_program_videos

    result = import_checkpoint(_official_file(tmp_path), None, runs_dir)
    video = make_program_videos(tmp_path / "v", ["Ball_001"], num_frames=12, size=(40, 48))[0]
    with pytest.raises(CheckpointError, match="without a recipe.json"):
        Scorer.from_checkpoint(result["checkpoint"]).score(video)


def test_the_schedule_is_the_official_cosine_annealing():
    """main.get_scheduler: CosineAnnealingLR(T_max=epoch - warmup, eta_min=lr x decay_rate),
    stepped after each epoch; ours is the same lr every epoch."""
    from aqa.train.optim import build_optimizer, build_scheduler

    cfg = build_run_config("gdlt", "rg")
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=250, eta_min=1e-2 * 0.01)
    ours = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-2}], cfg.optim)
    sched = build_scheduler(ours, cfg.optim, cfg.train.epochs)
    for _ in range(cfg.train.epochs):
        a, b = theirs.param_groups[0]["lr"], ours.param_groups[0]["lr"]
        assert b == pytest.approx(a, rel=1e-12)
        theirs.step(), ours.step(), cos.step(), sched.step()
