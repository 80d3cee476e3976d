"""Attention forming: a probe date's attention, recorded while a model trains."""

from __future__ import annotations

import streamlit as st

from date_seq2seq.forming import AttentionRecorder
from ui import charts
from ui.jobs import TrainingJob
from ui.state import session
from ui.text import code


def snapshot_ui(recorder: AttentionRecorder, step: int) -> None:
    snapshots = {s.step: s for s in list(recorder.snapshots)}
    snap = snapshots[step]
    st.markdown(
        f"Probe {code(recorder.source)} after {step} steps: the model answers "
        f"{code(snap.output or '(nothing)')}; the rows below are the right "
        "answer's tokens, teacher-forced."
    )
    left, right = st.columns([3, 2])
    heatmap = charts.attention_chart(
        recorder.source, recorder.tokens, snap.weights, "attention forming heatmap"
    )
    left.vega_lite_chart(heatmap, width="stretch")
    right.vega_lite_chart(
        charts.sharpness_chart(list(recorder.snapshots), step, len(recorder.source)),
        width="stretch",
    )


@st.fragment(run_every=1.0)
def live_ui(job: TrainingJob) -> None:
    """While the run goes on: its newest snapshot; the replay follows at its end."""
    if job.done:
        st.rerun()
    st.caption("Training now: the newest snapshot. Replay it step by step at the end.")
    snapshot_ui(job.recorder, job.recorder.snapshots[-1].step)


def forming_page() -> None:
    job = session().training
    st.title("Attention forming")
    st.markdown(
        "While a model trains on the Train page, its attention on the probe date is "
        "recorded every few steps. Slide through training to watch the alignment "
        "form: from a blur over all characters to each output token looking at the "
        "characters it comes from."
    )
    if job is None:
        st.info("Train a model on the Train page to record how its attention forms.")
        return
    if job.recorder is None:
        st.info("The last model trained has no attention (attention: none).")
        return
    if job.running:
        live_ui(job)
        return
    steps = [s.step for s in job.recorder.snapshots]
    if st.session_state.get("forming_step") not in steps:
        st.session_state.forming_step = steps[-1]
    step = st.select_slider("Training step", options=steps, key="forming_step")
    snapshot_ui(job.recorder, step)


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    forming_page()
