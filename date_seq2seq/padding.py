"""What padding does to a model: attention on <PAD>, and answers that change with it.

Only the human task pads: its inputs run from 8 to 28 characters, so a batch
is right-padded to its longest. With the attention mask (the default) padded
positions get weight 0 and an answer is the same however much padding its
batch had. Without it (`ModelConfig(mask_attention=False)`, the d2l exercise)
the softmax spreads some weight over the padding, and the same date can get
a different answer padded to the longest input than padded to its own length.
This measures both, form by form, with the plain decoding loop
(`padding_effect`, which also lists the inputs whose answer moved), and shows
one date at any padding (`padded`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .converter import Converter
from .data import encode_sources, read_input, target_tokens
from .decoding import Decoded, greedy
from .forms import FORMS, human_source
from .vocab import EOS_ID, PAD_ID

CHUNK = 2048  # inputs decoded at once
EVERY_NTH_DATE = 97  # a sample of the window to measure on: 230 dates
PAD_SHOWN = "·"  # how a <PAD> column is labelled in a heatmap


@dataclass(frozen=True)
class Padded:
    """One input decoded padded to `width`: its answer and where it looked."""

    source: str  # the input as the model reads it
    width: int  # its characters and the <PAD> after them
    tokens: tuple[str, ...]  # the answer, up to <EOS>
    attention: tuple[tuple[float, ...], ...] | None  # (tokens, width); None: none
    pad_attention: float  # mean share of a step's attention on <PAD>, <EOS> included
    right: bool  # whether the answer is the calendar's

    @property
    def columns(self) -> tuple[str, ...]:
        """A heatmap's column labels: the characters, then PAD_SHOWN per <PAD>."""
        return (*self.source, *[PAD_SHOWN] * (self.width - len(self.source)))


def padded(converter: Converter, text: str, width: int) -> Padded:
    """Decode one input right-padded with <PAD> to `width` characters (or to
    its own length, if longer), as a batch with a longer input pads it.
    InputError if it cannot be read."""
    source, day = read_input(converter.task, text, converter.window)
    width = max(width, len(source))
    (tokens,), share, out = _decode_padded(converter, [source], width)
    attention = None
    if out.attention is not None:
        attention = tuple(map(tuple, out.attention[0, : len(tokens)].tolist()))
    right = tokens == target_tokens(day)
    return Padded(source, width, tuple(tokens), attention, share, right)


@dataclass(frozen=True)
class PaddingEffect:
    """One form's inputs, decoded padded to a common width and padded not at all."""

    form: str
    count: int  # dates
    width: int  # the common width every input was padded to
    pad_attention: float  # mean share of a step's attention on <PAD>, <EOS> included
    right_padded: int  # answers right, padded to `width`
    right_alone: int  # answers right, each input padded only to its own length
    changed: tuple[str, ...]  # the inputs whose answer differs between the two


def longest_input(days: Sequence[dt.date]) -> int:
    """The length of the longest input any form writes for these dates."""
    return max(len(human_source(d, f)) for d in days for f in FORMS)


def padding_effect(
    converter: Converter, days: Sequence[dt.date], width: int | None = None
) -> list[PaddingEffect]:
    """For each human form: attention on padding, and exact answers padded to
    `width` (default: the longest input of any form) against unpadded."""
    written = {f.name: [human_source(d, f) for d in days] for f in FORMS}
    longest = longest_input(days)
    if width is not None and width < longest:  # padding cannot shorten an input
        raise ValueError(f"width {width} is less than the longest input, {longest}")
    width = width or longest
    answers = [target_tokens(d) for d in days]
    effects = []
    for form, texts in written.items():
        got_padded, share, _ = _decode_padded(converter, texts, width)
        got_alone = _decode_unpadded(converter, texts)
        both = zip(texts, got_padded, got_alone, strict=True)
        effects.append(
            PaddingEffect(
                form, len(texts), width, share,
                right_padded=sum(map(list.__eq__, got_padded, answers)),
                right_alone=sum(map(list.__eq__, got_alone, answers)),
                changed=tuple(text for text, a, b in both if a != b),
            )
        )  # fmt: skip
    return effects


def _decode_padded(
    converter: Converter, texts: Sequence[str], width: int
) -> tuple[list[list[str]], float, Decoded | None]:
    """Every input padded to `width`: (answers, mean share of a step's attention
    on <PAD> over the steps up to and including <EOS>, the last chunk decoded)."""
    mass = steps = 0.0
    answers, out = [], None
    for i in range(0, len(texts), CHUNK):
        src = encode_sources(texts[i : i + CHUNK], converter.vocab)
        src = F.pad(src, (0, width - src.size(1)), value=PAD_ID)
        out = greedy(converter.model, src, converter.decode_config.max_len)
        answers += _answers(converter, out.ids)
        if out.attention is not None:
            is_eos = (out.ids == EOS_ID).long()
            live = (is_eos.cumsum(1) - is_eos) == 0  # up to and including <EOS>
            on_pad = (out.attention * (src == PAD_ID)[:, None, :]).sum(-1)
            mass += float(on_pad[live].sum())
            steps += float(live.sum())
    return answers, mass / max(steps, 1.0), out


def _decode_unpadded(converter: Converter, texts: Sequence[str]) -> list[list[str]]:
    """Answers when inputs are decoded in groups of one length: no padding."""
    answers: list[list[str]] = [[] for _ in texts]
    for length in sorted({len(t) for t in texts}):
        rows = [i for i, t in enumerate(texts) if len(t) == length]
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i : i + CHUNK]
            src = encode_sources([texts[r] for r in chunk], converter.vocab)
            out = greedy(converter.model, src, converter.decode_config.max_len)
            for r, answer in zip(chunk, _answers(converter, out.ids), strict=True):
                answers[r] = answer
    return answers


def _answers(converter: Converter, ids: torch.Tensor) -> list[list[str]]:
    return [converter.vocab.decode(row) for row in ids.tolist()]
