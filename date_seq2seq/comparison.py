"""Comparing runs: attention and cell variants trained on the same data and seed.

Each variant's curve, final metrics on the held-out dates, and where it errs
(which field, and which month it writes for which).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .checkpoint import Checkpoint
from .config import DataConfig, ModelConfig, TrainConfig
from .converter import Converter
from .data import target_tokens, task_vocabulary
from .metrics import field_confusion, field_errors, summarize
from .training import Progress, Trainer, TrainResult


@dataclass(frozen=True)
class Variant:
    """What differs between the compared runs: the attention and the cell, and
    for an exercise any other model or training setting."""

    attention: str
    cell: str
    model: tuple[tuple[str, object], ...] = ()  # other ModelConfig fields, set so
    train: tuple[tuple[str, object], ...] = ()  # TrainConfig fields, set so
    label: str = ""  # what to call it, if not "attention · CELL"

    @property
    def name(self) -> str:
        return self.label or f"{self.attention} · {self.cell.upper()}"


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
        # The base model reads the task's vocabulary unless one is given.
        vocab_size = len(task_vocabulary(data_config.task))
        base = model_config or ModelConfig(vocab_size=vocab_size)
        # Built now, so an impossible variant is refused before anything trains.
        self.model_configs = {
            v: dataclasses.replace(
                base, attention=v.attention, cell=v.cell, **dict(v.model)
            )
            for v in self.variants
        }
        self.train_configs = {
            v: dataclasses.replace(train_config, **dict(v.train)) for v in self.variants
        }
        self.data_config, self.train_config = data_config, train_config
        self.curves: dict[Variant, list[dict[str, float]]] = {}
        self.reports: list[RunReport] = []
        self.checkpoints: dict[Variant, Checkpoint] = {}  # each trained model
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
                    self.data_config,
                    self.model_configs[variant],
                    self.train_configs[variant],
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
                self.checkpoints[variant] = trainer.checkpoint()
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
    held_out = trainer.held_out_set
    preds = Converter(trainer.checkpoint()).predict(held_out.sources)
    refs = [target_tokens(d) for d in held_out.days]
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
