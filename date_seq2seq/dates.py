"""Calendar facts both tasks share: month names, the window, input errors.

Pure calendar arithmetic on `datetime.date`: no timestamps, no time zone, no
locale (`%b` would follow the locale).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .config import DataConfig

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
MAX_INPUT_CHARS = 64  # longer inputs are refused before any other look


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


def source_text(day: dt.date) -> str:
    """Format a date as the classic task's input, `%y-%m-%d`."""
    return f"{day.year % 100:02d}-{day.month:02d}-{day.day:02d}"


def _words(day: dt.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def printable(text: str) -> str:
    """Text to quote on one line: a newline, tab or other control becomes U+FFFD."""
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


class InputError(ValueError):
    """A user's input that cannot be converted, with a message a person reads."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "malformed" | "impossible" | "outside_window"
        self.message = message


def days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day
