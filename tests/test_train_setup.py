"""Setups: a training setup to query parameters and back, every bad value caught."""

from __future__ import annotations

import pytest

from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.data import task_vocabulary
from date_seq2seq.train_setup import (
    BOUNDS,
    CHOICES,
    MAX_BIDIRECTIONAL_HIDDEN,
    MAX_STEPS,
    TASK_SETUPS,
    Setup,
)

CHANGED = Setup(
    attention="additive",
    cell="gru",
    embedding=8,
    hidden=24,
    layers=2,
    dropout=0.15,
    lr=3e-3,
    sampling=0.25,
    batch=64,
    epochs=3,
    train_size=500,
    seed=7,
    probe="99-12-31",
    snapshot_every=5,
)


def test_defaults_are_the_configs_defaults():
    data, model, train = Setup().configs()
    assert (data, model, train) == (DataConfig(), ModelConfig(), TrainConfig())


def test_configs_carry_every_value():
    data, model, train = CHANGED.configs()
    assert (model.attention, model.cell, model.num_layers) == ("additive", "gru", 2)
    assert (model.embedding_dim, model.encoder_hidden, model.decoder_hidden) == (
        8,
        24,
        24,
    )
    assert model.dropout == 0.15
    assert (train.lr, train.sampling_prob, train.batch_size) == (3e-3, 0.25, 64)
    assert (train.epochs, train.seed) == (3, 7)
    assert (data.train_size, data.seed) == (500, 7)


def test_params_round_trip():
    params = CHANGED.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert params["lr"] == "0.003" and params["dropout"] == "0.15"
    assert Setup.from_params(params) == (CHANGED, [])
    assert Setup.from_params(Setup().to_params()) == (Setup(), [])
    assert Setup.from_params({}) == (Setup(), [])


def test_a_partial_link_keeps_the_other_defaults():
    setup, problems = Setup.from_params({"epochs": "2", "attention": "dot"})
    assert problems == []
    assert setup == Setup(epochs=2, attention="dot")


def test_equal_numbers_written_differently_are_one_value():
    setup, problems = Setup.from_params(
        {"lr": "1e-3", "dropout": "0.10", "seed": " 4 "}
    )
    assert problems == []
    assert setup.lr == 1e-3 and setup.dropout == 0.1 and setup.seed == 4
    assert Setup(lr=0.0030000000000000001).lr == 3e-3  # snapped to the choice


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("epochs", "abc", "not a whole number"),
        ("epochs", "2.5", "not a whole number"),
        ("epochs", "1_0", "not a whole number"),
        ("epochs", "\u0661\u0662", "not a whole number"),  # Arabic-Indic 12
        ("dropout", "0_1", "not a number"),
        ("seed", "9" * 5000, "too long for a number"),
        ("epochs", "0", "from 1 to 50"),
        ("epochs", "100000", "from 1 to 50"),
        ("hidden", "-4", "from 2 to 256"),
        ("seed", "", "not a whole number"),
        ("dropout", "nan", "from 0.0 to 0.5"),
        ("sampling", "inf", "from 0.0 to 1.0"),
        ("sampling", "1.5", "from 0.0 to 1.0"),
        ("lr", "0.5", "must be one of 0.0003, 0.001"),
        ("lr", "fast", "not a number"),
        ("batch", "33", "must be one of 8, 16, 32"),
        ("attention", "luong", "must be one of none, dot, general, additive"),
        ("cell", "LSTM", "must be one of lstm, gru"),
        ("probe", "24-02-30", "29 days"),
        ("probe", "50-01-01", "outside the dates"),
        ("probe", "x" * 500, "too long"),
    ],
)
def test_a_bad_value_is_reported_and_keeps_its_default(name, text, needle):
    setup, problems = Setup.from_params(
        {name: text, "epochs" if name != "epochs" else "seed": "3"}
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name}=") and needle in problems[0]
    assert getattr(setup, name) == getattr(Setup(), name)
    assert len(problems[0]) < 300  # a long value is shortened in the message
    # The good value beside it is kept.
    assert (setup.seed if name == "epochs" else setup.epochs) == 3


def test_unknown_and_foreign_parameters():
    setup, problems = Setup.from_params({"colour": "red", "embed": "true"})
    assert setup == Setup()
    assert problems == ["colour is not a setting; it was ignored."]


@pytest.mark.parametrize(
    ("name", "value"),
    [("epochs", 0), ("epochs", 2.0), ("epochs", True), ("lr", 0.2), ("probe", 241122),
     ("attention", "bahdanau"), ("dropout", "0.1")],
)  # fmt: skip
def test_building_a_setup_checks_every_value(name, value):
    with pytest.raises(ValueError, match=f"^{name} "):  # the message names it
        Setup(**{name: value})


def test_the_ranges_include_the_defaults():
    default = Setup()
    for name, (low, high) in BOUNDS.items():
        assert low <= getattr(default, name) <= high, name
    for name, choices in CHOICES.items():
        assert getattr(default, name) in choices, name


@pytest.mark.parametrize("end", [0, 1])
def test_every_corner_of_the_ranges_can_be_trained(end):
    """No combination of allowed values is refused by the configs."""
    for attention in CHOICES["attention"]:
        values = {name: bounds[end] for name, bounds in BOUNDS.items()}
        values.update({name: choices[-end] for name, choices in CHOICES.items()})
        Setup(**{**values, "attention": attention}).configs()
        hidden = min(values["hidden"], MAX_BIDIRECTIONAL_HIDDEN)
        Setup(**{**values, "attention": attention, "hidden": hidden,
                 "bidirectional": True}).configs()  # fmt: skip


def test_a_link_reproduces_a_value_exactly():
    setup = Setup(dropout=0.1234567, sampling=1 / 3)
    assert Setup.from_params(setup.to_params()) == (setup, [])


def test_problems_quote_the_link_on_one_line():
    _, problems = Setup.from_params({"a\nb": "1", "epochs": "x\r\n- y"})
    assert len(problems) == 2
    assert all("\n" not in p and "\r" not in p for p in problems)


def test_a_setup_longer_than_a_run_may_be_is_refused_and_a_link_shortened():
    with pytest.raises(ValueError, match="125,000 steps; a run takes at most 20,000"):
        Setup(epochs=50, train_size=20000, batch=8)
    setup, problems = Setup.from_params({"epochs": "50", "train_size": "20000",
                                         "batch": "8"})  # fmt: skip
    assert setup.epochs == 8 and setup.steps <= MAX_STEPS
    assert problems and "using 8 epochs" in problems[0]


@pytest.mark.parametrize("task", CHOICES["task"])
def test_each_task_has_a_good_start_that_trains_that_task(task):
    start = TASK_SETUPS[task]
    data, model, _ = start.configs()
    assert data.task == task and model.vocab_size == len(task_vocabulary(task))
    assert Setup.from_params({"task": task}) == (start, [])  # what a link leaves out
    assert Setup.from_params(start.to_params()) == (start, [])


def test_a_probe_is_read_as_its_task_reads_dates():
    assert Setup(task="human", probe=" 22 Nov 2024 ").probe == "22 Nov 2024"
    with pytest.raises(ValueError, match="^probe '22 Nov 2024' is not a date as yy"):
        Setup(probe="22 Nov 2024")
    setup, problems = Setup.from_params({"probe": "22 Nov 2024"})
    assert setup.probe == "24-11-22" and problems[0].startswith("probe=22 Nov 2024:")
    setup, problems = Setup.from_params({"probe": "thu 22 nov 24", "task": "human"})
    assert "a Friday, not a Thursday" in problems[0]
    assert setup.probe == TASK_SETUPS["human"].probe


def test_the_switches_are_read_as_true_or_false():
    setup, problems = Setup.from_params(
        {"bidirectional": "true", "mask_attention": "0", "mask_loss": "False"}
    )
    assert problems == []
    assert (setup.bidirectional, setup.mask_attention, setup.mask_loss) == (
        True, False, False)  # fmt: skip
    _, problems = Setup.from_params({"mask_loss": "maybe"})
    assert problems == ["mask_loss=maybe: not true or false; using True."]
    with pytest.raises(ValueError, match="^bidirectional must be true or false"):
        Setup(bidirectional=1)


def test_the_switches_reach_the_configs():
    _, model, train = Setup(bidirectional=True, mask_attention=False,
                            mask_loss=False, hidden=24).configs()  # fmt: skip
    assert model.bidirectional and model.encoder_hidden == 24
    assert model.decoder_hidden == model.encoder_output == 48  # dot attention fits
    assert model.mask_attention is False and train.mask_loss is False


def test_a_bidirectional_encoder_halves_the_largest_hidden_size():
    with pytest.raises(ValueError, match="^hidden 256 with a bidirectional encoder"):
        Setup(bidirectional=True, hidden=256)
    setup, problems = Setup.from_params({"bidirectional": "true", "hidden": "256"})
    assert (setup.bidirectional, setup.hidden) == (True, MAX_BIDIRECTIONAL_HIDDEN)
    assert problems == [
        "hidden=256 with a bidirectional encoder: at most 128; using 128."
    ]


def test_a_yymmdd_probe_is_told_what_yymmdd_expects():
    _, problems = Setup.from_params({"probe": "24/11/22"})
    assert "uses '/' between the parts: write 24-11-22" in problems[0]
    assert "known form" not in problems[0]  # the human task's words, not here
