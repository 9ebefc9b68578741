"""GDLT against the official code's own output (xuangch/CVPR22_GDLT @b9aa9ef).

Inputs: ``tests/parity_gdlt_inputs.py`` (a seeded GDLT state dict written as the official
``main.py`` saved it from a GPU, three test programs of 30, 45 and 17 rows of 1024-d features, a
training batch of four 12-row windows, the third zero-padded after 9 rows). The literals below
were printed by a runner script outside the repository that imports the official
``models/model.py`` (``GDLT``), ``models/loss.py`` (``LossFun``), ``train.py``, ``test.py``,
``main.py`` (``get_optim``) and ``options.py`` on the CPU (``Tensor.cuda`` a no-op, tensorboardX
stubbed), parses the README's training flags (``--lr 1e-2 --n_decoder 2 --n_query 4 --alpha 1.0
--margin 1.0 --lr-decay cos --decay-rate 0.01 --dropout 0.3``), builds ``GDLT`` from them and
loads the checkpoint with ``load_state_dict``:

- prediction: ``model.eval()``, each test program alone (the official test loader's batch of 1),
  ``out['output']``; the grade weights from a forward hook on ``regressor`` (its diagonal through
  sigmoid, normalised), the cross-attention from a hook on the last decoder layer's
  ``multihead_attn``;
- training step: ``torch.manual_seed(1234)`` (the dropout draws), then ``train.train_epoch`` on
  a loader of that one batch (labels / 25) with ``LossFun(1.0, 1.0)`` and ``get_optim`` (SGD lr
  1e-2, momentum 0.9, weight decay 1e-4); the loss terms recorded by wrapping ``LossFun.forward``.
Regenerate: docs/parity.md.
"""

from __future__ import annotations

import pytest
import torch

import parity_gdlt_inputs as P
from aqa.data.base import collate
from aqa.official import import_checkpoint
from aqa.scoring import Scorer
from aqa.train.optim import build_optimizer

OFFICIAL_PARAMS = 3163396  # sum of numel over GDLT(1024, 256, 1, 1, 2, 4, 0.3).parameters()

# per test program: out['output'] (/25 units), the grade weights, and per query the argmax, max
# and sum over the first five clips of the last cross-attention
OFFICIAL_PRED = [
    {"pred": 0.4665033221244812, "weights": [0.2520766258239746, 0.31490448117256165, 0.21445104479789734, 0.21856780350208282],
     "att_argmax": [9, 9, 11, 10], "att_max": [0.038525454699993134, 0.03866492956876755, 0.03817741200327873, 0.036050718277692795],
     "att_sum_first5": [0.14035578072071075, 0.1467648148536682, 0.1539274901151657, 0.15228614211082458]},
    {"pred": 0.4416011571884155, "weights": [0.28511402010917664, 0.30523690581321716, 0.20938074588775635, 0.20026837289333344],
     "att_argmax": [34, 44, 44, 33], "att_max": [0.02840053103864193, 0.025593601167201996, 0.02553776651620865, 0.02468147873878479],
     "att_sum_first5": [0.11775665730237961, 0.12254852801561356, 0.12302343547344208, 0.11895173788070679]},
    {"pred": 0.4508936405181885, "weights": [0.26739922165870667, 0.31260231137275696, 0.2199166715145111, 0.20008176565170288],
     "att_argmax": [6, 5, 8, 8], "att_max": [0.08432668447494507, 0.0706980898976326, 0.06816336512565613, 0.07193498313426971],
     "att_sum_first5": [0.2483094036579132, 0.271187424659729, 0.2740868031978607, 0.26496395468711853]},
]

# the training step: LossFun's (total, mse, triplet), the predictions (/25), the global L2 of
# (after - before) over all parameters, BN running sums after (in_proj.1 mean, in_proj.4 var),
# and per tensor (sum after, sum((after - before) * before), L2 of (after - before))
OFFICIAL_STEP = {"loss": 1.2903164625167847, "mse": 0.03525656834244728, "triplet": 1.255059838294983,
                 "pred": [0.5448787808418274, 0.5705631971359253, 0.5853127241134644, 0.4540071487426758],
                 "delta_l2": 0.030782243671829333, "bn": (-0.3456833267118782, 246.9235384464264), "tensors": {
    'in_proj.0.weight': (23.415480466565107, -0.001026189416041921, 0.01937026194666619),
    'in_proj.4.bias': (2.9616998835117556, 9.749598382543452e-05, 0.0006714760901507215),
    'transformer.encoder.layers.0.self_attn.in_proj_weight': (-21.90620702253357, -0.000768913669404062, 0.007583174744358107),
    'transformer.decoder.layers.1.multihead_attn.out_proj.weight': (-32.28013854938877, -0.001341031748425986, 0.004165064706001108),
    'transformer.decoder.norm.weight': (256.41009652614594, -0.00026329915614553556, 0.0005681474782476655),
    'prototype.weight': (17.695148649945622, -0.0009335359426454926, 0.0003006479535457398),
    'regressor.weight': (-0.9559409692592453, 8.310910134518728e-05, 0.0025220930399988133),
    'regressor.bias': (-0.041206829249858856, -9.01360407503174e-06, 0.00018767561195570594),
}}

TOL = 2e-4  # prediction, /25 units


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def official_checkpoint(path):
    from aqa.models.gdlt import GDLTConfig, GDLTModel

    return P.write_checkpoint(P.fill(GDLTModel(GDLTConfig()), 7), path / "Ball_best.pkl")


def imported(tmp_path, sets=()):
    """The official file through `aqa import-checkpoint` -> (method, model) from the run's best.pt."""
    result = import_checkpoint(official_checkpoint(tmp_path), None, tmp_path / "runs",
                               overrides=list(sets))
    assert result["method"] == "gdlt"
    scorer = Scorer.from_checkpoint(result["checkpoint"])  # the path `aqa eval` / `aqa score` load
    return scorer.method, scorer.model


def test_parameter_count_is_the_official(tmp_path):
    method, model = imported(tmp_path)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS


def test_prediction_grades_and_attention_match_the_official(tmp_path):
    method, model = imported(tmp_path)
    model.eval()
    items = [{"features": torch.from_numpy(f), "length": torch.tensor(len(f)),
              "score": torch.tensor(s), "id": f"Ball_{i}"}
             for i, (f, s) in enumerate(zip(P.test_programs(), P.TEST_SCORES))]
    batch = collate(items)  # the three programs padded to 45 rows in one batch
    with torch.no_grad():
        points = method.predict(model, batch)
        out = model(batch["features"], batch["length"])
    for i, ref in enumerate(OFFICIAL_PRED):
        assert abs(float(points[i]) / 25 - ref["pred"]) <= TOL
        assert out["weights"][i].tolist() == pytest.approx(ref["weights"], abs=1e-5)
        att = out["attention"][i, :, :P.TEST_LENGTHS[i]]
        assert att.argmax(1).tolist() == ref["att_argmax"]
        assert att.max(1).values.tolist() == pytest.approx(ref["att_max"], abs=1e-5)
        assert att[:, :5].sum(1).tolist() == pytest.approx(ref["att_sum_first5"], abs=1e-5)
        assert float(out["attention"][i, :, P.TEST_LENGTHS[i]:].sum()) == 0  # padding unattended


def one_step(method, model):
    x, length, score = P.train_batch()
    opt = build_optimizer(method.param_groups(model), method.cfg.optim)
    before = {k: v.detach().clone().double() for k, v in model.named_parameters()}
    model.train()
    torch.manual_seed(P.DROP_SEED)
    losses = method.losses(model, {"features": x, "length": length, "score": score})
    opt.zero_grad()
    losses["loss"].backward()
    opt.step()
    after = {k: v.detach().double() for k, v in model.named_parameters()}
    return {k: float(v.detach()) for k, v in losses.items()}, before, after


def test_training_step_matches_the_official_with_attend_padding(tmp_path):
    method, model = imported(tmp_path, ["model.attend_padding=true"])
    assert (method.cfg.optim.name, method.cfg.optim.lr, method.cfg.optim.momentum,
            method.cfg.optim.weight_decay, method.cfg.model.dropout) == ("sgd", 1e-2, 0.9, 1e-4, 0.3)
    losses, before, after = one_step(method, model)
    ref = OFFICIAL_STEP
    for key in ("loss", "mse", "triplet"):
        assert abs(losses[key] - ref[key]) <= 1e-5 * abs(ref[key])
    delta = sum(((after[k] - before[k]) ** 2).sum() for k in after) ** 0.5
    assert abs(float(delta) - ref["delta_l2"]) <= 1e-5 * ref["delta_l2"]
    for k, (total, proj, norm) in ref["tensors"].items():
        a, b = after[k], before[k]
        assert float(a.sum()) == pytest.approx(total, rel=1e-5, abs=1e-6)
        assert float((a - b).norm()) == pytest.approx(norm, rel=1e-5)
        assert float(((a - b) * b).sum()) == pytest.approx(proj, rel=1e-4, abs=1e-9)
    buffers = dict(model.named_buffers())
    assert float(buffers["in_proj.1.running_mean"].double().sum()) == pytest.approx(ref["bn"][0], rel=1e-5)
    assert float(buffers["in_proj.4.running_var"].double().sum()) == pytest.approx(ref["bn"][1], rel=1e-5)


def test_default_leaves_the_padding_out_so_the_step_differs(tmp_path):
    """The third window is padded: by default its zero rows are neither attended to nor in the
    BatchNorm statistics, so the loss is not the official one (attend_padding=true gives it)."""
    method, model = imported(tmp_path)
    losses, _, _ = one_step(method, model)
    assert abs(losses["loss"] - OFFICIAL_STEP["loss"]) > 1e-4
