"""A training setup as URL query parameters, so that a link reproduces it.

`Setup` holds what the app's Train form sets – the task, model, training
knobs, masks, data size, seed, and the probe date whose attention is recorded
while training – as flat values, with the ranges the form allows; `TASK_SETUPS`
holds a good start for each task. `to_params` writes a setup as strings;
`from_params` reads a link back, checking every value and falling back to the
default for a bad one with a message a person reads, never an exception: a
link is typed, truncated and edited by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .config import (
    ATTENTION_KINDS,
    CELL_KINDS,
    TASKS,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from .data import InputError, Window, printable, read_input, task_vocabulary

LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
BATCH_SIZES = (8, 16, 32, 64, 128, 256)
# The values a field may take: a tuple of choices, or inclusive (low, high).
CHOICES: dict[str, tuple[Any, ...]] = {
    "task": TASKS,
    "attention": ATTENTION_KINDS,
    "cell": CELL_KINDS,
    "lr": LEARNING_RATES,
    "batch": BATCH_SIZES,
}
# Model sizes end where a step (at the biggest batch) and a held-out check
# stay well under a second on one core, so a run can always stop at once, and
# the biggest model's file (about 12 MB) stays under the upload limit.
BOUNDS: dict[str, tuple[float, float]] = {
    "embedding": (2, 128),
    "hidden": (2, 256),
    "layers": (1, 3),
    "dropout": (0.0, 0.5),
    "sampling": (0.0, 1.0),
    "epochs": (1, 50),
    "train_size": (50, 20000),
    "seed": (0, 2**31 - 1),
    "snapshot_every": (1, 500),
}
MAX_STEPS = 20_000  # optimizer steps a run may take: epochs x batches an epoch
# A bidirectional encoder hands the decoder 2 x hidden: capped so the biggest
# such model is no bigger than the biggest one-way model (and its file fits).
MAX_BIDIRECTIONAL_HIDDEN = BOUNDS["hidden"][1] // 2
# Streamlit's own parameters; a link may carry them, they are not ours.
FOREIGN_PARAMS = frozenset({"embed", "embed_options"})

_MODEL, _TRAIN, _DATA = ModelConfig(), TrainConfig(), DataConfig()
MAX_NUMBER_CHARS = 40  # longer is no setting's number (and int() refuses 4,300)
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_NUMBER = re.compile(
    r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf)",
    re.ASCII | re.IGNORECASE,
)


@dataclass(frozen=True)
class Setup:
    """A Train form's values; every one is checked when a Setup is built."""

    task: str = _DATA.task  # what the inputs look like: yymmdd or human
    attention: str = _MODEL.attention
    cell: str = _MODEL.cell
    embedding: int = _MODEL.embedding_dim
    hidden: int = _MODEL.encoder_hidden  # the encoder's (each way); the decoder's
    layers: int = _MODEL.num_layers  # is as wide as what the encoder hands over
    dropout: float = _MODEL.dropout
    bidirectional: bool = _MODEL.bidirectional
    mask_attention: bool = _MODEL.mask_attention  # <PAD> gets no attention
    mask_loss: bool = _TRAIN.mask_loss  # <PAD> past a target's end is not scored
    lr: float = _TRAIN.lr
    sampling: float = _TRAIN.sampling_prob  # scheduled sampling's p
    batch: int = _TRAIN.batch_size
    epochs: int = _TRAIN.epochs
    train_size: int = _DATA.train_size
    seed: int = _TRAIN.seed  # the data's draw and the model's, both
    probe: str = "24-11-22"  # the date whose attention is recorded in training
    snapshot_every: int = 10  # steps between recordings

    def __post_init__(self) -> None:
        for f in fields(self):  # stored as checked: a probe stripped, a rate snapped
            try:
                value = check_value(f.name, getattr(self, f.name))
            except ValueError as e:
                raise ValueError(f"{f.name} {e}") from None
            object.__setattr__(self, f.name, value)
        problem = probe_problem(self.task, self.probe)
        if problem:
            raise ValueError(f"probe {problem}")
        if self.bidirectional and self.hidden > MAX_BIDIRECTIONAL_HIDDEN:
            raise ValueError(
                f"hidden {self.hidden} with a bidirectional encoder: at most "
                f"{MAX_BIDIRECTIONAL_HIDDEN}, as its decoder is twice as wide"
            )
        if self.steps > MAX_STEPS:
            raise ValueError(
                f"{self.epochs} epochs of {self.train_size} dates in batches of "
                f"{self.batch} are {self.steps:,} steps; a run takes at most "
                f"{MAX_STEPS:,}: at most {self.most_epochs()} epochs, fewer dates "
                "or a bigger batch"
            )

    @property
    def steps(self) -> int:
        """Optimizer steps if every epoch runs."""
        return self.epochs * -(-self.train_size // self.batch)

    def most_epochs(self) -> int:
        """The most epochs this setup's data and batch allow in MAX_STEPS."""
        return max(1, MAX_STEPS // -(-self.train_size // self.batch))

    def configs(self) -> tuple[DataConfig, ModelConfig, TrainConfig]:
        """Return the data, model and training configs this setup trains with."""
        model = ModelConfig(
            vocab_size=len(task_vocabulary(self.task)),
            cell=self.cell,
            attention=self.attention,
            embedding_dim=self.embedding,
            encoder_hidden=self.hidden,
            decoder_hidden=self.hidden * (2 if self.bidirectional else 1),
            num_layers=self.layers,
            dropout=self.dropout,
            bidirectional=self.bidirectional,
            mask_attention=self.mask_attention,
        )
        train = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch,
            lr=self.lr,
            sampling_prob=self.sampling,
            seed=self.seed,
            mask_loss=self.mask_loss,
        )
        data = DataConfig(train_size=self.train_size, seed=self.seed, task=self.task)
        return data, model, train

    def to_params(self) -> dict[str, str]:
        """Return every value as a query-parameter string, e.g. {"lr": "0.01"}."""
        return {
            name: str(value)  # a float's shortest exact form: 0.01, 0.1234567
            for name, value in asdict(self).items()
        }

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> tuple[Setup, list[str]]:
        """Read query parameters; a bad value keeps its default and is reported.

        What a link leaves out is its task's good start (TASK_SETUPS).

        Returns the setup and one message per problem (empty when all is well),
        as plain text: it quotes what the link says, so show it as text, never
        as Markdown, or a link could put its own links and formatting on the page.
        """
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        problems, bad = [], []  # bad: (name, text, why) of a value not taken
        for name, text in params.items():
            if name in FOREIGN_PARAMS:
                continue
            if name not in known:
                problems.append(f"{_shown(name)} is not a setting; it was ignored.")
                continue
            try:
                values[name] = check_value(name, parse_value(name, text))
            except ValueError as e:
                bad.append((name, text, str(e)))
        start = TASK_SETUPS[values.get("task", _DATA.task)]  # what is not given
        problem = probe_problem(start.task, values.get("probe", start.probe))
        if problem:
            bad.append(("probe", values.pop("probe"), problem))
        problems += [
            f"{name}={_shown(text)}: {why}; using {getattr(start, name)}."
            for name, text, why in bad
        ]
        values = {**asdict(start), **values}
        if values["bidirectional"] and values["hidden"] > MAX_BIDIRECTIONAL_HIDDEN:
            problems.append(
                f"hidden={values['hidden']} with a bidirectional encoder: at most "
                f"{MAX_BIDIRECTIONAL_HIDDEN}; using {MAX_BIDIRECTIONAL_HIDDEN}."
            )
            values["hidden"] = MAX_BIDIRECTIONAL_HIDDEN
        try:
            return cls(**values), problems
        except ValueError as e:  # too many steps: as many epochs as fit
            values["epochs"] = cls(**{**values, "epochs": 1}).most_epochs()
            problems.append(f"{e}; using {values['epochs']} epochs.")
            return cls(**values), problems


def _shown(text: str, most: int = 24) -> str:
    """Quote a user's text in a message on one line, shortened: links get long."""
    text = printable(text)
    return text if len(text) <= most else text[: most - 1] + "…"


def parse_value(name: str, text: str) -> Any:
    """Turn a parameter's text into the type of the Setup field `name`."""
    kind = type(getattr(Setup, name))
    text = text.strip()
    # Plain ASCII numbers only: int() and float() would also take "1_000"
    # and other scripts' digits, which a link should not need.
    if kind in (int, float) and len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"too long for a number ({len(text)} characters)")
    if kind is bool:
        if text.lower() not in (*_TRUE, *_FALSE):
            raise ValueError("not true or false")
        return text.lower() in _TRUE
    if kind is int:
        if not _WHOLE.fullmatch(text):
            raise ValueError("not a whole number")
        return int(text)
    if kind is float:
        if not _NUMBER.fullmatch(text):
            raise ValueError("not a number")
        return float(text)
    return text


def check_value(name: str, value: Any) -> Any:
    """Return value if the Setup field `name` may take it; raise ValueError if not.

    A float choice is matched with a tolerance and returned as the choice
    itself, so "0.001" and 1e-3 are one learning rate.
    """
    if name in CHOICES:
        choices = CHOICES[name]
        for choice in choices:
            same_float = (
                isinstance(choice, float)
                and isinstance(value, float | int)
                and math.isclose(value, choice, rel_tol=1e-9)
            )
            if value == choice or same_float:
                return choice
        listed = ", ".join(
            f"{c:g}" if isinstance(c, float) else str(c) for c in choices
        )
        raise ValueError(f"must be one of {listed}")
    if name in BOUNDS:
        low, high = BOUNDS[name]
        whole = isinstance(low, int)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if whole and not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value if whole else float(value)  # a slider needs one number type
    if name in ("bidirectional", "mask_attention", "mask_loss"):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if name == "probe":  # read as a date by Setup, which knows its task
        if not isinstance(value, str):
            raise ValueError("must be a date")
        return value.strip()
    raise ValueError(f"{name!r} is not a setting")


def probe_problem(task: str, probe: str) -> str | None:
    """Why `probe` cannot be the probe date of a run of `task`, or None."""
    try:
        read_input(task, probe, Window.from_config(_DATA))
    except InputError as e:
        return e.message
    return None


# A good start for each task: the human task's inputs are longer and varied,
# so a bigger model, batch and data (see tests/test_train_setup.py).
TASK_SETUPS = {
    "yymmdd": Setup(),
    "human": Setup(
        task="human",
        hidden=64,
        batch=64,
        lr=1e-2,
        epochs=15,
        train_size=20000,
        probe="Friday, 22 November 2024",
    ),  # fmt: skip
}
