"""Configs: frozen, validated on construction, and rebuilt exactly from a dict."""

from __future__ import annotations

import dataclasses
import math

import pytest

from date_seq2seq.config import (
    ATTENTION_KINDS,
    CELL_KINDS,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
)
from date_seq2seq.data import task_vocabulary

NON_DEFAULT = [
    DataConfig(start="1980-03-04", end="2020-05-06", train_size=7, held_out_size=3,
               seed=11),
    ModelConfig(cell="gru", attention="additive", embedding_dim=3, encoder_hidden=5,
                decoder_hidden=7, num_layers=2, dropout=0.25),
    TrainConfig(epochs=3, batch_size=5, lr=0.003, lr_decay=0.9, clip_norm=2.0,
                sampling_prob=0.5, target_accuracy=0.75, patience=2, seed=13),
    DecodeConfig(beam_size=3, max_len=10, top_k=5),
]  # fmt: skip


def test_defaults_are_the_tutorial_sizes_and_fit_the_task_vocabulary():
    cfg = ModelConfig()
    assert (cfg.embedding_dim, cfg.encoder_hidden, cfg.decoder_hidden) == (16, 32, 32)
    assert cfg.vocab_size == len(task_vocabulary()) == 27
    assert (DataConfig().start, DataConfig().end) == ("1974-01-01", "2034-12-31")
    assert DecodeConfig().beam_size == 1


@pytest.mark.parametrize("cfg", NON_DEFAULT, ids=lambda c: type(c).__name__)
def test_asdict_from_dict_round_trip(cfg):
    values = dataclasses.asdict(cfg)
    assert all(type(v) in (int, float, str, bool) for v in values.values())
    rebuilt = from_dict(type(cfg), values)
    assert rebuilt == cfg
    assert rebuilt != type(cfg)()  # the test configs really are not the defaults


@pytest.mark.parametrize("cfg", NON_DEFAULT, ids=lambda c: type(c).__name__)
def test_configs_are_frozen(cfg):
    name = dataclasses.fields(cfg)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, name, getattr(cfg, name))


def test_from_dict_refuses_unknown_fields_by_name():
    values = {**dataclasses.asdict(ModelConfig()), "hiden": 3, "colour": "red"}
    with pytest.raises(ValueError, match=r"ModelConfig.*colour, hiden"):
        from_dict(ModelConfig, values)


@pytest.mark.parametrize("values", [[("cell", "gru")], "cell=gru", None])
def test_from_dict_refuses_non_dicts(values):
    with pytest.raises(ValueError, match="must be a dict"):
        from_dict(ModelConfig, values)


def test_from_dict_fills_missing_fields_with_defaults():
    assert from_dict(TrainConfig, {"epochs": 4}) == TrainConfig(epochs=4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cell": "rnn"}, "cell must be one of"),
        ({"attention": "luong"}, "attention must be one of"),
        ({"vocab_size": 0}, "vocab_size must be an integer from 1"),
        ({"vocab_size": "27"}, "vocab_size must be an integer from 1"),
        ({"embedding_dim": 3.0}, "embedding_dim must be an integer from 1"),
        ({"encoder_hidden": -5}, "encoder_hidden must be an integer from 1"),
        ({"decoder_hidden": 0}, "decoder_hidden must be an integer from 1"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_layers": 9}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"attention": "dot", "encoder_hidden": 5, "decoder_hidden": 7}, "dot"),
    ],
)
def test_model_config_refuses_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@pytest.mark.parametrize("cell", CELL_KINDS)
def test_model_config_accepts_every_kind(attention, cell):
    hidden = 5 if attention == "dot" else 7
    cfg = ModelConfig(
        cell=cell,
        attention=attention,
        encoder_hidden=5,
        decoder_hidden=hidden,
        num_layers=8,
        dropout=0.0,
    )
    assert (cfg.cell, cfg.attention) == (cell, attention)


@pytest.mark.parametrize("num_layers", [2.0, 1.5])
def test_model_config_refuses_non_integer_layers(num_layers):
    with pytest.raises(ValueError, match="num_layers"):
        ModelConfig(num_layers=num_layers)


@pytest.mark.parametrize(
    "overrides",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"lr": -1e-3},
        {"lr": math.nan},
        {"sampling_prob": 1.5},
        {"sampling_prob": -0.1},
        {"target_accuracy": 1.01},
        {"target_accuracy": -0.5},
        {"seed": -1},
        {"seed": 2**63},
    ],
)
def test_train_config_refuses_bad_values(overrides):
    with pytest.raises(ValueError):
        TrainConfig(**overrides)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [({"beam_size": 0}, "from 1 to 64"), ({"beam_size": 65}, "from 1 to 64"),
     ({"max_len": 0}, ">= 1"), ({"top_k": 0}, ">= 1")],
)  # fmt: skip
def test_decode_config_refuses_bad_values(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        DecodeConfig(**overrides)


@pytest.mark.parametrize("overrides", [{"train_size": 0}, {"held_out_size": -1}])
def test_data_config_refuses_bad_sizes(overrides):
    with pytest.raises(ValueError, match="train_size"):
        DataConfig(**overrides)


def test_data_config_allows_an_empty_held_out_split():
    assert DataConfig(train_size=1, held_out_size=0).held_out_size == 0


@pytest.mark.parametrize(
    "overrides",
    [{"train_size": 0}, {"train_size": 10.0}, {"held_out_size": -1},
     {"held_out_size": True}, {"seed": -1}, {"seed": 0.5}, {"start": 1974},
     {"end": None}],
)  # fmt: skip
def test_data_config_refuses_bad_values(overrides):
    with pytest.raises(ValueError):
        DataConfig(**overrides)


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"output": "logits"}, "output must be one of"),
     ({"output": "hidden", "attention": "none"}, "needs attention"),
     ({"output": "input", "attention": "none"}, "needs attention"),
     ({"mask_attention": 0}, "true or false"),
     ({"bidirectional": "yes"}, "true or false")],
)  # fmt: skip
def test_a_model_config_says_what_it_cannot_build(changes, words):
    with pytest.raises(ValueError, match=words):
        ModelConfig(**changes)
