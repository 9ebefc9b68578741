"""CoFInAl: defaults per script, the coarse/fine split, the grade tables, the ETF, training on
the RG fixture (resume, eval), contributions, and importing an official state dict."""

from __future__ import annotations

import json
import os

import pytest
import torch

from aqa.config import build_run_config
from aqa.errors import CheckpointError, ConfigError
from aqa.models.cofinal import GRADES, align_labels, coarse_fine, simplex_etf
from aqa.registry import METHODS
from tests.features_fixture import make_rg, make_fisv_features

TINY = ["model.hidden_dim=16", "data.clip_num=8", "train.batch_size=4", "train.log_every=1",
        "train.heartbeat_s=5", "train.device=cpu"]


def test_defaults_are_the_scripts():
    cfg = build_run_config("cofinal", "rg")  # train_all_rg.sh, Ball
    m = cfg.model
    assert (m.n_encoder, m.n_decoder, m.n_query, m.n_head, m.hidden_dim, m.alpha, m.margin,
            m.dropout, m.grades, m.loss_align, m.revert) == \
        (1, 2, 4, 1, 256, 1.0, 1.0, 0.3, "sigmoid", "short", True)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.min_lr_factor,
            cfg.train.epochs, cfg.train.batch_size) == ("sgd", 1e-2, 1e-4, 0.01, 250, 32)
    fis = build_run_config("cofinal", "fisv")  # train_all_fis.sh
    assert (fis.model.alpha, fis.model.n_head, fis.model.hidden_dim, fis.model.grades,
            fis.train.epochs) == (0.5, 7, 448, "arcl1", 200)


def test_coarse_and_fine_parts_of_a_target():
    coarse, fine = coarse_fine(torch.tensor([0.692, 0.5, 0.12346]))
    assert coarse.tolist() == pytest.approx([0.69, 0.5, 0.12])
    assert fine.tolist() == [20, 0, 35]  # the 3rd and 4th decimals, rounded
    coarse, fine = coarse_fine(torch.tensor([0.692, 0.5, 0.12346]), truncate=True)
    assert fine.tolist() == [19, 0, 34]  # official: 0.692 x 10000 = 6919.9995 in float32


def test_grade_tables_and_alignment_labels():
    assert GRADES["sigmoid"](4)[0].tolist() == pytest.approx([0.1, 0.2, 0.8, 1.0])
    assert GRADES["sigmoid"](4)[1].tolist() == [1.0, 1.0, -1.0, -1.0]  # not a flip (official)
    assert GRADES["arcl1"](4)[1].tolist() == pytest.approx([1.0, 0.8, -0.8, -1.0])
    assert GRADES["linspace_skip0"](4)[0].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert align_labels("short", 4, 2, "cpu").tolist() == [-1, -0.5, 0, 0.5] * 2
    assert align_labels("long", 2, 2, "cpu").tolist() == [-1, -0.5, 0, 0.5]  # all distinct
    assert align_labels("grades", 3, 2, "cpu").tolist() == [0, 1, 2, 0, 1, 2]


def test_the_etf_is_a_simplex_frame():
    e = simplex_etf(100, 0)
    gram = e.T @ e  # unit columns, pairwise cosine -1/(n-1)
    assert torch.allclose(gram.diagonal(), torch.ones(100), atol=1e-5)
    off = gram[~torch.eye(100, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / 99), atol=1e-5)


def test_bad_settings_are_refused():
    for sets, match in ((["model.grades=cubic"], "model.grades"),
                        (["model.grades=sigmoid", "model.n_query=5"], "has 4 values"),
                        (["model.loss_align=wide"], "loss_align"),
                        (["model.hidden_dim=18"], "divisible")):
        with pytest.raises(ConfigError, match=match):
            METHODS.get("cofinal")(build_run_config("cofinal", "rg", overrides=sets)).build_model()


def test_batch_attention_at_eval_is_each_program_alone():
    cfg = build_run_config("cofinal", "rg", overrides=["model.hidden_dim=16", "model.in_dim=32",
                                                       "model.batch_attention=true"])
    method = METHODS.get("cofinal")(cfg)
    torch.manual_seed(0)
    model = method.build_model().eval()
    x = torch.rand(3, 7, 32)
    with torch.no_grad():
        together = model(x)["dec"]
        alone = torch.cat([model(x[i:i + 1])["dec"] for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_trains_resumes_and_evaluates_on_rg(runs_dir, tmp_path):
    from aqa.evaluate import evaluate_checkpoint
    from aqa.jobs import submit
    from aqa.runs import store
    from aqa.train.loop import main

    make_rg(tmp_path / "rg", n_train=6, n_test=3, seed=1)
    path = submit(runs_dir, "cofinal", "rg", data_root=str(tmp_path / "rg"), start_now=False,
                  overrides=TINY + ["train.epochs=1"])
    assert main(str(path)) == 0
    spec = store.read_run(path)
    spec["config"]["train"]["epochs"] = 2
    (path / store.RUN_JSON).write_text(json.dumps(spec))
    assert main(str(path)) == 0
    events = [json.loads(line) for line in (path / "events.jsonl").read_text().splitlines()]
    assert [e for e in events if e.get("type") == "start"][-1]["resumed_epoch"] == 1
    names = {e["name"] for e in events if e.get("type") == "metric"}
    assert {"coarse", "coarse_revert", "fine", "triplet", "rho"} <= names
    result = evaluate_checkpoint(path / "checkpoints" / "last.pt")
    assert result["samples"] == 3 and result["metrics"]["l2"] > 0


def test_trains_on_fisv_features_pcs(runs_dir, tmp_path):
    from aqa.jobs import submit
    from aqa.train.loop import main

    make_fisv_features(tmp_path / "fisv", n_train=5, n_test=2, dim=64)
    path = submit(runs_dir, "cofinal", "fisv", data_root=str(tmp_path / "fisv"), start_now=False,
                  overrides=TINY + ["model.in_dim=64", "model.n_head=4", "train.epochs=1",
                                    "data.features=swintx_avg_fps25_clip32", "data.target=pcs"])
    assert main(str(path)) == 0
    assert (path / "checkpoints" / "best.pt").exists()


def test_contributions_add_up_to_the_score():
    cfg = build_run_config("cofinal", "rg", overrides=["model.hidden_dim=16", "model.in_dim=32"])
    method = METHODS.get("cofinal")(cfg)
    torch.manual_seed(0)
    model = method.build_model().eval()
    with torch.no_grad():
        out = method.score_clip(model, {"features": torch.rand(1, 9, 32),
                                        "length": torch.tensor([9])})
    c = out["contributions"]
    assert len(c["per_clip"]) == 9 and sum(c["per_clip"]) == pytest.approx(out["score"], rel=1e-5)
    assert c["coarse"] + c["fine"] == pytest.approx(out["score"], rel=1e-5)
    assert 0 <= c["fine_class"] < 100


def test_import_refuses_the_wrong_method_and_a_malicious_file(tmp_path, runs_dir):
    from aqa.models.cofinal import CoFInAlConfig, CoFInAlModel
    from aqa.official import import_checkpoint
    from tests.legacy_pickle import save_as_numpy1
    from tests.parity_gdlt_inputs import fill, write_checkpoint

    path = write_checkpoint(fill(CoFInAlModel(CoFInAlConfig(revert=False)), 2), tmp_path / "c.pkl")
    with pytest.raises(CheckpointError, match="--method cofinal"):
        import_checkpoint(path, "gdlt", runs_dir)
    result = import_checkpoint(path, None, runs_dir)  # GDLTETH2: no reversed head
    state = torch.load(result["checkpoint"], weights_only=True)
    assert state["config"]["model"]["revert"] is False and state["method"] == "cofinal"

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    save_as_numpy1({"etf_vec1": Evil()}, tmp_path / "evil.pkl")
    with pytest.raises(CheckpointError, match="cannot be imported safely"):
        import_checkpoint(tmp_path / "evil.pkl", "cofinal", runs_dir)
    assert not (tmp_path / "pwned").exists()


def test_import_then_eval_on_rg(tmp_path, runs_dir):
    from aqa.evaluate import evaluate_checkpoint
    from aqa.models.cofinal import CoFInAlConfig, CoFInAlModel
    from aqa.official import import_checkpoint
    from tests.parity_gdlt_inputs import fill, write_checkpoint

    make_rg(tmp_path / "rg", n_train=4, n_test=3, seed=2)
    path = write_checkpoint(fill(CoFInAlModel(CoFInAlConfig()), 5), tmp_path / "Clubs_best.pkl")
    result = import_checkpoint(path, None, runs_dir, dataset="rg", data_root=str(tmp_path / "rg"),
                               overrides=["model.grades=arcl1"])
    assert any("batch_attention=true" in n for n in result["notes"])
    evaluated = evaluate_checkpoint(result["checkpoint"])
    assert evaluated["samples"] == 3 and evaluated["metrics"]["l2"] > 0


# the first lines and the end of the shipped temp_log/RG/VST/cofinal/train_log-cofinal-Ball.txt
# (@fe1f4c1), cut to three epochs (its last line's best epoch and rho changed to theirs)
COFINAL_LOG = """200
=============Load dataset successfully=============
cofinal...
=============Load model successfully=============
Namespace(video_path='/d/RG/swintx_avg_fps25_clip32', clip_num=68, model_name='Ball', submodel_name='cofinal', epoch=250)
=============Begin training=============
/x/numpy/lib/npyio.py:719: VisibleDeprecationWarning: Creating an ndarray from ragged nested sequences
Epoch: 0\tLoss: 1.2244\tTrain Coef: 0.113\tTest Loss: 0.0244\tTest Coef: 0.182442\tTest rl2: 4.0729
Epoch: 1\tLoss: 1.0692\tTrain Coef: 0.079\tTest Loss: 0.0294\tTest Coef: 0.319983\tTest rl2: 4.9150
Epoch: 2\tLoss: 0.8754\tTrain Coef: 0.125\tTest Loss: 0.0175\tTest Coef: 0.295827\tTest rl2: 2.9273
Best Test Coef: 0.319983\tBest Test Eopch: 1
"""


def test_import_log_of_cofinals_shipped_format(tmp_path, runs_dir):
    from aqa.history import import_log, parse_log

    path = tmp_path / "train_log-cofinal-Ball.txt"
    path.write_text(COFINAL_LOG)
    parsed = parse_log(path, "gdlt")
    assert [n for n, _ in parsed.not_understood] == [7]  # the numpy warning, reported
    (sess,) = parsed.sessions
    assert sess.header == "Ball" and sess.epochs == 3 and sess.best() == (0.319983, 2)
    l2 = [r.value for r in sess.rows if r.name == "l2"]
    assert l2 == pytest.approx([0.0244 * 625, 0.0294 * 625, 0.0175 * 625])  # points squared
    assert [r.value for r in sess.rows if r.name == "rl2"] == pytest.approx([0.040729, 0.04915, 0.029273])
    result = import_log(path, "cofinal", runs_dir)
    (run,) = result["runs"]
    assert run["epochs"] == 3 and run["best"] == {"metric": "rho", "value": 0.319983, "epoch": 2}
