import dataclasses
import json

import pytest

from aqa.config import (RunConfig, apply_overrides, build_run_config, field_help, flat_fields,
                        parse_value, to_dict)
from aqa.errors import ConfigError


def test_round_trip_through_json():
    cfg = build_run_config("regression", "synthetic", overrides=["train.epochs=3", "optim.lr=0.01"])
    again = build_run_config("regression", "synthetic", values=json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    assert again.train.epochs == 3 and again.optim.lr == 0.01


def test_defaults_have_types_and_help():
    cfg = build_run_config("regression", "synthetic")
    fields = {key: (default, help) for key, default, _, help in flat_fields(cfg)}
    assert fields["train.epochs"][0] == 10
    assert fields["train.epochs"][1] == "number of training epochs"
    assert fields["backbone.width"][1].startswith("channels of the first layer")
    assert all(help for _, help in fields.values()), [k for k, (_, h) in fields.items() if not h]


def test_unknown_key_names_it_and_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_run_config("regression", "synthetic", overrides=["train.epoch=3"])
    assert "'train.epoch'" in str(e.value) and "epochs" in str(e.value)
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        build_run_config("regression", "synthetic", values={"trian": {"epochs": 2}})


@pytest.mark.parametrize("override, message", [
    ("train.amp=yes", "expected true or false"),
    ("train.amp=1", "expected true or false"),
    ("train.epochs=2.5", "expected int"),
    ("optim.lr=fast", "expected float"),
    ("train=3", "is a section"),
    ("train.epochs.x=1", "is a value"),
    ("noequals", "key=value"),
    ("optim.name=rmsprop", "not one of adam, adamw, sgd"),
    ("train.epochs=0", "at least 1"),
    ("train.device=tpu", "use auto, cpu"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        build_run_config("regression", "synthetic", overrides=[override])


def test_mistyped_values_from_json():
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        build_run_config("regression", "synthetic", values={"train": {"epochs": "3"}})
    with pytest.raises(ConfigError, match="train.amp: expected bool"):
        build_run_config("regression", "synthetic", values={"train": {"amp": 1}})
    # an int where a float is expected widens
    cfg = build_run_config("regression", "synthetic", values={"optim": {"lr": 1}})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_booleans_accept_only_true_false():
    assert parse_value("true", bool, "k") is True
    assert parse_value("FALSE", bool, "k") is False
    with pytest.raises(ConfigError):
        parse_value("False ish", bool, "k")


def test_unknown_method_and_dataset():
    with pytest.raises(ConfigError, match="unknown method 'cor'; registered: .*regression"):
        build_run_config("cor", "synthetic")
    with pytest.raises(ConfigError, match="unknown dataset"):
        build_run_config("regression", "mtl")


def test_method_and_dataset_in_values_must_match():
    with pytest.raises(ConfigError, match="does not match"):
        build_run_config("regression", "synthetic", values={"dataset": "folder"})


def test_field_help_reads_comments():
    from aqa.config import TrainConfig
    assert field_help(TrainConfig)["amp"] == "mixed precision on CUDA (ignored on the CPU)"


def test_overrides_return_new_objects():
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg)
    changed = apply_overrides(cfg, ["train.seed=5"])
    assert changed.train.seed == 5 and cfg.train.seed == 0
