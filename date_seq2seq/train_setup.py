"""A training setup as URL query parameters, so that a link reproduces it.

`Setup` holds what the app's Train form sets – model, training knobs, data
size, seed, and the probe date whose attention is recorded while training – as
flat values, with the ranges the form allows. `to_params` writes it as strings;
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

from .config import ATTENTION_KINDS, CELL_KINDS, DataConfig, ModelConfig, TrainConfig
from .data import InputError, Window, parse_source, printable

LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
BATCH_SIZES = (8, 16, 32, 64, 128, 256)
# The values a field may take: a tuple of choices, or inclusive (low, high).
CHOICES: dict[str, tuple[Any, ...]] = {
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
# Streamlit's own parameters; a link may carry them, they are not ours.
FOREIGN_PARAMS = frozenset({"embed", "embed_options"})

_MODEL, _TRAIN, _DATA = ModelConfig(), TrainConfig(), DataConfig()
MAX_NUMBER_CHARS = 40  # longer is no setting's number (and int() refuses 4,300)
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER = re.compile(
    r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf)",
    re.ASCII | re.IGNORECASE,
)


@dataclass(frozen=True)
class Setup:
    """A Train form's values; every one is checked when a Setup is built."""

    attention: str = _MODEL.attention
    cell: str = _MODEL.cell
    embedding: int = _MODEL.embedding_dim
    hidden: int = _MODEL.encoder_hidden  # encoder and decoder alike
    layers: int = _MODEL.num_layers
    dropout: float = _MODEL.dropout
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
            cell=self.cell,
            attention=self.attention,
            embedding_dim=self.embedding,
            encoder_hidden=self.hidden,
            decoder_hidden=self.hidden,
            num_layers=self.layers,
            dropout=self.dropout,
        )
        train = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch,
            lr=self.lr,
            sampling_prob=self.sampling,
            seed=self.seed,
        )
        return DataConfig(train_size=self.train_size, seed=self.seed), model, train

    def to_params(self) -> dict[str, str]:
        """Return every value as a query-parameter string, e.g. {"lr": "0.01"}."""
        return {
            name: str(value)  # a float's shortest exact form: 0.01, 0.1234567
            for name, value in asdict(self).items()
        }

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> tuple[Setup, list[str]]:
        """Read query parameters; a bad value keeps its default and is reported.

        Returns the setup and one message per problem (empty when all is well),
        as plain text: it quotes what the link says, so show it as text, never
        as Markdown, or a link could put its own links and formatting on the page.
        """
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        problems = []
        for name, text in params.items():
            if name in FOREIGN_PARAMS:
                continue
            if name not in known:
                problems.append(f"{_shown(name)} is not a setting; it was ignored.")
                continue
            try:
                values[name] = check_value(name, parse_value(name, text))
            except ValueError as e:
                default = known[name].default
                problems.append(f"{name}={_shown(text)}: {e}; using {default}.")
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
    if name == "probe":
        if not isinstance(value, str):
            raise ValueError("must be a date as yy-mm-dd")
        try:
            parse_source(value, Window.from_config(_DATA))
        except InputError as e:
            raise ValueError(e.message) from None
        return value.strip()
    raise ValueError(f"{name!r} is not a setting")
