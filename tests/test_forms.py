"""The human task's input forms: each writes every date and reads it back."""

from __future__ import annotations

import datetime as dt

import pytest

from date_seq2seq.config import DataConfig
from date_seq2seq.data import InputError, Window
from date_seq2seq.forms import (
    FORMS,
    human_alphabet,
    human_source,
    normalise,
    ordinal,
    parse_human,
)

WINDOW = Window.from_config(DataConfig())
DAY = dt.date(2024, 11, 22)


def test_the_forms_people_write():
    assert [f.example for f in FORMS] == [
        "24-11-22", "2024-11-22", "22/11/2024", "22.11.24", "22 Nov 2024",
        "22 November 2024", "November 22, 2024", "Nov 22 2024",
        "Friday, 22 November 2024", "fri 22 nov 24", "22nd November 2024",
        "2024年11月22日",
    ]  # fmt: skip


def test_every_date_in_every_form_reads_back_as_itself():
    alphabet = set(human_alphabet())
    for day in WINDOW.dates():
        for form in FORMS:
            reading = parse_human(form.write(day), WINDOW)
            assert reading.day == day, (form.name, form.write(day))
            assert reading.source == human_source(day, form)
            assert set(reading.source) <= alphabet


@pytest.mark.parametrize(
    "typed",
    ["  FRIDAY,   22 NOVEMBER 2024 ", "friday, 22 november 2024", "Nov\t22 2024",
     "22ND november 2024", "\u300024-11-22"],
)  # fmt: skip
def test_case_and_spacing_are_as_people_type_them(typed):
    reading = parse_human(typed, WINDOW)
    assert reading.day == DAY
    assert (
        reading.source == normalise(typed) and reading.source == reading.source.strip()
    )


def test_ordinals():
    days = (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 30, 31)
    said = " ".join(ordinal(d) for d in days)
    assert said == "1st 2nd 3rd 4th 11th 12th 13th 21st 22nd 23rd 30th 31st"


@pytest.mark.parametrize(
    ("typed", "kind", "words"),
    [
        ("thu 22 nov 24", "impossible", "is a Friday, not a Thursday"),
        ("Monday, 22 November 2024", "impossible", "is a Friday, not a Monday"),
        ("Fryday, 22 November 2024", "malformed", "'fryday' is not a weekday"),
        ("22th November 2024", "malformed", "the 22th is written 22nd"),
        ("31 Nov 2024", "impossible", "November 2024 has 30 days"),
        ("29 February 2023", "impossible", "February 2023 has 28 days"),
        ("2024-02-30", "impossible", "February 2024 has 29 days"),
        ("0 Nov 2024", "impossible", "there is no day 0"),
        ("2024年13月1日", "impossible", "there is no month 13"),
        ("22/13/2024", "impossible", "there is no month 13"),
        ("22 Novembre 2024", "malformed", "'novembre' is not a month"),
        ("22 Nov. 2024", "malformed", "not a date in a known form"),
        ("22-11-2024", "malformed", "not a date in a known form"),
        ("", "malformed", "empty input"),
        ("x" * 65, "malformed", "too long"),
        ("22 Nov 2050", "outside_window", "outside the dates"),
        ("fri 22 nov 50", "outside_window", "the year 50"),
    ],
)
def test_a_bad_date_says_what_is_wrong(typed, kind, words):
    with pytest.raises(InputError, match=words) as info:
        parse_human(typed, WINDOW)
    assert info.value.kind == kind


def test_an_unknown_form_lists_the_known_ones():
    with pytest.raises(InputError) as info:
        parse_human("the day after tomorrow", WINDOW)
    assert all(form.example in info.value.message for form in FORMS)
