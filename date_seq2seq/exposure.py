"""Exposure bias, made visible: the decoder fed the truth against fed its own output.

- `exposure`: for one date, what the decoder is fed at each step under teacher
  forcing and when free-running, and where the two part;
- `token_accuracies` and `GapRecorder`: the same over the held-out dates, as
  the share of tokens right each way, during training;
- `wrong_inputs`: inputs a model gets wrong, to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .converter import Converter
from .data import DateDataset, InputError, Pair, read_input, target_tokens
from .model import FreeRunning, Seq2Seq, TeacherForcing, unroll
from .training import Progress, Trainer, evaluate_held_out
from .vocab import EOS, GO


@dataclass(frozen=True)
class ExposureStep:
    """One decoder step of one date, teacher-forced beside free-running.

    A field is None where that run has no such step: the target has 10 steps
    (9 tokens and <EOS>), a free run ends at its own <EOS> or at max_len.
    """

    target: str | None  # the right token to emit here
    teacher_fed: str | None  # teacher forcing feeds the TRUE previous token
    teacher_chose: str | None  # the model's argmax given it
    free_fed: str | None  # free-running feeds its OWN previous output
    free_chose: str | None

    @property
    def diverged(self) -> bool:
        """Whether the two runs feed the decoder different inputs here."""
        return self.free_fed != self.teacher_fed


@dataclass(frozen=True)
class Exposure:
    """Teacher-forced against free-running decoding of one date."""

    input: str
    steps: tuple[ExposureStep, ...]

    @property
    def first_divergence(self) -> int | None:
        """The first step whose inputs differ (0-based), None if they never do."""
        return next((t for t, s in enumerate(self.steps) if s.diverged), None)

    def right(self, run: str) -> int:
        """Count the steps where `run` ("teacher" or "free") emitted the target."""
        chose = {"teacher": "teacher_chose", "free": "free_chose"}[run]
        return sum(s.target is not None and getattr(s, chose) == s.target
                   for s in self.steps)  # fmt: skip


def checked_pair(converter: Converter, text: str) -> Pair:
    """Read an input that has a right answer (the model's reading and its
    date); raise InputError saying why not.

    Teacher forcing feeds the right answer, so a year outside the model's
    window – converted elsewhere with a warning – is refused here.
    """
    try:
        return read_input(converter.task, text, converter.window)
    except InputError as e:
        if e.kind == "outside_window":
            raise InputError(
                e.kind, f"{e.message}. Teacher forcing needs the right answer: "
                f"choose a date from {converter.window.describe()}."
            ) from None  # fmt: skip
        raise


@torch.no_grad()
def exposure(converter: Converter, text: str) -> Exposure:
    """Decode one date teacher-forced and free-running, step by step.

    The same loop twice, with two feeds: the truth, and the model's own output.
    """
    source, day = checked_pair(converter, text)
    vocab, model = converter.vocab, converter.model
    pair = DateDataset.from_pairs([(source, day)], vocab)
    src, tgt_out = pair.src, pair.tgt[:, 1:]  # (1, src_len), (1, tgt_len)
    teacher = unroll(model, src, TeacherForcing(tgt_out))
    free = unroll(model, src, FreeRunning(converter.decode_config.max_len))

    def tokens(ids: torch.Tensor) -> list[str]:
        return [vocab.tokens[i] for i in ids.tolist()]

    targets = tokens(tgt_out[0])
    teacher_chose = tokens(teacher.logits[0].argmax(-1))
    free_chose = tokens(free.tokens[0])
    if EOS in free_chose:  # after its <EOS> a free run has ended
        free_chose = free_chose[: free_chose.index(EOS) + 1]
    steps = []
    for t in range(max(len(targets), len(free_chose))):
        in_target, in_free = t < len(targets), t < len(free_chose)
        steps.append(
            ExposureStep(
                target=targets[t] if in_target else None,
                teacher_fed=([GO, *targets][t]) if in_target else None,
                teacher_chose=teacher_chose[t] if in_target else None,
                free_fed=([GO, *free_chose][t]) if in_free else None,
                free_chose=free_chose[t] if in_free else None,
            )
        )
    return Exposure(source, tuple(steps))


def token_accuracies(
    model: Seq2Seq, held_out: DateDataset, max_len: int
) -> dict[str, float]:
    """Share of target tokens right, teacher-forced and free-running: only
    token accuracy shows exposure bias (`training.evaluate_held_out` says why)."""
    return _gap(evaluate_held_out(model, held_out, max_len))


def _gap(metrics: dict[str, float]) -> dict[str, float]:
    return {
        "teacher_forced": metrics["held_out_teacher_forced_token_accuracy"],
        "free_running": metrics["held_out_token_accuracy"],
    }


class GapRecorder:
    """Collect held-out token accuracy both ways at each evaluation of a run.

    The run's own evaluation measures it: watching adds no work and changes
    nothing in the run.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.points: list[dict[str, float]] = []  # step, teacher_forced, free_running
        trainer.observers.append(self)

    def __call__(self, event: Progress) -> None:
        if not event.metrics:
            return
        if self.points and self.points[-1]["step"] == event.step:
            return  # an epoch's end right after an evaluation: measured already
        self.points.append({"step": event.step, **_gap(event.metrics)})


def wrong_inputs(converter: Converter, pairs: Sequence[Pair], limit: int) -> list[str]:
    """Return up to `limit` inputs, in the order given, the model converts wrongly."""
    preds = converter.predict([text for text, _ in pairs])
    wrong = [t for (t, d), p in zip(pairs, preds, strict=True) if p != target_tokens(d)]
    return wrong[:limit]
