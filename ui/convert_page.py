"""Convert: type a date; see the answer beside the calendar's, and where it looked."""

from __future__ import annotations

import streamlit as st

from date_seq2seq.config import LENGTH_ALPHA
from date_seq2seq.converter import (
    BeamView,
    Conversion,
    Converter,
    Hypothesis,
    default_checkpoint_path,
)
from date_seq2seq.forms import FORMS_HINT
from ui import charts
from ui.state import (
    EXAMPLES,
    Session,
    default_converter_now,
    session,
    wait_for_default_model,
)
from ui.text import code, plain


def marked_tokens(result: Conversion) -> str:
    """The output tokens, each on green if right and red if wrong."""
    marks = result.token_correct()
    if marks is None:
        return " ".join(code(t) for t in result.tokens)
    missing = len(result.expected_tokens or ()) - len(result.tokens)
    parts = [
        f":{'green' if ok else 'red'}-background[{plain(token)}]"
        for token, ok in zip(result.tokens, marks, strict=True)
    ]
    parts += [":red-background[∅]"] * max(missing, 0)
    return " ".join(parts)


TASKS = {"yymmdd": "yy-mm-dd", "human": "as people write them"}
HUMAN_EXAMPLES = ("Friday, 22 November 2024", "2024年11月22日", "nov 22 2024",
                  "22.11.24", "22nd November 1999", "thu 22 nov 24")  # fmt: skip


def set_text(key: str, text: str) -> None:
    st.session_state[key] = text


def human_model() -> Converter:
    """The human task's default model; while it first trains, its progress."""
    if not default_checkpoint_path("human").exists():
        wait_for_default_model("human")  # reruns the page once it is saved
    return default_converter_now("human")


def model_to_use(this: Session) -> Converter:
    """The model in use, or – while a run trains – its model so far, if chosen."""
    job = this.training
    live = job.live_converter() if job is not None and job.running else None
    if live is None:
        st.caption(f"Converting with {plain(this.model_name)}.")
        return this.converter
    step, converter = live
    choice = st.radio(
        "Convert with",
        [f"{this.model_name} (in use)", f"the model training now, as of step {step:,}"],
        key="convert_with",
        horizontal=True,
        help="The run replaces the model in use when it ends.",
    )
    return converter if choice.startswith("the model training") else this.converter


def result_ui(result: Conversion) -> None:
    out_col, want_col = st.columns(2)
    with out_col:
        st.markdown("**Model output**")
        if result.output:
            st.markdown(f"### {code(result.output)}")
        else:  # a half-trained model may end at once
            st.markdown("### *(nothing)*")
        st.markdown(marked_tokens(result))
    with want_col:
        st.markdown("**Correct answer** (from the calendar)")
        st.markdown(f"### {code(result.expected or '?')}")
        if result.correct is True:
            st.success("Right, token for token.", icon=":material/check:")
        elif result.correct is False:
            differ = sum(not ok for ok in result.token_correct() or [])
            missing = max(0, len(result.expected_tokens) - len(result.tokens))
            said = f"{differ} token(s) differ" if differ else "no token differs"
            if missing:
                said += f", {missing} missing (∅)"
            st.markdown(f":red[**Wrong:** {said}, marked red.]")


def beam_ui(searched: BeamView) -> None:
    """The hypotheses the beam kept, best first, and why greedy differs or not."""
    st.markdown("#### What the beam kept")
    greedy_rank = searched.greedy_rank
    rows = [
        hypothesis_row(h, i + 1, "won" if i == 0 else "", i == greedy_rank)
        for i, h in enumerate(searched.hypotheses)
    ]
    if greedy_rank is None:  # greedy's own answer was pruned: show it anyway
        rows.append(hypothesis_row(searched.greedy, None, "not kept", True))
    st.dataframe(rows, hide_index=True, width="stretch", key="hypotheses")
    st.caption(plain(searched.why()))


def hypothesis_row(h: Hypothesis, rank: int | None, verdict: str, greedy: bool) -> dict:
    weakest = min(range(len(h.probs)), key=h.probs.__getitem__, default=None)
    return {
        "#": rank,
        "answer": h.output or "(nothing)",
        "ended": "<EOS>" in h.tokens,
        "tokens": len(h.tokens),
        "log-probability": round(h.logprob, 3),
        "score": round(h.score, 3),
        "least sure token": "" if weakest is None else (
            f"{h.tokens[weakest]} at step {weakest + 1}: {h.probs[weakest]:.1%}"),
        "note": ", ".join(filter(None, [verdict, "greedy's answer" if greedy else ""])),
    }  # fmt: skip


def convert_page() -> None:
    this = session()
    st.title("Convert a date")
    st.caption(
        "A character-level LSTM encoder-decoder rewrites `24-11-22` as "
        "`22/Nov/2024`. Type a date and see where it looked."
    )
    task = st.radio(
        "Input", list(TASKS), format_func=TASKS.get, key="task", horizontal=True,
        help="yy-mm-dd: the classic task. As people write them: twelve forms, "
        "from 22.11.24 to Friday, 22 November 2024, read by their own model.",
    )  # fmt: skip
    if task == "human":
        converter = human_model()
        cfg = converter.model.cfg
        st.caption(
            "Converting with the default model for dates as people write them "
            f"(hidden {cfg.encoder_hidden}, {cfg.attention} attention); the "
            "sidebar's model, and the other pages, read yy-mm-dd."
        )
        examples, key, label = HUMAN_EXAMPLES, "human_date", "Date as you write it"
        hint = FORMS_HINT[0].upper() + FORMS_HINT[1:] + "."
    else:
        converter = model_to_use(this)
        examples, key, label = EXAMPLES, "date", "Date as yy-mm-dd"
        hint = "Two-digit year, month, day: 24-11-22 is 22 November 2024."
    with st.container(horizontal=True, gap="small"):  # wraps on a narrow screen
        for example in examples:
            st.button(example, key=f"example_{example}", on_click=set_text,
                      args=(key, example))  # fmt: skip
    left, right = st.columns([3, 2])
    st.session_state.setdefault(key, examples[0])
    text = left.text_input(
        label, key=key, placeholder=examples[0],
        help=f"{hint} The model was trained on {converter.window.describe()}.",
    )  # fmt: skip
    search = right.radio(
        "Decoding", ["greedy", "beam search"], key="search", horizontal=True
    )
    searched = None
    walked = converter.step_through(text, top_k=3)  # one decode: answer and steps
    result = walked.conversion
    if search != "greedy":
        beam = right.slider("Beam width", 2, 8, 3, key="beam")
        alpha = right.slider(
            "Length penalty α", 0.0, 2.0, LENGTH_ALPHA, 0.1, key="alpha",
            help="A hypothesis is ranked by its summed log-probability divided by "
            "((5 + length) / 6) ** α (GNMT). At 0 a short answer is favoured: each "
            "token more can only lower the sum.",
        )  # fmt: skip
        searched = converter.beam(text, beam, alpha)
        result = searched.conversion
    if result.error:
        st.error(plain(result.error), icon=":material/error:")
        return
    if result.warning:
        st.warning(
            plain(result.warning) + " There is no right answer to check it against.",
            icon=":material/warning:",
        )
    result_ui(result)
    if converter.model.cfg.attention == "none":
        st.info("This model has no attention, so there is no heatmap to show.")
    elif result.attention is None:
        st.info("The output is empty, so there are no attention rows to show.")
    else:
        st.markdown("#### Where the model looked")
        st.caption(
            "Each row is one output token; the cells are the softmax attention "
            "weights over the input characters when it was produced (rows sum to 1)."
        )
        heatmap = charts.attention_chart(
            result.input, result.tokens, result.attention, "attention heatmap"
        )
        st.vega_lite_chart(heatmap, width="stretch", key="heatmap")
    if searched is not None:
        beam_ui(searched)
    st.markdown("#### Step by step (greedy)")
    table = [
        {
            "step": i + 1,
            "fed in": s.fed,
            "emitted": s.chosen,
            **{f"#{r + 1}": f"{token}  {p:.1%}" for r, (token, p) in enumerate(s.top)},
        }
        for i, s in enumerate(walked.steps)
    ]
    st.dataframe(table, hide_index=True, width="stretch", key="steps")


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    convert_page()
