"""Typed, strict run configuration.

A run's configuration is a tree of dataclasses:

    RunConfig
      method: str          registered method name (``aqa.registry.METHODS``)
      dataset: str         registered dataset name (``aqa.registry.DATASETS``)
      model:   <the method's config dataclass>
      backbone: <the backbone's config dataclass> (a subclass of BackboneConfig)
      data:    <the dataset's config dataclass> (a subclass of DataConfig)
      optim:   OptimConfig
      train:   TrainConfig
      group:   GroupConfig (which group of runs this one belongs to; empty = none)

Every field has a typed default and a ``# comment`` on its line; the comment is the help text in
the CLI and the app (read from the source by :func:`field_help`). Loading is strict: an unknown key
or a value of the wrong type raises :class:`ConfigError` naming the key and what is valid.
Overrides are ``section.key=value`` strings parsed to the field's type; booleans accept only
``true``/``false``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aqa.errors import ConfigError
from aqa.video import INTERPOLATIONS as VIDEO_FILTERS


@dataclass
class DataConfig:
    root: str = ""  # dataset folder; empty means the dataset's default location
    num_frames: int = 24  # frames sampled per clip (resampled uniformly when a clip is shorter)
    frame_size: int = 64  # frames are resized to frame_size x frame_size in the decoder
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    cache: bool = True  # keep decoded clips in memory after the first epoch
    hflip: bool = False  # random horizontal flip of the whole clip during training
    allow_missing: bool = False  # train on the samples that are present; record the exclusions in the run
    video_resize: str = "decord"  # how video files are resized: decord (its filter in the decoder: the default), pil (decode at full size, then PIL with the pipeline's filter, as the official code resizes its extracted frames) or a libswscale filter through PyAV: fast_bilinear (fastest), bilinear, bicubic, area, nearest


@dataclass
class OptimConfig:
    name: str = "adam"  # optimizer: adam, adamw or sgd
    lr: float = 1e-3  # base learning rate
    backbone_lr_factor: float = 1.0  # backbone learning rate = lr * backbone_lr_factor
    weight_decay: float = 0.0  # L2 weight decay
    momentum: float = 0.9  # SGD momentum (ignored by adam/adamw)
    schedule: str = "none"  # learning-rate schedule: none, cosine or step
    step_size: int = 10  # epochs between decays for the step schedule
    gamma: float = 0.1  # decay factor for the step schedule
    warmup_epochs: int = 0  # linear warm-up epochs before the schedule starts
    cosine_epochs: int = 0  # cosine schedule period T_max in epochs (0 = the run's epochs; PECoP: 22)
    min_lr_factor: float = 0.0  # cosine floor eta_min as a fraction of lr (PECoP: 0.001)
    grad_clip: float = 0.0  # clip the gradient norm to this value (0 = no clipping)
    accum_steps: int = 1  # gradient accumulation: optimizer step every accum_steps batches
    accum_sum: bool = False  # add the accumulated batches' gradients instead of averaging them (the official CoRe's step_per_update; with Adam the two differ only through eps)
    kernels: str = "auto"  # optimizer implementation: auto (fused on CUDA, torch's default on the CPU), fused, foreach or loop


@dataclass
class TrainConfig:
    epochs: int = 10  # number of training epochs
    batch_size: int = 8  # clips per batch (per process)
    eval_every: int = 1  # evaluate on the test split every N epochs (and after the last)
    best_metric: str = "rho"  # metric that selects best.pt: rho, l2, rl2 or accuracy
    seed: int = 0  # seed for python, numpy and torch RNGs
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on the CPU)
    log_every: int = 10  # print a progress line every N steps
    keep_epoch_checkpoints: bool = False  # also keep checkpoints/epoch_NNN.pt for every epoch
    heartbeat_s: float = 30.0  # seconds between heartbeat events while training
    val_fraction: float = 0.0  # share of the training split held out to pick the best epoch honestly (0 = best on test, the papers' protocol)
    system_metrics: bool = True  # every log_every steps, log lr, step time, data wait, CPU RSS and GPU use as metric events (split "sys")
    compile: str = "off"  # torch.compile: off, or backbone (its forward compiled in place; the first steps wait for the compiler)
    compile_backend: str = "inductor"  # torch.compile backend for train.compile (inductor; eager or aot_eager capture the graph without generating code)


@dataclass
class GroupConfig:
    id: str = ""  # the group this run belongs to (g-YYYYMMDD-HHMMSS-xxxx); empty = not in a group
    kind: str = ""  # what differs between the group's runs: seeds, folds or classes (empty = no group)
    protocol: str = ""  # the group's protocol label, e.g. seeds, jigsaws-louo, aqa7-per-class
    member: str = ""  # which member this run is: its seed, fold or class
    size: int = 0  # how many runs the group has (finished or not)
    aggregate: str = ""  # how Compare combines the members' rho: mean or fisher_z (std is always of the members' values)


@dataclass
class RunConfig:
    method: str = "regression"  # registered method name
    dataset: str = "synthetic"  # registered dataset name
    model: Any = None  # the method's own config dataclass
    backbone: Any = None  # the backbone's config dataclass (name, weights, freeze, ...)
    data: DataConfig = field(default_factory=DataConfig)  # dataset and loading options
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimizer and schedule
    train: TrainConfig = field(default_factory=TrainConfig)  # loop options
    group: GroupConfig = field(default_factory=GroupConfig)  # the group of runs this run is one member of (aqa.groups)


_TRUE, _FALSE = {"true"}, {"false"}


@lru_cache(maxsize=None)
def field_help(cls: type) -> dict[str, str]:
    """Map each field of dataclass ``cls`` to the comment on its line (its help text)."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
            if m:
                helps[m.group(1)] = m.group(2).strip()
    return helps


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse_value(text: str, typ: Any, key: str) -> Any:
    """Parse the override string ``text`` to ``typ`` (the field's annotation)."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in {"none", "null", ""}:
            return None
        return parse_value(text, args[0], key)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(typ) or (str,)
        items = [s for s in text.strip("[]").split(",") if s.strip()]
        values = [parse_value(s.strip(), inner, key) for s in items]
        return values if origin is list else tuple(values)
    if typ is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    if typ in (int, float, str):
        try:
            return typ(text)
        except ValueError:
            raise ConfigError(f"{key}: expected {typ.__name__}, got {text!r}") from None
    raise ConfigError(f"{key}: fields of type {typ} cannot be set from the command line")


def check_value(value: Any, typ: Any, key: str) -> Any:
    """Validate a value read from JSON against the field's annotation (ints widen to floats)."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:
        if value is None:
            return None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return check_value(value, args[0], key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(typ) or (Any,)
        items = [check_value(v, inner, key) for v in value]
        return items if origin is list else tuple(items)
    if typ is Any:
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")
    if isinstance(typ, type) and not isinstance(value, typ):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _valid_keys(obj: Any) -> str:
    return ", ".join(f.name for f in dataclasses.fields(obj))


def apply_dict(obj: Any, values: dict, prefix: str = "") -> Any:
    """Return a copy of dataclass instance ``obj`` with ``values`` applied recursively, strictly."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {values!r}")
    types = _field_types(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; valid keys here: {_valid_keys(obj)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = apply_dict(current, value, prefix=f"{path}.")
        else:
            changes[key] = check_value(value, types[key], path)
    return dataclasses.replace(obj, **changes)


def apply_overrides(obj: Any, overrides: list[str]) -> Any:
    """Apply ``section.key=value`` strings to dataclass ``obj`` (strict, typed)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=5)")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        obj = _set_path(obj, parts, text, dotted.strip())
    return obj


def _set_path(obj: Any, parts: list[str], text: str, full: str) -> Any:
    head, rest = parts[0], parts[1:]
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise ConfigError(f"unknown config key {full!r}; valid keys here: {_valid_keys(obj)}")
    current = getattr(obj, head)
    if dataclasses.is_dataclass(current):
        if not rest:
            raise ConfigError(f"{full!r} is a section; set one of its keys: {_valid_keys(current)}")
        return dataclasses.replace(obj, **{head: _set_path(current, rest, text, full)})
    if rest:
        raise ConfigError(f"{full!r}: {head!r} is a value, not a section")
    typ = _field_types(type(obj))[head]
    return dataclasses.replace(obj, **{head: parse_value(text, typ, full)})


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def build_run_config(method: str, dataset: str, overrides: list[str] | None = None,
                     values: dict | None = None) -> RunConfig:
    """The resolved config for ``method`` on ``dataset``: defaults, then ``values``, then overrides.

    Raises ConfigError for an unknown method/dataset or key.
    """
    from aqa.registry import BACKBONES, DATASETS, METHODS

    method_entry = METHODS.get(method)
    dataset_entry = DATASETS.get(dataset)
    backbone = _requested_backbone(values, overrides) or method_entry.default_backbone
    cfg = RunConfig(method=method, dataset=dataset, model=method_entry.config_cls(),
                    backbone=BACKBONES.get(backbone).config_cls(),
                    data=dataset_entry.config_cls())
    cfg = method_entry.adjust_defaults(cfg)
    if values:
        values = dict(values)
        for key in ("method", "dataset"):
            if key in values and values.pop(key) != getattr(cfg, key):
                raise ConfigError(f"config {key!r} does not match the run's {key} {getattr(cfg, key)!r}")
        cfg = apply_dict(cfg, values)
    if overrides:
        cfg = apply_overrides(cfg, list(overrides))
    validate(cfg)
    return cfg


def _requested_backbone(values: dict | None, overrides: list[str] | None) -> str | None:
    """The backbone name asked for (the section's class depends on it), last one wins."""
    name = None
    if values and isinstance(values.get("backbone"), dict):
        name = values["backbone"].get("name")
    for item in overrides or []:
        key, _, value = item.partition("=")
        if key.strip() == "backbone.name":
            name = value.strip()
    return name


_CHOICES = {
    ("optim", "name"): ("adam", "adamw", "sgd"),
    ("optim", "schedule"): ("none", "cosine", "step"),
    ("train", "best_metric"): ("rho", "l2", "rl2", "accuracy"),
    ("data", "video_resize"): ("decord", "pil", *VIDEO_FILTERS),
    ("group", "kind"): ("", "seeds", "folds", "classes"),
    ("group", "aggregate"): ("", "mean", "fisher_z"),
}


def choices(section: str, key: str) -> tuple[str, ...] | None:
    """The allowed values of a string field, where they are a fixed set (for forms)."""
    return _CHOICES.get((section, key))


def validate(cfg: RunConfig) -> None:
    """Check value ranges and choices that the types alone cannot express."""
    for (section, key), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in choices:
            listed = ", ".join(c or "'' (none)" for c in choices)
            raise ConfigError(f"{section}.{key}={value!r} is not one of {listed}")
    positive = [("train", "epochs"), ("train", "batch_size"), ("train", "eval_every"),
                ("train", "log_every"), ("optim", "accum_steps"), ("data", "num_frames"),
                ("data", "frame_size")]
    for section, key in positive:
        if getattr(getattr(cfg, section), key) < 1:
            raise ConfigError(f"{section}.{key} must be at least 1")
    if not 0.0 <= cfg.train.val_fraction < 1.0:
        raise ConfigError("train.val_fraction must be in [0, 1)")
    if cfg.optim.lr <= 0:
        raise ConfigError("optim.lr must be positive")
    if cfg.optim.grad_clip < 0:
        raise ConfigError("optim.grad_clip must be 0 (off) or positive")
    if cfg.data.num_workers < 0:
        raise ConfigError("data.num_workers must be 0 or more")
    if cfg.group.size < 0:
        raise ConfigError("group.size must be 0 (not in a group) or more")
    if cfg.group.id and not (cfg.group.kind and cfg.group.aggregate):
        raise ConfigError(f"group.id={cfg.group.id!r} needs group.kind and group.aggregate")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.train.device):
        raise ConfigError(f"train.device={cfg.train.device!r}: use auto, cpu, cuda or cuda:N")


def flat_fields(obj: Any, prefix: str = "") -> list[tuple[str, Any, Any, str]]:
    """(dotted key, default value, annotation, help) for every leaf field: what a form needs."""
    out = []
    types = _field_types(type(obj))
    helps = field_help(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(flat_fields(value, prefix=f"{prefix}{f.name}."))
        elif f.name not in ("method", "dataset") or prefix:
            out.append((f"{prefix}{f.name}", value, types[f.name], helps.get(f.name, "")))
    return out
