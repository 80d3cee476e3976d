"""What the app's teaching views compute: the mechanics of seq2seq made visible.

- `exposure`: for one date, what the decoder is fed at each step under teacher
  forcing and when free-running, and where the two part – exposure bias;
  `token_accuracies` and `GapRecorder` measure it over the held-out dates.
- `walk`: one conversion step by step, with tokens the learner forces.
- `AttentionRecorder`: a probe date's attention map every N training steps,
  to replay how the alignment forms.
- `Comparison`: several attention and cell variants trained on the same data
  and seed, with curves, final metrics and where each one errs.

Everything here works through the Converter and Trainer facades; the UI only
draws what these return.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from .config import DataConfig, DecodeConfig, ModelConfig, TrainConfig
from .converter import Converter, Trainer
from .data import (
    InputError,
    Pairs,
    Window,
    check_source,
    encode_sources,
    encode_targets,
    source_text,
    target_tokens,
)
from .decoding import TraceStep, greedy
from .metrics import field_confusion, field_errors, summarize
from .model import Seq2Seq
from .training import Progress, TrainResult, evaluate_pairs
from .vocab import EOS, GO, PAD, Vocabulary

# --- exposure bias ------------------------------------------------------------


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


def checked_day(converter: Converter, text: str) -> dt.date:
    """Parse an input that has a right answer; raise InputError saying why not.

    Teacher forcing feeds the right answer, so a year outside the model's
    window – converted elsewhere with a warning – is refused here.
    """
    try:
        return check_source(text, converter.window)
    except InputError as e:
        if e.kind == "outside_window":
            raise InputError(
                e.kind, f"{e.message}. Teacher forcing needs the right answer: "
                f"choose a date from {converter.window.describe()}."
            ) from None  # fmt: skip
        raise


@torch.no_grad()
def exposure(converter: Converter, text: str) -> Exposure:
    """Decode one date teacher-forced and free-running, step by step."""
    day = checked_day(converter, text)
    vocab, model = converter.vocab, converter.model
    src = encode_sources([source_text(day)], vocab)  # (1, src_len)
    tgt = encode_targets([day], vocab)  # (1, tgt_len + 1): <GO> ... <EOS>
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    logits, _ = model(src, tgt_in)  # (1, tgt_len, vocab)
    teacher_fed = [vocab.tokens[i] for i in tgt_in[0].tolist()]
    teacher_chose = [vocab.tokens[i] for i in logits[0].argmax(-1).tolist()]
    targets = [vocab.tokens[i] for i in tgt_out[0].tolist()]
    free = converter.trace(source_text(day), top_k=1)
    steps = []
    for t in range(max(len(targets), len(free))):
        teacher = t < len(targets)
        steps.append(
            ExposureStep(
                target=targets[t] if teacher else None,
                teacher_fed=teacher_fed[t] if teacher else None,
                teacher_chose=teacher_chose[t] if teacher else None,
                free_fed=free[t].fed if t < len(free) else None,
                free_chose=free[t].chosen if t < len(free) else None,
            )
        )
    return Exposure(source_text(day), tuple(steps))


def token_accuracies(model: Seq2Seq, pairs: Pairs, max_len: int) -> dict[str, float]:
    """Share of target tokens right, teacher-forced and free-running: only
    token accuracy shows exposure bias (`training.evaluate_pairs` says why)."""
    return _gap(evaluate_pairs(model, pairs, max_len))


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


def wrong_dates(converter: Converter, days: Iterable[dt.date], limit: int) -> list[str]:
    """Return up to `limit` inputs, in the order given, the model converts wrongly."""
    days = list(days)
    preds = converter.predict_days(days)
    wrong = [d for d, p in zip(days, preds, strict=True) if p != target_tokens(d)]
    return [source_text(d) for d in wrong[:limit]]


# --- step-through with forced tokens -----------------------------------------


def forceable_tokens(vocab: Vocabulary) -> list[str]:
    """Tokens a learner may force: anything the decoder can emit."""
    return [t for t in vocab.tokens if t not in (PAD, GO)]


@dataclass(frozen=True)
class Walk:
    """One conversion decoded step by step, some tokens forced."""

    input: str
    steps: tuple[TraceStep, ...]
    expected: tuple[str, ...] | None  # the right tokens then <EOS>; None if unknown

    def verdicts(self) -> list[str]:
        """Per step: "forced", "right", "wrong", or "unknown" with no right answer."""
        out = []
        for t, step in enumerate(self.steps):
            if step.forced:
                out.append("forced")
            elif self.expected is None:
                out.append("unknown")
            else:
                right = t < len(self.expected) and step.chosen == self.expected[t]
                out.append("right" if right else "wrong")
        return out

    def after_forcing(self) -> tuple[int, int] | None:
        """Right and total steps the model chose itself after the first forced one.

        None when nothing was forced or there is no right answer. Position by
        position against the right answer: whether the model recovers.
        """
        verdicts = self.verdicts()
        if "forced" not in verdicts or self.expected is None:
            return None
        after = [v for v in verdicts[verdicts.index("forced") + 1 :] if v != "forced"]
        return after.count("right"), len(after)


def walk(
    converter: Converter, text: str, forced: Mapping[int, str], top_k: int = 5
) -> Walk:
    """Decode one input greedily, emitting `forced[t]` at step t instead.

    Raises InputError for an input that cannot be converted and ValueError for
    a forced token the decoder cannot emit or a step past `max_len`. A forced
    step after the output has ended (at <EOS>) changes nothing.
    """
    vocab, max_len = converter.vocab, converter.decode_config.max_len
    allowed = forceable_tokens(vocab)
    force = {}
    for step, token in forced.items():
        if not 0 <= step < max_len:
            raise ValueError(f"step {step} is not in 0..{max_len - 1}")
        if token not in allowed:
            raise ValueError(f"{token!r} cannot be emitted; choose one of {allowed}")
        force[step] = vocab.encode([token])[0]
    steps = converter.trace(text, top_k=top_k, force=force)
    try:
        day = check_source(text, converter.window)
        expected = (*target_tokens(day), EOS)
    except InputError:  # outside the window: the trace ran, the answer is unknown
        expected = None
    return Walk(text.strip(), tuple(steps), expected)


# --- attention forming --------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A probe date's attention at one training step."""

    step: int
    weights: tuple[tuple[float, ...], ...]  # (target tokens, src_len), rows sum to 1
    output: str  # what the model answers, free-running, at this step

    def sharpness(self) -> float:
        """Mean over output tokens of the largest weight in the row.

        1/8 for attention spread evenly over the 8 input characters (a blur),
        1.0 when every token looks at one character only.
        """
        return sum(max(row) for row in self.weights) / len(self.weights)


class AttentionRecorder:
    """Record a probe date's attention every `every` steps of a training run.

    The weights are teacher-forced – the rows are always the right answer's 9
    tokens, so frames compare – and taken in eval mode under no_grad, which
    draws nothing from any random generator: training runs exactly as without
    the recorder. Past `max_snapshots` every other one is dropped and the
    interval doubles, so a long run stays bounded; the newest is always kept.
    """

    def __init__(
        self,
        model: Seq2Seq,
        vocab: Vocabulary,
        day: dt.date,
        every: int,
        max_snapshots: int = 200,
    ) -> None:
        if model.cfg.attention == "none":
            raise ValueError("this model has no attention to record")
        if every < 1 or max_snapshots < 2:
            raise ValueError("every must be >= 1 and max_snapshots >= 2")
        self.model, self.vocab, self.every = model, vocab, every
        self.max_snapshots = max_snapshots
        self.source = source_text(day)
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
    day = check_source(probe, Window.from_config(trainer.data_config))
    recorder = AttentionRecorder(trainer.model, trainer.vocab, day, every)
    trainer.observers.append(recorder)
    return recorder


# --- comparing runs -----------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """What differs between the compared runs: the attention and the cell."""

    attention: str
    cell: str

    @property
    def name(self) -> str:
        return f"{self.attention} · {self.cell.upper()}"


@dataclass(frozen=True)
class RunReport:
    """How one variant trained, and how it does on the held-out dates."""

    variant: Variant
    stop_reason: str  # TrainResult's (epochs | target | requested | diverged) or
    # "interrupted" when a callback raised
    epochs: int  # epochs completed
    steps: int
    seconds: float  # the whole run, held-out evaluations included
    reached: dict[str, float] | None  # first point at 100%: step, epoch, seconds
    metrics: dict[str, float]  # metrics.summarize over the held-out dates
    errors: dict[str, int]  # metrics.field_errors
    month_confusion: Counter[tuple[str, str]]  # (right month, output's month)

    @property
    def perfect(self) -> bool:
        return self.metrics["exact_match"] == 1.0


class Comparison:
    """Train variants one after another on the same data, seed and settings.

    `curves` and `reports` fill as it goes. A stop request ends the current
    variant early (it is reported) and skips the rest; so does an exception
    from a callback (the variant is reported as "interrupted" and the exception
    goes on). `run` again trains the variants not reported yet.
    """

    def __init__(
        self,
        variants: Iterable[Variant],
        data_config: DataConfig,
        train_config: TrainConfig,
        model_config: ModelConfig | None = None,
    ) -> None:
        self.variants = list(variants)
        if not self.variants:
            raise ValueError("choose at least one variant to train")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("each variant may be trained once")
        if data_config.held_out_size < 1:
            raise ValueError("comparing runs needs held-out dates to score them on")
        base = model_config or ModelConfig()
        # Built now, so an impossible variant is refused before anything trains.
        self.model_configs = {
            v: dataclasses.replace(base, attention=v.attention, cell=v.cell)
            for v in self.variants
        }
        self.data_config, self.train_config = data_config, train_config
        self.curves: dict[Variant, list[dict[str, float]]] = {}
        self.reports: list[RunReport] = []
        self.done = threading.Event()  # set when `run` has returned or raised

    def run(
        self,
        on_progress: Callable[[Variant, Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        eval_every: int = 0,
    ) -> list[RunReport]:
        """Train every variant not yet reported; return all the reports."""
        self.done.clear()
        try:
            for variant in self.variants[len(self.reports) :]:
                trainer = Trainer(
                    self.data_config, self.model_configs[variant], self.train_config
                )
                curve = self.curves.setdefault(variant, [])
                trainer.observers.append(lambda e, curve=curve: _add_point(curve, e))
                show = None
                if on_progress is not None:
                    show = lambda e, v=variant: on_progress(v, e)  # noqa: E731
                start = time.perf_counter()
                try:
                    result = trainer.run(show, should_stop, eval_every)
                except BaseException:
                    # A callback stopped the run (a click stops the app's script
                    # that way): report what this variant learnt, then go on up.
                    trainer.result.stop_reason = "interrupted"
                    seconds = time.perf_counter() - start
                    report = _report(variant, trainer, trainer.result, curve, seconds)
                    self.reports.append(report)
                    raise
                seconds = time.perf_counter() - start
                self.reports.append(_report(variant, trainer, result, curve, seconds))
                if result.stop_reason == "requested":
                    break
        finally:
            self.done.set()
        return self.reports


def _add_point(curve: list[dict[str, float]], event: Progress) -> None:
    if not event.metrics:
        return
    point = {
        "step": event.step,
        "epoch": event.epoch,
        "seconds": event.seconds,
        "exact_match": event.metrics["held_out_exact_match"],
        "token_accuracy": event.metrics["held_out_token_accuracy"],
    }
    if curve and curve[-1]["step"] == event.step:  # an epoch's end after an eval
        curve[-1] = point
    else:
        curve.append(point)


def _report(
    variant: Variant,
    trainer: Trainer,
    result: TrainResult,
    curve: list[dict[str, float]],
    seconds: float,
) -> RunReport:
    days = trainer.held_out_pairs.days
    preds = Converter(trainer.checkpoint()).predict_days(days)
    refs = [target_tokens(d) for d in days]
    first = next((p for p in curve if p["exact_match"] >= 1.0), None)
    return RunReport(
        variant=variant,
        stop_reason=result.stop_reason,
        epochs=len(result.history),
        steps=trainer.steps,
        seconds=seconds,
        reached={k: first[k] for k in ("step", "epoch", "seconds")} if first else None,
        metrics=summarize(preds, refs),
        errors=field_errors(preds, refs),
        month_confusion=field_confusion(preds, refs, "month"),
    )
