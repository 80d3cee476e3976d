"""Date pairs: the window, seeded splits, tokenisation, input validation, DateDataset.

Everything is pure calendar arithmetic on `datetime.date`: no timestamps, no
time zone, no locale (`%b` would follow the locale), so the same seed gives the
same data on every machine.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .config import DataConfig
from .dates import (  # noqa: F401 - re-exported: the package's names since 0.1
    MAX_INPUT_CHARS,
    MONTHS,
    InputError,
    Window,
    days_in_month,
    printable,
    source_text,
)
from .forms import FORMS, human_alphabet, human_source, normalise, parse_human
from .vocab import Vocabulary

SOURCE_LEN = 8  # yy-mm-dd
TARGET_LEN = 9  # dd / Mon / yyyy, the month one token


def target_tokens(day: dt.date) -> list[str]:
    """Tokenise a date as the model's output, `%d/%b/%Y`, the month one token."""
    return [*f"{day.day:02d}", "/", MONTHS[day.month - 1], "/", *f"{day.year:04d}"]


def target_text(day: dt.date) -> str:
    """Format a date as the expected answer, e.g. `22/Nov/2024`."""
    return "".join(target_tokens(day))


def task_vocabulary(task: str = "yymmdd") -> Vocabulary:
    """Return a task's vocabulary: specials, what its inputs hold, `/`, months.

    yymmdd: digits and `-`; human: every character of its twelve forms.
    """
    if task == "human":
        return Vocabulary.build([human_alphabet(), "0123456789/", MONTHS])
    return Vocabulary.build(["0123456789", "-/", MONTHS])


def task_sources(task: str, day: dt.date) -> list[str]:
    """Every input a task writes for a date: one for yymmdd, one a form for human."""
    if task == "human":
        return [human_source(day, form) for form in FORMS]
    return [source_text(day)]


Pair = tuple[str, dt.date]  # an input as the model reads it, and its date


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


def split_pairs(cfg: DataConfig) -> tuple[list[Pair], list[Pair]]:
    """Draw disjoint train and held-out (input, date) pairs of cfg's task, seeded.

    yymmdd: one input a date, so the dates of `split`. human: any of the
    window's dates × FORMS pairs, so a date may be held out in one form and
    trained on in another – the lesson is reading forms, not the calendar.
    """
    if cfg.task == "yymmdd":
        train, held_out = split(cfg)
        return [(source_text(d), d) for d in train], [
            (source_text(d), d) for d in held_out
        ]
    days = Window.from_config(cfg).dates()
    need = cfg.train_size + cfg.held_out_size
    if need > len(days) * len(FORMS):
        raise ValueError(
            f"the window has {len(days) * len(FORMS)} (date, form) pairs; {need} "
            "were asked for"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(days) * len(FORMS), generator=gen)[:need].tolist()
    chosen = [divmod(i, len(FORMS)) for i in order]
    pairs = [(human_source(days[d], FORMS[f]), days[d]) for d, f in chosen]
    return pairs[: cfg.train_size], pairs[cfg.train_size :]


# --- input validation -------------------------------------------------------


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
        last = days_in_month(probe_year, mm)
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


def as_read(task: str, text: str) -> str:
    """How a task's model reads a text, valid or not: stripped for yymmdd,
    normalised (lower case, one space) for human – as `read_input` reads it."""
    return normalise(text) if task == "human" else text.strip()


def read_input(task: str, text: str, window: Window) -> Pair:
    """What a task's model reads of a typed input, and its date; InputError if none.

    yymmdd: the input stripped (`parse_source`); human: the input normalised,
    in any of the twelve forms (`forms.parse_human`).
    """
    if task == "human":
        reading = parse_human(text, window)
        return reading.source, reading.day
    return text.strip(), parse_source(text, window)


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
    """Turn valid source strings into ids, right-padded with <PAD> to the longest.

    Returns (batch, src_len). The model reads each row's length from where its
    padding starts.
    """
    return pad_sequences([vocab.encode(t) for t in texts], vocab.pad_id)[0]


def encode_targets(days: Sequence[dt.date], vocab: Vocabulary) -> torch.Tensor:
    """Turn dates into <GO> target <EOS> ids. Returns (batch, TARGET_LEN + 2)."""
    ids = [[vocab.go_id, *vocab.encode(target_tokens(d)), vocab.eos_id] for d in days]
    return torch.tensor(ids, dtype=torch.long)


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists. Returns ids (batch, max_len) and lengths (batch,)."""
    lengths = [len(s) for s in seqs]
    longest = max(lengths, default=0)
    padded = [[*s, *[pad_id] * (longest - len(s))] for s in seqs]  # one tensor call
    ids = torch.tensor(padded, dtype=torch.long).reshape(len(seqs), longest)
    return ids, torch.tensor(lengths, dtype=torch.long)


class DateDataset(Dataset):
    """Dates as (source ids, target ids) pairs: a torch Dataset.

    `dataset[i]` is `(src, tgt)`: src (SOURCE_LEN,) the characters of
    `yy-mm-dd`, tgt (TARGET_LEN + 2,) <GO>, `dd / Mon / yyyy`, <EOS>. A
    `DataLoader` batches them as (batch, 8) and (batch, 11). All pairs are
    encoded once, up front: the whole window is 22,280 dates.

    The human task's sources (`sources`, one per date) vary in length: src is
    right-padded with <PAD> to the longest, and the model reads each length
    from where the padding starts.
    """

    def __init__(
        self,
        days: Sequence[dt.date],
        vocab: Vocabulary | None = None,
        sources: Sequence[str] | None = None,
    ) -> None:
        self.days = list(days)
        self.vocab = vocab if vocab is not None else task_vocabulary()
        # The inputs: `yy-mm-dd` of each date unless given (the human task's).
        if sources is None:
            sources = [source_text(d) for d in self.days]
        self.sources = list(sources)
        if len(self.sources) != len(self.days):
            raise ValueError("one source per date")
        self.src = encode_sources(self.sources, self.vocab)  # (n, longest), padded
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
        vocab = task_vocabulary(cfg.task)
        train, held_out = split_pairs(cfg)
        return cls.from_pairs(train, vocab), cls.from_pairs(held_out, vocab)

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair], vocab: Vocabulary) -> DateDataset:
        """A dataset of (input, date) pairs, e.g. the human task's."""
        return cls([day for _, day in pairs], vocab, [text for text, _ in pairs])

    def __len__(self) -> int:
        return len(self.days)

    def __getitem__(self, index: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One pair; with a list of indices, a whole batch (batch, 8), (batch, 11)."""
        return self.src[index], self.tgt[index]

    def __repr__(self) -> str:
        return f"DateDataset({len(self)} dates)"
