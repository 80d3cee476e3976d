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
from collections.abc import Callable

import altair as alt
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

# One math thread per process, set before torch is imported: the app's work
# is one date or one small batch at a time, where a second thread costs more
# than it gives (2.4 ms vs 4.9 ms for a date with its trace; training equal),
# and two sessions training at once then share the two cores, not fight.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from date_seq2seq.checkpoint import CheckpointError
from date_seq2seq.config import (
    ATTENTION_KINDS,
    CELL_KINDS,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from date_seq2seq.converter import (
    Conversion,
    Converter,
    Trainer,
    default_checkpoint_path,
)
from date_seq2seq.training import Progress

EXAMPLES = ("24-11-22", "74-01-01", "00-02-29", "34-12-31", "24-02-30", "50-01-01")
REDRAW_SECONDS = 0.5  # live charts redraw at most this often
EVAL_EVERY = 25  # steps between held-out evaluations while training in the app


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


def attention_chart(result: Conversion) -> alt.LayerChart:
    """Heatmap: input position on x (labelled by its character), output token on y."""
    chars, tokens = list(result.input), list(result.tokens)
    rows = [
        {
            "output_step": i,
            "output_token": token,
            "input_position": j,
            "input_char": chars[j],
            "weight": weight,
        }
        for i, (token, row) in enumerate(zip(tokens, result.attention, strict=True))
        for j, weight in enumerate(row)
    ]
    # Positions, not characters, on the axes: repeated '-' or '1' would collapse.
    x_labels = f"{json.dumps(chars)}[datum.value]"
    y_labels = f"{json.dumps(tokens)}[datum.value]"
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X(
            "input_position:O",
            title="input character",
            axis=alt.Axis(labelExpr=x_labels, labelAngle=0, orient="top"),
        ),
        y=alt.Y(
            "output_step:O", title="output token", axis=alt.Axis(labelExpr=y_labels)
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
    return (cells + text).properties(height=340)


@functools.cache
def training_chart_specs() -> tuple[dict, dict]:
    """Vega-Lite specs of the two live charts, built with Altair once.

    Redraws then pass only new data: validating an Altair chart on every redraw
    costs ~0.1 s, which would slow the training it shows.
    """
    loss = (
        alt.Chart(title="Training loss per token")
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("loss:Q", title="loss per token", scale=alt.Scale(type="log")),
            tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f")],
        )
        .properties(height=260)
    )
    accuracy = (
        alt.Chart(
            title=alt.Title(
                "Held-out exact match",
                subtitle="The gap between the lines is exposure bias.",
            ),
        )
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y(
                "exact_match:Q",
                title="exact match",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color("decoding:N", title=None),
            tooltip=[
                "step:Q",
                "decoding:N",
                alt.Tooltip("exact_match:Q", format=".1%"),
            ],
        )
        .properties(height=260)
    )
    return loss.to_dict(), accuracy.to_dict()


def accuracy_rows(evals: list[dict[str, float]]) -> list[dict[str, object]]:
    """Long-form rows: held-out exact match, teacher-forced and free-running."""
    return [
        {"step": e["step"], "decoding": name, "exact_match": e[key]}
        for e in evals
        for name, key in (
            ("teacher-forced", "held_out_teacher_forced_exact_match"),
            ("free-running", "held_out_exact_match"),
        )
    ]


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
        result, steps = converter.explain(text, top_k=3)
    else:
        result = converter.convert(text, beam_size=beam)
        steps = [] if result.error else converter.trace(text, top_k=3)
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
        st.altair_chart(attention_chart(result), width="stretch", key="heatmap")

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


def train_form_ui() -> tuple[DataConfig, ModelConfig, TrainConfig] | None:
    """Draw the training controls; return configs when Train is pressed."""
    d_model, d_train, d_data = ModelConfig(), TrainConfig(), DataConfig()
    with st.form("train_form", border=True):
        c1, c2, c3, c4 = st.columns(4)
        attention = c1.selectbox(
            "Attention",
            ATTENTION_KINDS,
            index=ATTENTION_KINDS.index(d_model.attention),
            key="attention",
        )
        cell = c1.selectbox("Cell", CELL_KINDS, key="cell")
        embedding = c2.number_input(
            "Embedding size", 2, 256, d_model.embedding_dim, key="embedding"
        )
        hidden = c2.number_input(
            "Hidden size", 2, 512, d_model.encoder_hidden, key="hidden"
        )
        layers = c2.number_input("Layers", 1, 4, d_model.num_layers, key="layers")
        dropout = c3.slider("Dropout", 0.0, 0.5, d_model.dropout, 0.05, key="dropout")
        lr = c3.select_slider(
            "Learning rate",
            options=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1],
            value=d_train.lr,
            key="lr",
        )
        sampling = c3.slider(
            "Scheduled sampling p",
            0.0,
            1.0,
            d_train.sampling_prob,
            0.05,
            key="sampling",
            help="Per token, feed the model its own prediction with this "
            "probability instead of the true previous token (0 = teacher forcing).",
        )
        batch = c4.select_slider(
            "Batch size", [8, 16, 32, 64, 128, 256], d_train.batch_size, key="batch"
        )
        epochs = c4.number_input(
            "Epochs (at most)", 1, 200, d_train.epochs, key="epochs"
        )
        train_size = c4.number_input(
            "Training dates", 50, 20000, d_data.train_size, 50, key="train_size"
        )
        seed = c1.number_input("Seed", 0, 2**31 - 1, d_train.seed, key="seed")
        st.form_submit_button("Train", type="primary", on_click=request_training)
    # A callback, not the button's return value: when a click interrupts a run,
    # Streamlit can hand the previous run's button press to the next run, and
    # clicking "Stop training" would then start training again.
    if not st.session_state.pop("train_requested", False):
        return None
    try:
        model_cfg = ModelConfig(
            cell=cell,
            attention=attention,
            embedding_dim=int(embedding),
            encoder_hidden=int(hidden),
            decoder_hidden=int(hidden),
            num_layers=int(layers),
            dropout=float(dropout),
        )
        train_cfg = TrainConfig(
            epochs=int(epochs),
            batch_size=int(batch),
            lr=float(lr),
            sampling_prob=float(sampling),
            seed=int(seed),
        )
        data_cfg = DataConfig(train_size=int(train_size), seed=int(seed))
    except ValueError as e:
        st.error(f"These settings cannot be trained: {e}")
        return None
    return data_cfg, model_cfg, train_cfg


def draw_curves(loss_slot, accuracy_slot) -> None:  # noqa: ANN001 - st.empty slots
    losses, evals = st.session_state.losses, st.session_state.evals
    if not losses:
        return
    loss_spec, accuracy_spec = training_chart_specs()
    loss_slot.vega_lite_chart(losses, loss_spec, width="stretch")
    accuracy_slot.vega_lite_chart(accuracy_rows(evals), accuracy_spec, width="stretch")


def run_training(configs: tuple[DataConfig, ModelConfig, TrainConfig]) -> None:
    """Train live; the session keeps whatever was trained, however the run ends."""
    data_cfg, model_cfg, train_cfg = configs
    try:
        trainer = Trainer(data_cfg, model_cfg, train_cfg)
    except ValueError as e:
        st.error(f"These settings cannot be trained: {e}")
        return
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
    if upload is not None and upload.file_id != st.session_state.get("upload_id"):
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
        "held-out exact match in a few seconds."
    )
    configs = train_form_ui()
    if configs is not None:
        run_training(configs)
    else:
        training_outcome_ui()
        draw_curves(st.empty(), st.empty())


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
    init_state(slot)
    adopt_trained_model(slot)
    converter: Converter = st.session_state.converter
    sidebar_ui(converter)
    convert_tab, train_tab = st.tabs(["Convert", "Train"])
    with convert_tab:
        convert_ui(converter)
    with train_tab:
        train_ui()
        model_files_ui(st.session_state.converter)


main()
