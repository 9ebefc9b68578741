"""CoFInAl against the official code's own output (ZhouKanglei/CoFInAl_AQA @fe1f4c1).

Inputs: ``tests/parity_gdlt_inputs.py`` (a seeded CoFInAl state dict, ``etf_vec1`` included,
written as the official ``main.py`` saved it from a GPU; GDLT's three test programs and training
batch). The literals below were printed by a runner script outside the repository that imports
the official ``main.py`` (``setup_seed``, ``build_model``, ``get_optim``), ``options.py``,
``models/loss.py`` (``LossFun``), ``train.py`` and ``test.py`` of the commit's full tree on the CPU
(tensorboardX stubbed), parses ``scripts/train_all_rg.sh``'s flags (``--submodel-name cofinal --lr
1e-2 --epoch 250 --n_decoder 2 --n_query 4 --alpha 1 --margin 1 --lr-decay cos --decay-rate 0.01
--dropout 0.3``) with ``--activate_regular_restrictions A --loss_align L``, calls ``setup_seed(0)``
and ``build_model`` (whose fresh ``etf_vec1`` equals the file's: our ``simplex_etf(100, 0)``), and
loads the checkpoint:

- prediction (A = 2 sigmoid, A = 3 arcl1; L = 1): ``model.eval()``, each program alone,
  ``out = model(x, True)``, ``model.get_score(out['output'])``; ``test.test_epoch(..., etf_head=True)``
  returned the same predictions;
- training step (A = 2, L = 1: Ball's script; A = 3, L = 2): ``torch.manual_seed(1234)``, then
  ``train.train_epoch(..., etf_head=True)`` on a loader of the one batch (labels / 25) with
  ``LossFun(alpha, margin, True, L)`` and ``get_optim`` (SGD 1e-2, momentum 0.9, wd 1e-4); the loss
  terms recorded by wrapping ``LossFun.forward``, the coarse targets from ``get_proj_class``.
Regenerate: docs/parity.md.
"""

from __future__ import annotations

import pytest
import torch

import parity_gdlt_inputs as P
from aqa.data.base import collate
from aqa.models.cofinal import coarse_fine, simplex_etf
from aqa.official import import_checkpoint
from aqa.scoring import Scorer
from aqa.train.optim import build_optimizer

OFFICIAL_PARAMS = 3715692  # cofinal(1024, 256, 1, 1, 2, 4, 0.3, A).parameters()

# per test program (/25 units): get_score, int, int_revert, the fine class (argmax of dec @ ETF),
# the sum of dec and its first three values
OFFICIAL_PRED = {"sigmoid": [
    {"pred": 0.7966235876083374, "int": 0.6155645847320557, "int_revert": 0.031917475163936615, "fine": 48,
     "dec_sum": 2.5410282611846924, "dec_first": [0.09133084863424301, 0.06420440971851349, 0.00630928436294198]},
    {"pred": 0.8036470413208008, "int": 0.5701730251312256, "int_revert": -0.036721162497997284, "fine": 2,
     "dec_sum": 2.7012908458709717, "dec_first": [0.08131226897239685, 0.1287764310836792, 0.01880580000579357]},
    {"pred": 0.834450900554657, "int": 0.563628077507019, "int_revert": -0.09847365319728851, "fine": 34,
     "dec_sum": 2.4908077716827393, "dec_first": [0.07731543481349945, 0.08438416570425034, 0.024133233353495598]},
], "arcl1": [
    {"pred": 0.5959839224815369, "int": 0.26482635736465454, "int_revert": 0.08245854824781418, "fine": 48,
     "dec_sum": 2.5410282611846924, "dec_first": [0.09133084863424301, 0.06420440971851349, 0.00630928436294198]},
    {"pred": 0.550942599773407, "int": 0.13642801344394684, "int_revert": 0.03494269400835037, "fine": 2,
     "dec_sum": 2.7012908458709717, "dec_first": [0.08131226897239685, 0.1287764310836792, 0.01880580000579357]},
    {"pred": 0.5783946514129639, "int": 0.12330327928066254, "int_revert": -0.02668599784374237, "fine": 34,
     "dec_sum": 2.4908077716827393, "dec_first": [0.07731543481349945, 0.08438416570425034, 0.024133233353495598]},
]}

# the training step: LossFun's (total, dr = MSE + MSE + L1, triplet), get_proj_class's coarse
# targets, the global L2 of (after - before), per tensor (sum after, sum((after - before) *
# before), L2 of (after - before))
OFFICIAL_STEP = {("sigmoid", "short"): {
    "loss": 1.4747272729873657, "dr": 0.21890369057655334, "triplet": 1.2558236122131348,
    "coarse": [0.6899999976158142, 0.4399999976158142, 0.8500000238418579, 0.6200000047683716],
    "delta_l2": 0.07088203087880704, "tensors": {
        'in_proj.0.weight': (-6.0551502837979925, -0.0010270775521413074, 0.04548376656924334),
        'transformer.decoder.layers.1.multihead_attn.out_proj.weight': (-1.5283008420696689, -0.0005820070489036166, 0.009210247534703566),
        'prototype.weight': (6.698101606685668, -0.0008997701514978766, 0.0005519835029561757),
        'regressor.weight': (-2.4041759897827433, -0.0003795898451826405, 0.003951509821354209),
        'regressor_revert.bias': (-0.05813392158597708, -1.2168457578244293e-05, 0.0003396292767100659),
        'regi.0.in_proj_weight': (19.90238783333131, -0.0007692756594040597, 0.0008512561501674151),
        'regressori.0.1.weight': (-8.792288448041546, -0.0005103353554686466, 0.0009481186682779877),
        'regressori.0.2.bias': (0.5822932372975629, -1.8044597303462328e-06, 1.8757059502832342e-05)}},
    ("arcl1", "long"): {
    "loss": 1.1670641899108887, "dr": 0.7166376113891602, "triplet": 0.45042654871940613,
    "coarse": [0.6899999976158142, 0.4399999976158142, 0.8500000238418579, 0.6200000047683716],
    "delta_l2": 0.17945822260244557, "tensors": {
        'in_proj.0.weight': (-4.850978269144708, -0.0010273135775657576, 0.11519467063327256),
        'transformer.decoder.layers.1.multihead_attn.out_proj.weight': (-1.5383575226601351, 0.00018221206221939268, 0.023317686230129808),
        'prototype.weight': (6.700481889769435, -0.0007167860669726782, 0.0014067097886166613),
        'regressor.weight': (-2.4026048614032334, -0.0022153959829375016, 0.03346681279824596),
        'regressor_revert.bias': (-0.058206756599247456, -1.3048708600240863e-05, 0.00037998597744617424),
        'regi.0.in_proj_weight': (19.90238783333131, -0.0007692756594040597, 0.0008512561501674151),
        'regressori.0.1.weight': (-8.792288448041546, -0.0005103353554686466, 0.0009481186682779877),
        'regressori.0.2.bias': (0.5822932372975629, -1.8044597303462328e-06, 1.8757059502832342e-05)}},
}

TOL = 2e-4  # prediction, /25 units


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def imported(tmp_path, sets=()):
    from aqa.models.cofinal import CoFInAlConfig, CoFInAlModel

    path = P.write_checkpoint(P.fill(CoFInAlModel(CoFInAlConfig(grades="sigmoid")), 8),
                              tmp_path / "Ball_best.pkl")
    result = import_checkpoint(path, None, tmp_path / "runs", overrides=list(sets))
    assert result["method"] == "cofinal"
    scorer = Scorer.from_checkpoint(result["checkpoint"])  # the path `aqa eval` / `aqa score` load
    return scorer.method, scorer.model


def test_the_etf_is_the_official_seed_0_one_and_the_parameter_count_too(tmp_path):
    method, model = imported(tmp_path)
    assert torch.equal(model.etf_vec1, simplex_etf(100, 0))  # the file's buffer = a fresh build
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS


@pytest.mark.parametrize("grades", ["sigmoid", "arcl1"])
def test_prediction_matches_the_official(tmp_path, grades):
    method, model = imported(tmp_path, [f"model.grades={grades}"])
    assert method.cfg.model.batch_attention  # set by the import: the weights were trained so
    model.eval()
    batch = collate([{"features": torch.from_numpy(f), "length": torch.tensor(len(f)),
                      "score": torch.tensor(s), "id": str(i)}
                     for i, (f, s) in enumerate(zip(P.test_programs(), P.TEST_SCORES))])
    with torch.no_grad():
        points = method.predict(model, batch)
        out = model(batch["features"], batch["length"])
        fine = model.parts(out)[1]
    for i, ref in enumerate(OFFICIAL_PRED[grades]):
        assert abs(float(points[i]) / 25 - ref["pred"]) <= TOL
        assert float(out["int"][i]) == pytest.approx(ref["int"], abs=1e-5)
        assert float(out["int_revert"][i]) == pytest.approx(ref["int_revert"], abs=1e-5)
        assert int(fine[i]) == ref["fine"]
        assert float(out["dec"][i].sum()) == pytest.approx(ref["dec_sum"], abs=1e-5)
        assert out["dec"][i, :3].tolist() == pytest.approx(ref["dec_first"], abs=1e-5)


def test_default_fine_head_attends_over_the_queries_and_differs(tmp_path):
    method, model = imported(tmp_path, ["model.batch_attention=false"])
    model.eval()
    x = torch.from_numpy(P.test_programs()[0])[None]
    with torch.no_grad():
        fine = model.parts(model(x))[1]
    assert int(fine[0]) != OFFICIAL_PRED["sigmoid"][0]["fine"]


@pytest.mark.parametrize("grades,align", [("sigmoid", "short"), ("arcl1", "long")])
def test_training_step_matches_the_official(tmp_path, grades, align):
    method, model = imported(tmp_path, [f"model.grades={grades}", f"model.loss_align={align}",
                                        "model.attend_padding=true", "model.truncate_target=true"])
    ref = OFFICIAL_STEP[(grades, align)]
    x, length, score = P.train_batch()
    assert coarse_fine(score / 25, truncate=True)[0].tolist() == ref["coarse"]
    opt = build_optimizer(method.param_groups(model), method.cfg.optim)
    before = {k: v.detach().clone().double() for k, v in model.named_parameters()}
    model.train()
    torch.manual_seed(P.DROP_SEED)
    losses = method.losses(model, {"features": x, "length": length, "score": score})
    opt.zero_grad()
    losses["loss"].backward()
    opt.step()
    after = {k: v.detach().double() for k, v in model.named_parameters()}
    losses = {k: v.detach() for k, v in losses.items()}
    dr = float(losses["coarse"] + losses["coarse_revert"] + losses["fine"])
    for ours, theirs in ((float(losses["loss"]), ref["loss"]), (dr, ref["dr"]),
                         (float(losses["triplet"]), ref["triplet"])):
        assert abs(ours - theirs) <= 1e-5 * abs(theirs)
    delta = float(sum(((after[k] - before[k]) ** 2).sum() for k in after) ** 0.5)
    assert abs(delta - ref["delta_l2"]) <= 1e-5 * ref["delta_l2"]
    assert coarse_fine(score / 25)[1].tolist() != coarse_fine(score / 25, truncate=True)[1].tolist()
    for k, (total, proj, norm) in ref["tensors"].items():
        a, b = after[k], before[k]
        # per tensor, sign-sensitive: across CPUs (docs/parity.md, "Training steps across
        # machines") measured up to 1.3e-5 (norm) and 2.0e-4 (proj) relative
        assert float(a.sum()) == pytest.approx(total, rel=1e-4, abs=1e-6)
        assert float((a - b).norm()) == pytest.approx(norm, rel=1e-4)
        assert float(((a - b) * b).sum()) == pytest.approx(proj, rel=2e-3, abs=1e-9)
