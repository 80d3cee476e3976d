"""Attention forming: a probe date's attention map every N steps of a training run.

Replayed, the snapshots show the alignment form: from a blur over every input
character to each output token looking where its information is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import torch

from .config import DecodeConfig
from .data import (
    Window,
    encode_sources,
    encode_targets,
    read_input,
    source_text,
    target_tokens,
)
from .decoding import greedy
from .model import Seq2Seq
from .training import Progress, Trainer
from .vocab import Vocabulary


@dataclass(frozen=True)
class Snapshot:
    """A probe date's attention at one training step."""

    step: int
    weights: tuple[tuple[float, ...], ...]  # (target tokens, src_len), rows sum to 1
    output: str  # what the model answers, free-running, at this step

    def sharpness(self) -> float:
        """Mean over output tokens of the largest weight in the row.

        1/n for attention spread evenly over the n input characters (a blur:
        1/8 for yy-mm-dd), 1.0 when every token looks at one character only.
        """
        return sum(max(row) for row in self.weights) / len(self.weights)


class AttentionRecorder:
    """Record a probe date's attention every `every` steps of a training run.

    The weights are teacher-forced – the rows are always the right answer's 9
    tokens, so frames compare – and taken in eval mode under no_grad, which
    draws nothing from any random generator: training runs exactly as without
    the recorder. Past `max_snapshots` every other one is dropped and the
    interval doubles, so a long run stays bounded; the newest is always kept.
    `source` is the date as the model reads it: yy-mm-dd unless given (a
    model of the human task reads any of its forms).
    """

    def __init__(
        self,
        model: Seq2Seq,
        vocab: Vocabulary,
        day: dt.date,
        every: int,
        max_snapshots: int = 200,
        source: str | None = None,
    ) -> None:
        if model.cfg.attention == "none":
            raise ValueError("this model has no attention to record")
        if every < 1 or max_snapshots < 2:
            raise ValueError("every must be >= 1 and max_snapshots >= 2")
        self.model, self.vocab, self.every = model, vocab, every
        self.max_snapshots = max_snapshots
        self.source = source or source_text(day)  # how the model reads the date
        self.tokens = tuple(target_tokens(day))
        self._src = encode_sources([self.source], vocab)  # (1, src_len)
        self._tgt_in = encode_targets([day], vocab)[:, :-1]  # (1, tgt_len)
        self.snapshots: list[Snapshot] = []
        self.record(0)  # before the first step: the blur training starts from

    def __call__(self, event: Progress) -> None:
        if event.kind == "step" and event.step % self.every == 0:
            self.record(event.step)

    @torch.no_grad()
    def record(self, step: int) -> None:
        """Take a snapshot of the model as it is now."""
        was_training = self.model.training
        self.model.eval()
        try:
            _, attended = self.model(self._src, self._tgt_in)
            weights = attended.weights[0, : len(self.tokens)]  # (tokens, src_len)
            ids = greedy(self.model, self._src, DecodeConfig().max_len).ids[0]
        finally:
            self.model.train(was_training)
        output = "".join(self.vocab.decode(ids.tolist()))
        rows = tuple(tuple(row) for row in weights.tolist())
        self.snapshots.append(Snapshot(step, rows, output))
        if len(self.snapshots) > self.max_snapshots:
            self.every *= 2
            # The newest stays whatever its step: it may be the run's end.
            *older, newest = self.snapshots
            self.snapshots = [s for s in older if s.step % self.every == 0] + [newest]

    def finish(self, step: int) -> None:
        """Record the end of a run, unless its last step was just recorded."""
        if not self.snapshots or self.snapshots[-1].step != step:
            self.record(step)


def probe_recorder(trainer: Trainer, probe: str, every: int) -> AttentionRecorder:
    """Attach a recorder of `probe`'s attention to a trainer; InputError if unusable."""
    cfg = trainer.data_config
    source, day = read_input(cfg.task, probe, Window.from_config(cfg))
    recorder = AttentionRecorder(
        trainer.model, trainer.vocab, day, every, source=source
    )
    trainer.observers.append(recorder)
    return recorder
