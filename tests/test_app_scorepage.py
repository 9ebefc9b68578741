"""AppTest of the Score page with a pair method (CoRe, its exemplar bank): the trim inputs reach
the scorer, scoring runs in the background with a progress bar, the voters' spread and the
exemplar tables are drawn, and a clip that is not the model's sport gets a warning.

The Kinetics classifier is replaced here by a stub returning fixed classes (the real weights on
the real clip are tested in test_score_page.py); what is tested is what the page does with them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from aqa.config import to_dict
from aqa.runs import store
from aqa.train.checkpoint import save_checkpoint
from conftest import finish_task, shared_clip, wait_for
from test_app import finish_with_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SKATING_TOP = [("springboard diving", 0.91), ("jumping into pool", 0.05), ("vault", 0.02),
               ("somersaulting", 0.01), ("swimming backstroke", 0.005)]


@pytest.fixture
def core_run(runs_dir, synthetic_root):
    return seed_core_run(runs_dir, synthetic_root)


def core_with_bank(synthetic_root: Path):
    """A tiny CoRe (method, model) whose exemplar bank holds the training split's ids and scores
    with the model's features of random clips (decoding the 18 training dives would cost
    seconds and test nothing more here)."""
    from aqa.models.bank import bank_from
    from test_core import tiny_core

    method, model, _, clips = tiny_core(synthetic_root)
    with torch.no_grad():
        video = torch.randint(0, 256, (len(clips.samples), 3, 8, 32, 32), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0))
        method._bank = bank_from(clips.samples, model.video_features(video),
                                 method.cfg.model.exemplar_rule)
    return method, model


def seed_core_run(runs_dir: Path, synthetic_root: Path):
    """A finished CoRe run (tiny backbone) with an exemplar bank in best.pt, in the index."""
    method, model = core_with_bank(synthetic_root)
    path = store.create_run(runs_dir, to_dict(method.cfg))
    ckpt = path / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, {"method": "core", "config": to_dict(method.cfg), "epoch": 1, "step": 2,
                           "model": model.state_dict(), "exemplar_bank": method._bank})
    finish_with_checkpoint(runs_dir, path, ckpt, epoch=1, step=2)
    return method


def table(at: AppTest, column: str):
    """The first table with ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def score_page(upload: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("app_pages/score.py")
    at.run()
    at.file_uploader(key="upload").set_value((upload.name, upload.read_bytes(), "video/mp4"))
    return at.run()


def test_trim_progress_spread_exemplars_and_sport_warning(core_run, monkeypatch):
    import aqa.sport
    from aqa.scoring import Scorer

    # the model's "sport" is figure skating; the classifier sees a dive
    monkeypatch.setitem(aqa.sport.SPORTS, "synthetic", ("figure skating", ("ice skating",)))
    monkeypatch.setattr(aqa.sport, "classify", lambda frames, **k: SKATING_TOP)
    gate, real = threading.Event(), Scorer.score

    def held(self, *a, stage=None, **k):  # holds the task at its model stage until released
        def at_stage(name, i, n):
            stage(name, i, n)
            if name == "model":
                gate.wait(60)
        return real(self, *a, stage=at_stage, **k)

    monkeypatch.setattr(Scorer, "score", held)
    at = score_page(shared_clip())
    assert not at.exception, [e.value for e in at.exception]
    # the trim inputs: the whole clip (21 frames at 10 fps) by default
    assert (at.number_input(key="trim_start").value, at.number_input(key="trim_end").value) == \
        (0.0, 2.1)
    assert at.get("video"), "the clip is not on the page"
    assert at.checkbox(key="check_sport").value and not at.checkbox(key="check_sport").disabled
    at.number_input(key="trim_start").set_value(1.0)
    at.number_input(key="trim_end").set_value(0.5).run()  # before the start: refused
    assert "must come after the start" in at.error[0].value
    assert at.button(key="score_btn").disabled
    at.number_input(key="trim_start").set_value(0.5)
    at.number_input(key="trim_end").set_value(1.5).run()
    assert not at.error and "scoring 0.50–1.50 s" in " ".join(c.value for c in at.caption)

    at.button(key="score_btn").click().run()
    task = at.session_state["_task_score"]
    wait_for(lambda: "running the model" in task.text, timeout=60, what="the model stage")
    at.run()  # while it runs: a progress bar with the stage, the button disabled
    bars = at.get("progress")
    assert bars and "running the model" in bars[0].proto.text, [b.proto.text for b in bars]
    assert at.button(key="score_btn").disabled
    gate.set()
    at = finish_task(at, "score")
    assert not at.exception, [e.value for e in at.exception]

    result = task.future.result()["result"]
    assert result.scored_range["start_frame"] == 5 and result.scored_range["end_frame"] == 15
    captions = " ".join(c.value for c in at.caption)
    assert "Scored frames 5–14 of the clip (0.50–1.50 s)" in captions
    assert "does not look like figure skating" in at.warning[0].value
    assert "springboard diving (91%)" in at.warning[0].value
    top = table(at, "Kinetics-400 class")
    assert list(top["Kinetics-400 class"]) == [n for n, _ in SKATING_TOP[:3]]
    metrics = {m.label: m.value for m in at.main.metric}
    assert float(metrics["Predicted score"]) == pytest.approx(result.score, abs=0.01)
    assert metrics["Spread over voters (std)"] == f"± {result.spread:.2f}"
    assert metrics["Voters' range"] == f"{min(result.voters):.2f} – {max(result.voters):.2f}"
    assert [c.key for c in at.get("plotly_chart")][0] == "voters"
    exemplars, nearest = [d.value for d in at.dataframe if "id" in d.value.columns][:2]
    assert list(exemplars["id"]) == [e["id"] for e in result.exemplars]
    assert {"score", "difference", "distance"} <= set(exemplars.columns)
    assert "difference" not in nearest.columns  # the nearest clips of the whole bank
    assert list(nearest["distance"]) == sorted(nearest["distance"])


def test_no_sport_check_for_a_dataset_without_a_sport(core_run):
    at = score_page(shared_clip())
    assert at.checkbox(key="check_sport").disabled and not at.checkbox(key="check_sport").value
    assert any("No sport check for this model: the synthetic dataset names no sport" in c.value
               for c in at.caption)
