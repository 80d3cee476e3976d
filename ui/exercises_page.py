"""Exercises: the d2l chapter's questions, each one click from its experiment."""

from __future__ import annotations

import streamlit as st

from date_seq2seq.exercises import EXERCISES, Exercise
from ui.compare_page import live_ui, results_ui, start
from ui.state import Session, session


def exercise_ui(this: Session, exercise: Exercise, busy: bool) -> None:
    """One exercise: the question, what to look at, Run, and this run's reading."""
    with st.container(border=True):
        st.markdown(f"**{exercise.question}**")
        st.caption(exercise.look_at)
        names = ", ".join(v.name for v in exercise.variants)
        size, epochs = exercise.data.train_size, exercise.train.epochs
        unit = "(date, form) pairs" if exercise.data.task == "human" else "dates"
        st.caption(
            f"Variants: {names}. {size:,} {unit}, at most {epochs} epochs, one seed."
        )
        if st.button("Run it", key=f"run_{exercise.key}", disabled=busy,
                     icon=":material/play_arrow:"):  # fmt: skip
            start(this, exercise.comparison(), exercise)
        job = this.comparison
        if this.exercise != exercise.key or job is None:
            return
        if job.running:
            live_ui(job)
        else:
            results_ui(job)
            if job.reading:
                st.info(job.reading, icon=":material/lightbulb:")


def exercises_page() -> None:
    this = session()
    st.title("Exercises")
    st.markdown(
        "The exercises of the seq2seq chapter you are reading (d2l.ai's), each one "
        "click from its experiment: the variants train in the background on the "
        "same dates with the same seed, and what the run showed is read from its "
        "own numbers."
    )
    busy = this.job is not None
    if busy:
        st.caption("A run is going on: one at a time per session.")
    for exercise in EXERCISES:
        exercise_ui(this, exercise, busy)


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    exercises_page()
