"""Metrics: exact match (the headline), token accuracy, per-field accuracy, BLEU.

Token-list metrics take outputs and references as lists of tokens (<EOS> and
padding removed); `id_exact_matches` works on id tensors for training. For a
model that is not perfect, `field_errors` and `field_confusion` say where it
goes wrong: which field, and which value it takes for which.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

FIELDS = ("day", "month", "year")
Tokens = Sequence[str]


def id_exact_matches(
    pred: torch.Tensor, ref: torch.Tensor, pad_id: int
) -> torch.Tensor:
    """Compare id rows, padding the shorter to equal width. Returns (batch,) bool."""
    width = max(pred.size(1), ref.size(1))
    pred = torch.nn.functional.pad(pred, (0, width - pred.size(1)), value=pad_id)
    ref = torch.nn.functional.pad(ref, (0, width - ref.size(1)), value=pad_id)
    return (pred == ref).all(dim=1)


def exact_match(preds: Sequence[Tokens], refs: Sequence[Tokens]) -> float:
    """Return the share of outputs equal to their reference, token for token."""
    _check(preds, refs)
    return sum(list(p) == list(r) for p, r in zip(preds, refs, strict=True)) / len(refs)


def token_accuracy(preds: Sequence[Tokens], refs: Sequence[Tokens]) -> float:
    """Return position-wise token accuracy; a missing or extra token counts wrong."""
    _check(preds, refs)
    right = total = 0
    for p, r in zip(preds, refs, strict=True):
        right += sum(a == b for a, b in zip(p, r, strict=False))
        total += max(len(p), len(r))
    return right / total if total else 1.0


def fields(tokens: Tokens) -> tuple[tuple[str, ...], ...] | None:
    """Split `dd / Mon / yyyy` tokens into (day, month, year); None if not 3 parts."""
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == "/":
            parts.append([])
        else:
            parts[-1].append(token)
    return tuple(tuple(p) for p in parts) if len(parts) == 3 else None


def field_accuracy(preds: Sequence[Tokens], refs: Sequence[Tokens]) -> dict[str, float]:
    """Return the share of outputs with a correct day, month and year each."""
    _check(preds, refs)
    right = Counter[str]()
    for p, r in zip(preds, refs, strict=True):
        got, want = fields(p), fields(r)
        if got is None or want is None:
            continue
        for name, a, b in zip(FIELDS, got, want, strict=True):
            right[name] += a == b
    return {name: right[name] / len(refs) for name in FIELDS}


def field_errors(preds: Sequence[Tokens], refs: Sequence[Tokens]) -> dict[str, int]:
    """Count the wrong outputs and, among them, each wrong field.

    Returns {"wrong", "day", "month", "year", "shape"}: an output with two wrong
    fields counts under both; one that is not `day / month / year` at all
    counts under "shape" only, since its fields cannot be told apart.
    """
    _check(preds, refs)
    counts = dict.fromkeys(("wrong", *FIELDS, "shape"), 0)
    for p, r in zip(preds, refs, strict=True):
        if list(p) == list(r):
            continue
        counts["wrong"] += 1
        got, want = fields(p), fields(r)
        if got is None or want is None:
            counts["shape"] += 1
            continue
        for name, a, b in zip(FIELDS, got, want, strict=True):
            counts[name] += a != b
    return counts


def field_confusion(
    preds: Sequence[Tokens], refs: Sequence[Tokens], field: str = "month"
) -> Counter[tuple[str, str]]:
    """Count (wanted, got) values of one field, e.g. ("Nov", "Oct"): 5.

    `got` is "?" when the output has no such field (it is not three parts, or
    the part is empty). Every output is counted, right ones on the diagonal.
    """
    _check(preds, refs)
    if field not in FIELDS:
        raise ValueError(f"field must be one of {FIELDS}, not {field!r}")
    index = FIELDS.index(field)
    counts = Counter[tuple[str, str]]()
    for p, r in zip(preds, refs, strict=True):
        want = fields(r)
        if want is None:
            raise ValueError(f"the reference {list(r)} is not day / month / year")
        got = fields(p)
        value = "".join(got[index]) if got is not None else ""
        counts["".join(want[index]), value or "?"] += 1
    return counts


def bleu(pred: Tokens, ref: Tokens, max_n: int = 4) -> float:
    """BLEU as d2l.ai defines it, with clipped n-gram matches.

    exp(min(0, 1 - len_ref / len_pred)) * prod_n p_n ** (1 / 2**n), for n up to
    min(max_n, len_pred) as d2l's code does, so a short output is scored by the
    orders it has (and pays the brevity penalty) instead of dividing by zero.
    """
    pred, ref = list(pred), list(ref)
    if not pred:
        return 0.0
    score = math.exp(min(0.0, 1 - len(ref) / len(pred)))
    for n in range(1, min(max_n, len(pred)) + 1):
        ref_grams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        pred_grams = Counter(tuple(pred[i : i + n]) for i in range(len(pred) - n + 1))
        matches = sum(min(c, ref_grams[g]) for g, c in pred_grams.items())
        score *= (matches / (len(pred) - n + 1)) ** (0.5**n)
    return score


def summarize(preds: Sequence[Tokens], refs: Sequence[Tokens]) -> dict[str, float]:
    """Return every metric for a set of outputs, as a flat dict."""
    _check(preds, refs)
    out = {
        "exact_match": exact_match(preds, refs),
        "token_accuracy": token_accuracy(preds, refs),
    }
    out.update({f"{k}_accuracy": v for k, v in field_accuracy(preds, refs).items()})
    out["bleu"] = sum(bleu(p, r) for p, r in zip(preds, refs, strict=True)) / len(refs)
    out["count"] = len(refs)
    return out


def _check(preds: Sequence[Tokens], refs: Sequence[Tokens]) -> None:
    if len(preds) != len(refs) or not refs:
        raise ValueError(f"need equal, non-zero counts: {len(preds)} vs {len(refs)}")
