"""aqa import-config (official options -> overrides) and aqa import-log (official logs -> runs).

The official config files and logs are not copied here: the option names, keys and values are
facts written as literals, and the log lines are generated in each repository's print format
with our own numbers.
"""

from __future__ import annotations

import json
import math

import pytest

from aqa import compare
from aqa.cli import main
from aqa.config import build_run_config
from aqa.errors import ConfigError
from aqa.history import LogFormatError, import_log, parse_log
from aqa.official_config import TABLES, import_config
from aqa.runs import index

# Every option of each official parser / config file (names are facts): the table must cover
# exactly these, so a missing or invented option fails here.
OFFICIAL_OPTIONS = {
    "core": [  # configs/MTL_CoRe.yaml + Seven_CoRe.yaml keys, utils/parser.py flags and the
               # keys parser.py adds to the saved experiments/.../config.yaml
        "bs_train", "bs_test", "workers", "step_per_update", "max_epoch", "pretrained_i3d_weight",
        "RT_depth", "score_range", "voter_number", "data_root", "label_path", "train_split",
        "test_split", "dive_number_choosing", "usingDD", "frame_length", "seed",
        "temporal_shift_min", "temporal_shift_max", "optimizer", "weight_decay", "base_lr",
        "lr_factor", "print_freq",
        "benchmark", "exp_name", "fix_bn", "resume", "test", "ckpts", "Seven_cls",
        "class_idx", "config", "experiment_path"],
    "tpt": [  # utils/opt.py parse_opt
        "local_rank", "epoch_num", "learning_rate", "lr_factor", "workers", "save_per_epoch",
        "bs_train", "bs_test", "use_pretrain", "use_checkpoint", "multi_gpu_test", "use_dd",
        "cross_dd", "encode_video", "weighed_cluster", "num_voting", "multi_e", "d_model",
        "d_ffn", "pe", "se", "attention", "n_ep", "tree_target", "model", "exp_name", "dropout",
        "frame_hidden_size", "num_cluster", "num_layers", "margin_factor", "hinge_loss",
        "multi_hinge", "cluster_norm_dim", "mse_loss", "prob_loss", "class_loss",
        "query_embed_cross", "max_frames", "dataset", "class_idx", "data_root",
        "pretrained_i3d_weight", "frame_length"],
    "tsa": [  # config.py get_parser
        "model_path", "gpu", "log_info", "pt_w", "dp", "TSA", "TSA_pos", "temporal_aug", "std",
        "lr", "weight_decay", "seed", "save", "num_epochs", "num_workers", "train_batch_size",
        "test_batch_size", "dataset_path"],
    "musdl": [  # MTL-AQA/config.py get_parser
        "log_info", "std", "save", "type", "lr", "weight_decay", "temporal_aug", "seed",
        "num_workers", "gpu", "train_batch_size", "test_batch_size", "num_epochs"],
    "musdl-jigsaws": [  # JIGSAWS/config.py get_parser
        "log_info", "cls", "std", "save", "type", "lr", "weight_decay", "seed", "num_workers",
        "gpu", "train_batch_size", "test_batch_size", "num_epochs"],
    "pecop": [  # train.py's argparse
        "gpu", "height", "pretrained_i3d_weight", "width", "clip_len", "crop_sz", "lr", "bs",
        "num_workers", "epoch", "max_sr", "max_segment", "fr", "max_save", "pf", "dataset",
        "model", "data_list", "rgb_prefix"],
    "gdlt": [  # options.py
        "video-path", "clip-num", "train-label-path", "test-label-path", "action-type",
        "score-type", "model-name", "ckpt", "test", "epoch", "batch", "lr", "momentum",
        "weight-decay", "optim", "lr-decay", "decay-rate", "warmup", "in_dim", "hidden_dim",
        "n_head", "n_encoder", "n_decoder", "n_query", "alpha", "margin", "dropout"],
    "cofinal": [  # options.py: GDLT's and four more
        "video-path", "clip-num", "train-label-path", "test-label-path", "action-type",
        "score-type", "model-name", "submodel-name", "ckpt", "test", "epoch", "batch", "lr",
        "momentum", "weight-decay", "optim", "lr-decay", "decay-rate", "warmup", "in_dim",
        "hidden_dim", "n_head", "n_encoder", "n_decoder", "n_query", "alpha", "margin", "dropout",
        "activate_regular_restrictions", "loss_align", "ab"],
}

# CoRe's configs/MTL_CoRe.yaml at f7881a9: its keys and values (facts), dumped to YAML in a test
MTL_CORE_YAML = {
    "bs_train": 1, "bs_test": 1, "workers": 4, "step_per_update": 2, "max_epoch": 200,
    "pretrained_i3d_weight": "./MTL-AQA/model_rgb.pth", "RT_depth": 5, "score_range": 30,
    "voter_number": 10, "data_root": "./MTL-AQA/new/new_total_frames_256s/",
    "label_path": "./MTL-AQA/info/final_annotations_dict_with_dive_number.pkl",
    "train_split": "./MTL-AQA/info/train_split_0.pkl",
    "test_split": "./MTL-AQA/info/test_split_0.pkl", "dive_number_choosing": False,
    "usingDD": True, "frame_length": 103, "seed": 0, "temporal_shift_min": -3,
    "temporal_shift_max": 3, "optimizer": "Adam", "weight_decay": 0, "base_lr": 0.001,
    "lr_factor": 0.1, "print_freq": 40,
}


def dump_yaml(values: dict) -> str:
    """``key : value`` lines as CoRe's files write them (strings quoted, booleans True/False)."""
    def scalar(v):
        return f"'{v}'" if isinstance(v, str) else str(v)
    return "# basic setting\n" + "".join(f"{k} : {scalar(v)}\n" for k, v in values.items())


def test_tables_cover_every_official_option():
    assert {s: sorted(t) for s, t in TABLES.items()} == \
        {s: sorted(names) for s, names in OFFICIAL_OPTIONS.items()}


def test_real_mtl_core_yaml_builds_a_valid_run_config(tmp_path):
    path = tmp_path / "MTL_CoRe.yaml"
    path.write_text(dump_yaml(MTL_CORE_YAML))
    result = import_config("core", str(path))
    assert (result["method"], result["dataset"]) == ("core", "mtl_aqa")
    cfg = build_run_config("core", "mtl_aqa", overrides=result["overrides"])
    assert (cfg.train.batch_size, cfg.optim.accum_steps, cfg.train.epochs) == (1, 2, 200)
    assert (cfg.model.depth, cfg.model.score_range, cfg.model.voter_number) == (5, 30.0, 10)
    assert (cfg.optim.lr, cfg.optim.backbone_lr_factor, cfg.optim.weight_decay) == (1e-3, 0.1, 0.0)
    assert (cfg.data.root, cfg.data.layout, cfg.data.jitter, cfg.data.num_frames) == \
        ("MTL-AQA", "core", 3, 103)
    assert cfg.data.annotations == "final_annotations_dict_with_dive_number.pkl"
    assert (cfg.data.train_split, cfg.data.test_split) == ("train_split_0.pkl", "test_split_0.pkl")
    assert (cfg.backbone.weights, cfg.backbone.family, cfg.backbone.input_norm) == \
        ("./MTL-AQA/model_rgb.pth", "hassony2", "imagenet")
    assert (cfg.model.use_dd, cfg.model.exemplar_rule, cfg.model.fix_bn) == (True, "difficulty", True)
    assert (cfg.train.seed, cfg.train.log_every, cfg.data.num_workers) == (0, 40, 4)
    assert {m["option"] for m in result["no_equivalent"]} == {"bs_test", "exp_name", "resume", "test"}
    assert result["unknown"] == []


def test_core_yaml_without_dd_seven_flags_and_unknown_keys(tmp_path):
    path = tmp_path / "MTL_CoRe.yaml"
    path.write_text(dump_yaml({**MTL_CORE_YAML, "usingDD": False, "dive_number_choosing": True,
                               "temporal_shift_min": -2, "typo_key": 1}))
    r = import_config("core", str(path))
    assert {"model.use_dd=false", "model.score_range=100.0", "model.exemplar_rule=dive_number"} \
        <= set(r["overrides"])
    assert not any(s.startswith("data.jitter") for s in r["overrides"])
    assert "temporal_shift_min" in {m["option"] for m in r["no_equivalent"]}
    assert r["unknown"] == ["typo_key"]
    seven = tmp_path / "Seven_CoRe.yaml"
    seven.write_text(dump_yaml({"bs_train": 2, "score_range": 100, "data_root": "./Seven/"}))
    r = import_config("core", str(seven), ["--Seven_cls", "4", "--fix_bn", "False", "--nope=1"])
    assert (r["dataset"], r["unknown"]) == ("aqa7", ["--nope"])
    # parser.py's fix_bn is type=bool: the text "False" is a non-empty string, so True
    assert {"data.class_name=snowboard_big_air", "model.fix_bn=true", "train.batch_size=2",
            "model.score_range=100.0", "data.root=Seven"} <= set(r["overrides"])


def test_saved_experiment_config_yaml(tmp_path):
    """utils/parser.py saves yaml.dump(args.__dict__): sorted keys, plain strings, null, true."""
    seven_yaml = {"bs_train": 2, "bs_test": 1, "workers": 4, "step_per_update": 2,
                  "max_epoch": 200, "pretrained_i3d_weight": "./MTL-AQA/model_rgb.pth",
                  "RT_depth": 5, "score_range": 100, "voter_number": 10, "data_root": "./Seven/",
                  "frame_length": 103, "seed": 0, "optimizer": "Adam", "weight_decay": 0,
                  "base_lr": 0.001, "lr_factor": 0.1, "print_freq": 10}  # Seven_CoRe.yaml
    saved = {**seven_yaml, "usingDD": True, "benchmark": "Seven", "Seven_cls": 5, "class_idx": 5,
             "ckpts": None, "config": "configs/Seven_CoRe.yaml", "exp_name": "try",
             "experiment_path": "./experiments/CoRe_RT/Seven/try", "fix_bn": True,
             "resume": False, "test": False}
    text = "".join(f"{k}: {'null' if v is None else str(v).lower() if isinstance(v, bool) else v}\n"
                   for k, v in sorted(saved.items()))
    path = tmp_path / "config.yaml"
    path.write_text(text)
    r = import_config("core", str(path))
    assert (r["method"], r["dataset"], r["unknown"]) == ("core", "aqa7", [])
    assert "data.class_name=sync_diving_3m" in r["overrides"]
    assert {"config", "experiment_path", "ckpts", "exp_name", "usingDD"} <= \
        {m["option"] for m in r["no_equivalent"]}


def test_flag_sources_map_their_readme_runs():
    tpt = import_config("tpt", None, "--epoch_num=250 --dataset=MLT_AQA --bs_train=3 --bs_test=3 "
                        "--use_pretrain=False --num_cluster=5 --margin_factor=3.2 "
                        "--encode_video=False --hinge_loss=True --multi_hinge=True --d_model=512 "
                        "--d_ffn=512 --exp_name=x".split())
    cfg = build_run_config(tpt["method"], tpt["dataset"], overrides=tpt["overrides"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.model.num_queries, cfg.model.margin,
            cfg.model.d_model, cfg.model.d_ffn) == (250, 3, 5, 3.2, 512, 512)
    missing = {m["option"]: m["reason"] for m in tpt["no_equivalent"]}
    assert "never read" in missing["learning_rate"] and "encode_video" in missing
    tsa = import_config("tsa", None, ["--TSA", "--dp", "--num_epochs", "5"])
    assert (tsa["method"], tsa["dataset"]) == ("tsa", "frfs")
    assert {"model.dropout=0.5", "train.epochs=5", "optim.weight_decay=1e-05"} <= set(tsa["overrides"])
    assert import_config("tsa", None, [])["method"] == "plain"
    musdl = import_config("musdl", None, ["--type", "MUSDL", "--temporal_aug", "6"])
    assert musdl["method"] == "musdl" and "data.jitter=3" in musdl["overrides"]
    odd = import_config("musdl", None, ["--temporal_aug", "5"])
    assert odd["method"] == "usdl" and "temporal_aug" in {m["option"] for m in odd["no_equivalent"]}
    jig = import_config("musdl-jigsaws", None, ["--cls", "Suturing"])
    assert jig["dataset"] == "jigsaws" and "data.task=Suturing" in jig["overrides"]
    pecop = import_config("pecop", None, "--bs 16 --lr 0.001 --clip_len 32".split())
    cfg = build_run_config("pecop", "pd4t", overrides=pecop["overrides"])
    # train.py's SGD lr is 0.01 whatever --lr says; --lr only sets eta_min = lr / 1000
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.min_lr_factor, cfg.train.batch_size) == \
        ("sgd", 0.01, 0.0001, 16)


@pytest.mark.parametrize("source,flags,dataset", [
    ("core", ["--benchmark", "MTL"], "mtl_aqa"), ("core", ["--benchmark", "Seven"], "aqa7"),
    ("tpt", [], "mtl_aqa"), ("tpt", ["--dataset=AQA_7", "--class_idx=7"], "aqa7"),
    ("tsa", [], "frfs"), ("musdl", [], "mtl_aqa"), ("musdl-jigsaws", [], "jigsaws"),
    ("pecop", [], "pd4t")])
def test_every_source_defaults_build_a_valid_config(source, flags, dataset):
    result = import_config(source, None, flags)  # raises if our mapping were invalid
    assert result["dataset"] == dataset
    build_run_config(result["method"], dataset, overrides=result["overrides"])
    if flags[-1:] == ["--class_idx=7"]:
        assert "data.class_name=all" in result["overrides"]


def test_a_pasted_command_line():
    tpt = import_config("tpt", None, "python -u -m torch.distributed.launch --nproc_per_node=8 "
                        "train_pairencode1.py --epoch_num=250 --d_model=512".split())
    assert tpt["unknown"] == [] and "train.epochs=250" in tpt["overrides"]
    assert tpt["no_equivalent"][-1]["value"].endswith("--nproc_per_node=8 train_pairencode1.py")
    core = import_config("core", None, "bash ./scripts/train.sh 0,1 Seven try --Seven_cls 3".split())
    assert core["dataset"] == "aqa7" and "data.class_name=ski_big_air" in core["overrides"]
    assert import_config("core", None, "bash scripts/test.sh 0 MTL x --ckpts a.pth".split())[
        "values"]["test"] is True


def test_bad_values_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="--epoch_num: expected int"):
        import_config("tpt", None, ["--epoch_num", "ten"])
    with pytest.raises(ConfigError, match="expected a boolean"):
        import_config("tpt", None, ["--use_dd=maybe"])
    nested = tmp_path / "MTL_CoRe.yaml"
    nested.write_text("optimizer:\n  name: Adam\n")
    with pytest.raises(ConfigError, match=":2: expected a flat"):
        import_config("core", str(nested))
    with pytest.raises(ConfigError, match="benchmark is unknown"):
        (tmp_path / "mine.yaml").write_text("bs_train : 1\n")
        import_config("core", str(tmp_path / "mine.yaml"))


def test_import_config_command_prints_and_writes(tmp_path, capsys):
    path = tmp_path / "MTL_CoRe.yaml"
    path.write_text(dump_yaml(MTL_CORE_YAML))
    out = tmp_path / "core.json"
    assert main(["import-config", str(path), "-o", str(out), "--", "--exp_name", "try"]) == 0
    text = capsys.readouterr().out
    assert "python -m aqa train --method core --dataset mtl_aqa" in text
    assert "--set model.depth=5" in text and "exp_name = 'try'" in text
    saved = json.loads(out.read_text())
    assert saved["config"]["model"]["voter_number"] == 10 and saved["method"] == "core"
    assert main(["import-config", "nosuch"]) == 2


# ---------------------------------------------------------------- logs

def musdl_log(header: str, test_rhos: list, current_best: bool = True) -> str:
    """MUSDL's get_logger header and main.py's lines, with our numbers."""
    lines, best, best_epoch = ["-" * 30 + header + "-" * 30], 0, 0
    for e, rho in enumerate(test_rhos):
        lines.append(f"Epoch: {e}  Current Best: {best} at epoch {best_epoch}" if current_best
                     else f"Epoch: {e}")
        lines += [f"train correlation: {rho / 2}", f"test correlation: {rho}"]
        if rho > best:
            best, best_epoch = rho, e
            lines.append("-----New best found!-----")
    return "\n".join(lines) + "\n"


def test_musdl_log_sessions_become_runs_in_the_index(runs_dir, tmp_path):
    log = tmp_path / "MUSDL.log"
    log.write_text(musdl_log("MUSDL", [0.5, 0.71, float("nan"), 0.7])
                   + musdl_log("again", [0.3, 0.4]) + "Traceback (most recent call last):\n")
    result = import_log(log, "musdl", runs_dir, name="paper run")
    assert result["log"]["sessions"] == 2 and result["log"]["not_understood"] == 1
    first, second = result["runs"]
    assert (first["name"], first["epochs"], first["best"]) == \
        ("paper run #1", 4, {"metric": "rho", "value": 0.71, "epoch": 2})
    assert second["best"]["value"] == 0.4
    index.sync(runs_dir)
    row = index.get_run(runs_dir, first["run_id"])
    assert (row["status"], row["epoch"], row["best_rho"], row["method"]) == \
        ("finished", 4, 0.71, "musdl")
    rows = index.run_metrics(runs_dir, first["run_id"])
    test = [(r["epoch"], r["value"]) for r in rows if r["split"] == "test"]
    assert test == [(1, 0.5), (2, 0.71), (3, None), (4, 0.7)]
    assert [r["value"] for r in rows if r["name"] == "epoch_rho"][:2] == [0.25, 0.355]
    compared = compare.run_row(row, None, rows)  # the compare page's row: the best epoch
    assert (compared["epoch"], compared["rho"], compared["source"]) == (2, 0.71, "index")


def test_jigsaws_fold_log_and_final_line(tmp_path):
    log = tmp_path / "avg.log"
    log.write_text(musdl_log("exp1", [0.6, 0.8]) + "-" * 50 + "\n"
                   "MUSDL Suturing final test correlation: 0.7\n")
    sess, = parse_log(log, "musdl").sessions
    assert sess.best() == (0.8, 2) and "final test correlation" in sess.notes[0]
    fold = tmp_path / "fold_0.log"
    fold.write_text(musdl_log("exp1", [0.2, 0.9, 0.1], current_best=False))
    assert parse_log(fold, "musdl").sessions[0].best() == (0.9, 2)


def test_core_log_lines(tmp_path):
    lines = ["Namespace(benchmark='MTL', exp_name='try')", "Trainer start ... "]
    for e, (rho, l2) in enumerate([(0.61, 90.5), (0.72, 70.25)]):
        for b in (40, 80):
            lines.append(f"[Training][{e}/200][{b}/1059] \t Batch_time 1.23 \t Batch_loss: "
                         f"{1.5 - e - b / 1000:.4f} \t lr1 : 0.00010 \t lr2 : 0.00100")
        lines.append(f"[Training] EPOCH: {e}, correlation: 0.5000, L2: 120.0000, RL2: 0.0110, "
                     "lr1: 0.0001, lr2: 0.0010")
        lines += [f"Start validating epoch {e}",
                  f"[TEST][{e}/200][0/353] \t Batch_time 0.50 \t Data_time 0.10 ",
                  "-----New best found!-----",
                  f"[TEST] EPOCH: {e}, correlation: {rho:.6f}, L2: {l2:.6f}, RL2: 0.006500",
                  f"[TEST] EPOCH: {e}, best correlation: {rho:.6f}, best L2: {l2:.6f}, "
                  "best RL2: 0.006500"]
    log = tmp_path / "LOG_MTL_try.log"
    log.write_text("\n".join(lines) + "\n")
    parsed = parse_log(log, "core")
    sess, = parsed.sessions
    assert parsed.not_understood == []
    got = {(r.epoch, r.split, r.name): r.value for r in sess.rows}
    assert got[(2, "test", "rho")] == 0.72 and got[(2, "test", "l2")] == 70.25
    assert got[(1, "train", "epoch_rl2")] == 0.011
    losses = [(r.step, r.value) for r in sess.rows if r.name == "loss"]
    assert losses == [(40, 1.46), (80, 1.42), (1099, 0.46), (1139, 0.42)]


def test_tpt_log_lines_with_the_results_table(tmp_path):
    text = """Start Epoch 9, time: 2022-08-01 10:00:00
EPOCH:9, Training:loss_cls: 2.1000, loss_reg: 0.0300, loss_att: 0.5000, loss_var: 0.2500, correlation: 0.8000, r_l2: 0.9000
(353, 1)
results updated
-------------epoch 9
             Corr.   metrics
0         Curr_rho  0.912346
1         Best_rho  0.912346
2         Curr_rl2  0.456700
3         Best_rl2  0.456700
4  Best_corr_epoch  9.000000
5    Best_l2_epoch  9.000000
Start Epoch 10, time: 2022-08-01 10:05:00
"""
    log = tmp_path / "tpt.log"
    log.write_text(text)
    sess, = parse_log(log, "tpt").sessions
    got = {(r.epoch, r.split, r.name): r.value for r in sess.rows}
    assert got[(10, "test", "rho")] == 0.912346
    assert math.isclose(got[(10, "test", "rl2")], 0.004567)  # printed x 100
    assert got[(10, "train", "epoch_loss_cls")] == 2.1 and got[(10, "train", "epoch_rho")] == 0.8
    wide = tmp_path / "tpt7.log"
    wide.write_text("-------------epoch 3\n"
                    "             Corr.    diving  ...  sync_diving_10m       Avg\n"
                    "0         Curr_rho  0.900000  ...         0.700000  0.800000\n"
                    "2         Curr_rl2  1.000000  ...         3.000000  2.000000\n"
                    "\n[6 rows x 8 columns]\n")
    got = {r.name: r.value for r in parse_log(wide, "tpt").sessions[0].rows}
    assert got == {"rho_diving": 0.9, "rho_sync_diving_10m": 0.7, "rho": 0.8,
                   "rl2_diving": 0.01, "rl2_sync_diving_10m": 0.03, "rl2": 0.02}
    # pandas 1.x wraps a wide table (display.width 80) into blocks continued with a backslash
    wrapped = tmp_path / "tpt7w.log"
    wrapped.write_text(
        "-------------epoch 9\n"
        "             Corr.  diving  gym_vault  ski_big_air  snowboard_big_air  \\\n"
        "0         Curr_rho    0.91       0.72         0.73               0.64   \n"
        "1         Best_rho   -1.00      -1.00        -1.00              -1.00   \n"
        "2         Curr_rl2    1.10       2.20         3.30               4.40   \n"
        "\n   sync_diving_3m  sync_diving_10m   Avg  \n"
        "0            0.95             0.96  0.87  \n"
        "1           -1.00            -1.00 -1.00  \n"
        "2            5.50             6.60  3.85  \n"
        "5           -1.00            -1.00 -1.00  \n")
    parsed = parse_log(wrapped, "tpt")
    got = {r.name: r.value for r in parsed.sessions[0].rows}
    assert parsed.not_understood == [] and len(got) == 14
    assert (got["rho"], got["rho_snowboard_big_air"], got["rl2_sync_diving_3m"]) == (0.87, 0.64, 0.055)


def test_tsa_and_pecop_logs(runs_dir, tmp_path):
    tsa = tmp_path / "train.log"
    tsa.write_text("-" * 30 + "Exp1" + "-" * 30 + "\n"
                   "Epoch: 0  Current Best: 0.00 at epoch 0\n\t train Acc: 75.00 \n"
                   "\t test Acc: 80.50 \n-----New best found!-----\n"
                   "Epoch: 1  Current Best: 80.50 at epoch 0\n\t train Acc: 90.00 \n"
                   "\t test Acc: 78.00 \n")
    run, = import_log(tsa, "tsa", runs_dir)["runs"]
    assert run["best"] == {"metric": "accuracy", "value": 0.805, "epoch": 1}
    index.sync(runs_dir)
    row = index.get_run(runs_dir, run["run_id"])
    assert (row["best_metric"], row["best_value"], row["dataset"]) == ("accuracy", 0.805, "frfs")
    pecop = tmp_path / "pecop.out"
    pecop.write_text("PD4T_sr_5_i3d_lr_0.001_len_32_sz_224\nlen of training data: 600\n"
                     "[Epoch1/0] Loss: 3.200000047683716 Acc: 0.25  \n"  # str.format of a 0-d tensor
                     "[Epoch1/20] Loss: 2.5 Acc: 0.5  \n[pre-training] loss: 2.800, acc: 0.400\n"
                     "[pre-training] loss: 2.100, acc: 0.550\n")
    sess, = parse_log(pecop, "pecop").sessions
    got = [(r.epoch, r.name, r.value, r.step) for r in sess.rows]
    assert got == [(1, "loss", 3.200000047683716, 1), (1, "acc", 0.25, 1), (1, "loss", 2.5, 21),
                   (1, "acc", 0.5, 21), (1, "epoch_loss", 2.8, 21), (1, "epoch_acc", 0.4, 21),
                   (2, "epoch_loss", 2.1, 21), (2, "epoch_acc", 0.55, 21)]


def test_malformed_and_foreign_logs_are_named(runs_dir, tmp_path, capsys):
    bad = tmp_path / "bad.log"
    bad.write_text("Epoch: 0  Current Best: 0 at epoch 0\ntrain correlation: 0.5\n"
                   "test correlation: zero point five\n")
    with pytest.raises(LogFormatError, match=r"bad.log:3: malformed MUSDL correlation"):
        parse_log(bad, "musdl")
    other = tmp_path / "other.log"
    other.write_text("hello\nworld\n")
    with pytest.raises(LogFormatError, match="no core metric lines.*2 lines not understood"):
        parse_log(other, "core")
    assert main(["import-log", str(bad), "--method", "musdl", "--runs-dir", str(runs_dir)]) == 2
    assert "bad.log:3" in capsys.readouterr().err
    good = tmp_path / "USDL.log"
    good.write_text(musdl_log("USDL", [0.4, 0.6]) + "100%|#####| 265/265 [01:02<00:00]\n")
    assert main(["import-log", str(good), "--method", "usdl", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 line(s) not understood" in out and "best test rho 0.6000 (epoch 2)" in out


def test_the_app_shows_an_imported_log(runs_dir, tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    log = tmp_path / "MUSDL.log"
    log.write_text(musdl_log("MUSDL", [0.5, 0.8, 0.7]))
    run, = import_log(log, "musdl", runs_dir)["runs"]
    for page, query in (("runs", {"run": run["run_id"]}), ("compare", {})):
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                               default_timeout=90)
        at.run()
        at.switch_page(f"app_pages/{page}.py")
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if page == "runs":
            assert at.title[0].value == f"Run {run['run_id']}"
            assert any("metric points" in c.value for c in at.caption)


def test_gdlt_readme_and_cofinal_script_lines_map_to_the_defaults():
    """The README's GDLT command and train_all_rg.sh's Clubs line give our gdlt/cofinal config."""
    from aqa.config import build_run_config

    readme = ("python main.py --video-path /d/rg/swintx_avg_fps25_clip32 --train-label-path "
              "/d/rg/train.txt --test-label-path /d/rg/test.txt --model-name m --action-type Hoop "
              "--lr 1e-2 --epoch 500 --n_decoder 2 --n_query 4 --alpha 1.0 --margin 1.0 "
              "--lr-decay cos --decay-rate 0.01 --dropout 0.3").split()
    r = import_config("gdlt", None, readme)
    assert (r["method"], r["dataset"]) == ("gdlt", "rg")
    cfg = build_run_config("gdlt", "rg", overrides=r["overrides"])
    ours = build_run_config("gdlt", "rg", overrides=["data.apparatus=Hoop", "train.epochs=500",
                                                    "data.root=/d/rg",
                                                    "data.features=/d/rg/swintx_avg_fps25_clip32",
                                                    "data.test_labels=/d/rg/test.txt"])
    assert cfg == ours
    clubs = import_config("cofinal", None, (
        "--submodel-name cofinal --action-type Clubs --lr 1e-2 --epoch 400 --n_decoder 2 "
        "--n_query 4 --alpha 1.0 --margin 1.0 --lr-decay cos --decay-rate 0.01 --dropout 0.3 "
        "--loss_align 1 --activate_regular_restrictions 3").split())
    cfg = build_run_config("cofinal", "rg", overrides=clubs["overrides"])
    assert (cfg.model.grades, cfg.model.loss_align, cfg.train.epochs, cfg.optim.schedule) == \
        ("arcl1", "short", 400, "cosine")
    fis = import_config("cofinal", None, ["--action-type", "PCS", "--hidden_dim", "448",
                                          "--n_head", "7", "--submodel-name", "cofinal_2"])
    assert fis["dataset"] == "fisv" and "data.target=pcs" in fis["overrides"]
    assert any(m["option"] == "submodel-name" for m in fis["no_equivalent"])
    assert build_run_config("cofinal", "fisv", overrides=fis["overrides"]).optim.schedule == "none"
