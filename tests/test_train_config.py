"""``TrainConfig``: the one typed, checked value ``anyclip train`` and the Python API both train from."""

import argparse
import dataclasses
import types
from pathlib import Path

import pytest

from anyclip.cli import build_parser
from anyclip.train import DataConfig, OptimConfig, TrainConfig
from anyclip.train.config import add_train_arguments


def parsed(*flags):
    return build_parser().parse_args(["train", "--train-data", "train.csv", *flags])


def test_flags_and_fields_are_the_same_names_and_defaults():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    dests = [a.dest for a in parser._actions if a.dest != "help"]
    assert dests == [f.name for f in TrainConfig.flag_fields()]
    args = parsed()
    config = TrainConfig.from_args(args)
    assert config == TrainConfig(DataConfig("train.csv"))
    # params.json holds the parsed flags' keys and values (the subcommand's callable left out)
    flat = {"command": "train", **config.flags()}
    assert flat == {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if not callable(v)}


def test_python_and_command_line_give_the_same_config():
    args = parsed("--model", "tiny.json", "--batch-size", "8", "--lr", "1e-3", "--aug-cfg", "scale=(0.5,1.0)",
                  "--image-key", "png", "--lock-text-unlocked-groups", "2", "--lock-text", "--dist-timeout", "30")
    config = TrainConfig.from_flags(train_data=Path("train.csv"), model="tiny.json", batch_size=8, lr=0.001,
                                    aug_cfg=["scale=(0.5,1.0)"], csv_img_key="png", lock_text_unlocked_layers=2,
                                    lock_text=True, dist_timeout=30)
    assert TrainConfig.from_args(args) == config
    assert config.data.train_data == "train.csv" and config.data.aug_cfg == ("scale=(0.5,1.0)",)
    assert isinstance(config.distributed.dist_timeout, float) and config.data.augment == {"scale": (0.5, 1.0)}
    assert dataclasses.replace(config, optim=OptimConfig(epochs=3)).optim.batch_size == 64  # sections are whole


@pytest.mark.parametrize("flags,message", [
    ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
    ({"keep": 0}, "--keep must be >= 1, got 0"),
    ({"workers": -1}, "--workers and --warmup must be >= 0"),
    ({"zeroshot_frequency": 0}, "--zeroshot-frequency must be >= 1, got 0"),
    ({"zeroshot_shapes": -1}, "--zeroshot-shapes must be >= 0, got -1"),
    ({"lock_text_unlocked_layers": -2}, "--lock-text-unlocked-layers must be >= 0, got -2"),
    ({"distill_model": "ViT-B-32"}, "both --distill-model and --distill-pretrained"),
    ({"distill_model": "a", "distill_pretrained": "b", "siglip": True}, "not --siglip"),
    ({"ema_decay": 1.5}, "--ema-decay must be in [0, 1], got 1.5"),
    ({"wise_ft": "0.5"}, "give --pretrained"),
    ({"wise_ft": "0.5,2", "pretrained": "openai"}, "'2' is not a number in [0, 1]"),
    ({"lock_image": True, "lock_text": True}, "leave nothing to train"),
    ({"aug_cfg": ["re_prob=0.3"]}, "--aug-cfg 're_prob=0.3'"),
    ({"report_to": "wandb"}, "'wandb'"),
    ({"dist_timeout": 0}, "--dist-timeout must be > 0 seconds"),
    ({"coca": True, "siglip": True}, "--siglip does not work with a CoCa model"),
    ({"precision": "fp8"}, "--precision must be one of fp32, amp_bf16, amp, amp_fp16, fp16, got 'fp8'"),
])
def test_bad_values_are_refused_on_construction_naming_the_flag(flags, message):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_flags(train_data="train.csv", **flags)
    assert message in str(info.value)


def test_python_values_of_the_wrong_kind_or_name_are_refused():
    with pytest.raises(TypeError, match="--batch-size takes an integer, got '8'"):
        TrainConfig.from_flags(train_data="train.csv", batch_size="8")
    with pytest.raises(TypeError, match="--siglip takes True or False, got 1"):
        TrainConfig.from_flags(train_data="train.csv", siglip=1)
    with pytest.raises(TypeError, match="has no flag 'batchsize'"):
        TrainConfig.from_flags(train_data="train.csv", batchsize=8)
    with pytest.raises(TypeError, match="TrainConfig.optim takes a section of type OptimConfig, got dict"):
        TrainConfig(DataConfig("train.csv"), optim={"lr": 1e-3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig(DataConfig("train.csv")).model = "ViT-L-14"


def test_the_loss_follows_the_model_and_refuses_what_does_not_fit():
    clip = types.SimpleNamespace(logit_bias=None)
    siglip = types.SimpleNamespace(logit_bias=-10.0)
    coca = types.SimpleNamespace(logit_bias=None, text_decoder=object())
    config = TrainConfig.from_flags(train_data="train.csv", model="m.json")
    assert config.loss_kind(clip) == "clip" and config.loss_kind(coca) == "coca"
    assert dataclasses.replace(config, loss=dataclasses.replace(config.loss, siglip=True)).loss_kind(siglip) == "siglip"
    distill = TrainConfig.from_flags(train_data="train.csv", distill_model="t", distill_pretrained="w")
    assert distill.loss_kind(clip) == "distill"
    with pytest.raises(ValueError, match="--siglip needs a model with a logit_bias .*; m.json has none"):
        TrainConfig.from_flags(train_data="train.csv", model="m.json", siglip=True).loss_kind(clip)
    with pytest.raises(ValueError, match="--coca needs a CoCa model"):
        TrainConfig.from_flags(train_data="train.csv", coca=True).loss_kind(clip)
    with pytest.raises(ValueError, match="--distill-model does not work with a CoCa model"):
        distill.loss_kind(coca)
