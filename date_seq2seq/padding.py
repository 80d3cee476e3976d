"""What padding does to a model: attention on <PAD>, and answers that change with it.

Only the human task pads: its inputs run from 8 to 28 characters, so a batch
is right-padded to its longest. With the attention mask (the default) padded
positions get weight 0 and an answer is the same however much padding its
batch had. Without it (`ModelConfig(mask_attention=False)`, the d2l exercise)
the softmax spreads some weight over the padding, and the same date can get
a different answer padded to the longest input than padded to its own length.
This measures both, form by form, with the plain decoding loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .converter import Converter
from .data import encode_sources, target_tokens
from .decoding import greedy
from .forms import FORMS, human_source
from .vocab import EOS_ID, PAD_ID

CHUNK = 2048  # inputs decoded at once


@dataclass(frozen=True)
class PaddingEffect:
    """One form's inputs, decoded padded to a common width and padded not at all."""

    form: str
    count: int  # dates
    width: int  # the common width every input was padded to
    pad_attention: float  # mean share of an answer token's attention on <PAD>
    right_padded: int  # answers right, padded to `width`
    right_alone: int  # answers right, each input padded only to its own length


def padding_effect(
    converter: Converter, days: Sequence[dt.date], width: int | None = None
) -> list[PaddingEffect]:
    """For each human form: attention on padding, and exact answers padded to
    `width` (default: the longest input of any form) against unpadded."""
    written = {f.name: [human_source(d, f) for d in days] for f in FORMS}
    width = width or max(len(s) for texts in written.values() for s in texts)
    answers = [target_tokens(d) for d in days]
    effects = []
    for form, texts in written.items():
        share, right_padded = _decode_padded(converter, texts, answers, width)
        right_alone = _right_unpadded(converter, texts, answers)
        effects.append(
            PaddingEffect(form, len(texts), width, share, right_padded, right_alone)
        )
    return effects


def _decode_padded(
    converter: Converter, texts: list[str], answers: list[list[str]], width: int
) -> tuple[float, int]:
    """(mean attention share on <PAD>, answers right), every input padded to width."""
    mass = steps = right = 0.0
    for i in range(0, len(texts), CHUNK):
        src = encode_sources(texts[i : i + CHUNK], converter.vocab)
        src = F.pad(src, (0, width - src.size(1)), value=PAD_ID)
        out = greedy(converter.model, src, converter.decode_config.max_len)
        right += _count_right(converter, out.ids, answers[i : i + CHUNK])
        if out.attention is not None:
            is_eos = (out.ids == EOS_ID).long()
            live = (is_eos.cumsum(1) - is_eos) == 0  # up to and including <EOS>
            on_pad = (out.attention * (src == PAD_ID)[:, None, :]).sum(-1)
            mass += float(on_pad[live].sum())
            steps += float(live.sum())
    return mass / max(steps, 1.0), int(right)


def _right_unpadded(
    converter: Converter, texts: list[str], answers: list[list[str]]
) -> int:
    """Answers right when inputs are decoded in groups of one length: no padding."""
    right = 0
    for length in sorted({len(t) for t in texts}):
        rows = [i for i, t in enumerate(texts) if len(t) == length]
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i : i + CHUNK]
            src = encode_sources([texts[r] for r in chunk], converter.vocab)
            out = greedy(converter.model, src, converter.decode_config.max_len)
            right += _count_right(converter, out.ids, [answers[r] for r in chunk])
    return right


def _count_right(
    converter: Converter, ids: torch.Tensor, answers: list[list[str]]
) -> int:
    decoded = [converter.vocab.decode(row) for row in ids.tolist()]
    return sum(got == want for got, want in zip(decoded, answers, strict=True))
