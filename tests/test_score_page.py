"""The library side of the Score page: trimming by time (frames chosen by index, nothing
re-encoded), the stages reported, each voter's prediction and the nearest exemplars of a pair
method, and the Kinetics-400 sport check with DeepMind's real weights on the real dive clip."""

from __future__ import annotations

import statistics

import pytest
import torch

from aqa.config import build_run_config, to_dict
from aqa.errors import ConfigError, VideoError
from aqa.registry import METHODS
from aqa.scoring import STAGES, Scorer, frame_range
from aqa.train.checkpoint import save_checkpoint
from conftest import shared_clip


def tiny_checkpoint(path, method="regression", extra=(), state=None):
    cfg = build_run_config(method, "synthetic", overrides=["data.num_frames=8",
                                                           "data.frame_size=32", *extra])
    torch.manual_seed(0)
    model = METHODS.get(method)(cfg).build_model()
    save_checkpoint(path, {"method": method, "config": to_dict(cfg), "model": model.state_dict(),
                           **(state or {})})
    return path


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return Scorer.from_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("ck") / "best.pt"))


def test_seconds_to_frames():
    assert frame_range(21, 10.0, None, None) == (0, 21)
    assert frame_range(21, 10.0, 0.3, 1.5) == (3, 15)  # frames 3..14: timestamps 0.3 .. 1.4 s
    assert frame_range(21, 10.0, 0.25, 2.1) == (3, 21)
    with pytest.raises(VideoError, match="outside the clip, which lasts 2.10 s"):
        frame_range(21, 10.0, 0.0, 3.0)
    with pytest.raises(VideoError, match="outside the clip"):
        frame_range(21, 10.0, 2.5, None)
    with pytest.raises(VideoError, match="before the end"):
        frame_range(21, 10.0, 1.0, 0.5)
    with pytest.raises(VideoError, match="frame rate"):
        frame_range(21, 0.0, 1.0, None)


def test_trim_by_seconds_reads_only_the_range_of_the_real_clip(scorer, monkeypatch):
    import aqa.data.base as base

    asked = []
    real = base.load_clip
    monkeypatch.setattr(base, "load_clip", lambda s, idx, *a, **k: (asked.append(list(idx)),
                                                                    real(s, idx, *a, **k))[1])
    stages = []
    result = scorer.score(shared_clip(), start_s=0.3, end_s=1.5,
                          stage=lambda name, i, n: stages.append((name, i, n)))
    assert asked == [result.frame_indices]  # the decoder was asked for those frames only
    assert all(3 <= i < 15 for i in result.frame_indices) and len(result.frame_indices) == 8
    assert result.source_frames == 12
    assert result.scored_range == {"start_frame": 3, "end_frame": 15, "start_s": 0.3,
                                   "end_s": 1.5, "fps": 10.0}
    assert stages == [(s, i, len(STAGES)) for i, s in enumerate(STAGES)]
    whole = scorer.score(shared_clip())
    assert whole.scored_range["start_frame"] == 0 and whole.scored_range["end_frame"] == 21
    assert whole.voters is None and whole.nearest == []  # a single-clip method has no voters
    with pytest.raises(ConfigError, match="not both"):
        scorer.score(shared_clip(), start=2, start_s=0.5)
    with pytest.raises(VideoError, match="lasts 2.10 s"):
        scorer.score(shared_clip(), end_s=9.0)


def test_cli_trims_by_seconds_and_says_the_range(scorer, capsys):
    from aqa.cli import main

    assert main(["score", str(shared_clip()), "--checkpoint", str(scorer.checkpoint),
                 "--start-s", "0.5", "--end-s", "2"]) == 0
    assert "scored frames 5–19 (0.50–2.00 s)" in capsys.readouterr().out
    assert main(["score", str(shared_clip()), "--checkpoint", str(scorer.checkpoint),
                 "--end-s", "30"]) != 0
    assert "lasts 2.10 s" in capsys.readouterr().err


def test_pair_method_returns_each_voter_and_the_nearest_exemplars(synthetic_root, tmp_path):
    from test_app_scorepage import core_with_bank

    method, model = core_with_bank(synthetic_root)
    path = tmp_path / "core.pt"
    save_checkpoint(path, {"method": "core", "config": to_dict(method.cfg),
                           "model": model.state_dict(), "exemplar_bank": method._bank})
    result = Scorer.from_checkpoint(path).score(shared_clip(), difficulty=2.8)
    voters = result.voters
    assert len(voters) == method.cfg.model.voter_number == len(result.exemplars)
    assert result.score == pytest.approx(statistics.fmean(voters), abs=1e-4)
    assert result.spread == pytest.approx(statistics.pstdev(voters), abs=1e-4)
    for e, v in zip(result.exemplars, voters):  # each voter: its exemplar's score + its difference
        assert v == pytest.approx(e["score"] / e["difficulty"] * 2.8 + e["difference"]
                                  if method.cfg.model.use_dd else e["score"] + e["difference"],
                                  abs=1e-3)
        assert e["distance"] >= 0
    bank = method._bank
    assert [n["id"] for n in result.nearest][:1] and len(result.nearest) == 5
    distances = [n["distance"] for n in result.nearest]
    assert distances == sorted(distances)
    assert all(n["id"] in bank["ids"] for n in result.nearest)
    assert min(e["distance"] for e in result.exemplars) >= distances[0] - 1e-6


def test_sport_of_every_dataset():
    from aqa.registry import DATASETS
    from aqa.sport import class_names, sport_of

    names = set(class_names())
    for dataset in DATASETS.names():
        sport, classes, why = sport_of(dataset)
        assert set(classes) <= names, (dataset, set(classes) - names)  # real Kinetics-400 names
        assert (sport is None) == (not classes) and (sport is not None or why)
    assert sport_of("finediving")[0] == "diving" and sport_of("fisv")[0] == "figure skating"
    assert sport_of("aqa7", "gym_vault")[1][0] == "vault"
    assert sport_of("jigsaws")[0] is None and "surg" in sport_of("jigsaws")[2]


def test_sport_check_on_the_real_dive_with_the_real_weights(scorer):
    """DeepMind's weights must be installed (scripts/setup.sh fetches them): no skip. The dive
    is diving for a diving model, and not figure skating for a skating model; both from the
    frames decoded once (the tiny model's 32-pixel frames are too small, so the scored range is
    decoded again at its native size)."""
    from dataclasses import replace

    from aqa.sport import check_frames, scored_frames

    result = scorer.score(shared_clip())
    diving = replace(scorer.cfg, dataset="mtl_aqa")
    check = check_frames(diving, result.frames, shared_clip(), scored_frames(result), size=112)
    assert check.top[0][0] == "springboard diving", check.top  # DeepMind's label order
    assert check.ok and not check.reused and check.sport == "diving"
    from aqa.sport import judge

    skating = judge(replace(scorer.cfg, dataset="fisv"), check.top)  # the same clip's classes
    assert skating.ok is False and "does not look like figure skating" in skating.message
    assert "springboard diving" in skating.message  # the top classes are shown
    none = check_frames(replace(scorer.cfg, dataset="jigsaws"), result.frames)
    assert none.ok is None and "no sport check" in none.message


def test_doctor_reports_progress_sample_by_sample(synthetic_root, tmp_path):
    from aqa.data import doctor

    seen = []
    report = doctor.check("synthetic", str(synthetic_root), tmp_path,
                          progress=lambda done, total: seen.append((done, total)))
    assert report.ok
    total = sum(report.samples.values())
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_memory_plan_reports_each_configuration(monkeypatch):
    from aqa import plan as P

    monkeypatch.setattr(P, "measure", lambda *a, **k: [])  # no dry run: the loop is what is tested
    monkeypatch.setattr(P, "_row", lambda name, *a: {"option": name, "fits": None})
    cfg = build_run_config("regression", "synthetic", overrides=["data.num_frames=8",
                                                                 "data.frame_size=32"])
    seen = []
    result = P.plan(cfg, "cpu", progress=lambda i, n, name: seen.append((i, n, name)))
    names = [r["option"] for r in result["rows"] if "accum" not in r["option"]]
    assert seen == [(i, len(names), n) for i, n in enumerate(names)] + [(len(names), len(names),
                                                                          "done")]
