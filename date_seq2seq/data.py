"""Date pairs: the window, seeded splits, tokenisation, input validation, DateDataset.

Everything is pure calendar arithmetic on `datetime.date`: no timestamps, no
time zone, no locale (`%b` would follow the locale), so the same seed gives the
same data on every machine.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from .config import DataConfig
from .vocab import Vocabulary

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
SOURCE_LEN = 8  # yy-mm-dd
TARGET_LEN = 9  # dd / Mon / yyyy, the month one token
MAX_INPUT_CHARS = 64  # longer inputs are refused before any other look


def source_text(day: dt.date) -> str:
    """Format a date as the model's input, `%y-%m-%d`."""
    return f"{day.year % 100:02d}-{day.month:02d}-{day.day:02d}"


def target_tokens(day: dt.date) -> list[str]:
    """Tokenise a date as the model's output, `%d/%b/%Y`, the month one token."""
    return [*f"{day.day:02d}", "/", MONTHS[day.month - 1], "/", *f"{day.year:04d}"]


def target_text(day: dt.date) -> str:
    """Format a date as the expected answer, e.g. `22/Nov/2024`."""
    return "".join(target_tokens(day))


def task_vocabulary() -> Vocabulary:
    """Return the vocabulary of the task: specials, digits, `-`, `/`, months."""
    return Vocabulary.build(["0123456789", "-/", MONTHS])


@dataclass(frozen=True)
class Window:
    """The dates a model was trained on; a two-digit year is unambiguous inside."""

    start: dt.date
    end: dt.date

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Window:
        start, end = dt.date.fromisoformat(cfg.start), dt.date.fromisoformat(cfg.end)
        if not start <= end or end.year - start.year >= 100:
            raise ValueError("the window must be ordered and span under 100 years")
        return cls(start, end)

    def dates(self) -> list[dt.date]:
        """Return every date of the window, in order."""
        first = self.start.toordinal()
        return [dt.date.fromordinal(o) for o in range(first, self.end.toordinal() + 1)]

    def year_for(self, yy: int) -> int | None:
        """Return the four-digit year a two-digit one means here, or None."""
        for year in range(self.start.year, self.end.year + 1):
            if year % 100 == yy:
                return year
        return None

    def describe(self) -> str:
        """Say the window in words, e.g. `1 Jan 1974 to 31 Dec 2034`."""
        return f"{_words(self.start)} to {_words(self.end)}"


def _words(day: dt.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def split(cfg: DataConfig) -> tuple[list[dt.date], list[dt.date]]:
    """Draw disjoint train and held-out dates from the window, seeded."""
    days = Window.from_config(cfg).dates()
    need = cfg.train_size + cfg.held_out_size
    if need > len(days):
        raise ValueError(f"the window has {len(days)} dates; {need} were asked for")
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(days), generator=gen)[:need].tolist()
    chosen = [days[i] for i in order]
    return chosen[: cfg.train_size], chosen[cfg.train_size :]


# --- input validation -------------------------------------------------------


def printable(text: str) -> str:
    """Text to quote on one line: a newline, tab or other control becomes U+FFFD."""
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


class InputError(ValueError):
    """A user's input that cannot be converted, with a message a person reads."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "malformed" | "impossible" | "outside_window"
        self.message = message


_SHAPE = re.compile(r"([0-9]{2})-([0-9]{2})-([0-9]{2})", re.ASCII)
_FOUR_DIGIT_YEAR = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})", re.ASCII)
_OTHER_SEPARATOR = re.compile(r"([0-9]{2})([./ _:,])([0-9]{2})\2([0-9]{2})", re.ASCII)
EXAMPLE = "24-11-22"


def parse_source(text: str, window: Window) -> dt.date:
    """Parse an input `yy-mm-dd`, or raise InputError saying what is wrong.

    Surrounding white space is ignored. A well-formed date whose year lies
    outside the window raises InputError of kind "outside_window"; the string
    itself is still a valid model input.
    """
    if not isinstance(text, str):
        raise InputError("malformed", "the input must be text")
    text = text.strip()
    if not text:
        raise InputError(
            "malformed", f"empty input: type a date as yy-mm-dd, e.g. {EXAMPLE}"
        )
    if len(text) > MAX_INPUT_CHARS:
        raise InputError(
            "malformed",
            f"too long ({len(text)} characters): a date is 8 characters, yy-mm-dd",
        )
    if not text.isascii():
        hint = (
            " (only the digits 0-9 are understood)"
            if any(c.isdigit() and not c.isascii() for c in text)
            else ""
        )
        raise InputError(
            "malformed", f"{text!r} has characters other than 0-9 and '-'{hint}"
        )
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise InputError("malformed", _shape_hint(text))
    yy, mm, dd = (int(g) for g in match.groups())
    if not 1 <= mm <= 12:
        raise InputError("impossible", f"{text}: there is no month {mm:02d} (01-12)")
    if dd == 0:
        raise InputError("impossible", f"{text}: there is no day 00")
    year = window.year_for(yy)
    # Without a year in the window, judge the day in a leap year: 29 Feb may exist.
    probe_year = year if year is not None else 2000
    try:
        day = dt.date(probe_year, mm, dd)
    except ValueError:
        last = _days_in_month(probe_year, mm)
        when = f"{MONTHS[mm - 1]} {year}" if year is not None else MONTHS[mm - 1]
        raise InputError(
            "impossible", f"{text}: {when} has {last} days, there is no day {dd}"
        ) from None
    if year is None or not window.start <= day <= window.end:
        raise InputError(
            "outside_window",
            f"{text}: the year '{yy:02d}' is outside the dates this model was "
            f"trained on ({window.describe()}): it has never seen a year ending "
            f"in {yy:02d}, so whatever it writes for the year is a guess",
        )
    return day


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def _shape_hint(text: str) -> str:
    if m := _FOUR_DIGIT_YEAR.fullmatch(text):
        year, month, day = m.groups()
        short = f"{year[2:]}-{int(month):02d}-{int(day):02d}"
        return f"{text!r} has a four-digit year: write it as yy-mm-dd, e.g. {short}"
    if m := _OTHER_SEPARATOR.fullmatch(text):
        fixed = "-".join(m.group(1, 3, 4))
        return f"{text!r} uses {m.group(2)!r} between the parts: write {fixed}"
    return f"{text!r} is not a date as yy-mm-dd, e.g. {EXAMPLE}"


# --- tensors ----------------------------------------------------------------


def encode_sources(texts: Sequence[str], vocab: Vocabulary) -> torch.Tensor:
    """Turn equal-length, valid source strings into ids. Returns (batch, src_len)."""
    return torch.tensor([vocab.encode(t) for t in texts], dtype=torch.long)


def encode_targets(days: Sequence[dt.date], vocab: Vocabulary) -> torch.Tensor:
    """Turn dates into <GO> target <EOS> ids. Returns (batch, TARGET_LEN + 2)."""
    ids = [[vocab.go_id, *vocab.encode(target_tokens(d)), vocab.eos_id] for d in days]
    return torch.tensor(ids, dtype=torch.long)


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists. Returns ids (batch, max_len) and lengths (batch,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, seq in enumerate(seqs):
        out[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, lengths


class DateDataset(Dataset):
    """Dates as (source ids, target ids) pairs: a torch Dataset.

    `dataset[i]` is `(src, tgt)`: src (SOURCE_LEN,) the characters of
    `yy-mm-dd`, tgt (TARGET_LEN + 2,) <GO>, `dd / Mon / yyyy`, <EOS>. A
    `DataLoader` batches them as (batch, 8) and (batch, 11). All pairs are
    encoded once, up front: the whole window is 22,280 dates.
    """

    def __init__(
        self, days: Sequence[dt.date], vocab: Vocabulary | None = None
    ) -> None:
        self.days = list(days)
        self.vocab = vocab if vocab is not None else task_vocabulary()
        self.src = encode_sources([source_text(d) for d in self.days], self.vocab)
        self.tgt = encode_targets(self.days, self.vocab)  # (n, TARGET_LEN + 2)

    @classmethod
    def split(
        cls, seed: int = 0, train_size: int = 4000, held_out_size: int = 1000
    ) -> tuple[DateDataset, DateDataset]:
        """Draw disjoint training and held-out dates from the 1974-2034 window.

        The same draw as `python -m date_seq2seq train --seed SEED`.
        """
        return cls.split_config(
            DataConfig(train_size=train_size, held_out_size=held_out_size, seed=seed)
        )

    @classmethod
    def split_config(cls, cfg: DataConfig) -> tuple[DateDataset, DateDataset]:
        """Draw the training and held-out dates a DataConfig describes."""
        train_days, held_out_days = split(cfg)
        vocab = task_vocabulary()
        return cls(train_days, vocab), cls(held_out_days, vocab)

    def __len__(self) -> int:
        return len(self.days)

    def __getitem__(self, index: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One pair; with a list of indices, a whole batch (batch, 8), (batch, 11)."""
        return self.src[index], self.tgt[index]

    def __repr__(self) -> str:
        return f"DateDataset({len(self)} dates)"
