"""The official implementations' options as ``--set`` overrides of this project's config.

    python -m aqa import-config configs/MTL_CoRe.yaml [-- --benchmark MTL ...]
    python -m aqa import-config tpt -- --epoch_num=250 --bs_train=3 --num_cluster=5 ...

Each source is a table of every option its official parser (or config file) has: its type, its
official default and what it becomes here. The effective official values (the defaults, then the
file, then the flags, as the official code merges them) are mapped; an option with no equivalent
is named with its value and the reason, an option the official parser does not have is named as
unknown. Nothing is dropped silently.

Sources (the official files they restate):
    core          CoRe configs/{MTL,Seven}_CoRe.yaml (or a saved experiments/.../config.yaml) and
                  utils/parser.py's flags
    tpt           TPT utils/opt.py (README run: train_*.py --epoch_num=250 ...)
    tsa           TSA-Net config.py get_parser (train.py / test.py)
    musdl         MUSDL MTL-AQA/config.py get_parser (USDL or MUSDL by --type)
    musdl-jigsaws MUSDL JIGSAWS/config.py get_parser
    pecop         PECoP train.py's argparse
    gdlt          GDLT options.py (README: main.py --lr 1e-2 --epoch 250 --n_decoder 2 ...)
    cofinal       CoFInAl options.py (scripts/train_all_rg.sh, train_all_fis.sh)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aqa.errors import ConfigError

SOURCES = ("core", "tpt", "tsa", "musdl", "musdl-jigsaws", "pecop", "gdlt", "cofinal")
AQA7_CLASSES = ("diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m",
                "sync_diving_10m")
JIGSAWS_TASKS = ("Knot_Tying", "Needle_Passing", "Suturing")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


@dataclass(frozen=True)
class Opt:
    """One official option: its type, its official default, and what it becomes here.

    ``to``: a dotted key (the value as is), a function (value, all values) -> list of overrides
    or a str (the reason this value has no equivalent), or None with ``note`` saying why there is
    no equivalent at all."""
    kind: str  # int, float, str, str2bool, flag, bool (CoRe's type=bool: non-empty text is True)
    default: Any
    to: str | Callable | None = None
    note: str = ""


def _parse(kind: str, text: Any, name: str) -> Any:
    """A flag's text as the official argparse would read it (YAML values arrive typed)."""
    if text is None:  # YAML null (a saved config's ckpts: null)
        return None
    if not isinstance(text, str):
        if kind == "float" and isinstance(text, int) and not isinstance(text, bool):
            return float(text)
        want = {"int": int, "float": float, "str": str, "bool": bool, "str2bool": bool,
                "flag": bool, "yaml": object}[kind]
        if kind in ("int", "float") and isinstance(text, bool) or not isinstance(text, want):
            raise ConfigError(f"official option {name}: expected {kind}, got {text!r}")
        return text
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"official option {name}: expected {kind}, got {text!r}") from None
    if kind == "bool":  # argparse type=bool: bool("False") is True
        return bool(text)
    if kind == "str2bool":
        low = text.lower()
        if low in ("yes", "true", "t", "y", "1"):
            return True
        if low in ("no", "false", "f", "n", "0"):
            return False
        raise ConfigError(f"official option {name}: expected a boolean, got {text!r}")
    return text


# ---------------------------------------------------------------- CoRe

def _core_root(v, _all):
    p = Path(str(v).rstrip("/"))
    if p.parts[-2:] == ("new", "new_total_frames_256s"):
        return [f"data.root={p.parent.parent}", "data.layout=core"]
    if p.name == "new_total_frames_256s":
        return [f"data.root={p.parent}", "data.layout=core"]
    return [f"data.root={p}"]


def _core_info(key):
    def to(v, _all):
        p = Path(str(v))
        return [f"data.{key}={p.name if p.parent.name == 'info' else p}"]
    return to


def _core_shift(v, values):
    lo, hi = values.get("temporal_shift_min"), values.get("temporal_shift_max")
    if lo is None or hi is None or lo != -hi or hi < 0:
        return (f"our data.jitter shifts -j..j; temporal_shift_min={lo}, "
                f"temporal_shift_max={hi} is not symmetric")
    return [f"data.jitter={hi}"]


def _mtl_only(to):
    """An MTL-AQA key: SevenPair never reads it."""
    def wrapped(v, values):
        if values.get("benchmark") == "Seven":
            return "read by the MTL-AQA loader only (benchmark Seven)"
        return [f"{to}={_fmt(v)}"] if isinstance(to, str) else to(v, values)
    return wrapped


def _core_benchmark(v, values):
    return []  # chooses the dataset (mtl_aqa / aqa7), see _dataset


def _core_cls(v, values):
    if values.get("benchmark") != "Seven":
        return []
    if not 1 <= int(v) <= 6:
        return f"--Seven_cls must be 1..6, got {v}"
    return [f"data.class_name={AQA7_CLASSES[int(v) - 1]}"]


def _core_dd(v, values):
    sets = [f"model.use_dd={_fmt(bool(v))}", f"data.use_difficulty={_fmt(bool(v))}"]
    if not v:  # main.py: score_range = 100 without DD
        sets.append("model.score_range=100.0")
    return sets


def _core_optimizer(v, _all):
    if str(v) != "Adam":  # builder.py builds Adam only (anything else: no optimizer at all)
        return f"the official builder only builds Adam; {v!r} leaves it without an optimizer"
    return ["optim.name=adam"]


CORE = {
    # configs/*_CoRe.yaml
    "bs_train": Opt("int", None, "train.batch_size"),
    "bs_test": Opt("int", None, None, "evaluation batches use train.batch_size; the size does "
                                      "not change the numbers"),
    "workers": Opt("int", None, "data.num_workers"),
    "step_per_update": Opt("int", None, "optim.accum_steps"),
    "max_epoch": Opt("int", None, "train.epochs"),
    "pretrained_i3d_weight": Opt("str", None, lambda v, a: [f"backbone.weights={v}",
                                                            "backbone.family=hassony2"]),
    "RT_depth": Opt("int", None, "model.depth"),
    "score_range": Opt("int", None, lambda v, a: [] if a.get("usingDD") is False
                       else [f"model.score_range={float(v)!r}"]),
    "voter_number": Opt("int", None, "model.voter_number"),
    "data_root": Opt("str", None, _core_root),
    "label_path": Opt("str", None, _mtl_only(_core_info("annotations"))),
    "train_split": Opt("str", None, _mtl_only(_core_info("train_split"))),
    "test_split": Opt("str", None, _mtl_only(_core_info("test_split"))),
    "dive_number_choosing": Opt("bool", None, _mtl_only(
        lambda v, a: ["model.exemplar_rule=dive_number"] if v else [])),
    "usingDD": Opt("bool", None, _mtl_only(_core_dd)),
    "frame_length": Opt("int", None, "data.num_frames"),
    "seed": Opt("int", None, "train.seed"),
    "temporal_shift_min": Opt("int", None, _mtl_only(_core_shift)),
    "temporal_shift_max": Opt("int", None, lambda v, a: []),  # with temporal_shift_min
    "optimizer": Opt("str", None, _core_optimizer),
    "weight_decay": Opt("float", None, "optim.weight_decay"),
    "base_lr": Opt("float", None, "optim.lr"),
    "lr_factor": Opt("float", None, "optim.backbone_lr_factor"),
    "print_freq": Opt("int", None, "train.log_every"),
    # utils/parser.py flags (a saved experiments/.../config.yaml holds them too)
    "benchmark": Opt("str", None, _core_benchmark),
    "exp_name": Opt("str", "default", None, "the run id names a run here"),
    "fix_bn": Opt("bool", True, lambda v, a: [f"model.fix_bn={_fmt(bool(v))}"]),
    "resume": Opt("flag", False, None, "resume a run with `aqa runs resume RUN`"),
    "test": Opt("flag", False, None, "test a checkpoint with `aqa import-checkpoint` + `aqa eval`"),
    "ckpts": Opt("str", None, None, "import the checkpoint with `aqa import-checkpoint`"),
    "Seven_cls": Opt("int", 1, _core_cls),
    # set by utils/parser.py itself, saved in experiments/.../config.yaml
    "class_idx": Opt("int", None, lambda v, a: _core_cls(v, a)),
    "config": Opt("str", None, None, "the YAML the official parser read (derived)"),
    "experiment_path": Opt("str", None, None, "the official output folder; runs live in the "
                                              "workspace here"),
}


# ---------------------------------------------------------------- TPT

_UNUSED = "parsed but never read by the official training script"


def _tpt_lr(v, _all):
    return (f"never read: the official script fixes lr 1e-4 (heads 1e-3); {v} would be "
            "optim.lr here (model.official_lr=true reproduces the fixed rates)")


def _tpt_dataset(v, _all):
    if v not in ("MLT_AQA", "AQA_7"):
        return f"unknown TPT dataset {v!r} (MLT_AQA or AQA_7)"
    return []


def _tpt_class(v, values):
    if values.get("dataset") != "AQA_7":
        return []
    v = int(v)
    if v > 6:
        return ["data.class_name=all"]
    if v < 1:
        return f"class_idx must be 1..6 (or > 6 for all), got {v}"
    return [f"data.class_name={AQA7_CLASSES[v - 1]}"]


def _only(value, sets, why):
    """Overrides when the official value is the one we implement, else the reason."""
    def to(v, _all):
        return sets if v == value else why.format(v=v)
    return to


TPT = {
    "local_rank": Opt("int", -1, None, "torch.distributed.launch's rank; choose GPUs with "
                                       "`aqa train --gpus`"),
    "epoch_num": Opt("int", 2500, "train.epochs"),
    "learning_rate": Opt("float", 0.0001, _tpt_lr),
    "lr_factor": Opt("float", 1.0, None, _UNUSED + " (stored, never used)"),
    "workers": Opt("int", 4, "data.num_workers"),
    "save_per_epoch": Opt("int", 8, None, _UNUSED + " (checkpoints every 5 epochs)"),
    "bs_train": Opt("int", 3, "train.batch_size"),
    "bs_test": Opt("int", 3, None, "evaluation batches use train.batch_size"),
    "use_pretrain": Opt("str2bool", False, _only(False, [], "use_pretrain={v}: reading "
                                                 "pre-extracted I3D features is not implemented")),
    "use_checkpoint": Opt("str2bool", False, None, "resuming: `aqa runs resume RUN`"),
    "multi_gpu_test": Opt("str2bool", True, None, "evaluation gathering across GPUs is automatic"),
    "use_dd": Opt("str2bool", True, lambda v, a: [f"model.use_dd={_fmt(v)}",
                                                  f"data.use_difficulty={_fmt(v)}"]
                  if a.get("dataset") == "MLT_AQA" else []),  # the AQA-7 loader never reads it
    "cross_dd": Opt("str2bool", False, _only(False, [], "cross_dd={v}: the DD loss is not "
                                             "implemented")),
    "encode_video": Opt("str2bool", True, None, _UNUSED + " (printed only)"),
    "weighed_cluster": Opt("str2bool", False, None, _UNUSED + " (printed only)"),
    "num_voting": Opt("int", 10, "model.voter_number"),
    "multi_e": Opt("str2bool", False, _only(False, [], "multi_e={v}: multi-exemplar training "
                                            "is not implemented")),
    "d_model": Opt("int", 1024, "model.d_model"),
    "d_ffn": Opt("int", 512, "model.d_ffn"),
    "pe": Opt("str2bool", True, None, _UNUSED),
    "se": Opt("str2bool", False, None, _UNUSED),
    "attention": Opt("str2bool", True, None, _UNUSED),
    "n_ep": Opt("int", 10, None, _UNUSED),
    "tree_target": Opt("str2bool", True, None, _UNUSED),
    "model": Opt("str", "CoRe", None, _UNUSED),
    "exp_name": Opt("str", "mean_rela_no_tree_cluster_gather_4", None,
                    "the run id names a run here"),
    "dropout": Opt("float", 0.3, None, _UNUSED + " (the decoder's dropout is fixed: "
                                                 "model.dropout)"),
    "frame_hidden_size": Opt("int", 1000, None, _UNUSED),
    "num_cluster": Opt("int", 5, "model.num_queries"),
    "num_layers": Opt("int", 2, _only(2, [], "num_layers={v}: the decoder has two layers")),
    "margin_factor": Opt("float", 20.0, "model.margin"),
    "hinge_loss": Opt("str2bool", True, lambda v, a: [f"model.hinge_loss={_fmt(v)}"]),
    "multi_hinge": Opt("str2bool", True, lambda v, a: [f"model.multi_hinge={_fmt(v)}"]),
    "cluster_norm_dim": Opt("int", 1, _only(1, [], "cluster_norm_dim={v}: only 1 is "
                                            "implemented")),
    "mse_loss": Opt("str2bool", True, None, _UNUSED + " (stored, never used)"),
    "prob_loss": Opt("str2bool", False, None, _UNUSED + " (stored, never used)"),
    "class_loss": Opt("str2bool", False, None, _UNUSED + " (stored, never used)"),
    "query_embed_cross": Opt("str2bool", False, None, _UNUSED),
    "max_frames": Opt("int", 26, None, _UNUSED),
    "dataset": Opt("str", "MLT_AQA", _tpt_dataset),
    "class_idx": Opt("int", 1, _tpt_class),
    "data_root": Opt("str", "./data/data_preprocessed",
                     lambda v, a: [f"data.root={Path(str(v)).parent}", "data.layout=tpt"]
                     if a.get("dataset") == "MLT_AQA"  # {root}/data_preprocessed/MTL_AQA/..
                     else [f"data.root={Path(str(v)) / 'AQA_7' / 'frames'}",  # {class}-out/
                           "data.split_dir=../info"]),  # AQA_7/info/split_4_*_list.mat
    "pretrained_i3d_weight": Opt("str", "./data/model_rgb.pth",
                                 lambda v, a: [f"backbone.weights={v}", "backbone.family=hassony2"]
                                 if a.get("use_pretrain") is False else []),
    "frame_length": Opt("int", 103, None, _UNUSED + " (the loaders fix 103 frames)"),
}


# ---------------------------------------------------------------- TSA-Net

TSA = {
    "model_path": Opt("str", "Model_1", None, "the official output folder (Exp/NAME); the run "
                                              "id names a run here"),
    "gpu": Opt("str", "1", None, "choose GPUs with `aqa train --gpus`"),
    "log_info": Opt("str", "Exp1", None, "the logger's header line"),
    "pt_w": Opt("str", None, None, "continue from a TSA-Net best.pt: `aqa import-checkpoint` it"),
    "dp": Opt("flag", False, lambda v, a: ["model.dropout=0.5"] if v else ["model.dropout=0.0"]),
    "TSA": Opt("flag", False, lambda v, a: []),  # chooses the method: tsa or plain
    "TSA_pos": Opt("int", 7, _only(7, [], "TSA_pos={v}: the tube attention sits after "
                                   "MaxPool3d_4a_3x3 (position 7) only")),
    "temporal_aug": Opt("int", 0, _only(0, ["data.jitter=0"], "temporal_aug={v}: the official "
                                        "FR-FS loader never reads it (boxes cannot shift)")),
    "std": Opt("float", 5.0, "model.sigma"),
    "lr": Opt("float", 1e-4, "optim.lr"),
    "weight_decay": Opt("float", 1e-5, "optim.weight_decay"),
    "seed": Opt("int", 1, "train.seed"),
    "save": Opt("flag", True, None, "best.pt and last.pt are always written"),
    "num_epochs": Opt("int", 20, "train.epochs"),
    "num_workers": Opt("int", 8, "data.num_workers"),
    "train_batch_size": Opt("int", 4, "train.batch_size"),
    "test_batch_size": Opt("int", 8, None, "evaluation batches use train.batch_size"),
    "dataset_path": Opt("str", "./data/FRFS", "data.root"),
}


# ---------------------------------------------------------------- MUSDL / USDL

def _even_shift(v, _all):
    """MUSDL's train offset randint(0, temporal_aug) is our window shift -j..j around j."""
    if v % 2:
        return f"temporal_aug={v} is odd: our data.jitter shifts 0..2j"
    return [f"data.jitter={v // 2}"]


def _musdl_type(v, _all):
    return []  # chooses the method: usdl or musdl


_MUSDL_COMMON = {
    "log_info": Opt("str", "Exp1", None, "the logger's header line"),
    "save": Opt("flag", False, None, "best.pt and last.pt are always written"),
    "type": Opt("str", "USDL", _musdl_type),
    "lr": Opt("float", 1e-4, "optim.lr"),
    "seed": Opt("int", 1, "train.seed"),
    "num_workers": Opt("int", 8, "data.num_workers"),
    "gpu": Opt("str", "0,1", None, "choose GPUs with `aqa train --gpus`"),
    "train_batch_size": Opt("int", 4, "train.batch_size"),
    "test_batch_size": Opt("int", 20, None, "evaluation batches use train.batch_size"),
}
MUSDL = {**_MUSDL_COMMON,
         "std": Opt("float", 5.0, "model.sigma"),
         "weight_decay": Opt("float", 1e-5, "optim.weight_decay"),
         "temporal_aug": Opt("int", 6, _even_shift),
         "num_epochs": Opt("int", 100, "train.epochs")}
MUSDL_JIGSAWS = {**_MUSDL_COMMON,
                 "cls": Opt("str", "Knot_Tying", lambda v, a: [f"data.task={v}"]
                            if v in JIGSAWS_TASKS else f"unknown JIGSAWS task {v!r}"),
                 "std": Opt("float", 1.0, "model.sigma"),
                 "weight_decay": Opt("float", 0.0, "optim.weight_decay"),
                 "num_epochs": Opt("int", 80, "train.epochs")}


# ---------------------------------------------------------------- PECoP

def _pecop_lr(v, _all):
    """train.py builds SGD with lr 0.01 whatever --lr says; --lr only sets eta_min = lr/1000."""
    return ["optim.lr=0.01", f"optim.min_lr_factor={v / 1000 / 0.01:.6g}"]


PECOP = {
    "gpu": Opt("str", "0,1,2,3", None, "choose GPUs with `aqa pretrain --gpus`"),
    "height": Opt("int", 256, None, _UNUSED + " (the resize is torch_videovision's 455x256)"),
    "pretrained_i3d_weight": Opt("str", "./model_rgb.pth", lambda v, a: [
        f"backbone.weights={v}", "backbone.family=hassony2"]),
    "width": Opt("int", 256, None, _UNUSED),
    "clip_len": Opt("int", 32, "data.num_frames"),
    "crop_sz": Opt("int", 224, None, "only names the output folder (RandomCrop(224) is fixed)"),
    "lr": Opt("float", 0.01, _pecop_lr),
    "bs": Opt("int", 32, "train.batch_size"),
    "num_workers": Opt("int", 4, "data.num_workers"),
    "epoch": Opt("int", 8, "train.epochs"),
    "max_sr": Opt("int", 5, "model.max_sr"),
    "max_segment": Opt("int", 4, "model.max_segment"),
    "fr": Opt("int", 3, "model.fr"),
    "max_save": Opt("int", 100, None, "every epoch's checkpoint: train.keep_epoch_checkpoints"),
    "pf": Opt("int", 20, "train.log_every"),
    "dataset": Opt("str", "PD4T", None, "names the official output folder only"),
    "model": Opt("str", "i3d", _only("i3d", [], "model={v}: only the I3D VSPP is implemented")),
    "data_list": Opt("str", "/home/amir/AQA/Datasets/PD/30_subjects_frames/frames/gait/label/"
                            "train.list", lambda v, a: [f"data.train_list={Path(str(v)).name}"]),
    "rgb_prefix": Opt("str", "/home/amir/AQA/Datasets/PD/30_subjects_frames/frames/",
                      "data.root"),
}

# ---------------------------------------------------------------- GDLT / CoFInAl

_RG_APPARATUS = ("Ball", "Clubs", "Hoop", "Ribbon", "all")


def _labels(key):
    """--train-label-path / --test-label-path: the root is the train file's folder (rg's
    data.train_labels/test_labels; Fis-V's data.train_list/test_list)."""
    def to(v, values):
        p = Path(str(v))
        fisv = values.get("action-type") in ("TES", "PCS")
        name = {"train_labels": "train_list", "test_labels": "test_list"}[key] if fisv else key
        sets = [f"data.{name}={p.name if key == 'train_labels' else p}"]
        return sets + ([f"data.root={p.parent}"] if key == "train_labels" else [])
    return to


def _action(v, _all):
    if v in _RG_APPARATUS:
        return [f"data.apparatus={v}"]
    if v in ("TES", "PCS"):
        return [f"data.target={v.lower()}"]  # CoFInAl's Fis-V: the dataset is fisv
    return f"action type {v!r}: one of {', '.join(_RG_APPARATUS)} (CoFInAl also TES, PCS)"


def _score_type(v, _all):
    if v == "Total_Score":
        return []
    return ("options.py parses it but main.py never passes it to RGDataset: official runs train "
            "on Total_Score whatever it says (data.target chooses the score here)")


def _lr_decay(v, values):
    """cos: CosineAnnealingLR(T_max = epoch - warmup, eta_min = lr x decay_rate); multistep:
    one decay by decay_rate at epoch - 30; none: a constant lr."""
    rate = values.get("decay-rate", 0.1)
    if v is None:
        return ["optim.schedule=none"]
    if v == "cos":
        return ["optim.schedule=cosine", f"optim.min_lr_factor={_fmt(rate)}"]
    if v == "multistep":
        at = values.get("epoch", 400) - 30
        if at < 1 or 2 * at < values.get("epoch", 400):
            return f"one decay at epoch {at}: our step schedule would decay again at {2 * at}"
        return ["optim.schedule=step", f"optim.step_size={at}", f"optim.gamma={_fmt(rate)}"]
    return f"unknown scheduler {v!r} (the official code raises)"


def _warmup(v, _all):
    if not v:
        return ["optim.warmup_epochs=0"]
    return (f"warmup={v}: the official LambdaLR(t / warmup) stepped before each of the first "
            "epochs, then the cosine over epoch - warmup; not the same ramp as optim.warmup_epochs")


def _optim(v, _all):
    if v in ("sgd", "adam", "adamw"):
        return [f"optim.name={v}"]
    return f"optimizer {v!r}: sgd, adam or adamw here"


_GRADES_BY_FLAG = {0: "linspace", 1: "linspace_skip0", 2: "sigmoid", 3: "arcl1"}

GDLT = {
    "video-path": Opt("str", "../action_assessment/rg_feat/swintx_avg_fps25_clip32", "data.features"),
    "clip-num": Opt("int", 68, "data.clip_num"),
    "train-label-path": Opt("str", "../action_assessment/rg_feat/train.txt", _labels("train_labels")),
    "test-label-path": Opt("str", "../action_assessment/rg_feat/test.txt", _labels("test_labels")),
    "action-type": Opt("str", "Ball", _action),
    "score-type": Opt("str", "Total_Score", _score_type),
    "model-name": Opt("str", "action_net", None, "names the official ckpt/log files; the run id names a run here"),
    "ckpt": Opt("str", None, None, "a checkpoint to start from: `aqa import-checkpoint` it"),
    "test": Opt("flag", False, None, "evaluate only: `aqa eval` a run or an imported checkpoint"),
    "epoch": Opt("int", 400, "train.epochs"),
    "batch": Opt("int", 32, "train.batch_size"),
    "lr": Opt("float", 0.01, "optim.lr"),
    "momentum": Opt("float", 0.9, "optim.momentum"),
    "weight-decay": Opt("float", 1e-4, "optim.weight_decay"),
    "optim": Opt("str", "sgd", _optim),
    "lr-decay": Opt("str", None, _lr_decay),
    "decay-rate": Opt("float", 0.1, lambda v, a: []),  # read by lr-decay
    "warmup": Opt("int", 0, _warmup),
    "in_dim": Opt("int", 1024, "model.in_dim"),
    "hidden_dim": Opt("int", 256, "model.hidden_dim"),
    "n_head": Opt("int", 1, "model.n_head"),
    "n_encoder": Opt("int", 1, "model.n_encoder"),
    "n_decoder": Opt("int", 1, "model.n_decoder"),
    "n_query": Opt("int", 1, "model.n_query"),
    "alpha": Opt("float", 0.0, "model.alpha"),
    "margin": Opt("float", 0.0, "model.margin"),
    "dropout": Opt("float", 0.0, "model.dropout"),
}
COFINAL = {**GDLT,
           "submodel-name": Opt("str", "model", lambda v, a: ["model.revert=true"] if v in (
               "cofinal", "cofinal_1") else f"submodel {v!r}: main.py builds only cofinal "
               "(cofinal_2, in the Ribbon script, is not defined in models/model.py)"),
           "activate_regular_restrictions": Opt("int", 3, lambda v, a: [
               f"model.grades={_GRADES_BY_FLAG[v]}"] if v in _GRADES_BY_FLAG else
               f"activate_regular_restrictions={v}: 0..3"),
           "loss_align": Opt("int", 1, lambda v, a: [f"model.loss_align={('grades', 'short', 'long')[v]}"]
                             if v in (0, 1, 2) else f"loss_align={v}: 0..2"),
           "ab": Opt("int", 0, lambda v, a: [] if v == 0 else f"ab={v}: an ablation that crops "
                     "the test programs to 68 rows and renames the model")}

TABLES = {"core": CORE, "tpt": TPT, "tsa": TSA, "musdl": MUSDL, "musdl-jigsaws": MUSDL_JIGSAWS,
          "pecop": PECOP, "gdlt": GDLT, "cofinal": COFINAL}
# optimizer facts the official scripts fix in code, not options: they become overrides too
FIXED = {
    "core": ["backbone.input_norm=imagenet", "data.pipeline=tvv"],  # torch_videovision, ImageNet
    "musdl": ["optim.name=adam", "backbone.family=piergiaj", "backbone.input_norm=imagenet",
              "data.pipeline=musdl"],
    "tsa": ["optim.name=adam"],
    "musdl-jigsaws": ["optim.name=adam"],
    "pecop": ["optim.name=sgd", "optim.momentum=0.9", "optim.weight_decay=0.0001",
              "optim.schedule=cosine", "optim.cosine_epochs=22"],
    # no --lr-decay: a constant lr (our gdlt/cofinal default is the README's cosine)
    "gdlt": ["optim.schedule=none", "model.score_scale=25.0"],
    "cofinal": ["optim.schedule=none", "model.score_scale=25.0"],
}


def _yaml_scalar(text: str) -> Any:
    """A YAML 1.1 plain or quoted scalar, as PyYAML's loader types it (the subset CoRe writes)."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~", "none", ""):
        return None if low != "none" else t
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def read_flat_yaml(path: Path) -> dict:
    """A flat ``key : value`` YAML file (CoRe's configs and the config.yaml its parser saves)."""
    data: dict = {}
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() == "---":
            continue
        key, sep, value = line.partition(":")
        if not sep or raw[:1].isspace() or not key.strip():
            raise ConfigError(f"{path}:{n}: expected a flat 'key: value' line, got {raw.strip()!r}")
        if not value.strip() and n < 10**9:
            data[key.strip()] = None
            continue
        data[key.strip()] = _yaml_scalar(value)
    return data


def _method_dataset(source: str, values: dict) -> tuple[str, str]:
    if source == "core":
        bench = values.get("benchmark")
        if bench not in ("MTL", "Seven"):
            raise ConfigError("CoRe's benchmark is unknown: name the file MTL_CoRe.yaml or "
                              "Seven_CoRe.yaml, or pass -- --benchmark MTL (or Seven)")
        return "core", "mtl_aqa" if bench == "MTL" else "aqa7"
    if source == "tpt":
        return "tpt", "aqa7" if values.get("dataset") == "AQA_7" else "mtl_aqa"
    if source == "tsa":
        return ("tsa" if values.get("TSA") else "plain"), "frfs"
    if source == "musdl":
        return values.get("type", "USDL").lower(), "mtl_aqa"
    if source == "musdl-jigsaws":
        return values.get("type", "USDL").lower(), "jigsaws"
    if source in ("gdlt", "cofinal"):
        fisv = source == "cofinal" and values.get("action-type") in ("TES", "PCS")
        return source, "fisv" if fisv else "rg"
    return "pecop", "pd4t"


def command_flags(argv: list[str]) -> tuple[list[str], str | None]:
    """The flags of a pasted official command line: what follows the script (``main.py``, or
    CoRe's ``scripts/train.sh GPUS BENCHMARK EXP``, whose positionals become the flags that
    script passes). Returns (flags, the dropped prefix or None)."""
    for i, tok in enumerate(argv):
        name = Path(tok).name
        if name in ("train.sh", "test.sh") and len(argv) >= i + 4:  # CoRe's scripts
            gpus, bench, exp = argv[i + 1:i + 4]
            extra = ["--test"] if name == "test.sh" else []
            return (["--benchmark", bench, "--exp_name", exp, *extra, *argv[i + 4:]],
                    " ".join(argv[:i + 2]))
        if tok.endswith(".py") and not tok.startswith("-"):
            return argv[i + 1:], " ".join(argv[:i + 1])
    return argv, None


def _parse_flags(table: dict, argv: list[str], source: str) -> tuple[dict, list[str]]:
    """``--name value`` / ``--name=value`` / ``--flag`` as the official argparse reads them;
    returns (values given, unknown names)."""
    values, unknown = {}, []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if not tok.startswith("--"):
            unknown.append(tok)
            continue
        name, eq, text = tok[2:].partition("=")
        opt = table.get(name)
        if opt is None:
            unknown.append(tok if not eq else f"--{name}")
            if not eq and i < len(argv) and not argv[i].startswith("--"):
                i += 1  # its value
            continue
        if opt.kind == "flag":
            if eq:
                raise ConfigError(f"{source} option --{name} takes no value")
            values[name] = True
            continue
        if not eq:
            if i >= len(argv):
                raise ConfigError(f"{source} option --{name} expects a value")
            text = argv[i]
            i += 1
        values[name] = _parse(opt.kind, text, f"--{name}")
    return values, unknown


def import_config(source: str, file: str | None = None, argv: list[str] | None = None) -> dict:
    """Map an official config (``file``, CoRe's YAML) and flags (``argv``) of ``source`` to our
    overrides. Returns {"source", "method", "dataset", "overrides", "no_equivalent": [{"option",
    "value", "reason"}], "unknown": [...], "values": the effective official values}."""
    from aqa.config import build_run_config

    if source not in TABLES:
        raise ConfigError(f"unknown official source {source!r}; known: {', '.join(SOURCES)}")
    table = TABLES[source]
    values = {k: o.default for k, o in table.items() if o.default is not None}
    unknown: list[str] = []
    if file is not None:
        if source != "core":
            raise ConfigError(f"{source} has no config file; pass its flags after --")
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"no file {path}")
        data = read_flat_yaml(path)
        stem = path.stem.split("_")[0]
        if stem in ("MTL", "Seven"):
            values["benchmark"] = stem  # parser.py reads configs/{benchmark}_CoRe.yaml
        for key, value in data.items():
            if key not in table:
                unknown.append(str(key))
                continue
            values[key] = _parse(table[key].kind, value, str(key))
    argv, launcher = command_flags(list(argv or []))
    flags, more = _parse_flags(table, argv, source)
    values.update(flags)
    unknown += more
    overrides: list[str] = list(FIXED.get(source, []))
    missing = []
    for name, opt in table.items():
        if name not in values:
            continue
        v = values[name]
        to = opt.to
        if v is None and to is not None:
            continue  # null: nothing to set
        if to is None:
            missing.append({"option": name, "value": v, "reason": opt.note})
            continue
        sets = [f"{to}={_fmt(v)}"] if isinstance(to, str) else to(v, values)
        if isinstance(sets, str):
            missing.append({"option": name, "value": v, "reason": sets})
        else:
            overrides += sets
    method, dataset = _method_dataset(source, values)
    build_run_config(method, dataset, overrides=overrides)  # our own mapping must be valid
    if launcher:  # the launcher's own options are not the script's
        missing.append({"option": "(command)", "value": launcher,
                        "reason": "the launcher and script; GPUs and processes: `aqa train "
                                  "--gpus/--nproc`"})
    return {"source": source, "method": method, "dataset": dataset, "overrides": overrides,
            "no_equivalent": missing, "unknown": unknown,
            "values": {k: v for k, v in values.items() if not (isinstance(v, float)
                                                               and not math.isfinite(v))}}


def source_of(arg: str) -> tuple[str, str | None]:
    """(source, file) for the command's first argument: a source name or a CoRe YAML file."""
    if arg in TABLES:
        return arg, None
    if arg.endswith((".yaml", ".yml")) or os.path.isfile(arg):
        return "core", arg
    raise ConfigError(f"{arg!r} is neither an official source ({', '.join(SOURCES)}) nor a "
                      "CoRe YAML file")


def format_result(result: dict) -> str:
    """The text the command prints: a runnable ``aqa train`` line and every unmapped option."""
    verb = "pretrain" if result["method"] == "pecop" else "train"
    lines = [f"# {result['source']} options as this project's config "
             f"(method {result['method']}, dataset {result['dataset']})",
             f"python -m aqa {verb} --method {result['method']} --dataset {result['dataset']} \\"]
    sets = result["overrides"]
    lines += [f"  --set {s}" + (" \\" if i < len(sets) - 1 else "") for i, s in enumerate(sets)]
    if result["no_equivalent"]:
        lines.append("# official options with no equivalent here (not applied):")
        lines += [f"#   {m['option']} = {m['value']!r}: {m['reason']}"
                  for m in result["no_equivalent"]]
    if result["unknown"]:
        lines.append(f"# unknown: not an option of {result['source']}'s official parser or "
                     f"config (ignored): {', '.join(result['unknown'])}")
    return "\n".join(lines)
