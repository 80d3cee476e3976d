"""Step through: one conversion, one decoder step at a time; force a token, watch."""

from __future__ import annotations

import streamlit as st

from date_seq2seq.converter import Recovery, StepThrough, forceable_tokens
from ui import charts
from ui.state import EXAMPLES, Session, session
from ui.text import code, plain

VERDICT_COLOURS = {"right": "green", "wrong": "red", "forced": "violet",
                   "unknown": "gray"}  # fmt: skip


def forced_tokens(this: Session, text: str) -> dict[int, str]:
    """The tokens forced on this date and model; a new one starts afresh."""
    key = (text.strip(), id(this.converter))
    if this.forced_for != key:
        this.forced_for = key
        this.forced.clear()
        forget_choices()
    return this.forced


def forget_choices() -> None:
    """Let each "Emit instead" box show its step's token again, not an old pick."""
    for key in [k for k in st.session_state if str(k).startswith("force_token_")]:
        del st.session_state[key]


def force_token(this: Session, step: int) -> None:
    """Emit the chosen token at `step`; later forcings belonged to another path."""
    for later in [t for t in this.forced if t > step]:
        del this.forced[later]
    this.forced[step] = st.session_state[f"force_token_{step}"]
    forget_choices()


def clear_forced(this: Session) -> None:
    this.forced.clear()
    forget_choices()


def recovery_text(after: Recovery) -> str:
    """Say what followed the first forced token, from the counts, plainly."""
    where = f"After the token forced at step {after.forced_at + 1}"
    if after.chose == 0 and after.missing:
        return (
            f"The token forced at step {after.forced_at + 1} ended the output, "
            f"{after.missing} token(s) short of the right answer: the model "
            "chose nothing after it."
        )
    said = f"{where}, the model chose {after.chose} token(s) itself, {after.right} "
    said += "of them as the right answer has them there"
    if after.missing:
        said += f"; the output ended {after.missing} token(s) short of the answer"
    if after.extra:
        said += f"; it ran {after.extra} token(s) past the answer's end"
    return said + (": it recovered." if after.recovered else ": it did not recover.")


def output_ui(this: Session, walked: StepThrough) -> None:
    verdicts = walked.verdicts()
    st.markdown(
        "**Output:** "
        + " ".join(
            f":{VERDICT_COLOURS[v]}-background[{plain(s.chosen)}]"
            for s, v in zip(walked.steps, verdicts, strict=True)
        )
    )
    st.caption("Green: right; red: wrong; violet: forced by you.")
    after = walked.after_forcing()
    if after is not None:
        st.info(recovery_text(after), icon=":material/alt_route:")
    if this.forced:
        st.button("Clear forced tokens", key="clear_forced", on_click=clear_forced,
                  args=(this,))  # fmt: skip


def step_ui(this: Session, walked: StepThrough) -> None:
    """One step: its inputs and choice, then the five stages in reading order."""
    n = len(walked.steps)
    if st.session_state.get("walk_step") not in range(1, n + 1):
        st.session_state.walk_step = 1
    # Plain step numbers: options that change with the tokens (forcing one)
    # would make a new widget in the browser, showing step 1 whatever is chosen.
    t = st.select_slider("Step", range(1, n + 1), key="walk_step") - 1
    step = walked.steps[t]
    st.markdown(f"**Step {t + 1}**")
    fed_col, force_col = st.columns(2)
    fed_col.markdown(f"Fed in: {code(step.fed)}")
    forced_note = " (forced)" if step.forced else ""
    fed_col.markdown(f"Emitted: {code(step.chosen)}{forced_note}")
    options = forceable_tokens(this.converter.vocab)
    with force_col:
        st.selectbox(
            "Emit instead",
            options,
            # A half-trained model may emit <PAD> or <GO>, which cannot be forced.
            index=options.index(step.chosen) if step.chosen in options else 0,
            key=f"force_token_{t}",
        )
        st.button("Force it and decode on", key=f"force_{t}", on_click=force_token,
                  args=(this, t), icon=":material/alt_route:")  # fmt: skip
    query = charts.vector_chart(
        step.query, "1. Query", "the decoder's previous state h(t-1)", "query vector"
    )
    top = charts.top_chart(step.top)
    if step.scores is None:
        st.vega_lite_chart(query, width="stretch")
        st.vega_lite_chart(top, width="stretch")
        st.info("This model has no attention: no scores, weights or context.")
        return
    chars = walked.conversion.input
    row1 = st.columns(2)
    row1[0].vega_lite_chart(query, width="stretch")
    row1[1].vega_lite_chart(
        charts.per_input_chart(
            chars, step.scores, "2. Scores", "the query against each input",
            "attention scores",
        ),
        width="stretch",
    )  # fmt: skip
    row2 = st.columns(2)
    row2[0].vega_lite_chart(
        charts.per_input_chart(
            chars, step.weights, "3. Weights", "the scores' softmax: sums to 1",
            "attention weights",
        ),
        width="stretch",
    )  # fmt: skip
    row2[1].vega_lite_chart(
        charts.vector_chart(
            step.context, "4. Context", "the inputs' encodings, so weighted",
            "context vector",
        ),
        width="stretch",
    )  # fmt: skip
    st.vega_lite_chart(top, width="stretch")


def step_through_page() -> None:
    this = session()
    st.title("Step through")
    st.markdown(
        "Walk one conversion step by step: at each step the decoder's previous "
        "hidden state (the query) scores every input character, the softmax turns "
        "the scores into attention weights, and their weighted sum of the encoder "
        "outputs (the context) joins the state to pick the next token. Force a "
        "different token at any step to see whether the model recovers."
    )
    st.session_state.setdefault("walk_date", EXAMPLES[0])
    text = st.text_input("Date to step through", key="walk_date")
    forced = forced_tokens(this, text)
    walked = this.converter.step_through(text, forced, top_k=5)
    if walked.conversion.error:
        st.error(plain(walked.conversion.error), icon=":material/error:")
        return
    output_ui(this, walked)
    step_ui(this, walked)


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    step_through_page()
