"""Vocabulary: a fixed order (specials, then sorted), lossless encode/decode."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import torch

from date_seq2seq.data import MONTHS, target_tokens, task_vocabulary
from date_seq2seq.vocab import EOS, GO, PAD, SPECIALS, Vocabulary

TASK_TOKENS = [
    "<PAD>", "<GO>", "<EOS>", "-", "/", "0", "1", "2", "3", "4", "5", "6", "7", "8",
    "9", "Apr", "Aug", "Dec", "Feb", "Jan", "Jul", "Jun", "Mar", "May", "Nov", "Oct",
    "Sep",
]  # fmt: skip


def test_task_vocabulary_is_exactly_the_sorted_task_tokens():
    vocab = task_vocabulary()
    assert vocab.tokens == TASK_TOKENS
    assert len(vocab) == 27
    assert [vocab.tokens[i] for i in (vocab.pad_id, vocab.go_id, vocab.eos_id)] == [
        PAD,
        GO,
        EOS,
    ]
    assert vocab.pad_id == 0


def test_build_ignores_input_order_and_duplicates():
    pieces = ["0123456789", "-/", list(MONTHS), ["Nov", "1", "/"]]
    rng = random.Random(7)
    for _ in range(5):
        shuffled = [list(p) for p in pieces]
        rng.shuffle(shuffled)
        for p in shuffled:
            rng.shuffle(p)
        assert Vocabulary.build(shuffled) == task_vocabulary()


def test_build_keeps_specials_first_even_if_they_occur_in_the_data():
    vocab = Vocabulary.build([["b", EOS, "a", PAD]])
    assert vocab.tokens == [*SPECIALS, "a", "b"]


@pytest.mark.parametrize(
    "day", [dt.date(2024, 11, 22), dt.date(1974, 1, 1), dt.date(2034, 12, 31)]
)
def test_encode_decode_round_trip(day):
    vocab = task_vocabulary()
    tokens = target_tokens(day)
    ids = vocab.encode(tokens)
    assert len(ids) == 9
    assert vocab.decode(ids) == tokens
    assert vocab.decode(torch.tensor(ids)) == tokens  # tensors of ids work too


def test_encode_known_ids():
    vocab = task_vocabulary()
    assert vocab.encode(["0", "9", "-", "/", "Jan", "Sep"]) == [5, 14, 3, 4, 19, 26]


def test_decode_strips_specials_and_stops_at_eos():
    vocab = task_vocabulary()
    ids = [
        vocab.go_id,
        *vocab.encode(["1", "/"]),
        vocab.pad_id,
        *vocab.encode(["Nov"]),
        vocab.eos_id,
        *vocab.encode(["7"]),
        vocab.pad_id,
    ]
    assert vocab.decode(ids) == ["1", "/", "Nov"]
    assert vocab.decode(ids, strip=False) == [
        GO,
        "1",
        "/",
        PAD,
        "Nov",
        EOS,
        "7",
        PAD,
    ]
    assert vocab.decode([]) == []


def test_encode_names_an_unknown_token():
    with pytest.raises(KeyError, match="'Nov.'"):
        task_vocabulary().encode(["1", "Nov."])


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["<GO>", "<PAD>", "<EOS>", "a"], "must start with"),
        (["a", "b"], "must start with"),
        ([*SPECIALS, "a", "a"], "duplicate"),
        ([*SPECIALS, "a", ""], "non-empty strings"),
        ([*SPECIALS, 5], "non-empty strings"),
    ],
)
def test_constructor_refuses_bad_token_lists(tokens, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(tokens)


def test_equality_membership_and_copies():
    vocab = task_vocabulary()
    assert vocab == Vocabulary(TASK_TOKENS)
    assert vocab != Vocabulary([*SPECIALS, "a"])
    assert vocab != TASK_TOKENS  # only a Vocabulary equals a Vocabulary
    assert "Nov" in vocab and "nov" not in vocab
    saved = vocab.to_list()
    saved.append("extra")  # the saved list is a copy, not the live one
    assert len(vocab) == 27 and "extra" not in vocab
    assert repr(vocab) == "Vocabulary(27 tokens)"
