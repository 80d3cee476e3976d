"""Frozen configurations: what the data, the model, training and decoding are.

A checkpoint stores each of them with `dataclasses.asdict` and rebuilds them
with `Config(**dict)`, so every field is a plain int, float, str or bool.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

ATTENTION_KINDS = ("none", "dot", "general", "additive")
TASKS = ("yymmdd", "human")
# What the output layer reads: [c_t ; h_t] (Luong's, ours), h_t alone, or h_t
# of a cell that was fed the context with the token (Bahdanau's input feeding).
OUTPUTS = ("context", "hidden", "input")
CELL_KINDS = ("lstm", "gru")

MAX_SIZE = (
    1024  # embedding and hidden sizes: far above need, bounds a checkpoint's cost
)

MAX_SEED = 2**63 - 1  # what torch.manual_seed and a Generator take
LENGTH_ALPHA = 1.0  # beam search's length penalty (GNMT's alpha): see bench/beam.py
MAX_LENGTH_ALPHA = 5.0  # far past use: at 5 length dwarfs probability
MAX_BEAM = 64  # beam width: far above use (27 tokens), bounds the memory it takes

T = TypeVar("T")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_length_alpha(alpha: object) -> None:
    """Raise ValueError unless alpha is a number from 0 to MAX_LENGTH_ALPHA."""
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float)
        or not 0.0 <= alpha <= MAX_LENGTH_ALPHA
    ):
        raise ValueError(
            f"the length penalty alpha must be a number from 0 to {MAX_LENGTH_ALPHA:g}"
        )


def check_beam_size(beam_size: object) -> None:
    """Raise ValueError unless beam_size is a whole number from 1 to MAX_BEAM."""
    if not _is_int(beam_size) or not 1 <= beam_size <= MAX_BEAM:
        raise ValueError(f"the beam width must be a whole number from 1 to {MAX_BEAM}")


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be from 0 to {MAX_SEED}")


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build a config from a dict, refusing unknown fields with a clear message."""
    if not isinstance(values, dict):
        raise ValueError(f"{cls.__name__} must be a dict, not {type(values).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**values)


@dataclass(frozen=True)
class DataConfig:
    start: str = (
        "1974-01-01"  # first date of the window (ISO); the classic data set's range
    )
    end: str = "2034-12-31"  # last date of the window, inclusive
    train_size: int = 4000  # the classic tutorial's size
    held_out_size: int = 1000  # disjoint from the training dates
    seed: int = 0  # draws the dates; independent of the model's initialisation
    task: str = "yymmdd"  # one of TASKS: what the inputs look like

    def __post_init__(self) -> None:
        if not isinstance(self.start, str) or not isinstance(self.end, str):
            raise ValueError("start and end must be ISO dates, e.g. 1974-01-01")
        for name in ("train_size", "held_out_size", "seed"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer")
        if self.train_size < 1 or self.held_out_size < 0:
            raise ValueError("train_size must be >= 1 and held_out_size >= 0")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}")
        _check_seed(self.seed)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 27
    cell: str = "lstm"  # "lstm" or "gru"; the context always comes from h, never c
    # none | dot | general | additive. Dot by default: here it learns in half
    # the steps "general" (the tutorial's) needs, and tolerates a higher rate.
    attention: str = "dot"
    embedding_dim: int = (
        16  # the tutorial's sizes: tiny, so every step is overhead-bound
    )
    encoder_hidden: int = 32
    decoder_hidden: int = 32  # may differ from encoder_hidden: the state is bridged
    num_layers: int = 1
    dropout: float = 0.0  # between stacked layers (and on embeddings) when training
    # Read the input both ways: each position's output is [forward ; backward],
    # 2 × encoder_hidden wide (the Coursera date assignment's encoder).
    bidirectional: bool = False
    # Attention scores of <PAD> positions are set to -inf before the softmax
    # (d2l's masked_softmax). Off, padding is attended to like input: an exercise.
    mask_attention: bool = True
    output: str = "context"  # one of OUTPUTS; the d2l exercise tries the others

    @property
    def encoder_output(self) -> int:
        """The width of the encoder's outputs and of the state it hands over."""
        return self.encoder_hidden * (2 if self.bidirectional else 1)

    def __post_init__(self) -> None:
        if not isinstance(self.bidirectional, bool) or not isinstance(
            self.mask_attention, bool
        ):
            raise ValueError("bidirectional and mask_attention must be true or false")
        if self.cell not in CELL_KINDS:
            raise ValueError(f"cell must be one of {CELL_KINDS}, not {self.cell!r}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(
                f"attention must be one of {ATTENTION_KINDS}, not {self.attention!r}"
            )
        for name, most in (("vocab_size", 1000), ("embedding_dim", MAX_SIZE),
                           ("encoder_hidden", MAX_SIZE), ("decoder_hidden", MAX_SIZE),
                           ("num_layers", 8)):  # fmt: skip
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= most:
                raise ValueError(f"{name} must be an integer from 1 to {most}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, not {self.output!r}")
        if self.output != "context" and self.attention == "none":
            raise ValueError(f"output {self.output!r} needs attention: a context")
        if self.attention == "dot" and self.encoder_output != self.decoder_hidden:
            raise ValueError(
                "dot attention needs the encoder's output as wide as decoder_hidden "
                "(2 × encoder_hidden if bidirectional); use 'general' or 'additive' "
                "for different sizes"
            )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # an upper bound: training stops at target_accuracy
    batch_size: int = 32
    lr: float = 3e-2  # with dot attention: 99.9% held-out in about 100 steps
    lr_decay: float = 1.0  # multiply lr by this after every epoch
    clip_norm: float = 1.0  # d2l's gradient clipping
    sampling_prob: float = 0.0  # scheduled sampling: feed own prediction with this p
    target_accuracy: float = 1.0  # stop once held-out exact match reaches this
    patience: int = 1  # epochs to go on after reaching the target: held-out 100% can
    # still leave a few of the 22,280 dates wrong; one more epoch settles them
    seed: int = 0  # initialisation, shuffling, dropout and sampling
    # The loss counts target tokens only, not <PAD> past a target's end. Off,
    # padding is scored too – here nothing changes: every target is 11 tokens.
    mask_loss: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "seed"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer")
        if not isinstance(self.mask_loss, bool):
            raise ValueError("mask_loss must be true or false")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ValueError("epochs and batch_size must be >= 1, patience >= 0")
        _check_seed(self.seed)
        # Far above any useful rate; also refuses NaN and infinity, which
        # overflow inside Adam rather than ending as a diverged run.
        if not 0 < self.lr <= 1e6:
            raise ValueError("lr must be in (0, 1e6]")
        if not 0.0 <= self.sampling_prob <= 1.0:
            raise ValueError("sampling_prob must be in [0, 1]")
        if not 0.0 <= self.target_accuracy <= 1.0:
            raise ValueError("target_accuracy must be in [0, 1]")


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 1  # 1 is greedy
    length_alpha: float = LENGTH_ALPHA  # beam search's length penalty; 0: none
    max_len: int = 12  # output steps at most; a date needs 10 (9 tokens + <EOS>)
    top_k: int = 3  # candidates shown per step in a step-through

    def __post_init__(self) -> None:
        check_beam_size(self.beam_size)
        check_length_alpha(self.length_alpha)
        if self.max_len < 1 or self.top_k < 1:
            raise ValueError("max_len and top_k must be >= 1")
