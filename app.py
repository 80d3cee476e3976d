"""date_seq2seq: convert dates with a seq2seq model, watch it train, see where it looks.

The UI only: every computation is in the `date_seq2seq` package. Each browser
session keeps its own model and training history in `st.session_state`; only
the default model, which nobody changes, is shared through `st.cache_resource`.
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict

import altair as alt
import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler
from streamlit.delta_generator import DeltaGenerator

# One math thread per process, set before torch is imported: the app's work
# is one date or one small batch at a time, where a second thread costs more
# than it gives (2.4 ms vs 4.9 ms for a date with its trace; training equal),
# and two sessions training at once then share the two cores, not fight.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from date_seq2seq.checkpoint import CheckpointError
from date_seq2seq.comparison import Comparison, RunReport, Variant
from date_seq2seq.config import ATTENTION_KINDS, CELL_KINDS, DataConfig, TrainConfig
from date_seq2seq.converter import (
    Conversion,
    Converter,
    default_checkpoint_path,
    forceable_tokens,
)
from date_seq2seq.data import MONTHS, DateDataset, InputError
from date_seq2seq.exposure import Exposure, GapRecorder, token_accuracies, wrong_dates
from date_seq2seq.exposure import exposure as decode_both_ways
from date_seq2seq.forming import AttentionRecorder, Snapshot, probe_recorder
from date_seq2seq.train_setup import BOUNDS, CHOICES, Setup
from date_seq2seq.training import Progress, Trainer
from date_seq2seq.vocab import EOS

EXAMPLES = ("24-11-22", "74-01-01", "00-02-29", "34-12-31", "24-02-30", "50-01-01")
REDRAW_SECONDS = 0.5  # live charts redraw at most this often
EVAL_EVERY = 25  # steps between held-out evaluations while training in the app
TABS = (
    "Convert",
    "Step through",
    "Exposure bias",
    "Train",
    "Attention forming",
    "Compare runs",
)


# --- state ------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def default_converter(path: str, mtime: float) -> Converter:
    """Load the default model once per server; (path, mtime) key the cache."""
    return Converter.from_path(path)


def train_default_ui(slot: DeltaGenerator) -> None:
    """Train and save the default model, with a progress bar (first start only).

    Drawn inside `slot`, a placeholder every run has at the same place: extra
    elements above the tabs on this run only would shift them, and the browser
    would then reset the selected tab on the next run.
    """
    with slot.container():
        st.info(
            "No default model yet: training one now (a few seconds, first start only)."
        )
        bar = st.progress(0.0, text="Training the default model")

    def show(event: Progress) -> None:
        if event.kind == "epoch":
            exact = (event.metrics or {}).get("held_out_exact_match", 0.0)
            bar.progress(
                min(1.0, exact),
                text=f"Epoch {event.epoch}: held-out exact match {exact:.1%}",
            )

    trainer = Trainer()
    trainer.run(on_progress=show)
    trainer.checkpoint().save(default_checkpoint_path())
    slot.empty()


def init_state(slot: DeltaGenerator) -> None:
    """Give this session a model: the default one, trained first if missing."""
    if "converter" in st.session_state:
        return
    path = default_checkpoint_path()
    if not path.exists():
        train_default_ui(slot)
    try:
        converter = default_converter(str(path), path.stat().st_mtime)
    except CheckpointError as e:
        st.error(f"The default model at {path} cannot be used: {e}")
        if st.button("Train a new default model", key="retrain_default"):
            path.unlink(missing_ok=True)
            st.rerun()
        st.stop()
    st.session_state.converter = converter
    st.session_state.model_name = "the default model"
    st.session_state.setdefault("date", EXAMPLES[0])
    st.session_state.setdefault("losses", [])
    st.session_state.setdefault("evals", [])


def set_date(text: str) -> None:
    st.session_state.date = text


def request_training() -> None:
    st.session_state.train_requested = True


def request_stop() -> None:
    st.session_state.stop_requested = True
    st.session_state.stop_requested_by_user = True


# --- charts -----------------------------------------------------------------
# Every spec is built with Altair once per process, then copied and filled in:
# validating an Altair chart costs 10-40 ms, and one run of the page draws a
# dozen charts. A string "@name" in a spec is a placeholder `filled` replaces
# (["@name"] for a list). Data rows are passed beside the spec, not inside it.


@functools.cache
def _spec_text(build: Callable[[], alt.TopLevelMixin]) -> str:
    spec = build().to_dict()
    # Altair gives a chart without data an empty named data set of one blank
    # row; drawn beside the real rows it becomes a NaN row. The rows passed
    # with the spec are the only data.
    for part in [spec, *spec.get("layer", [])]:
        part.pop("data", None)
    spec.pop("datasets", None)
    return json.dumps(spec)


def filled(build: Callable[[], alt.TopLevelMixin], **values: object) -> dict:
    """A fresh copy of the spec `build` makes, its placeholders replaced."""
    text = _spec_text(build)
    for name, value in values.items():
        hole = [f"@{name}"] if isinstance(value, list) else f"@{name}"
        text = text.replace(json.dumps(hole), json.dumps(value))
    return json.loads(text)


def labels(names: Sequence[str]) -> str:
    """A Vega expression labelling position i of an axis with names[i].

    Positions, not the names, go on the axes: repeated '-' or '1' would collapse.
    """
    return f"{json.dumps(list(names))}[datum.value]"


def _heatmap() -> alt.LayerChart:
    base = alt.Chart().encode(
        x=alt.X(
            "input_position:O",
            title="input character",
            axis=alt.Axis(labelExpr="@x_labels", labelAngle=0, orient="top"),
        ),
        y=alt.Y(
            "output_step:O", title="output token", axis=alt.Axis(labelExpr="@y_labels")
        ),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "weight:Q",
            scale=alt.Scale(domain=[0, 1], scheme="blues"),
            title="attention",
        ),
        tooltip=[
            alt.Tooltip("output_token:N", title="output"),
            alt.Tooltip("input_char:N", title="input"),
            alt.Tooltip("input_position:O", title="position"),
            alt.Tooltip("weight:Q", format=".3f"),
        ],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("weight:Q", format=".2f"),
        color=alt.condition(
            alt.datum.weight > 0.5, alt.value("white"), alt.value("#333")
        ),
    )
    return (cells + text).properties(height=340, description="@description")


def attention_chart(
    chars: Sequence[str],
    tokens: Sequence[str],
    weights: Sequence[Sequence[float]],
    description: str,
) -> tuple[list[dict], dict]:
    """Heatmap rows and spec: input position on x, output token on y.

    `description` names the chart for screen readers (and tests).
    """
    chars, tokens = list(chars), list(tokens)
    rows = [
        {
            "output_step": i,
            "output_token": token,
            "input_position": j,
            "input_char": chars[j],
            "weight": weight,
        }
        for i, (token, row) in enumerate(zip(tokens, weights, strict=True))
        for j, weight in enumerate(row)
    ]
    spec = filled(
        _heatmap,
        x_labels=labels(chars),
        y_labels=labels(tokens),
        description=description,
    )
    return rows, spec


def _vector() -> alt.Chart:
    return (
        alt.Chart(title="@title")
        .mark_rect()
        .encode(
            x=alt.X(
                "dim:O", title="dimension", axis=alt.Axis(labels=False, ticks=False)
            ),
            color=alt.Color(
                "value:Q", scale=alt.Scale(scheme="redblue", domainMid=0), legend=None
            ),
            tooltip=["dim:O", alt.Tooltip("value:Q", format=".3f")],
        )
        # With autosize "fit" the height includes the title: leave the cells room.
        .properties(height=110, description="@description")
    )


def vector_chart(
    values: Sequence[float], title: str, description: str
) -> tuple[list[dict], dict]:
    """A vector as one row of cells coloured by value, red < 0 < blue."""
    rows = [{"dim": i, "value": v} for i, v in enumerate(values)]
    return rows, filled(_vector, title=title, description=description)


def _per_input() -> alt.Chart:
    return (
        alt.Chart(title="@title")
        .mark_bar()
        .encode(
            x=alt.X(
                "input_position:O",
                title="input character",
                axis=alt.Axis(labelExpr="@x_labels", labelAngle=0),
            ),
            y=alt.Y("value:Q", title=None),
            tooltip=["input_char:N", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=230, description="@description")
    )


def per_input_chart(
    chars: str, values: Sequence[float], title: str, description: str
) -> tuple[list[dict], dict]:
    """One bar per input character (by position: repeated '-' stay apart)."""
    rows = [
        {"input_position": j, "input_char": c, "value": v}
        for j, (c, v) in enumerate(zip(chars, values, strict=True))
    ]
    spec = filled(
        _per_input, x_labels=labels(chars), title=title, description=description
    )
    return rows, spec


def _top() -> alt.Chart:
    return (
        alt.Chart(title="5. The output layer's top candidates")
        .mark_bar()
        .encode(
            y=alt.Y(
                "rank:O",
                title=None,
                axis=alt.Axis(labelExpr="@y_labels", labelOverlap=False),
            ),
            x=alt.X(
                "p:Q",
                title="probability",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=["token:N", alt.Tooltip("p:Q", format=".1%")],
        )
        .properties(height=230, description="top outputs")
    )


def top_chart(top: Sequence[tuple[str, float]]) -> tuple[list[dict], dict]:
    rows = [{"rank": r, "token": t, "p": p} for r, (t, p) in enumerate(top)]
    return rows, filled(_top, y_labels=labels([t for t, _ in top]))


def _sharpness() -> alt.LayerChart:
    title = alt.Title(
        "Sharpness", subtitle="Mean of each row's largest weight: 1/8 is a blur."
    )
    line = (
        alt.Chart(title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q"),
            y=alt.Y("sharpness:Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["step:Q", alt.Tooltip("sharpness:Q", format=".2f")],
        )
    )
    shown = alt.Chart().mark_rule(color="red").encode(x="step:Q")
    return (line + shown.transform_filter("@shown")).properties(
        height=300, description="sharpness"
    )


def sharpness_chart(
    snapshots: Sequence[Snapshot], shown: int
) -> tuple[list[dict], dict]:
    """Sharpness of every snapshot, with a rule at the step shown."""
    rows = [{"step": s.step, "sharpness": s.sharpness()} for s in snapshots]
    return rows, filled(_sharpness, shown=f"datum.step == {int(shown)}")


def _curves() -> alt.Chart:
    return (
        alt.Chart(title="Held-out exact match, free-running")
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q"),
            y=alt.Y(
                "exact_match:Q",
                title="exact match",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color("variant:N", title=None),
            tooltip=[
                "variant:N",
                "step:Q",
                "epoch:Q",
                alt.Tooltip("seconds:Q", format=".1f"),
                alt.Tooltip("exact_match:Q", format=".1%"),
            ],
        )
        .properties(height=300, description="compared curves")
    )


def curves_chart(comparison: Comparison) -> tuple[list[dict], dict]:
    """Every compared variant's held-out curve, one colour each."""
    rows = [
        {"variant": v.name, **point}
        for v, curve in list(comparison.curves.items())
        for point in list(curve)
    ]
    return rows, filled(_curves)


def _confusion() -> alt.LayerChart:
    base = alt.Chart().encode(
        # Every month on both axes, in calendar order, so the grid is always 12
        # by 12 (plus whatever else was written, e.g. "?").
        x=alt.X(
            "output:O",
            scale=alt.Scale(domain=["@x_order"]),
            title="month in the output",
            axis=alt.Axis(orient="top", labelAngle=0),
        ),
        y=alt.Y("right:O", scale=alt.Scale(domain=list(MONTHS)), title="right month"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="oranges", type="log")),
        tooltip=["right:O", "output:O", "count:Q"],
    )
    text = base.mark_text(fontSize=11).encode(text="count:Q")
    return (cells + text).properties(height=380, description="month confusion")


def confusion_chart(report: RunReport) -> tuple[list[dict], dict]:
    """Right month against the month written, counted; other values at the end."""
    rows = [
        {"right": a, "output": b, "count": n}
        for (a, b), n in report.month_confusion.items()
    ]
    others = sorted({b for _, b in report.month_confusion} - set(MONTHS))
    return rows, filled(_confusion, x_order=[*MONTHS, *others])


def _loss() -> alt.Chart:
    return (
        alt.Chart(title="Training loss per token")
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("loss:Q", title="loss per token", scale=alt.Scale(type="log")),
            tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f")],
        )
        .properties(height=260, description="training loss")
    )


ACCURACY_MEASURES = ("tokens, teacher-forced", "tokens, free-running", "dates exact")


def _accuracy() -> alt.Chart:
    return (
        alt.Chart(
            title=alt.Title(
                "Held-out accuracy",
                subtitle="Tokens right when fed the truth (teacher-forced) and when "
                "fed its own output (free-running): the gap is exposure bias.",
            ),
        )
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y(
                "accuracy:Q",
                title="accuracy",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(
                    domain=ACCURACY_MEASURES, range=["#1f77b4", "#d62728", "#7f7f7f"]
                ),
            ),
            tooltip=["step:Q", "measure:N", alt.Tooltip("accuracy:Q", format=".1%")],
        )
        .properties(height=260, description="held-out accuracy")
    )


def accuracy_rows(
    evals: list[dict[str, float]], gaps: list[dict[str, float]]
) -> list[dict[str, object]]:
    """Long-form rows: token accuracy both ways, and exact match.

    Exact match is one line: a date is all right teacher-forced exactly when
    it is all right free-running (token_accuracies says why).
    """
    tokens = [
        {"step": g["step"], "measure": name, "accuracy": g[key]}
        for g in gaps
        for name, key in (
            (ACCURACY_MEASURES[0], "teacher_forced"),
            (ACCURACY_MEASURES[1], "free_running"),
        )
    ]
    exact = [
        {"step": e["step"], "measure": ACCURACY_MEASURES[2], "accuracy": e[key]}
        for e in evals
        if (key := "held_out_exact_match") in e
    ]
    return tokens + exact


# --- convert ----------------------------------------------------------------


def marked_tokens(result: Conversion) -> str:
    """Markdown of the output tokens, each green if right and red if wrong."""
    marks = result.token_correct()
    if marks is None:
        return " ".join(f"`{t}`" for t in result.tokens)
    missing = len(result.expected_tokens or ()) - len(result.tokens)
    parts = [
        f":{'green' if ok else 'red'}-background[{token}]"
        for token, ok in zip(result.tokens, marks, strict=True)
    ]
    parts += [":red-background[∅]"] * max(missing, 0)
    return " ".join(parts)


def convert_ui(converter: Converter) -> None:
    st.caption("Try one of these:")
    for col, example in zip(st.columns(len(EXAMPLES)), EXAMPLES, strict=True):
        col.button(
            example,
            key=f"example_{example}",
            on_click=set_date,
            args=(example,),
            width="stretch",
        )
    left, right = st.columns([3, 2])
    text = left.text_input(
        "Date as yy-mm-dd", key="date", placeholder="24-11-22", help=(
            "Two-digit year, month, day: 24-11-22 is 22 November 2024. The model "
            f"was trained on {converter.window.describe()}."
        ),
    )  # fmt: skip
    search = right.radio(
        "Decoding", ["greedy", "beam search"], key="search", horizontal=True
    )
    beam = 1
    if search == "beam search":
        beam = right.slider("Beam width", 2, 8, 3, key="beam")

    if beam == 1:  # output, attention and step table from one decode
        walked = converter.step_through(text, top_k=3)
        result, steps = walked.conversion, list(walked.steps)
    else:
        result = converter.convert(text, beam_size=beam)
        steps = [] if result.error else list(converter.step_through(text).steps)
    if result.error:
        st.error(result.error, icon=":material/error:")
        return
    if result.warning:
        st.warning(
            f"{result.warning}. The model's guess is shown, but there is no "
            "right answer to check it against.",
            icon=":material/warning:",
        )
    out_col, want_col = st.columns(2)
    with out_col:
        st.markdown("**Model output**")
        st.markdown(f"### `{result.output}`")
        st.markdown(marked_tokens(result))
    with want_col:
        st.markdown("**Correct answer** (from the calendar)")
        st.markdown(f"### `{result.expected or '?'}`")
        if result.correct is True:
            st.success("Right, token for token.", icon=":material/check:")
        elif result.correct is False:
            wrong = sum(not ok for ok in result.token_correct() or [])
            st.markdown(f":red[**Wrong:** {wrong} token(s) differ, marked red.]")

    if result.attention is None:
        st.info("This model has no attention, so there is no heatmap to show.")
    else:
        st.markdown("#### Where the model looked")
        st.caption(
            "Each row is one output token; the cells are the softmax attention "
            "weights over the input characters when it was produced (rows sum to 1)."
        )
        rows, spec = attention_chart(
            result.input, result.tokens, result.attention, "attention heatmap"
        )
        st.vega_lite_chart(rows, spec, width="stretch", key="heatmap")

    st.markdown("#### Step by step (greedy)")
    table = [
        {
            "step": i + 1,
            "fed in": s.fed,
            "emitted": s.chosen,
            **{f"#{r + 1}": f"{token}  {p:.1%}" for r, (token, p) in enumerate(s.top)},
        }
        for i, s in enumerate(steps)
    ]
    st.dataframe(table, hide_index=True, width="stretch", key="trace")


# --- train ------------------------------------------------------------------


def init_setup() -> None:
    """Read the page's query parameters into the Train form, once per session.

    A shared link carries a whole setup; a bad value in it keeps its default
    and is reported above the tabs, never raised.
    """
    if "setup" in st.session_state:
        return
    params = st.query_params.to_dict()
    setup, problems = Setup.from_params(params)
    st.session_state.setup = setup
    st.session_state.setup_problems = problems
    # A link with a setup opens on the Train tab: that is what it is for.
    linked = any(name in asdict(setup) for name in params)
    st.session_state.first_tab = "Train" if linked else "Convert"


def setup_problems_ui(slot: DeltaGenerator) -> None:
    problems = st.session_state.get("setup_problems")
    if problems:
        with slot.container():
            st.warning(
                "This link's training setup has values that cannot be used; the "
                "Train form shows the defaults for them instead:",
                icon=":material/link_off:",
            )
            # As plain text: the problems quote the link, which anyone can write.
            st.code("\n".join(problems), language=None, wrap_lines=True)


def train_form_ui() -> Setup | None:
    """Draw the training controls; return the setup when Train is pressed.

    The widgets' keys are the Setup's field names, and their ranges are the
    ones a link is checked against, so any value a link may carry fits.
    """
    for name, value in asdict(st.session_state.setup).items():
        st.session_state.setdefault(name, value)  # the link's or the last run's
    with st.form("train_form", border=True):
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Attention", CHOICES["attention"], key="attention")
        c1.selectbox("Cell", CHOICES["cell"], key="cell")
        c1.number_input("Seed", *BOUNDS["seed"], key="seed")
        c2.number_input("Embedding size", *BOUNDS["embedding"], key="embedding")
        c2.number_input("Hidden size", *BOUNDS["hidden"], key="hidden")
        c2.number_input("Layers", *BOUNDS["layers"], key="layers")
        c3.slider("Dropout", *BOUNDS["dropout"], step=0.05, key="dropout")
        c3.select_slider("Learning rate", options=CHOICES["lr"], key="lr")
        c3.slider(
            "Scheduled sampling p",
            *BOUNDS["sampling"],
            step=0.05,
            key="sampling",
            help="Per token, feed the model its own prediction with this "
            "probability instead of the true previous token (0 = teacher forcing).",
        )
        c4.select_slider("Batch size", CHOICES["batch"], key="batch")
        c4.number_input("Epochs (at most)", *BOUNDS["epochs"], key="epochs")
        c4.number_input(
            "Training dates", *BOUNDS["train_size"], step=50, key="train_size"
        )
        c2.text_input(
            "Probe date",
            key="probe",
            help="Its attention map is recorded while training: see the "
            "Attention forming tab.",
        )
        c3.number_input(
            "Record it every (steps)", *BOUNDS["snapshot_every"], key="snapshot_every"
        )
        st.form_submit_button("Train", type="primary", on_click=request_training)
    # A callback, not the button's return value: when a click interrupts a run,
    # Streamlit can hand the previous run's button press to the next run, and
    # clicking "Stop training" would then start training again.
    if not st.session_state.pop("train_requested", False):
        return None
    try:
        setup = Setup(**{name: st.session_state[name] for name in asdict(Setup())})
    except ValueError as e:
        st.error(f"These settings cannot be trained: {e}")
        return None
    # The page's address now reproduces this setup: a link to share.
    st.session_state.setup = setup
    st.session_state.setup_problems = []
    st.query_params.from_dict(setup.to_params())
    return setup


def share_link_ui() -> None:
    params = urllib.parse.urlencode(st.session_state.setup.to_params())
    st.markdown("#### Share this setup")
    st.caption(
        "The page's address holds the Train form's settings once you train: send "
        "the link and the same form, seed and data open on the other side."
    )
    st.code(f"{st.context.url or ''}?{params}", language=None, wrap_lines=True)


def draw_curves(loss_slot, accuracy_slot) -> None:  # noqa: ANN001 - st.empty slots
    losses, evals = st.session_state.losses, st.session_state.evals
    if not losses:
        return
    # Redraws pass new data only: the specs are built once (see `filled`).
    loss_slot.vega_lite_chart(losses, filled(_loss), width="stretch")
    rows = accuracy_rows(evals, st.session_state.get("gaps", []))
    accuracy_slot.vega_lite_chart(rows, filled(_accuracy), width="stretch")


def run_training(setup: Setup) -> None:
    """Train live; the session keeps whatever was trained, however the run ends."""
    data_cfg, model_cfg, train_cfg = setup.configs()
    try:
        trainer = Trainer(data_cfg, model_cfg, train_cfg)
        recorder = None
        if model_cfg.attention != "none":
            recorder = probe_recorder(trainer, setup.probe, setup.snapshot_every)
    except ValueError as e:  # InputError included
        st.error(f"These settings cannot be trained: {e}")
        return
    st.session_state.recorder = recorder  # the new run's snapshots, as they come
    st.session_state.gaps = GapRecorder(trainer).points  # filled as it goes
    st.button(
        "Stop training", key="stop", on_click=request_stop, icon=":material/stop:"
    )
    bar = st.progress(0.0, text="Starting")
    loss_slot, accuracy_slot = st.empty(), st.empty()
    losses, evals = [], []
    st.session_state.losses, st.session_state.evals = losses, evals
    last_draw = [0.0]

    def on_progress(event: Progress) -> None:
        # State first, UI second: a click interrupts the script at the UI call.
        if event.kind == "step":
            losses.append({"step": event.step, "loss": event.loss})
        elif event.metrics:
            evals.append({"step": event.step, **event.metrics})
        now = time.monotonic()
        if event.kind == "step" and now - last_draw[0] < REDRAW_SECONDS:
            return
        last_draw[0] = now
        exact = evals[-1]["held_out_exact_match"] if evals else 0.0
        # Training ends at the target accuracy, so that is the progress to show.
        bar.progress(
            min(1.0, exact / max(train_cfg.target_accuracy, 1e-9)),
            text=f"Epoch {event.epoch}, step {event.step}: loss {event.loss:.4f}, "
            f"held-out exact match {exact:.1%} (stops at "
            f"{train_cfg.target_accuracy:.0%} or after {train_cfg.epochs} epochs)",
        )
        draw_curves(loss_slot, accuracy_slot)

    should_stop: Callable[[], bool] = lambda: bool(  # noqa: E731
        st.session_state.get("stop_requested")
    )
    st.session_state.trainer = trainer  # adopted by the next run, however this ends
    result = trainer.run(on_progress, should_stop, eval_every=EVAL_EVERY)
    st.session_state.training_outcome = result.stop_reason
    st.session_state.training_message = result.message
    st.rerun()  # redraw the whole page with the new model


def adopt_trained_model(slot: DeltaGenerator) -> None:
    """Make the last training run's model this session's, once it has stopped.

    A click during training (Stop or any other) starts a new script run while
    the training loop may still be finishing its step, so the request to stop
    is made again here and the run is awaited before its model is used.
    """
    trainer: Trainer | None = st.session_state.get("trainer")
    if trainer is None:
        return
    st.session_state.stop_requested = True  # any rerun ends the running loop
    if not trainer.done.wait(timeout=30):
        slot.warning("The previous training run is still finishing; reload soon.")
        return
    del st.session_state["trainer"]
    recorder: AttentionRecorder | None = st.session_state.get("recorder")
    if recorder is not None and recorder.model is trainer.model:
        recorder.finish(trainer.steps)  # the model as the run left it
    stopped = st.session_state.pop("stop_requested_by_user", False)
    st.session_state.stop_requested = False
    st.session_state.converter = Converter(trainer.checkpoint())
    cfg = trainer.model_config
    st.session_state.model_name = (
        f"your model ({cfg.attention} attention, {cfg.cell}, {trainer.steps} steps)"
    )
    st.session_state.trained_steps = trainer.steps
    if "training_outcome" not in st.session_state or stopped:
        st.session_state.training_outcome = "requested" if stopped else "interrupted"


def training_outcome_ui() -> None:
    outcome = st.session_state.pop("training_outcome", None)
    if outcome is None:
        return
    steps = st.session_state.get("trained_steps", 0)
    if outcome == "diverged":
        st.error(st.session_state.get("training_message", "training diverged"))
    elif outcome in ("requested", "interrupted"):
        st.warning(
            f"Training stopped after {steps} steps. The model trained so far is "
            "now used in the Convert tab."
        )
    else:
        why = {"target": "reached the target accuracy", "epochs": "ran every epoch"}
        st.success(
            f"Training finished after {steps} steps ({why.get(outcome, outcome)}). "
            "The Convert tab now uses this model."
        )


def model_files_ui(converter: Converter) -> None:
    st.markdown("#### Your model as a file")
    left, right = st.columns(2)
    left.download_button(
        "Download model (.pt)",
        data=converter.checkpoint.to_bytes(),
        file_name="date_seq2seq.pt",
        mime="application/octet-stream",
        key="download",
        on_click="ignore",
    )
    upload = right.file_uploader(
        "Upload a checkpoint", type=["pt"], key="upload", help="At most 5 MB."
    )
    if upload is None:  # removed from the uploader: so is what it said
        st.session_state.upload_error = None
    elif upload.file_id != st.session_state.get("upload_id"):
        st.session_state.upload_id = upload.file_id
        try:
            st.session_state.converter = Converter.from_bytes(upload.getvalue())
        except CheckpointError as e:
            st.session_state.upload_error = f"{upload.name} was refused: {e}"
        else:
            st.session_state.upload_error = None
            st.session_state.model_name = f"uploaded {upload.name}"
            st.rerun()
    if st.session_state.get("upload_error"):
        right.error(st.session_state.upload_error)


def train_ui() -> None:
    st.markdown(
        "Train your own model from scratch. The default settings reach 100% "
        "held-out exact match in a few seconds. The second chart is exposure bias "
        "made visible: teacher-forced accuracy (the decoder fed the true previous "
        "token) runs ahead of free-running accuracy (fed its own); raise "
        "*Scheduled sampling p* to train the way the model is used, and watch the "
        "gap close."
    )
    setup = train_form_ui()
    if setup is not None:
        run_training(setup)
    else:
        training_outcome_ui()
        draw_curves(st.empty(), st.empty())


# --- step through -----------------------------------------------------------

VERDICT_COLOURS = {
    "right": "green",
    "wrong": "red",
    "forced": "violet",
    "unknown": "gray",
}


def code(token: str) -> str:
    """A token as inline code: `<GO>` would otherwise read as an HTML tag."""
    return f"`{token}`"


def forced_for(text: str, converter: Converter) -> dict[int, str]:
    """This session's forced tokens, forgotten when the date or the model changes."""
    key = (text.strip(), converter)
    kept = st.session_state.get("forced")
    if kept is None or kept[0][0] != key[0] or kept[0][1] is not converter:
        st.session_state.forced = (key, {})
        forget_force_choices()
    return st.session_state.forced[1]


def forget_force_choices() -> None:
    """Let each "Emit instead" box show its step's token again, not an old pick."""
    for key in [k for k in st.session_state if k.startswith("force_token_")]:
        del st.session_state[key]


def force_token(step: int) -> None:
    """Emit the chosen token at `step`; later forcings belonged to another path."""
    forced = st.session_state.forced[1]
    for later in [t for t in forced if t > step]:
        del forced[later]
    forced[step] = st.session_state[f"force_token_{step}"]
    forget_force_choices()


def clear_forced() -> None:
    st.session_state.forced[1].clear()
    forget_force_choices()


def step_through_ui(converter: Converter) -> None:
    st.markdown(
        "Walk one conversion step by step: at each step the decoder's previous "
        "hidden state (the query) scores every input character, the softmax turns "
        "the scores into attention weights, and their weighted sum of the encoder "
        "outputs (the context) joins the state to pick the next token. Force a "
        "different token at any step to see whether the model recovers."
    )
    st.session_state.setdefault("walk_date", EXAMPLES[0])
    text = st.text_input("Date to step through", key="walk_date")
    forced = forced_for(text, converter)
    walked = converter.step_through(text, forced, top_k=5)
    if walked.conversion.error:
        st.error(walked.conversion.error, icon=":material/error:")
        return
    verdicts = walked.verdicts()
    st.markdown(
        "**Output:** "
        + " ".join(
            f":{VERDICT_COLOURS[v]}-background[{s.chosen}]"
            for s, v in zip(walked.steps, verdicts, strict=True)
        )
    )
    st.caption("Green: right; red: wrong; violet: forced by you.")
    recovery = walked.after_forcing()
    if recovery is not None:
        right, total = recovery
        where = verdicts.index("forced") + 1
        verdict = "recovered" if right == total else "did not fully recover"
        st.info(
            f"After the token forced at step {where}, the model chose {right} of "
            f"{total} later tokens as the right answer has them: it {verdict}."
            if total
            else f"The token forced at step {where} ended the output: the model "
            "chose nothing after it.",
            icon=":material/alt_route:",
        )
    if forced:
        st.button("Clear forced tokens", key="clear_forced", on_click=clear_forced)

    n = len(walked.steps)
    if st.session_state.get("walk_step") not in range(1, n + 1):
        st.session_state.walk_step = 1
    # Plain step numbers: options that change with the tokens (forcing one)
    # would make a new widget in the browser, showing step 1 whatever is chosen.
    t = st.select_slider("Step", range(1, n + 1), key="walk_step") - 1
    step = walked.steps[t]
    about, top = st.columns([2, 3])
    with about:
        st.markdown(f"**Step {t + 1}**")
        st.markdown(f"Fed in: {code(step.fed)}")
        forced_note = " (forced)" if step.forced else ""
        st.markdown(f"Emitted: {code(step.chosen)}{forced_note}")
        options = forceable_tokens(converter.vocab)
        st.selectbox(
            "Emit instead",
            options,
            # A half-trained model may emit <PAD> or <GO>, which cannot be forced.
            index=options.index(step.chosen) if step.chosen in options else 0,
            key=f"force_token_{t}",
        )
        st.button(
            "Force it and decode on",
            key=f"force_{t}",
            on_click=force_token,
            args=(t,),
            icon=":material/alt_route:",
        )
    top.vega_lite_chart(*top_chart(step.top), width="stretch")
    query = vector_chart(
        step.query, "1. Query: the decoder's previous state h(t-1)", "query vector"
    )
    if step.scores is None:
        st.vega_lite_chart(*query, width="stretch")
        st.info("This model has no attention: no scores, weights or context.")
        return
    left, right = st.columns(2)
    left.vega_lite_chart(*query, width="stretch")
    scores = per_input_chart(
        walked.conversion.input,
        step.scores,
        "2. Raw scores: the query against each input's encoding",
        "attention scores",
    )
    left.vega_lite_chart(*scores, width="stretch")
    weights = per_input_chart(
        walked.conversion.input, step.weights, "3. Softmax of the scores (sums to 1)",
        "attention weights",
    )  # fmt: skip
    right.vega_lite_chart(*weights, width="stretch")
    context = vector_chart(
        step.context,
        "4. Context: the encodings averaged with these weights",
        "context vector",
    )
    right.vega_lite_chart(*context, width="stretch")


# --- exposure bias ------------------------------------------------------------


def held_out_facts(converter: Converter) -> tuple[list[str], dict[str, float]]:
    """Held-out dates this model gets wrong, and its token accuracies both ways.

    Computed once per model (a decode of the held-out dates), not on every run.
    """
    kept = st.session_state.get("held_out_facts")
    if kept is None or kept[0] is not converter:
        days = converter.held_out_days()
        accuracies = {}
        if days:  # an uploaded model may have been trained without held-out dates
            pairs = DateDataset(days, converter.vocab)
            max_len = converter.decode_config.max_len
            accuracies = token_accuracies(converter.model, pairs, max_len)
        wrong = wrong_dates(converter, days, len(EXAMPLES))
        kept = st.session_state.held_out_facts = (converter, wrong, accuracies)
    return kept[1], kept[2]


def set_lab_date(text: str) -> None:
    st.session_state.lab_date = text


CELL_RIGHT = "background-color: #d7f5dd"
CELL_WRONG = "background-color: #fbd5d5"
CELL_PARTED = "background-color: #fde9c4"


def exposure_table(got: Exposure) -> Styler:
    """One row per series, one column per step: the two runs side by side.

    Emitted tokens are green when right and red when wrong; the free run's
    inputs are amber where they differ from teacher forcing's.
    """
    steps = got.steps
    rows = {
        "right answer": [x.target for x in steps],
        "teacher forcing: fed": [x.teacher_fed for x in steps],
        "teacher forcing: emits": [x.teacher_chose for x in steps],
        "free-running: fed": [x.free_fed for x in steps],
        "free-running: emits": [x.free_chose for x in steps],
    }
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    table.columns = [str(t + 1) for t in range(len(steps))]

    def colours(_: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=table.index, columns=table.columns)
        for t, (col, step) in enumerate(zip(table.columns, steps, strict=True)):
            for row in ("teacher forcing: emits", "free-running: emits"):
                if table.at[row, col]:
                    right = table.at[row, col] == (step.target or "")
                    css.at[row, col] = CELL_RIGHT if right else CELL_WRONG
            if step.diverged and steps[t].free_fed is not None:
                css.at["free-running: fed", col] = CELL_PARTED
        return css

    return table.style.apply(colours, axis=None)


def exposure_ui(converter: Converter) -> None:
    st.markdown(
        "In training the decoder is fed the TRUE previous token (teacher forcing); "
        "in use it is fed its OWN previous output (free-running), so one early "
        "mistake changes every later input – exposure bias. For one date, see both "
        "side by side, and where they part."
    )
    wrong, accuracies = held_out_facts(converter)
    if accuracies:
        a, b = st.columns(2)
        tf, fr = accuracies["teacher_forced"], accuracies["free_running"]
        a.metric("Held-out tokens right, teacher-forced", f"{tf:.1%}")
        b.metric("Held-out tokens right, free-running", f"{fr:.1%}")
    if wrong:
        st.caption("Dates this model gets wrong, free-running:")
        for col, example in zip(st.columns(len(EXAMPLES)), wrong, strict=False):
            col.button(
                example,
                key=f"lab_{example}",
                on_click=set_lab_date,
                args=(example,),
                width="stretch",
            )
    else:
        st.caption(
            "This model converts every held-out date right, so both runs feed the "
            "same tokens. To see them part, train a weaker model in the Train tab "
            "(e.g. 1 epoch of 200 dates) or stop a run early."
        )
    st.session_state.setdefault("lab_date", EXAMPLES[0])
    text = st.text_input("Probe date", key="lab_date")
    try:
        got = decode_both_ways(converter, text)
    except InputError as e:
        st.error(e.message, icon=":material/error:")
        return
    steps = len([s for s in got.steps if s.target is not None])
    first = got.first_divergence
    summary = (
        f"Teacher-forced: {got.right('teacher')} of {steps} steps right; "
        f"free-running: {got.right('free')} of {steps}. "
    )
    if first is None:
        st.success(summary + "The two runs are fed the same tokens all the way.")
    else:
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
            summary + f"From step {first + 1} on the free run {how}",
            icon=":material/call_split:",
        )
    st.dataframe(exposure_table(got), width="stretch", key="exposure")
    st.caption(
        "Green: the token emitted is right; red: wrong. Amber: the free run is fed "
        "something other than the truth from here on."
    )


# --- attention forming --------------------------------------------------------


def forming_ui() -> None:
    st.markdown(
        "While a model trains in the Train tab, its attention on the probe date is "
        "recorded every few steps. Slide through training to watch the alignment "
        "form: from a blur over all characters to each output token looking at the "
        "characters it comes from."
    )
    if "recorder" not in st.session_state:
        st.info("Train a model in the Train tab to record how its attention forms.")
        return
    recorder: AttentionRecorder | None = st.session_state.recorder
    if recorder is None:
        st.info("The last model trained has no attention (attention: none).")
        return
    snapshots = {s.step: s for s in recorder.snapshots}
    steps = list(snapshots)
    if st.session_state.get("forming_step") not in snapshots:
        st.session_state.forming_step = steps[-1]
    step = st.select_slider("Training step", options=steps, key="forming_step")
    snap = snapshots[step]
    st.markdown(
        f"Probe {code(recorder.source)} after {step} steps: the model answers "
        f"{code(snap.output or '(nothing)')}; the rows below are the right "
        "answer's tokens, teacher-forced."
    )
    left, right = st.columns([3, 2])
    heatmap = attention_chart(
        recorder.source, recorder.tokens, snap.weights, "attention forming heatmap"
    )
    left.vega_lite_chart(*heatmap, width="stretch")
    right.vega_lite_chart(*sharpness_chart(recorder.snapshots, step), width="stretch")


# --- compare runs -------------------------------------------------------------

COMPARE_EVAL_EVERY = 25


def request_compare() -> None:
    st.session_state.compare_requested = True


def request_compare_stop() -> None:
    st.session_state.compare_stop = True


def settle_comparison(slot: DeltaGenerator) -> None:
    """Let a comparison that a click interrupted end before its results are read."""
    running: Comparison | None = st.session_state.get("comparison_running")
    if running is None:
        return
    st.session_state.compare_stop = True
    if not running.done.wait(timeout=30):
        slot.warning("The comparison is still stopping; reload soon.")
        return
    del st.session_state["comparison_running"]
    st.session_state.compare_stop = False


def compare_form_ui() -> Comparison | None:
    with st.form("compare_form", border=True):
        c1, c2, c3 = st.columns([3, 2, 2])
        kinds = c1.multiselect(
            "Attention",
            ATTENTION_KINDS,
            default=ATTENTION_KINDS,
            key="compare_attention",
        )
        cells = c1.multiselect(
            "Cell", CELL_KINDS, default=["lstm"], key="compare_cells"
        )
        epochs = c2.number_input("Epochs (at most)", 1, 20, 5, key="compare_epochs")
        size = c2.number_input(
            "Training dates", 200, 20000, 4000, 200, key="compare_train_size"
        )
        seed = c3.number_input("Seed", *BOUNDS["seed"], 0, key="compare_seed")
        st.form_submit_button("Compare", type="primary", on_click=request_compare)
    if not st.session_state.pop("compare_requested", False):
        return None
    variants = [Variant(a, c) for c in cells for a in kinds]
    try:
        return Comparison(
            variants,
            DataConfig(train_size=int(size), seed=int(seed)),
            TrainConfig(epochs=int(epochs), seed=int(seed)),
        )
    except ValueError as e:
        st.error(f"Nothing to compare: {e}.")
        return None


def run_comparison(comparison: Comparison) -> None:
    st.session_state.comparison = comparison  # whatever finishes is kept
    st.session_state.comparison_running = comparison
    st.session_state.compare_stop = False
    st.button(
        "Stop comparing",
        key="compare_stop_button",
        on_click=request_compare_stop,
        icon=":material/stop:",
    )
    bar = st.progress(0.0, text="Starting")
    chart_slot = st.empty()
    total = len(comparison.variants)
    last_draw = [0.0]

    def on_progress(variant: Variant, event: Progress) -> None:
        now = time.monotonic()
        if event.kind == "step" and now - last_draw[0] < REDRAW_SECONDS:
            return
        last_draw[0] = now
        done = len(comparison.reports) + event.step / max(event.total_steps, 1)
        bar.progress(
            min(1.0, done / total),
            text=f"Training {variant.name} ({len(comparison.reports) + 1} of "
            f"{total}): epoch {event.epoch}, step {event.step}",
        )
        chart_slot.vega_lite_chart(*curves_chart(comparison), width="stretch")

    comparison.run(
        on_progress,
        lambda: bool(st.session_state.get("compare_stop")),
        eval_every=COMPARE_EVAL_EVERY,
    )
    st.rerun()  # draw the results in place of the progress


ENDINGS = {
    "target": "reached 100%",
    "epochs": "ran every epoch",
    "requested": "stopped",
    "interrupted": "stopped",
    "diverged": "diverged",
}


def report_rows(reports: Sequence[RunReport]) -> list[dict[str, object]]:
    """One row per trained variant; None (an empty cell) where 100% was not reached."""
    rows = []
    for r in reports:
        m, reached = r.metrics, r.reached or {}
        rows.append(
            {
                "variant": r.variant.name,
                "exact match": f"{m['exact_match']:.1%}",
                "token accuracy": f"{m['token_accuracy']:.1%}",
                "BLEU": round(m["bleu"], 3),
                "epochs": r.epochs,
                "steps": r.steps,
                "seconds": round(r.seconds, 1),
                "epochs to 100%": reached.get("epoch"),
                "seconds to 100%": round(reached["seconds"], 1) if reached else None,
                "ended": ENDINGS.get(r.stop_reason, r.stop_reason),
            }
        )
    return rows


def compare_results_ui(comparison: Comparison) -> None:
    reports = comparison.reports
    if not reports:
        st.info("The comparison was stopped before any variant finished.")
        return
    st.vega_lite_chart(*curves_chart(comparison), width="stretch")
    st.dataframe(
        report_rows(reports), hide_index=True, width="stretch", key="compare_table"
    )
    missing = len(comparison.variants) - len(reports)
    if missing:
        st.caption(f"{missing} variant(s) not trained: the comparison was stopped.")
    imperfect = [r for r in reports if not r.perfect]
    if not imperfect:
        st.success("Every variant converts every held-out date right.")
        return
    st.markdown("#### Where the imperfect ones go wrong")
    st.caption(
        "Wrong held-out outputs, and in how many of them each field is wrong (an "
        "output can be wrong in two fields; *shape*: not day/month/year at all)."
    )
    st.dataframe(
        [{"variant": r.variant.name, **r.errors} for r in imperfect],
        hide_index=True,
        width="stretch",
        key="compare_errors",
    )
    names = [r.variant.name for r in imperfect]
    name = st.selectbox("Month confusion matrix of", names, key="confusion_variant")
    report = imperfect[names.index(name)]
    st.caption(
        "Rows: the right month; columns: the month the model wrote (? when it "
        "wrote none). Off the diagonal are the mistakes."
    )
    st.vega_lite_chart(*confusion_chart(report), width="stretch")


def compare_ui() -> None:
    st.markdown(
        "Train several variants – no attention, dot, general (bilinear) and "
        "additive, with LSTM or GRU cells – on the same data with the same seed, "
        "and compare how fast they learn and how well they end. Each run stops at "
        "100% held-out exact match (one epoch later) or after the epochs given."
    )
    comparison = compare_form_ui()
    if comparison is not None:
        run_comparison(comparison)
    elif "comparison" in st.session_state:
        compare_results_ui(st.session_state.comparison)


# --- page -------------------------------------------------------------------


def sidebar_ui(converter: Converter) -> None:
    with st.sidebar:
        st.markdown(f"**Model:** {st.session_state.model_name}")
        cfg = converter.model.cfg
        st.caption(
            f"{cfg.cell.upper()} encoder-decoder, {cfg.attention} attention, "
            f"embedding {cfg.embedding_dim}, hidden {cfg.encoder_hidden}, "
            f"{cfg.num_layers} layer(s)"
        )
        history = converter.checkpoint.history
        if history and "held_out_exact_match" in history[-1]:
            st.metric(
                "Held-out exact match", f"{history[-1]['held_out_exact_match']:.1%}"
            )
        if st.session_state.model_name != "the default model" and st.button(
            "Back to the default model", key="use_default"
        ):
            del st.session_state["converter"]
            st.rerun()


def main() -> None:
    st.set_page_config(page_title="date_seq2seq", page_icon="📅", layout="wide")
    st.title("Seq2seq with attention, one date at a time")
    st.caption(
        "A character-level LSTM encoder-decoder rewrites `24-11-22` as `22/Nov/2024`. "
        "Type a date and see where it looked; train your own and watch it learn."
    )
    slot = st.empty()  # notices above the tabs, at a place every run has
    notice = st.empty()  # the same for a shared link's problems
    init_state(slot)
    init_setup()
    setup_problems_ui(notice)
    adopt_trained_model(slot)
    settle_comparison(slot)
    converter: Converter = st.session_state.converter
    sidebar_ui(converter)
    convert, step_through, exposure, train, forming, compare = st.tabs(
        TABS, default=st.session_state.first_tab
    )
    with convert:
        convert_ui(converter)
    with step_through:
        step_through_ui(converter)
    with exposure:
        exposure_ui(converter)
    with train:
        train_ui()
        share_link_ui()
        model_files_ui(st.session_state.converter)
    with forming:
        forming_ui()
    with compare:
        compare_ui()


main()
