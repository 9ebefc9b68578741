"""Head-to-head of two clips (``compare_clips`` of CoRe and TPT): each clip's features are
computed once (one backbone pass a clip), and the verdict is what scoring each clip and running
the pair head on the two clips in both orders gives."""

import pytest
import torch

from aqa.models.bank import bank_from
from aqa.models.group_tree import decode
from test_core import tiny_core
from test_tpt import _bank_method


def count_passes(model):
    """Wrap the backbone's forward with a counter; -> the list its calls append to."""
    calls = []
    forward = model.backbone.forward
    model.backbone.forward = lambda x: (calls.append(x.shape[0]), forward(x))[1]
    return calls


def _batch(video, difficulty, id_):
    return {"video": video, "difficulty": torch.tensor([difficulty]), "id": [id_],
            "difficulty_given": difficulty}


def test_core_head_to_head_runs_the_backbone_once_a_clip(synthetic_root):
    method, model, _, clips = tiny_core(synthetic_root)
    method.on_eval_start(model, torch.device("cpu"))
    state = {"exemplar_bank": method._bank}
    a = _batch(clips[1]["video"][None], 2.8, "a")
    b = _batch(clips[5]["video"][None], 2.8, "b")
    calls = count_passes(model)
    with torch.no_grad():
        out = method.compare_clips(model, a, b, state)
    assert len(calls) == 2  # one pass a clip (its 10 clips packed in one batch)
    with torch.no_grad():  # the verdict as written out: each scored, then the tree both ways
        s_a = method.score_clip(model, a, state)["score"]
        s_b = method.score_clip(model, b, state)["score"]
        f_a, f_b = model.video_features(a["video"]), model.video_features(b["video"])
        theta = method.cfg.model.score_range
        y_a, y_b = s_a / 2.8, s_b / 2.8
        b_from_a = (y_a + float(decode(*model.head(f_a, f_b, torch.tensor([y_a]) / theta),
                                       model.leaves)[0])) * 2.8
        a_from_b = (y_b + float(decode(*model.head(f_b, f_a, torch.tensor([y_b]) / theta),
                                       model.leaves)[0])) * 2.8
    assert out["score_a"] == pytest.approx(s_a) and out["score_b"] == pytest.approx(s_b)
    assert out["difference"] == pytest.approx(((b_from_a - s_a) + (s_b - a_from_b)) / 2)


def test_tpt_head_to_head_runs_the_backbone_once_a_clip():
    torch.manual_seed(4)
    method, model, samples = _bank_method([2.0, 2.0, 2.0, 3.0])
    feats = model.video_features(torch.randint(0, 256, (4, 3, 24, 8, 8), dtype=torch.uint8))
    state = {"exemplar_bank": bank_from(samples, feats, "difficulty")}
    a = _batch(torch.randint(0, 256, (1, 3, 24, 8, 8), dtype=torch.uint8), 2.0, "a")
    b = _batch(torch.randint(0, 256, (1, 3, 24, 8, 8), dtype=torch.uint8), 2.0, "b")
    calls = count_passes(model)
    with torch.no_grad():
        out = method.compare_clips(model, a, b, state)
    assert calls == [20, 20]  # one pass a clip, its 20 clips in one batch
    with torch.no_grad():
        s_a = method.score_clip(model, a, state)["score"]
        s_b = method.score_clip(model, b, state)["score"]
        f_a, f_b = model.video_features(a["video"]), model.video_features(b["video"])
        b_from_a = (s_a / 2 + float(decode(*model.head(f_a, f_b), model.leaves)[0])) * 2
        a_from_b = (s_b / 2 + float(decode(*model.head(f_b, f_a), model.leaves)[0])) * 2
    assert out["score_a"] == pytest.approx(s_a) and out["score_b"] == pytest.approx(s_b)
    assert out["difference"] == pytest.approx(((b_from_a - s_a) + (s_b - a_from_b)) / 2)
