"""The d2l seq2seq chapter's exercises, each a comparison to run and read.

An exercise is a set of variants trained on the same dates with the same seed
(comparison.py), what to look at, and an observation worded from the run's
own numbers – never a sentence written before the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .comparison import Comparison, RunReport, Variant
from .config import DataConfig, TrainConfig

# Small enough to run in well under a minute a variant on 2 cores.
DATA = DataConfig(train_size=2000, held_out_size=500)
TRAIN = TrainConfig(epochs=6)


@dataclass(frozen=True)
class Exercise:
    """One exercise: the question, what to look at, the variants, the reading."""

    key: str
    question: str  # as the chapter asks it
    look_at: str  # what to look at, in a sentence or two
    variants: tuple[Variant, ...]
    # A first sentence for this exercise, from the reports; the ranking follows.
    lead: Callable[[Sequence[RunReport]], str] | None = None
    data: DataConfig = DATA
    train: TrainConfig = TRAIN

    def comparison(self) -> Comparison:
        return Comparison(self.variants, self.data, self.train)

    def observe(self, reports: Sequence[RunReport]) -> str:
        """What this run showed, in words built from its numbers."""
        said = self.lead(reports) if self.lead is not None else ""
        return (said + " " if said else "") + ranking(reports)


def _reached(report: RunReport) -> str:
    if report.reached is None:
        exact = report.metrics["exact_match"]
        return f"{report.variant.name} never got there ({exact:.1%})"
    step = int(report.reached["step"])
    return f"{report.variant.name} at step {step:,} ({report.reached['seconds']:.1f} s)"


def ranking(reports: Sequence[RunReport]) -> str:
    """Who reached 100% held-out exact match first, by steps, and who did not."""
    done = sorted((r for r in reports if r.reached), key=lambda r: r.reached["step"])
    missed = [r for r in reports if not r.reached]
    parts = []
    if done:
        parts.append("100% held-out exact match: " + "; ".join(map(_reached, done)))
    if missed:
        parts.append("; ".join(map(_reached, missed)))
    return ". ".join(parts) + "." if parts else "Nothing was trained."


def _feeding_lead(reports: Sequence[RunReport]) -> str:
    by_name = {r.variant.name: r for r in reports}
    forced, own = by_name.get("teacher forcing"), by_name.get("own predictions")
    if forced is None or own is None:
        return ""
    a, b = own.metrics["exact_match"], forced.metrics["exact_match"]
    if a == b:
        return f"Fed its own predictions it ended as teacher forcing did ({a:.1%})."
    verdict = "worse" if a < b else "better"
    return (
        f"Fed its own predictions from the first step, it ended {verdict} than "
        f"teacher forcing: {a:.1%} against {b:.1%} held-out exact match."
    )


EXERCISES = (
    Exercise(
        "tune",
        "Adjust the hyperparameters to improve the results.",
        "Three learning rates × two hidden sizes. Look at how many steps each "
        "needs to 100%, and which learning rate is too slow or too fast.",
        tuple(
            Variant(
                "dot",
                "lstm",
                (("encoder_hidden", h), ("decoder_hidden", h)),
                (("lr", lr),),
                f"lr {lr:g}, hidden {h}",
            )  # fmt: skip
            for lr in (0.003, 0.01, 0.03)
            for h in (16, 32)
        ),
    ),
    Exercise(
        "bridge",
        "Use an encoder and a decoder of different sizes or layer counts.",
        "The decoder starts from the encoder's final state: of another size it "
        "goes through a learnt bridge. Look at whether the bridge slows learning.",
        (
            Variant("general", "lstm", label="encoder 32 → decoder 32"),
            Variant(
                "general",
                "lstm",
                (("encoder_hidden", 16),),
                label="encoder 16 → decoder 32 (bridged)",
            ),  # fmt: skip
            Variant(
                "general",
                "lstm",
                (("encoder_hidden", 64),),
                label="encoder 64 → decoder 32 (bridged)",
            ),  # fmt: skip
            Variant("general", "lstm", (("num_layers", 2),), label="2 layers each"),
        ),
    ),
    Exercise(
        "feeding",
        "Train without teacher forcing: feed the model its own predictions.",
        "Teacher forcing feeds the true previous token; scheduled sampling "
        "flips a coin per token; p = 1 always feeds the model's own guess. Look "
        "at how long the own-predictions run takes to start learning.",
        (
            Variant("dot", "lstm", label="teacher forcing"),
            Variant(
                "dot",
                "lstm",
                train=(("sampling_prob", 0.25),),
                label="scheduled sampling, p 0.25",
            ),  # fmt: skip
            Variant(
                "dot", "lstm", train=(("sampling_prob", 1.0),), label="own predictions"
            ),  # fmt: skip
        ),
        _feeding_lead,
    ),
    Exercise(
        "cells",
        "Replace the LSTM with a GRU.",
        "A GRU has three gates to the LSTM's four and no cell state. Look at "
        "the steps to 100% and the time each takes.",
        tuple(Variant(a, c) for a in ("dot", "general") for c in ("lstm", "gru")),
    ),
)
