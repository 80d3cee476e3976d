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
from date_seq2seq.padding import (
    EVERY_NTH_DATE,
    PAD_SHOWN,
    Padded,
    longest_input,
    padded,
    padding_effect,
)
from ui import charts
from ui.state import (
    EXAMPLES,
    Session,
    default_converter_now,
    session,
    wait_for_default_model,
)
from ui.text import TASK_NAMES, code, plain


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


HUMAN_EXAMPLES = ("Friday, 22 November 2024", "2024年11月22日", "nov 22 2024",
                  "22.11.24", "22nd November 1999", "thu 22 nov 24")  # fmt: skip


def set_text(key: str, text: str) -> None:
    st.session_state[key] = text


def task_ui(this: Session) -> str:
    """Which inputs to convert: the model in use's, unless the user picks the
    other task (read by its default model)."""
    # Kept in the session, not only in the widget: Streamlit forgets a widget's
    # value when another page is open.
    st.session_state.convert_task = this.convert_task or this.converter.task
    return st.radio(
        "Input", list(TASK_NAMES), format_func=TASK_NAMES.get, key="convert_task",
        horizontal=True, on_change=remember_task, args=(this,),
        help="yy-mm-dd: the classic task. As people write them: twelve forms, "
        "from 22.11.24 to Friday, 22 November 2024. Each is read by a model of "
        "its own: the model in use if it reads them, else that task's default.",
    )  # fmt: skip


def remember_task(this: Session) -> None:
    this.convert_task = st.session_state.convert_task


def default_model(task: str) -> Converter:
    """A task's default model; while it first trains, its progress."""
    if not default_checkpoint_path(task).exists():
        wait_for_default_model(task)  # reruns the page once it is saved
    return default_converter_now(task)


def model_to_use(this: Session, task: str) -> Converter:
    """The model in use if it reads this task's dates, else the task's default;
    or – while a run of this task trains – its model so far, if chosen. The
    default is loaded (the human one trained on first use) only if used."""
    own = this.converter.task == task
    name = this.model_name if own else f"the default model for dates {TASK_NAMES[task]}"
    job = this.training
    live = job.live_converter() if job is not None and job.running else None
    if live is not None and live[1].task == task:
        step, converter = live
        choice = st.radio(
            "Convert with",
            [f"{name} (in use)" if own else name,
             f"the model training now, as of step {step:,}"],
            key="convert_with", horizontal=True,
            help="The run replaces the model in use when it ends.",
        )  # fmt: skip
        if choice.startswith("the model training"):
            return converter
    else:
        said = f"Converting with {name}."
        if not own:
            said += f" The model in use reads dates {TASK_NAMES[this.converter.task]}."
        st.caption(plain(said))
    return this.converter if own else default_model(task)


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


SHORTEST, MAX_PADDED = 8, 32  # characters: the shortest form; past the longest (28)


def answered(got: Padded) -> str:
    answer = "".join(got.tokens) or "(nothing)"
    return f"{code(answer)} ({'right' if got.right else 'wrong'})"


def padding_reading(converter: Converter, alone: Padded, far: Padded) -> str:
    """What padding did to this date, from the two decodes' own numbers."""
    pads = far.width - len(alone.source)
    said = (
        f"With {pads} <PAD> after it, the padding took {far.pad_attention:.1%} of "
        "the attention (the mean over the output steps, <EOS> included), and the "
        "answer "
    )
    said += (
        "stayed the same."
        if far.tokens == alone.tokens
        else f"changed: {''.join(alone.tokens)} became {''.join(far.tokens)}."
    )
    if converter.model.cfg.mask_attention:
        said += (
            " This model masks attention: the scores of padded positions are set "
            "to -inf before the softmax, so they get weight exactly 0 and, however "
            "a batch is padded, the answer cannot move. "
            "Untick Mask attention on the Train page to see the other side."
        )
    else:
        said += (
            " This model does not mask attention: the softmax spreads weight over "
            "the padding, so a date's answer may depend on the longest date that "
            "shares its batch."
        )
    return said


def padding_ui(this: Session, converter: Converter, text: str) -> None:
    """The same date at two paddings: pad columns drawn, both answers shown."""
    st.markdown("#### The same date, two paddings")
    st.caption(
        "A batch is padded with <PAD> to its longest input, so a short date gets "
        f"padding after it. Columns marked {PAD_SHOWN} are <PAD>."
    )
    # Fixed bounds: a slider whose bounds change with the date forgets its value.
    width = st.slider("Pad to (characters)", SHORTEST, MAX_PADDED, 30, key="pad_to")
    alone, far = padded(converter, text, 0), padded(converter, text, width)
    st.markdown(
        f"Padded to its own length ({alone.width}), as above: {answered(alone)}. "
        f"Padded to {far.width}: {answered(far)}."
    )
    if far.attention:
        chart = charts.attention_chart(
            far.columns, far.tokens, far.attention, "padded heatmap"
        )
        st.vega_lite_chart(chart, width="stretch", key="padded_heatmap")
    st.info(plain(padding_reading(converter, alone, far)), icon=":material/grid_on:")
    measure_ui(this, converter, width)


def measure_ui(this: Session, converter: Converter, width: int) -> None:
    """Every form at this padding: attention on <PAD>, answers right both ways,
    and the inputs whose answer moved (a click puts one in the box)."""
    days = converter.window.dates()[::EVERY_NTH_DATE]
    width = max(width, longest_input(days))  # padding cannot shorten an input
    measured = (converter.checkpoint.fingerprint, width)
    if st.button(
        f"Measure every form padded to {width} ({len(days)} dates each)",
        key="measure_padding",
        help=f"Every {EVERY_NTH_DATE}th date of the window in each of the twelve "
        f"forms, decoded padded to {width} and padded to its own length.",
    ):  # fmt: skip
        this.padding_effects = (measured, padding_effect(converter, days, width))
    if not this.padding_effects or this.padding_effects[0] != measured:
        return
    effects = this.padding_effects[1]
    table = [
        {
            "form": e.form,
            "on <PAD>": f"{e.pad_attention:.2%}",
            f"right at {width}": e.right_padded,
            "right unpadded": e.right_alone,
            "moved": len(e.changed),
        }
        for e in effects
    ]
    st.caption(
        f"Per form: the share of the attention on <PAD>, answers right padded to "
        f"{width} and unpadded, and answers that moved between the two."
    )
    st.dataframe(table, hide_index=True, width="stretch", key="padding_table",
                 height=35 * (len(table) + 1) + 3)  # fmt: skip
    moved = [text for e in effects for text in e.changed]
    if not moved:
        st.caption(f"No answer moved between its own length and {width} characters.")
        return
    st.caption(f"{len(moved):,} answers moved with the padding; some of them:")
    with st.container(horizontal=True, gap="small"):
        for example in moved[:6]:
            st.button(example, key=f"moved_{example}", on_click=set_text,
                      args=("human_date", example))  # fmt: skip


def convert_page() -> None:
    this = session()
    st.title("Convert a date")
    st.caption(
        "A character-level LSTM encoder-decoder rewrites `24-11-22` as "
        "`22/Nov/2024`. Type a date and see where it looked."
    )
    task = task_ui(this)
    converter = model_to_use(this, task)
    if task == "human":
        examples, key, label = HUMAN_EXAMPLES, "human_date", "Date as you write it"
        hint = FORMS_HINT[0].upper() + FORMS_HINT[1:] + "."
    else:
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
        if converter.task == "human" and result.correct is not None and not searched:
            padding_ui(this, converter, text)
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
