"""FineDiving TSA against the official code's own output (xujinglin/FineDiving @a2b8057).

Inputs come from tests/parity_fdtsa_inputs.py: seeded, conditioned weights at the official
size, written as an official training checkpoint (``module.``-prefixed parts, numpy 1.x
scalars, cuda:0 storages), and three 96-frame 112x112 clips (a query and two exemplars). The
official code ran on exactly these files on the CPU, from a scratch runner that imports
``tools.builder`` (``model_builder``, ``load_model``, ``build_opti_sche``) and ``tools.helper``
(``network_forward_test``, ``network_forward_train``), with ``.cuda()`` a no-op, ``torch.load``
with ``weights_only=False`` (torch 1.7's behaviour), timm/torchvideotransforms/cv2 stubbed
(unused on this path) and each clip normalised as ``ClipToTensor`` + ``Normalize`` do (x/255,
then ImageNet mean/std); docs/parity.md has the commands. Forward hooks on ``psnet_model`` and
``regressor_delta`` and a wrapper of ``helper.segment_iou`` recorded the transitions, deltas
and tIoU; wrappers of the MSE/BCE modules passed to ``network_forward_train`` the losses.

CPU time: an I3D pass over one clip's 9 x 16 frames at 112 px costs 6-10 s on two cores. The
prediction test runs 3 (the query and the two exemplars of the bank); each training step 2
with the backbone frozen (``base_model.requires_grad_(False)`` on the official side,
``backbone.freeze`` here: the heads' step and the backbone's forward are compared, the I3D
backward is not; the full step is the ``slow`` test below).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import parity_fdtsa_inputs as P
from aqa.config import build_run_config
from aqa.data.base import Sample, collate

torch.set_num_threads(2)

# ------------------------------------------------------------------ the official numbers
# network_forward_test(query, [ex_a, ex_b]) in eval mode: pred_scores, per-voter transitions of
# [query, exemplar] (PSNet on the features; argmax per half), per-voter delta [12, 21] (the
# first enters the score), per-voter tIoU of the query (labels = transits + 1), tIoU counts.
OFFICIAL_PRED = 59.22469711303711
OFFICIAL_TRANSITS = {"query": [13, 94], "ex_a": [13, 49], "ex_b": [13, 94]}
OFFICIAL_DELTA = {"ex_a": -7.62968635559082, "ex_b": -9.42092227935791}  # query -> exemplar
OFFICIAL_TIOU = 0.38271604938271603  # each voter's; their mean is thresholded: 0 at 0.5 and 0.75
OFFICIAL_TIOU_COUNTS = (0.0, 0.0)

# network_forward_train(query, ex_a) after base_model.train() (BN eval by fix_bn), PSNet,
# decoder and regressor in train mode, Adam from build_opti_sche (backbone 1e-4, rest 1e-3),
# base_model.requires_grad_(False). epoch 0: pooled with the labels; epoch 60 (60/200 > 0.25):
# with the predicted transitions. mse = (query - exemplar, exemplar - query).
# parameter: (||w_after||, ||w_after - w_before||, sum(w_after - w_before))
OFFICIAL_STEP = {
    0: {"mse": (56.70220947265625, 73.94886779785156), "bce": 0.7280072569847107,
        "delta": (-1.5699114799499512, 0.5006458759307861), "transits": [[46, 84], [18, 59]],
        "update_l2": 0.5576588952144601,
        "tensors": {
            "psnet.inc.conv.conv.0.weight": (4.652733410952901, 0.017999930941498907, -0.037999881664291024),
            "psnet.down4.mpconv.1.conv.3.weight": (13.79962301086653, 0.16627694278497634, -0.25400157722401673),
            "psnet.tas.layer3.weight": (0.101224211866252, 0.011313691715675589, -0.12799981011630734),
            "psnet.inc.conv.conv.1.running_mean": (3.2780353944497937, 3.3550910653146007, 0.44519153656437993),
            "psnet.down4.mpconv.1.conv.4.running_var": (9.495685114442727, 0.8337448470099361, -5.320803344249725),
            "decoder.model.0.attn.q_map.weight": (11.20300856923088, 0.06399993046283273, 0.0020002546152682044),
            "decoder.model.2.mlp.fc2.bias": (0.43087169984007984, 0.007999999943431391, 0.007999991765245795),
            "regressor.layer3.weight": (1.3530775210812858, 0.007999993133228118, 0.011999992886558175),
            "regressor.layer1.bias": (0.7493753197465077, 0.015999999273858694, 0.021999979828251526)}},
    60: {"mse": (78.86353302001953, 111.94281768798828), "bce": 0.7280072569847107,
         "delta": (-0.21948464214801788, -1.4803045988082886), "transits": [[46, 84], [18, 59]],
         "update_l2": 0.5570599289389196,
         "tensors": {
             "psnet.inc.conv.conv.0.weight": (4.653902410770566, 0.017999931148460175, -0.029999728547409177),
             "psnet.down4.mpconv.1.conv.3.weight": (13.79916749047011, 0.16627695301855802, 0.8220005003829556),
             "psnet.tas.layer3.weight": (0.101224211866252, 0.011313691715675589, -0.12799981011630734),
             "psnet.inc.conv.conv.1.running_mean": (3.2780353944497937, 3.3550910653146007, 0.44519153656437993),
             "psnet.down4.mpconv.1.conv.4.running_var": (9.495685114442727, 0.8337448470099361, -5.320803344249725),
             "decoder.model.0.attn.q_map.weight": (11.202281091111109, 0.0639999335485914, 0.059999639495799784),
             "decoder.model.2.mlp.fc2.bias": (0.43309087634181, 0.007999999812466584, -0.006000018562190235),
             "regressor.layer3.weight": (1.3514937834197094, 0.007937247006153657, 0.011000014957971871),
             "regressor.layer1.bias": (0.7496277098909067, 0.015905973237358383, -0.011000004160450771)}},
}


class Clips(Dataset):
    """The generator's clips as a dataset of samples (one dive number: both exemplars vote)."""

    def __init__(self, names):
        self.samples = [Sample(id=n, video=Path(n), score=P.VIDEOS[n][1], difficulty=3.0,
                               meta={"dive_number": "107B"}) for n in names]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        return {"video": P.clip(s.id), "score": torch.tensor(s.score, dtype=torch.float32),
                "difficulty": torch.tensor(3.0), "id": s.id,
                "transits": torch.tensor(P.VIDEOS[s.id][2], dtype=torch.float32)}


def fdtsa_cfg(*extra):
    return build_run_config("fdtsa", "folder", overrides=[
        "backbone.weights=", "model.voter_number=2", "train.batch_size=2", *extra])


def test_prediction_of_an_imported_official_checkpoint(tmp_path):
    from aqa.models.fdtsa import FDTSA, build_bank
    from aqa.official import import_checkpoint
    from aqa.train.checkpoint import load_checkpoint

    path = P.write_official_checkpoint(tmp_path / "last.pth", P.fdtsa_model())
    out = import_checkpoint(path, None, tmp_path / "runs")  # detected from the four parts
    assert out["method"] == "fdtsa"
    state = load_checkpoint(Path(out["checkpoint"]))
    assert state["metrics"]["rho_best"] == pytest.approx(0.9312715)
    data = state["config"]["data"]  # the official preprocessing, recorded with the run
    assert (state["config"]["dataset"], data["pipeline"], list(data["resize"]), data["frame_size"],
            data["num_frames"]) == ("finediving", "tvv", [200, 112], 112, 96)
    method = FDTSA(fdtsa_cfg())
    model = method.build_model()
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        method._bank = build_bank(model, Clips(P.TEST_VOTERS), 2, 0, torch.device("cpu"))
        method.wrap_dataset(Clips(["query"]), "test", None)
        pred = method.predict(model, collate([Clips(["query"])[0]]))
        segs, _, _ = model.video_units(P.clip("query")[None])
        voted = method._vote(model, segs, Clips(["query"]).samples[0], method._bank,
                             "dive_number")
    assert abs(float(pred[0]) - OFFICIAL_PRED) <= 2e-4
    assert {e["id"]: e["difference"] for e in voted["exemplars"]} == pytest.approx(OFFICIAL_DELTA, abs=2e-4)
    bank_transits = dict(zip(method._bank["ids"], method._bank["transits"].tolist()))
    assert bank_transits == {k: OFFICIAL_TRANSITS[k] for k in P.TEST_VOTERS}
    extras = method.take_eval_extras()
    assert extras["query"]["transits"] == OFFICIAL_TRANSITS["query"]
    assert extras["query"]["tiou"] == pytest.approx(OFFICIAL_TIOU, abs=1e-12)
    rates = method.extra_metrics(extras)
    assert (rates["tiou_50"], rates["tiou_75"]) == OFFICIAL_TIOU_COUNTS


def one_step(epoch: int, freeze: bool = True):
    from aqa.models.fdtsa import FDTSA
    from aqa.train.optim import build_optimizer

    cfg = fdtsa_cfg("train.epochs=200", f"backbone.freeze={str(freeze).lower()}")
    method = FDTSA(cfg)
    model = P.fdtsa_model(freeze_backbone=freeze)
    before = {k: v.detach().clone().double() for k, v in model.state_dict().items()
              if v.is_floating_point()}
    optimizer = build_optimizer(method.param_groups(model), cfg.optim)
    method.on_epoch_start(epoch + 1)  # ours is 1-based
    method.set_train_mode(model)
    q, e = P.TRAIN_PAIR
    batch = {"video": P.clip(q)[None], "exemplar_video": P.clip(e)[None],
             "score": torch.tensor([P.VIDEOS[q][1]], dtype=torch.float32),
             "exemplar_score": torch.tensor([P.VIDEOS[e][1]], dtype=torch.float32),
             "transits": torch.tensor([P.VIDEOS[q][2]], dtype=torch.float32),
             "exemplar_transits": torch.tensor([P.VIDEOS[e][2]], dtype=torch.float32)}
    optimizer.zero_grad()
    losses = method.losses(model, batch)
    losses["loss"].backward()
    optimizer.step()
    after = {k: v.detach().double() for k, v in model.state_dict().items() if k in before}
    return losses, before, after


def check_step(official, losses, before, after):
    assert float(losses["mse"]) == pytest.approx(sum(official["mse"]), rel=1e-5)
    assert float(losses["bce"]) == pytest.approx(official["bce"], rel=1e-5)
    assert float(losses["loss"].detach()) == pytest.approx(sum(official["mse"]) + official["bce"], rel=1e-5)
    update = sum(float(((after[k] - before[k]) ** 2).sum()) for k in after
                 if not k.endswith(("running_mean", "running_var")))
    assert update ** 0.5 == pytest.approx(official["update_l2"], rel=1e-5)
    for k, (norm, dnorm, dsum) in official["tensors"].items():
        d = after[k] - before[k]
        assert float(after[k].norm()) == pytest.approx(norm, rel=1e-5), k
        # sign-sensitive per-tensor summaries of Adam's first step: across CPUs (docs/parity.md,
        # "Training steps across machines") a sum differed by 1.6e-2 relative
        assert float(d.norm()) == pytest.approx(dnorm, rel=1e-3), k
        assert float(d.sum()) == pytest.approx(dsum, rel=5e-2, abs=1e-6), k


@pytest.mark.parametrize("epoch", [0, 60])
def test_one_training_step_frozen_backbone(epoch):
    """epoch 0: pooled with the ground-truth transitions; epoch 60: with the predicted ones."""
    losses, before, after = one_step(epoch)
    check_step(OFFICIAL_STEP[epoch], losses, before, after)


# The same step with the whole model training (no requires_grad_(False)): the heads' numbers are
# those of epoch 0 above; the backbone moves at lr 1e-4 (lr_factor 0.1).
OFFICIAL_FULL_STEP = {
    **OFFICIAL_STEP[0], "update_l2": 0.6335991624736521,
    "tensors": {**OFFICIAL_STEP[0]["tensors"], "backbone.conv3d_1a_7x7.conv3d.weight":
                (11.380074104722263, 0.025662612045088757, -0.2764022791056959)}}


@pytest.mark.slow
def test_one_training_step_whole_model():
    """The I3D backward and its x0.1 group too (about 40 s on two cores)."""
    losses, before, after = one_step(0, freeze=False)
    check_step(OFFICIAL_FULL_STEP, losses, before, after)


def test_a_malicious_checkpoint_is_refused_without_running(tmp_path, runs_dir):
    import os

    from aqa.errors import CheckpointError
    from aqa.official import import_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = {"base_model": {}, "psnet_model": {}, "decoder": {}, "regressor_delta": {},
            "rho_best": Evil()}
    torch.save(evil, tmp_path / "last.pth")
    for method in (None, "fdtsa"):
        with pytest.raises(CheckpointError, match="cannot be imported safely"):
            import_checkpoint(tmp_path / "last.pth", method, runs_dir)
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_of_another_shape_is_refused_with_what_differs(tmp_path, runs_dir, capsys):
    """A decoder of another width (not the official 64): the import names the keys and exits 1."""
    from aqa.cli import main as cli

    model = P.fdtsa_model()
    parts = P.official_parts(model)
    parts["decoder"]["module.model.0.norm_q.weight"] = torch.ones(32)
    torch.save({**parts, "epoch": 3}, tmp_path / "odd.pth")
    assert cli(["import-checkpoint", str(tmp_path / "odd.pth"), "--runs-dir", str(runs_dir)]) != 0
    err = capsys.readouterr().err
    assert "FineDiving TSA" in err and "decoder.model.0.norm_q.weight" in err


@pytest.mark.parametrize("parts, says", [
    (("base_model", "taa", "regressor", "decoder"), "T²CR"),
    (("base_model", "psnet_model", "decoder1", "decoder2", "regressor_delta1"), "MCoRe-style"),
    (("base_model", "psnet_model", "decoder", "regressor_delta", "neg_attr_head"), "neg_attr_head"),
])
def test_descendants_sharing_the_container_are_refused_by_name(tmp_path, runs_dir, parts, says):
    """T²CR and MCoRe-style checkpoints look like FineDiving TSA's (base_model, ...) but are
    other models: refused with their family's name, never imported as CoRe or with parts dropped."""
    from aqa.errors import CheckpointError
    from aqa.official import import_checkpoint

    torch.save({p: {"w": torch.zeros(1)} for p in parts} | {"epoch": 1}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=says):
        import_checkpoint(tmp_path / "x.pth", None, runs_dir)


@pytest.mark.slow
def test_import_with_the_dataset_builds_the_bank_and_scores_a_clip(tmp_path, runs_dir,
                                                                   synthetic_root, capsys):
    """``aqa import-checkpoint FILE --dataset finediving --data-root P``: the bank of the training
    split at import, then ``aqa score`` with no dataset (three I3D passes, ~25 s on two cores)."""
    import json

    from aqa.cli import main as cli
    from tests.finediving_fixture import make_finediving

    make_finediving(tmp_path / "fd", n_train=2, n_test=1)
    path = P.write_official_checkpoint(tmp_path / "last.pth", P.fdtsa_model())
    assert cli(["import-checkpoint", str(path), "--dataset", "finediving", "--data-root",
                str(tmp_path / "fd"), "--runs-dir", str(runs_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "fdtsa" and any("exemplar bank" in n for n in out["notes"])
    assert cli(["score", str(synthetic_root / "clips" / "dive_0001.mp4"), "--checkpoint",
                out["checkpoint"], "--dive-number", "107B", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["frames_used"] == 96 and scored["protocol"] == "dive_number"
    assert len(scored["transitions"]["positions"]) == 2 and scored["exemplars"]
