"""Train: every knob the tutorials vary, a run in the background, its curves live."""

from __future__ import annotations

import urllib.parse
from dataclasses import asdict

import streamlit as st

from date_seq2seq.checkpoint import CheckpointError
from date_seq2seq.converter import Converter
from date_seq2seq.train_setup import BOUNDS, CHOICES, MAX_STEPS, TASK_SETUPS, Setup
from ui import charts
from ui.jobs import (
    MAX_RUN_SECONDS,
    MAX_RUNNING_JOBS,
    ServerBusy,
    TrainingJob,
    running_jobs,
)
from ui.state import Session, session, session_alive_check
from ui.text import TASK_NAMES, plain


def start_task(task_key: str) -> None:
    """Fill the form with the chosen task's good start (the seed stays)."""
    start = asdict(TASK_SETUPS[st.session_state[task_key]])
    for name, value in start.items():
        if name != "seed":
            st.session_state[name] = value


def form_ui(this: Session) -> Setup | None:
    """Draw the training controls; return the setup when Train is pressed.

    The widgets' keys are the Setup's field names, and their ranges are the
    ones a link is checked against, so any value a link may carry fits.
    """
    for name, value in asdict(this.setup).items():
        st.session_state.setdefault(name, value)  # the link's or the last run's
    busy = this.job is not None
    st.radio(
        "Dates", CHOICES["task"], format_func=TASK_NAMES.get, key="task",
        horizontal=True, on_change=start_task, args=("task",),
        help="yy-mm-dd: the classic task, 8 characters each. As people write "
        "them: twelve forms from 22.11.24 to Friday, 22 November 2024, padded "
        "in batches – choosing it fills the form with settings that suit it.",
    )  # fmt: skip
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
            "Scheduled sampling p", *BOUNDS["sampling"], step=0.05, key="sampling",
            help="Per token, feed the model its own prediction with this "
            "probability instead of the true previous token (0 = teacher forcing).",
        )  # fmt: skip
        c4.select_slider("Batch size", CHOICES["batch"], key="batch")
        c4.number_input("Epochs (at most)", *BOUNDS["epochs"], key="epochs")
        c4.number_input(
            "Training examples", *BOUNDS["train_size"], step=50, key="train_size",
            help="Dates as yy-mm-dd; (date, form) pairs as people write them.",
        )  # fmt: skip
        for column, label, key, about in (
            (c4, "Bidirectional encoder", "bidirectional", "Read the input both "
             "ways; the decoder is then twice the hidden size wide, as wide as "
             "what the encoder hands over."),
            (c1, "Mask attention", "mask_attention", "Give <PAD> no attention "
             "(d2l's masked softmax). Only dates as people write them are "
             "padded: untick it and see the Convert page's padding view."),
            (c1, "Mask the loss", "mask_loss", "Score only the answer's tokens, "
             "not <PAD> past its end. Every answer here is 11 tokens: nothing "
             "to mask, the same weights either way."),
        ):  # fmt: skip
            column.checkbox(label, key=key, help=about)
        c2.text_input(
            "Probe date",
            key="probe",
            help="Its attention map is "
            "recorded while training: see the Attention forming page.",
        )
        c3.number_input(
            "Record it every (steps)", *BOUNDS["snapshot_every"], key="snapshot_every"
        )
        st.caption(
            f"Limits: a run takes at most {MAX_STEPS:,} steps (epochs × batches) and "
            f"{MAX_RUN_SECONDS // 60} minutes; this server trains at most "
            f"{MAX_RUNNING_JOBS} runs at once ({running_jobs()} going on now)."
        )
        pressed = st.form_submit_button("Train", type="primary", disabled=busy)
    if busy:
        st.caption("A comparison is running in this session: one run at a time.")
    if not pressed:
        return None
    try:
        return Setup(**{name: st.session_state[name] for name in asdict(Setup())})
    except ValueError as e:
        st.error(plain(f"These settings cannot be trained: {e}"))
        return None


def start(this: Session, setup: Setup) -> TrainingJob | None:
    """Start a run in the background; say why not if it cannot be."""
    try:
        job = TrainingJob(setup, session_alive_check())  # InputError: a bad probe
        job.start()
    except ValueError as e:
        st.error(plain(f"These settings cannot be trained: {e}"))
        return None
    except ServerBusy as e:
        st.error(plain(str(e)), icon=":material/hourglass_top:")
        return None
    this.training, this.adopted = job, False
    this.setup, this.setup_problems = setup, []
    # The page's address now reproduces this setup: a link to share.
    st.query_params.from_dict(setup.to_params())
    return job


def form_ui_or_new_run(this: Session) -> TrainingJob | None:
    """The form; once Train starts a run, the form gives way to the run (the
    last run, or None, while no new one starts)."""
    slot = st.empty()
    with slot.container():
        setup = form_ui(this)
    job = start(this, setup) if setup is not None else None
    if job is None:
        return this.training
    slot.empty()
    return job


def progress_text(job: TrainingJob) -> str:
    last = job.trainer.result.step_losses[-1:] or [float("nan")]
    exact = job.evals[-1]["held_out_exact_match"] if job.evals else None
    measured = (
        f"held-out exact match {exact:.1%} at step {job.evals[-1]['step']:,}"
        if exact is not None
        else "held-out not checked yet"
    )
    cfg = job.trainer.train_config
    return (
        f"Step {job.steps:,} of at most {job.max_steps:,}: loss {last[0]:.4f} at "
        f"this step; {measured}. Stops at {cfg.target_accuracy:.0%} (one epoch "
        f"later) or after {cfg.epochs} epochs."
    )


def curves_ui(job: TrainingJob) -> None:
    losses = list(job.trainer.result.step_losses)
    if not losses:
        return
    shown = max(len(losses), 1)  # both charts: the same steps on x
    st.vega_lite_chart(charts.loss_chart(losses, shown), width="stretch")
    if job.evals:
        chart = charts.accuracy_chart(list(job.evals), list(job.gaps), shown)
        st.vega_lite_chart(chart, width="stretch")


@st.fragment(run_every=1.0)
def live_ui(job: TrainingJob) -> None:
    """The run as it goes: Stop, progress, curves; the whole page reruns at its end."""
    if job.done:
        st.rerun()
    st.button("Stop training", key="stop", on_click=job.stop,
              kwargs={"wait": 1.0}, icon=":material/stop:")  # fmt: skip
    st.progress(job.steps / max(job.max_steps, 1), text=progress_text(job))
    curves_ui(job)


def outcome_ui(job: TrainingJob) -> None:
    steps = f"{job.steps:,} steps"
    end = job.end
    if end == "failed":
        st.error(plain(f"Training failed after {steps}: {job.error}"))
    elif end == "diverged":
        st.error(plain(f"Training diverged: {job.result.message}."))
        st.caption("The model as it stopped is now in use; train again more slowly.")
    elif end == "limit":
        st.warning(
            f"Training stopped at the {MAX_RUN_SECONDS // 60}-minute limit after "
            f"{steps}. The model trained so far is now in use on every page."
        )
    elif end == "stopped":
        st.warning(
            f"Training stopped after {steps}. The model trained so far is now in "
            "use on every page."
        )
    else:
        why = "reached the target accuracy"
        if job.result.stop_reason == "epochs":
            why = "ran every epoch"
        seconds = job.result.seconds
        st.success(
            f"Training finished after {steps} and {seconds:.2f} s ({why}). The model "
            "is now in use on every page."
        )
    if end != "failed":
        fingerprint_ui(job)


def fingerprint_ui(job: TrainingJob) -> None:
    st.caption(
        f"Weights fingerprint `{job.checkpoint().fingerprint}`: the same settings "
        "and seed train to the same weights on this machine, even while other "
        "runs go on at once (each run draws from its own random generator)."
    )


def share_link_ui(this: Session) -> None:
    params = urllib.parse.urlencode(this.setup.to_params())
    st.markdown("#### Share this setup")
    st.caption(
        "The page's address holds the Train form's settings once you train: send "
        "the link and the same form, seed and data open on the other side."
    )
    page = (st.context.url or "").split("?")[0]
    st.code(f"{page}?{params}", language=None, wrap_lines=True)


def model_files_ui(this: Session) -> None:
    st.markdown("#### Your model as a file")
    left, right = st.columns(2)
    left.download_button(
        "Download model (.pt)",
        data=this.converter.checkpoint.to_bytes(),
        file_name="date_seq2seq.pt",
        mime="application/octet-stream",
        key="download",
        on_click="ignore",
    )
    upload = right.file_uploader(
        "Upload a checkpoint", type=["pt"], key="upload", help="At most 20 MB."
    )
    if upload is None:  # removed from the uploader: so is what it said
        this.upload = None
    elif this.upload is None or this.upload[0] != upload.file_id:
        try:
            converter = Converter.from_bytes(upload.getvalue())
        except CheckpointError as e:
            this.upload = (upload.file_id, f"{upload.name} was refused: {e}")
        else:
            this.upload = (upload.file_id, None)
            this.use(converter, f"uploaded {upload.name}")
            st.rerun()
    if this.upload is not None and this.upload[1]:
        right.error(plain(this.upload[1]))


def train_page() -> None:
    this = session()
    st.title("Train a model")
    st.markdown(
        "Train your own model from scratch, in the background: switch pages, type "
        "dates, it carries on. The default settings reach 100% held-out exact "
        "match in a few seconds. The second chart is exposure bias made visible: "
        "teacher-forced accuracy (the decoder fed the true previous token) runs "
        "ahead of free-running accuracy (fed its own); raise *Scheduled sampling "
        "p* to train the way the model is used, and watch the gap close."
    )
    job = this.training
    if job is None or not job.running:
        job = form_ui_or_new_run(this)
    if job is not None and job.running:
        live_ui(job)
    elif job is not None:
        outcome_ui(job)
        curves_ui(job)
    share_link_ui(this)
    model_files_ui(this)


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    train_page()
