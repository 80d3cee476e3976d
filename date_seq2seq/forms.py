"""Dates as people write them: the human task's twelve input forms.

Each form writes a date one way (`Form.write`) and reads it back
(`parse_human`), by calendar arithmetic with fixed English names: no locale,
no time zone. `22/11/2024` is day first. The model reads what was typed,
lower-cased, with the white space around it removed and each run inside it
made one space: case and spacing say nothing about the date, so they are
normalised away rather than learnt.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .dates import (
    MAX_INPUT_CHARS,
    MONTHS,
    InputError,
    Window,
    days_in_month,
    source_text,
)

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July",
               "August", "September", "October", "November", "December")  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
            "Sunday")  # fmt: skip
WEEKDAY_ABBREVIATIONS = tuple(w[:3] for w in WEEKDAYS)
KANJI = "年月日"  # year, month, day


def ordinal(day: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st, 22nd, 31st."""
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


@dataclass(frozen=True)
class Form:
    """One way of writing a date: its name, and how it writes one."""

    name: str
    write: Callable[[dt.date], str]

    @property
    def example(self) -> str:
        return self.write(dt.date(2024, 11, 22))


def _mon(day: dt.date) -> str:
    return MONTHS[day.month - 1]


def _month(day: dt.date) -> str:
    return MONTH_NAMES[day.month - 1]


FORMS = (
    Form("yy-mm-dd", source_text),  # the classic task's input
    Form("yyyy-mm-dd", lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    Form("dd/mm/yyyy", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year:04d}"),
    Form("dd.mm.yy", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}"),
    Form("d Mon yyyy", lambda d: f"{d.day} {_mon(d)} {d.year}"),
    Form("d Month yyyy", lambda d: f"{d.day} {_month(d)} {d.year}"),
    Form("Month d, yyyy", lambda d: f"{_month(d)} {d.day}, {d.year}"),
    Form("Mon d yyyy", lambda d: f"{_mon(d)} {d.day} {d.year}"),
    Form(
        "Weekday, d Month yyyy",
        lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {_month(d)} {d.year}",
    ),
    Form(
        "wkd d mon yy",
        lambda d: (
            f"{WEEKDAY_ABBREVIATIONS[d.weekday()].lower()} {d.day} "
            f"{_mon(d).lower()} {d.year % 100:02d}"
        ),
    ),
    Form("dth Month yyyy", lambda d: f"{ordinal(d.day)} {_month(d)} {d.year}"),
    Form("yyyy年m月d日", lambda d: f"{d.year}年{d.month}月{d.day}日"),
)
FORM_NAMES = tuple(f.name for f in FORMS)


def normalise(text: str) -> str:
    """What the model reads of a typed date: lower case, single spaces, trimmed."""
    return " ".join(text.split()).lower()


def human_source(day: dt.date, form: Form) -> str:
    """The model's input for a date written in a form."""
    return normalise(form.write(day))


@functools.cache
def human_alphabet() -> str:
    """Every character a human-task input can hold."""
    chars = {
        c for day in _ALPHABET_DAYS for form in FORMS for c in human_source(day, form)
    }
    return "".join(sorted(chars))


# Between them these dates use every month, weekday, digit and ordinal suffix.
_ALPHABET_DAYS = [dt.date(2024, m, d) for m in range(1, 13) for d in (1, 2, 3, 4, 12)]


# --- reading a date back ----------------------------------------------------

_MONTH_WORDS = {name.lower(): i + 1 for i, name in enumerate(MONTH_NAMES)}
_MON_WORDS = {name.lower(): i + 1 for i, name in enumerate(MONTHS)}
_SHORT_MONTH_FORMS = ("d Mon yyyy", "Mon d yyyy", "wkd d mon yy")
_TWO_DIGIT_YEAR_FORMS = ("yy-mm-dd", "dd.mm.yy", "wkd d mon yy")
_Y2, _Y4 = r"(?P<year>[0-9]{2})", r"(?P<year>[0-9]{4})"
_M2, _D2 = r"(?P<month>[0-9]{2})", r"(?P<day>[0-9]{2})"
_D = r"(?P<day>[0-9]{1,2})"
_MON, _MONTH = r"(?P<month>[a-z]{3})", r"(?P<month>[a-z]{3,9})"
# What each form looks like once normalised: the same fields by the same names.
_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.ASCII)
    for name, pattern in {
        "yy-mm-dd": rf"{_Y2}-{_M2}-{_D2}",
        "yyyy-mm-dd": rf"{_Y4}-{_M2}-{_D2}",
        "dd/mm/yyyy": rf"{_D2}/{_M2}/{_Y4}",
        "dd.mm.yy": rf"{_D2}\.{_M2}\.{_Y2}",
        "d Mon yyyy": rf"{_D} {_MON} {_Y4}",
        "d Month yyyy": rf"{_D} {_MONTH} {_Y4}",
        "Month d, yyyy": rf"{_MONTH} {_D}, {_Y4}",
        "Mon d yyyy": rf"{_MON} {_D} {_Y4}",
        "Weekday, d Month yyyy": rf"(?P<weekday>[a-z]{{6,9}}), {_D} {_MONTH} {_Y4}",
        "wkd d mon yy": rf"(?P<weekday>[a-z]{{3}}) {_D} {_MON} {_Y2}",
        "dth Month yyyy": rf"{_D}(?P<suffix>st|nd|rd|th) {_MONTH} {_Y4}",
        "yyyy年m月d日": r"(?P<year>[0-9]{4})年(?P<month>[0-9]{1,2})月"
        r"(?P<day>[0-9]{1,2})日",
    }.items()
}
FORMS_HINT = "write it as one of: " + ", ".join(
    form.example + (" (day first)" if form.name == "dd/mm/yyyy" else "")
    for form in FORMS
)


@dataclass(frozen=True)
class Reading:
    """A typed date read back: what the model reads, the date, and its form."""

    source: str  # normalised: what the model is given
    day: dt.date
    form: str  # one of FORM_NAMES


def parse_human(text: str, window: Window) -> Reading:
    """Read a date typed in any of the twelve forms, or raise InputError.

    As strict as `parse_source`: an unknown form, an impossible date, a
    weekday or an ordinal that does not match the day each say what is wrong.
    A year outside the window raises kind "outside_window".
    """
    if not isinstance(text, str):
        raise InputError("malformed", "the input must be text")
    if len(text) > MAX_INPUT_CHARS:
        raise InputError(
            "malformed", f"too long ({len(text)} characters): {FORMS_HINT}"
        )
    source = normalise(text)
    if not source:
        raise InputError("malformed", f"empty input: {FORMS_HINT}")
    for form, pattern in _PATTERNS.items():
        if match := pattern.fullmatch(source):
            return Reading(
                source, _date_of(form, match.groupdict(), source, window), form
            )
    raise InputError(
        "malformed", f"{source!r} is not a date in a known form: {FORMS_HINT}"
    )


def form_of(source: str) -> str | None:
    """The form a normalised input is written in (by its shape alone), or None."""
    return next((f for f, p in _PATTERNS.items() if p.fullmatch(source)), None)


def count_by_form(sources: Iterable[str]) -> dict[str, int]:
    """How many of these normalised inputs each form wrote, every form named."""
    counts = Counter(map(form_of, sources))
    return {name: counts[name] for name in FORM_NAMES}


def _date_of(form: str, parts: dict[str, str], source: str, window: Window) -> dt.date:
    """The date a form's matched fields name; InputError if there is none."""
    month = _month_number(form, parts["month"], source)
    day = int(parts["day"])
    year = int(parts["year"])
    if form in _TWO_DIGIT_YEAR_FORMS:
        year = window.year_for(year)
    probe_year = year if year is not None else 2000  # unknown: judge in a leap year
    if day == 0:
        raise InputError("impossible", f"{source}: there is no day 0")
    try:
        date = dt.date(probe_year, month, day)
    except ValueError:
        when = MONTH_NAMES[month - 1] + (f" {year}" if year is not None else "")
        last = days_in_month(probe_year, month)
        raise InputError(
            "impossible", f"{source}: {when} has {last} days, there is no day {day}"
        ) from None
    suffix = parts.get("suffix")
    if suffix is not None and ordinal(day) != f"{day}{suffix}":
        raise InputError(
            "malformed", f"{source}: the {day}{suffix} is written {ordinal(day)}"
        )
    if parts.get("weekday") is not None:
        _check_weekday(form, parts["weekday"], date, year is not None, source)
    if year is None or not window.start <= date <= window.end:
        raise InputError(
            "outside_window",
            f"{source}: the year {parts['year']} is outside the dates this model was "
            f"trained on ({window.describe()}), so whatever it writes for the year "
            "is a guess",
        )
    return date


def _month_number(form: str, month: str, source: str) -> int:
    if month.isdigit():
        number = int(month)
        if not 1 <= number <= 12:
            raise InputError(
                "impossible", f"{source}: there is no month {month} (1-12)"
            )
        return number
    short = form in _SHORT_MONTH_FORMS
    names = _MON_WORDS if short else _MONTH_WORDS
    if month in names:
        return names[month]
    other = _MONTH_WORDS if short else _MON_WORDS
    if month in other:  # the form wants the other spelling of a real month
        want = "three letters" if short else "the whole name"
        raise InputError(
            "malformed", f"{source}: in the form {form!r} the month is {want}"
        )
    raise InputError("malformed", f"{source}: {month!r} is not a month")


def _check_weekday(
    form: str, weekday: str, date: dt.date, year_known: bool, source: str
) -> None:
    short = form == "wkd d mon yy"
    names = [w.lower()[:3] if short else w.lower() for w in WEEKDAYS]
    if weekday not in names:
        raise InputError("malformed", f"{source}: {weekday!r} is not a weekday")
    if not year_known:  # outside the window: which weekday it is cannot be known
        return
    actual = WEEKDAYS[date.weekday()]
    if names.index(weekday) != date.weekday():
        raise InputError(
            "impossible",
            f"{source}: {date.day} {MONTH_NAMES[date.month - 1]} {date.year} is a "
            f"{actual}, not a {WEEKDAYS[names.index(weekday)]}",
        )
