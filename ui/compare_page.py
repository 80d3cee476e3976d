"""Compare runs: attention and cell variants trained alike, side by side."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from date_seq2seq.comparison import Comparison, RunReport, Variant
from date_seq2seq.config import (
    ATTENTION_KINDS,
    CELL_KINDS,
    TASKS,
    DataConfig,
    TrainConfig,
)
from date_seq2seq.exercises import Exercise
from date_seq2seq.train_setup import BOUNDS
from ui import charts
from ui.jobs import ComparisonJob, ServerBusy
from ui.state import Session, session, session_alive_check
from ui.text import TASK_NAMES, plain

# Short words: the table fits a projector's screen without scrolling sideways.
ENDINGS = {"target": "at 100%", "epochs": "all epochs",
           "requested": "stopped", "interrupted": "stopped",
           "diverged": "diverged"}  # fmt: skip


FORM_DEFAULTS = {"compare_task": "yymmdd",
                 "compare_attention": list(ATTENTION_KINDS), "compare_cells": ["lstm"],
                 "compare_epochs": 5, "compare_train_size": 4000,
                 "compare_seed": 0}  # fmt: skip


def form_ui(this: Session) -> Comparison | None:
    """The comparison's settings: the last comparison's, or the defaults."""
    values = dict(FORM_DEFAULTS)
    if this.comparison is not None and this.exercise is None:  # as it ran
        last = this.comparison.comparison
        values.update(
            compare_task=last.data_config.task,
            compare_attention=list(dict.fromkeys(v.attention for v in last.variants)),
            compare_cells=list(dict.fromkeys(v.cell for v in last.variants)),
            compare_epochs=last.train_config.epochs,
            compare_train_size=last.data_config.train_size,
            compare_seed=last.data_config.seed,
        )
    for key, value in values.items():
        st.session_state.setdefault(key, value)
    busy = this.job is not None
    with st.form("compare_form", border=True):
        task = st.radio(
            "Dates", TASKS, key="compare_task", horizontal=True,
            format_func=TASK_NAMES.get,
        )  # fmt: skip
        kinds = st.multiselect("Attention", ATTENTION_KINDS, key="compare_attention")
        c1, c2, c3, c4 = st.columns(4)
        cells = c1.multiselect("Cell", CELL_KINDS, key="compare_cells")
        epochs = c2.number_input("Epochs (at most)", 1, 20, key="compare_epochs")
        size = c3.number_input(
            "Training examples", 200, 20000, step=200, key="compare_train_size",
            help="Dates as yy-mm-dd; (date, form) pairs as people write them.",
        )  # fmt: skip
        seed = c4.number_input("Seed", *BOUNDS["seed"], key="compare_seed")
        pressed = st.form_submit_button("Compare", type="primary", disabled=busy)
    if busy:
        st.caption("A run is going on in this session: one at a time.")
    if not pressed:
        return None
    variants = [Variant(a, c) for c in cells for a in kinds]
    try:
        return Comparison(
            variants,
            DataConfig(task=task, train_size=int(size), seed=int(seed)),
            TrainConfig(epochs=int(epochs), seed=int(seed)),
        )
    except ValueError as e:
        st.error(plain(f"Nothing to compare: {e}."))
        return None


def start(
    this: Session,
    comparison: Comparison,
    exercise: Exercise | None = None,
) -> None:
    """Run a comparison in the background (for an exercise, if given)."""
    read = exercise.observe if exercise is not None else None
    job = ComparisonJob(comparison, session_alive_check(), read)
    try:
        job.start()
    except ServerBusy as e:
        st.error(plain(str(e)), icon=":material/hourglass_top:")
        return
    this.comparison = job
    this.exercise = exercise.key if exercise is not None else None
    st.rerun()


@st.fragment(run_every=0.5)
def live_ui(job: ComparisonJob) -> None:
    if job.done:
        st.rerun()
    st.button("Stop comparing", key="compare_stop", on_click=job.stop,
              kwargs={"wait": 1.0}, icon=":material/stop:")  # fmt: skip
    comparison, latest = job.comparison, job.latest
    total, done = len(comparison.variants), len(comparison.reports)
    if latest is not None:
        variant, event = latest
        st.progress(
            min(1.0, (done + event.step / max(event.total_steps, 1)) / total),
            text=f"Training {variant.name} ({done + 1} of {total}): epoch "
            f"{event.epoch}, step {event.step}",
        )
    st.vega_lite_chart(charts.curves_chart(dict(comparison.curves)), width="stretch")


def report_rows(reports: Sequence[RunReport]) -> list[dict[str, object]]:
    """One row per trained variant, the fastest to a lasting 100% first.

    Steps are the measure: seconds depend on what else the machine does.
    "100% at" (the step of the first check at 100%) is given only for a run
    that ended at 100%.
    """

    def lasting(r: RunReport) -> int | None:
        return int(r.reached["step"]) if r.reached and r.perfect else None

    ranked = sorted(
        reports,
        key=lambda r: (lasting(r) is None, lasting(r) or 0, -r.metrics["exact_match"]),
    )
    return [
        {
            "variant": r.variant.name,
            "exact": f"{r.metrics['exact_match']:.1%}",
            "tokens": f"{r.metrics['token_accuracy']:.1%}",
            "BLEU": round(r.metrics["bleu"], 3),
            "100% at": f"{lasting(r):,}" if lasting(r) else "–",
            "steps": r.steps,
            "s": round(r.seconds, 1),
            "ended": ENDINGS.get(r.stop_reason, r.stop_reason),
        }
        for r in ranked
    ]


def results_ui(job: ComparisonJob) -> None:
    comparison = job.comparison
    reports = comparison.reports
    if job.error:
        st.error(plain(f"The comparison failed: {job.error}"))
    if not reports:
        st.info("The comparison was stopped before any variant was trained.")
        return
    st.vega_lite_chart(charts.curves_chart(dict(comparison.curves)), width="stretch")
    st.dataframe(report_rows(reports), hide_index=True, width="stretch",
                 key="compare_table")  # fmt: skip
    trained, total = len(reports), len(comparison.variants)
    if trained < total:
        st.caption(f"{total - trained} variant(s) not trained: the comparison was "
                   "stopped.")  # fmt: skip
    imperfect = [r for r in reports if not r.perfect]
    if not imperfect:
        every = (
            "Every variant"
            if trained == total
            else f"Every trained variant ({trained} of {total})"
        )
        st.success(f"{every} converts every held-out date right.")
        return
    st.markdown("#### Where the imperfect ones go wrong")
    st.caption(
        "Wrong held-out outputs, and in how many of them each field is wrong (an "
        "output can be wrong in two fields; *shape*: not day/month/year at all)."
    )
    st.dataframe([{"variant": r.variant.name, **r.errors} for r in imperfect],
                 hide_index=True, width="stretch", key="compare_errors")  # fmt: skip
    names = [r.variant.name for r in imperfect]
    name = st.selectbox("Month confusion matrix of", names, key="confusion_variant")
    st.caption(
        "Rows: the right month; columns: the month the model wrote (? when it "
        "wrote none). Off the diagonal are the mistakes."
    )
    chart = charts.confusion_chart(imperfect[names.index(name)])
    st.vega_lite_chart(chart, width="stretch")


def compare_page() -> None:
    this = session()
    st.title("Compare runs")
    st.markdown(
        "Train several variants – no attention, dot, general (bilinear) and "
        "additive, with LSTM or GRU cells – on the same data with the same seed, "
        "and compare how fast they learn and how well they end. Each run stops at "
        "100% held-out exact match (one epoch later) or after the epochs given."
    )
    job = this.comparison
    if job is not None and job.running:
        live_ui(job)
        return
    comparison = form_ui(this)
    if comparison is not None:
        start(this, comparison)
    if job is not None:
        results_ui(job)


if __name__ == "__main__":  # Streamlit runs a page as __main__; tests import it
    compare_page()
