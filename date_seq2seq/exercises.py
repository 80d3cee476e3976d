"""The d2l seq2seq chapter's exercises, each a comparison to run and read.

An exercise is a set of variants trained on the same dates with the same seed
(comparison.py), what to look at, and an observation worded from the run's
own numbers – never a sentence written before the run.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .comparison import Comparison, RunReport, Variant
from .config import DataConfig, ModelConfig, TrainConfig
from .converter import Converter
from .data import DateDataset
from .model import Seq2Seq
from .padding import EVERY_NTH_DATE, PaddingEffect, padded, padding_effect
from .training import default_configs, masked_cross_entropy

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
    # A first sentence for this exercise, from the run; the ranking follows.
    lead: Callable[[Comparison], str] | None = None
    data: DataConfig = DATA
    train: TrainConfig = TRAIN
    model: ModelConfig | None = None  # what the variants change it from

    def comparison(self) -> Comparison:
        return Comparison(self.variants, self.data, self.train, self.model)

    def observe(self, comparison: Comparison) -> str:
        """What this run showed, in words built from its numbers."""
        said = self.lead(comparison) if self.lead is not None else ""
        return (said + " " if said else "") + ranking(comparison.reports)


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


def _feeding_lead(comparison: Comparison) -> str:
    by_name = {r.variant.name: r for r in comparison.reports}
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


def _masks_lead(comparison: Comparison) -> str:
    """What the masks did: attention on <PAD>, answers under two paddings."""
    models = {v.name: c for v, c in comparison.checkpoints.items()}
    said = []
    if "masked" in models and "no attention mask" in models:
        converters = {name: Converter(models[name])
                      for name in ("no attention mask", "masked")}  # fmt: skip
        days = converters["masked"].window.dates()[::EVERY_NTH_DATE]
        for name, converter in converters.items():
            effects = padding_effect(converter, days)
            if name == "no attention mask":
                example = _one_changed(converter, effects)
            share = sum(e.pad_attention for e in effects) / len(effects)
            most = max(effects, key=lambda e: e.pad_attention)
            right_padded = sum(e.right_padded for e in effects)
            right_alone = sum(e.right_alone for e in effects)
            count = sum(e.count for e in effects)
            said.append(
                f"{name.capitalize()}: {share:.1%} of the attention on <PAD> "
                f"(most in {most.form}, {most.pad_attention:.1%}); {right_padded:,} "
                f"of {count:,} answers right padded to {effects[0].width} "
                f"characters, {right_alone:,} padded only to their own length."
            )
        said.append(example)
    if "masked" in models and "no loss mask" in models:
        same = models["masked"].fingerprint == models["no loss mask"].fingerprint
        said.append(
            "Without the loss mask the weights came out "
            + (
                "identical, bit for bit: every target is 11 tokens, no <PAD> to drop."
                if same
                else "different."
            )
        )
    return " ".join(said)


def _one_changed(unmasked: Converter, effects: Sequence[PaddingEffect]) -> str:
    """One input whose answer moved with its padding, both answers, if any did."""
    found = [text for e in effects for text in e.changed]
    if not found:
        return "Without the attention mask, no answer moved with its padding."
    width = effects[0].width
    alone, far = padded(unmasked, found[0], 0), padded(unmasked, found[0], width)
    return (
        f"Without the attention mask, {found[0]!r} became {''.join(alone.tokens)} "
        f"padded to its own length, {''.join(far.tokens)} padded to {width}."
    )


def _output_lead(comparison: Comparison) -> str:
    """The cost of a training step beside where each output layer got to."""
    src, tgt = DateDataset.split_config(comparison.data_config)[0][list(range(32))]
    parts = []
    for report in comparison.reports:
        cost = step_milliseconds(comparison.model_configs[report.variant], src, tgt)
        exact = report.metrics["exact_match"]
        parts.append(
            f"{report.variant.name} {cost:.1f} ms a step, {exact:.1%} held-out"
        )
    return (
        "A training step (32 dates, forward and backward) and where each ended: "
        + "; ".join(parts)
        + ". Input feeding needs each step's context before its cell runs, so its "
        "teacher-forced steps cannot be fused into one call."
    )


def step_milliseconds(cfg: ModelConfig, src: torch.Tensor, tgt: torch.Tensor) -> float:
    """The median time of a teacher-forced training step of a fresh model."""
    model = Seq2Seq(cfg, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(12):
        started = time.perf_counter()
        logits, _ = model(src, tgt[:, :-1])
        masked_cross_entropy(logits, tgt[:, 1:])[0].backward()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[2:])  # the first ones warm up


# The default human model's model and schedule, on a fifth of its data.
_HUMAN_DATA, HUMAN_MODEL, HUMAN_TRAIN = default_configs("human")
HUMAN = dataclasses.replace(_HUMAN_DATA, train_size=20_000, held_out_size=500)


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
            )
            for lr in (0.003, 0.01, 0.03)
            for h in (16, 32)
        ),
    ),
    Exercise(
        "masks",
        "Train without the masks: in attention, and in the loss.",
        "Dates as people write them run from 8 to 28 characters, so a batch is "
        "padded. Without the attention mask the softmax weighs <PAD> too: look at "
        "how much, and whether an answer changes with the padding around it.",
        (
            Variant("dot", "lstm", label="masked"),
            Variant(
                "dot", "lstm", (("mask_attention", False),), label="no attention mask"
            ),
            Variant("dot", "lstm", train=(("mask_loss", False),), label="no loss mask"),
        ),
        _masks_lead,
        data=HUMAN,
        train=HUMAN_TRAIN,
        model=HUMAN_MODEL,
    ),
    Exercise(
        "bridge",
        "Use an encoder and a decoder of different sizes or layer counts.",
        "The decoder starts from the encoder's final state: of another size it "
        "goes through a learnt bridge. Look at whether the bridge slows learning.",
        (
            Variant("general", "lstm", label="encoder 32 → decoder 32"),
            *(
                Variant(
                    "general",
                    "lstm",
                    (("encoder_hidden", size),),
                    label=f"encoder {size} → decoder 32 (bridged)",
                )
                for size in (16, 64)
            ),
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
            ),
            Variant(
                "dot", "lstm", train=(("sampling_prob", 1.0),), label="own predictions"
            ),
        ),
        _feeding_lead,
    ),
    Exercise(
        "output",
        "Try other output layers: without the context, and with input feeding.",
        "Ours reads [c_t ; h_t]. Reading h_t alone, the context never reaches "
        "the output; with input feeding (Bahdanau's) it goes into the cell with "
        "the token. Look at the accuracy and at the cost of a step.",
        (
            Variant("dot", "lstm", label="[c; h] (ours)"),
            Variant("dot", "lstm", (("output", "hidden"),), label="h only"),
            Variant("dot", "lstm", (("output", "input"),), label="input feeding"),
        ),
        _output_lead,
    ),
    Exercise(
        "cells",
        "Replace the LSTM with a GRU.",
        "A GRU has three gates to the LSTM's four and no cell state. Look at "
        "the steps to 100% and the time each takes.",
        tuple(Variant(a, c) for a in ("dot", "general") for c in ("lstm", "gru")),
    ),
)
