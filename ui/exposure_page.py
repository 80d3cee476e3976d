"""Exposure bias: one date decoded fed the truth, and fed the model's own output."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from date_seq2seq.data import InputError
from date_seq2seq.exposure import Exposure, exposure
from date_seq2seq.vocab import EOS
from ui.state import EXAMPLES, session
from ui.text import code, plain

CELL_RIGHT = "background-color: #d7f5dd"
CELL_WRONG = "background-color: #fbd5d5"
CELL_OWN = "background-color: #fde9c4"


# Short headers, so five columns fit a projector's screen without scrolling.
SERIES = ("answer", "teacher: fed", "teacher: emits", "free: fed", "free: emits")


def exposure_table(got: Exposure) -> Styler:
    """One row per step, the two runs side by side in columns (narrow screens
    read it down, without scrolling sideways).

    Emitted tokens are green when right and red when wrong; a free-running
    input is amber at each step where it is not what teacher forcing feeds.
    """
    steps = got.steps
    columns = zip(
        *((s.target, s.teacher_fed, s.teacher_chose, s.free_fed, s.free_chose)
          for s in steps),
        strict=True,
    )  # fmt: skip
    table = pd.DataFrame(dict(zip(SERIES, columns, strict=True))).fillna("")
    table.index = [str(t + 1) for t in range(len(steps))]
    table.index.name = "step"

    def colours(_: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=table.index, columns=table.columns)
        for row, step in zip(table.index, steps, strict=True):
            for column in (SERIES[2], SERIES[4]):
                if table.at[row, column]:
                    right = table.at[row, column] == (step.target or "")
                    css.at[row, column] = CELL_RIGHT if right else CELL_WRONG
            if step.diverged and step.free_fed is not None:
                css.at[row, SERIES[3]] = CELL_OWN
        return css

    return table.style.apply(colours, axis=None)


def summary_ui(got: Exposure) -> None:
    steps = len([s for s in got.steps if s.target is not None])
    first = got.first_divergence
    summary = (
        f"Teacher-forced: {got.right('teacher')} of {steps} steps right; "
        f"free-running: {got.right('free')} of {steps}. "
    )
    if first is None:
        st.success(summary + "The two runs are fed the same tokens all the way.")
        return
    free, teacher = got.steps[first].free_fed, got.steps[first].teacher_fed
    if free is None:
        how = (
            f"has already ended (it emitted {code(EOS)} too early), while "
            f"teacher forcing goes on, fed {code(teacher)}."
        )
    elif teacher is None:
        how = f"goes on past the right answer's end, fed its own {code(free)}."
    else:
        how = (
            f"is fed its own mistake ({code(free)} instead of {code(teacher)}), "
            "so the two runs decode different histories."
        )
    st.info(
        summary + f"At step {first + 1} the free run first {how}",
        icon=":material/call_split:",
    )


def set_probe(text: str) -> None:
    st.session_state.lab_date = text


def exposure_page() -> None:
    this = session()
    st.title("Exposure bias")
    st.markdown(
        "In training the decoder is fed the TRUE previous token (teacher forcing); "
        "in use it is fed its OWN previous output (free-running), so one early "
        "mistake changes every later input – exposure bias. For one date, see both "
        "side by side, and where they part."
    )
    facts = this.held_out_facts()
    if facts.token_accuracies:
        a, b = st.columns(2)
        a.metric("Held-out tokens right, teacher-forced",
                 f"{facts.token_accuracies['teacher_forced']:.1%}")  # fmt: skip
        b.metric("Held-out tokens right, free-running",
                 f"{facts.token_accuracies['free_running']:.1%}")  # fmt: skip
    if facts.wrong:
        st.caption("Held-out dates this model gets wrong, free-running:")
        with st.container(horizontal=True, gap="small"):
            for example in facts.wrong:
                st.button(example, key=f"lab_{example}", on_click=set_probe,
                          args=(example,))  # fmt: skip
    else:
        st.caption(
            "This model converts every held-out date right, so both runs are fed "
            "the same tokens. To see them part, train a weak model on the Train "
            "page (1 epoch of 200 dates: 7 steps) or stop a run early."
        )
    st.session_state.setdefault("lab_date", EXAMPLES[0])
    text = st.text_input("Probe date", key="lab_date")
    try:
        got = exposure(this.converter, text)
    except InputError as e:
        st.error(plain(e.message), icon=":material/error:")
        return
    summary_ui(got)
    st.dataframe(exposure_table(got), width="stretch", key="exposure")
    st.caption(
        "Teacher: teacher forcing, fed the right answer's previous token; free: "
        "free-running, fed its own previous output. Green: the token emitted is "
        "right; red: wrong. Amber: at this step the free run is fed a token that "
        "is not the truth (its own earlier output); where it is white again, its "
        "own output happened to be the truth."
    )


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    exposure_page()
