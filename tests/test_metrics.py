"""Metrics: exact match, token accuracy, per-field accuracy and d2l's BLEU."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import torch

from date_seq2seq.data import target_tokens
from date_seq2seq.metrics import (
    bleu,
    exact_match,
    field_accuracy,
    field_confusion,
    field_errors,
    fields,
    id_exact_matches,
    summarize,
    token_accuracy,
)

NOV22 = target_tokens(dt.date(2024, 11, 22))  # 2 2 / Nov / 2 0 2 4
WRONG_DAY = ["2", "3", "/", "Nov", "/", "2", "0", "2", "4"]
WRONG_MONTH = ["2", "2", "/", "Oct", "/", "2", "0", "2", "4"]
WRONG_YEAR = ["2", "2", "/", "Nov", "/", "1", "9", "2", "4"]


def test_exact_match():
    assert exact_match([NOV22, WRONG_DAY], [NOV22, NOV22]) == 0.5
    assert exact_match([NOV22], [NOV22]) == 1.0
    assert exact_match([NOV22[:-1]], [NOV22]) == 0.0
    assert exact_match([tuple(NOV22)], [NOV22]) == 1.0  # any token sequence type


@pytest.mark.parametrize(
    "metric", [exact_match, token_accuracy, field_accuracy, summarize]
)
def test_metrics_need_equal_non_zero_counts(metric):
    with pytest.raises(ValueError, match="equal, non-zero"):
        metric([NOV22], [NOV22, NOV22])
    with pytest.raises(ValueError, match="equal, non-zero"):
        metric([], [])


def test_token_accuracy_counts_missing_and_extra_tokens_wrong():
    assert token_accuracy([NOV22], [NOV22]) == 1.0
    assert token_accuracy([WRONG_DAY], [NOV22]) == pytest.approx(8 / 9)
    assert token_accuracy([NOV22[:6]], [NOV22]) == pytest.approx(6 / 9)  # missing
    assert token_accuracy([[*NOV22, "1"]], [NOV22]) == pytest.approx(9 / 10)  # extra
    assert token_accuracy([[]], [NOV22]) == 0.0
    # Pooled over tokens, not averaged over sequences.
    assert token_accuracy([["a"], ["b", "c", "d"]], [["x"], ["b", "c", "d"]]) == 0.75
    assert token_accuracy([[]], [[]]) == 1.0


def test_fields_split_on_slashes():
    assert fields(NOV22) == (("2", "2"), ("Nov",), ("2", "0", "2", "4"))
    assert fields(["2", "2", "Nov"]) is None
    assert fields(["1", "/", "2", "/", "3", "/", "4"]) is None


def test_field_accuracy():
    preds = [NOV22, WRONG_DAY, WRONG_MONTH, WRONG_YEAR, ["garbage"]]
    got = field_accuracy(preds, [NOV22] * 5)
    assert got == {"day": 3 / 5, "month": 3 / 5, "year": 3 / 5}
    assert field_accuracy([WRONG_DAY], [NOV22]) == {
        "day": 0.0,
        "month": 1.0,
        "year": 1.0,
    }


def test_bleu_of_a_perfect_output_is_one():
    assert bleu(NOV22, NOV22) == 1.0
    assert bleu(list("abcdefg"), list("abcdefg")) == 1.0


def test_bleu_hand_computed():
    pred, ref = list("abcdx"), list("abcde")
    # p1 = 4/5, p2 = 3/4, p3 = 2/3, p4 = 1/2, no brevity penalty
    want = 0.8**0.5 * 0.75**0.25 * (2 / 3) ** 0.125 * 0.5**0.0625
    assert bleu(pred, ref) == pytest.approx(want)
    # A short but correct output pays only the brevity penalty.
    assert bleu(list("abcd"), list("abcde")) == pytest.approx(math.exp(1 - 5 / 4))
    # A longer output pays none.
    assert bleu(list("abcdee"), list("abcde")) == pytest.approx(
        (5 / 6) ** 0.5 * (4 / 5) ** 0.25 * (3 / 4) ** 0.125 * (2 / 3) ** 0.0625
    )


def test_bleu_clips_repeated_ngrams():
    assert bleu(["a", "a"], ["a", "b"], max_n=1) == pytest.approx(0.5**0.5)
    assert bleu(["a", "a", "a", "a"], ["a", "b", "c", "d"]) == 0.0


def test_bleu_of_empty_and_short_outputs():
    assert bleu([], NOV22) == 0.0
    assert bleu([], []) == 0.0
    # Shorter than the 4-gram order: scored on the orders it has (d2l's
    # min(k, len_pred)), with the brevity penalty, and no ZeroDivisionError.
    for n in range(1, 4):
        assert bleu(NOV22[:n], NOV22) == pytest.approx(math.exp(1 - 9 / n))
    assert bleu(["x", "y"], ["a", "b", "c"]) == 0.0
    assert bleu(["a", "b"], ["a", "b"], max_n=2) == 1.0
    assert bleu(NOV22, []) == 0.0


def test_id_exact_matches_pads_the_shorter_side():
    pred = torch.tensor([[5, 6, 2], [5, 7, 2], [5, 6, 0]])
    ref = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 2, 0, 0], [5, 6, 2, 0, 0]])
    assert id_exact_matches(pred, ref, 0).tolist() == [True, False, False]
    assert id_exact_matches(ref, pred, 0).tolist() == [True, False, False]


def test_summarize():
    out = summarize([NOV22, WRONG_DAY], [NOV22, NOV22])
    assert out["exact_match"] == 0.5
    assert out["token_accuracy"] == pytest.approx(17 / 18)
    assert (out["day_accuracy"], out["month_accuracy"], out["year_accuracy"]) == (
        0.5,
        1.0,
        1.0,
    )
    assert out["bleu"] == pytest.approx((1 + bleu(WRONG_DAY, NOV22)) / 2)
    assert 0 < bleu(WRONG_DAY, NOV22) < 1
    assert out["count"] == 2


def test_field_errors_count_each_wrong_field_of_the_wrong_outputs():
    both = ["2", "3", "/", "Oct", "/", "2", "0", "2", "4"]  # day and month wrong
    preds = [NOV22, WRONG_DAY, WRONG_MONTH, WRONG_YEAR, both, ["garbage"], NOV22[:4]]
    got = field_errors(preds, [NOV22] * len(preds))
    assert got == {"wrong": 6, "day": 2, "month": 2, "year": 1, "shape": 2}
    assert field_errors([NOV22, tuple(NOV22)], [NOV22, NOV22]) == {
        "wrong": 0,
        "day": 0,
        "month": 0,
        "year": 0,
        "shape": 0,
    }


def test_field_confusion_counts_wanted_against_got():
    dec31 = target_tokens(dt.date(1999, 12, 31))
    preds = [NOV22, WRONG_MONTH, WRONG_MONTH, ["x"], ["1", "/", "/", "1999"], dec31]
    refs = [NOV22, NOV22, NOV22, NOV22, dec31, dec31]
    got = field_confusion(preds, refs)
    assert got == {("Nov", "Nov"): 1, ("Nov", "Oct"): 2, ("Nov", "?"): 1,
                   ("Dec", "?"): 1, ("Dec", "Dec"): 1}  # fmt: skip
    assert sum(got.values()) == len(preds)
    days = field_confusion([WRONG_DAY, NOV22], [NOV22, NOV22], field="day")
    assert days == {("22", "23"): 1, ("22", "22"): 1}


def test_field_confusion_refuses_an_unknown_field_and_a_bad_reference():
    with pytest.raises(ValueError, match="field must be one of"):
        field_confusion([NOV22], [NOV22], field="hour")
    with pytest.raises(ValueError, match="not day / month / year"):
        field_confusion([NOV22], [["2", "2"]])
