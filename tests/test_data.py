"""Data: the date window, formatting, input validation, seeded splits, tensors."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from date_seq2seq.config import DataConfig
from date_seq2seq.data import (
    MAX_INPUT_CHARS,
    DateDataset,
    InputError,
    Window,
    encode_sources,
    encode_targets,
    pad_sequences,
    parse_source,
    source_text,
    split,
    target_text,
    target_tokens,
    task_vocabulary,
)

ROOT = Path(__file__).resolve().parents[1]
WINDOW = Window.from_config(DataConfig())


# --- the window and formatting ----------------------------------------------


def test_the_window_has_22280_consecutive_dates():
    days = WINDOW.dates()
    assert len(days) == 22_280
    assert (days[0], days[-1]) == (dt.date(1974, 1, 1), dt.date(2034, 12, 31))
    assert all((b - a).days == 1 for a, b in zip(days, days[1:], strict=False))


@pytest.mark.parametrize(
    ("yy", "year"),
    [(74, 1974), (99, 1999), (0, 2000), (34, 2034), (50, None), (35, None), (73, None)],
)
def test_year_for_two_digit_years(yy, year):
    assert WINDOW.year_for(yy) == year


def test_window_describe_and_validation():
    assert WINDOW.describe() == "1 Jan 1974 to 31 Dec 2034"
    with pytest.raises(ValueError, match="ordered"):
        Window.from_config(DataConfig(start="2000-01-02", end="2000-01-01"))
    with pytest.raises(ValueError, match="100 years"):
        Window.from_config(DataConfig(start="1900-01-01", end="2000-01-01"))


@pytest.mark.parametrize(
    ("day", "src", "tokens"),
    [
        (dt.date(2024, 11, 22), "24-11-22", ["2", "2", "/", "Nov", "/", *"2024"]),
        (dt.date(1974, 1, 5), "74-01-05", ["0", "5", "/", "Jan", "/", *"1974"]),
        (dt.date(2000, 2, 29), "00-02-29", ["2", "9", "/", "Feb", "/", *"2000"]),
    ],
)
def test_formats(day, src, tokens):
    assert source_text(day) == src
    assert target_tokens(day) == tokens
    assert target_text(day) == "".join(tokens)


def test_every_window_date_formats_and_parses_back():
    for day in WINDOW.dates():
        src = source_text(day)
        assert src == day.strftime("%y-%m-%d")  # digits only: locale-independent
        assert len(target_tokens(day)) == 9
        assert parse_source(src, WINDOW) == day


# --- input validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("24-11-22", dt.date(2024, 11, 22)),
        ("  24-11-22\n", dt.date(2024, 11, 22)),
        ("74-01-01", dt.date(1974, 1, 1)),
        ("34-12-31", dt.date(2034, 12, 31)),
        ("00-02-29", dt.date(2000, 2, 29)),
        ("24-02-29", dt.date(2024, 2, 29)),
    ],
)
def test_parse_source_accepts_valid_dates(text, day):
    assert parse_source(text, WINDOW) == day


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("24-02-30", "29 days"),
        ("24-13-01", "month 13"),
        ("23-02-29", "28 days"),
        ("00-00-10", "month 00"),
        ("24-11-00", "day 00"),
        ("24-04-31", "30 days"),
        ("50-02-30", "29 days"),  # outside the window and impossible anyway
    ],
)
def test_parse_source_refuses_impossible_dates(text, hint):
    with pytest.raises(InputError) as info:
        parse_source(text, WINDOW)
    assert info.value.kind == "impossible"
    assert text in info.value.message and hint in info.value.message
    assert str(info.value) == info.value.message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("2024-11-22", "four-digit year"),
        ("24/11/22", "'/'"),
        ("24.11.22", "'.'"),
        ("abc", "yy-mm-dd"),
        ("", "empty"),
        ("   ", "empty"),
        ("\t\n", "empty"),
        ("2" * (MAX_INPUT_CHARS + 1), "too long"),
        ("24-11-22" * 100, "too long"),
        ("٢٤-١١-٢٢", "only the digits 0-9"),
        ("２４-１１-２２", "only the digits 0-9"),
        ("24-11-22é", "other than 0-9"),
        ("24-11-2", "yy-mm-dd"),
        ("24-1-22", "yy-mm-dd"),
        ("24-11-222", "yy-mm-dd"),
        ("24--11-22", "yy-mm-dd"),
        ("+4-11-22", "yy-mm-dd"),
        ("24-11-22x", "yy-mm-dd"),
    ],
)
def test_parse_source_refuses_malformed_input(text, hint):
    with pytest.raises(InputError) as info:
        parse_source(text, WINDOW)
    assert info.value.kind == "malformed"
    assert info.value.message.strip()
    assert hint in info.value.message


def test_parse_source_suggests_the_fix():
    with pytest.raises(InputError, match="24-11-22"):
        parse_source("2024-11-22", WINDOW)
    with pytest.raises(InputError, match="write 24-11-22"):
        parse_source("24/11/22", WINDOW)


@pytest.mark.parametrize("value", [None, 241122, b"24-11-22"])
def test_parse_source_refuses_non_text(value):
    with pytest.raises(InputError) as info:
        parse_source(value, WINDOW)
    assert info.value.kind == "malformed"


@pytest.mark.parametrize("text", ["50-01-01", "35-01-01", "73-12-31", "50-02-29"])
def test_parse_source_flags_dates_outside_the_window(text):
    with pytest.raises(InputError) as info:
        parse_source(text, WINDOW)
    assert info.value.kind == "outside_window"
    assert "outside" in info.value.message
    assert WINDOW.describe() in info.value.message


def test_parse_source_uses_the_exact_window_bounds():
    window = Window.from_config(DataConfig(start="1990-06-15", end="2010-06-14"))
    assert parse_source("90-06-15", window) == dt.date(1990, 6, 15)
    assert parse_source("10-06-14", window) == dt.date(2010, 6, 14)
    for text in ("90-06-14", "10-06-15", "89-12-31"):
        with pytest.raises(InputError) as info:
            parse_source(text, window)
        assert info.value.kind == "outside_window"


# --- splits -----------------------------------------------------------------


def test_split_sizes_disjoint_and_inside_the_window():
    cfg = DataConfig(train_size=300, held_out_size=70, seed=4)
    train, held = split(cfg)
    assert (len(train), len(held)) == (300, 70)
    assert len(set(train)) == 300 and len(set(held)) == 70
    assert not set(train) & set(held)
    assert all(WINDOW.start <= d <= WINDOW.end for d in train + held)


def test_split_is_seeded():
    cfg = DataConfig(train_size=50, held_out_size=20, seed=4)
    assert split(cfg) == split(DataConfig(train_size=50, held_out_size=20, seed=4))
    other = split(DataConfig(train_size=50, held_out_size=20, seed=5))
    assert other[0] != split(cfg)[0]
    assert other[1] != split(cfg)[1]


def test_split_can_take_the_whole_window_but_no_more():
    train, held = split(DataConfig(train_size=22_000, held_out_size=280))
    assert sorted(train + held) == WINDOW.dates()
    with pytest.raises(ValueError, match="22280"):
        split(DataConfig(train_size=22_000, held_out_size=281))
    assert split(DataConfig(train_size=3, held_out_size=0))[1] == []


_PROBE = """
import json
from date_seq2seq.config import DataConfig
from date_seq2seq.data import split, task_vocabulary
train, held = split(DataConfig(train_size=40, held_out_size=10, seed=3))
print(json.dumps({"vocab": task_vocabulary().tokens,
                  "train": [d.isoformat() for d in train[:20]],
                  "held": [d.isoformat() for d in held]}))
"""


def test_vocabulary_and_split_are_identical_across_processes():
    envs = [
        {"PYTHONHASHSEED": "0", "TZ": "UTC"},
        {"PYTHONHASHSEED": "123", "TZ": "Asia/Kolkata"},
        {"PYTHONHASHSEED": "4242", "TZ": "America/Los_Angeles", "LC_ALL": "C"},
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROBE],
            cwd=ROOT,
            env={**os.environ, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in envs
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    train, held = split(DataConfig(train_size=40, held_out_size=10, seed=3))
    here = {
        "vocab": task_vocabulary().tokens,
        "train": [d.isoformat() for d in train[:20]],
        "held": [d.isoformat() for d in held],
    }
    assert all(out == here for out in outputs)


# --- tensors ------------------------------------------------------------------


def test_encode_sources_and_targets():
    vocab = task_vocabulary()
    days = [dt.date(2024, 11, 22), dt.date(1974, 1, 5)]
    src = encode_sources([source_text(d) for d in days], vocab)
    assert src.shape == (2, 8) and src.dtype == torch.long
    assert vocab.decode(src[1]) == list("74-01-05")
    tgt = encode_targets(days, vocab)
    assert tgt.shape == (2, 11)
    assert (tgt[:, 0] == vocab.go_id).all() and (tgt[:, -1] == vocab.eos_id).all()
    assert [vocab.decode(row) for row in tgt] == [target_tokens(d) for d in days]


def test_pad_sequences():
    ids, lengths = pad_sequences([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    ids, _ = pad_sequences([[5], [6, 7]], pad_id=4)
    assert ids.tolist() == [[5, 4], [6, 7]]


# --- DateDataset: a torch Dataset -----------------------------------------------


def test_a_date_dataset_holds_its_days_in_order_as_id_pairs():
    days = [dt.date(2024, 11, 22), dt.date(1974, 1, 5), dt.date(2000, 2, 29)]
    data = DateDataset(days)
    assert isinstance(data, torch.utils.data.Dataset)
    assert data.days == days and len(data) == 3
    src, tgt = data[1]
    assert src.dtype == tgt.dtype == torch.long
    assert src.shape == (8,) and tgt.shape == (11,)
    assert "".join(data.vocab.decode(src)) == "74-01-05"
    assert data.vocab.decode(tgt, strip=False) == ["<GO>", *target_tokens(days[1]),
                                                   "<EOS>"]  # fmt: skip
    assert "".join(data.vocab.decode(tgt)) == target_text(days[1])
    batch_src, batch_tgt = data[[2, 0]]  # a list of indices: a whole batch
    assert torch.equal(batch_src, torch.stack([data[2][0], data[0][0]]))
    assert batch_tgt.shape == (2, 11)
    assert len(DateDataset([])) == 0


def test_the_default_split_is_the_command_lines_and_batches_through_a_dataloader():
    train, held_out = DateDataset.split(seed=0)
    assert (len(train), len(held_out)) == (4000, 1000)
    assert not set(train.days) & set(held_out.days)
    assert all(WINDOW.start <= d <= WINDOW.end for d in train.days + held_out.days)
    want_train, want_held = split(DataConfig(seed=0))  # what `train --seed 0` draws
    assert (train.days, held_out.days) == (want_train, want_held)
    assert DateDataset.split(seed=1)[0].days != train.days
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    batches = list(loader)
    assert len(batches) == 125
    assert all(s.shape == (32, 8) and t.shape == (32, 11) for s, t in batches)
    seen = sorted(tuple(row) for s, _ in batches for row in s.tolist())
    assert seen == sorted(tuple(row) for row in train.src.tolist())  # each once
