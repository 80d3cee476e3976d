"""What one browser session holds: a typed object, not loose session-state keys.

`session()` returns this session's `Session`, made on its first run from the
default model and the page's link. Widgets keep their own values under their
keys, as Streamlit wants; everything else the app remembers is here. Only the
default model, which nobody changes, is shared between sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from date_seq2seq.checkpoint import CheckpointError
from date_seq2seq.converter import Converter, default_checkpoint_path
from date_seq2seq.data import DateDataset
from date_seq2seq.exposure import wrong_inputs
from date_seq2seq.train_setup import Setup
from date_seq2seq.training import evaluate_held_out
from ui.jobs import ComparisonJob, DefaultModelJob, TrainingJob
from ui.text import plain

DEFAULT_NAME = "the default model"
EXAMPLES = ("24-11-22", "74-01-01", "00-02-29", "34-12-31", "24-02-30", "50-01-01")


@dataclass
class HeldOutFacts:
    """What a model does on its held-out dates, computed once per model."""

    exact_match: float | None  # None without held-out dates
    token_accuracies: dict[str, float]  # teacher_forced, free_running
    wrong: list[str]  # a few held-out inputs it converts wrongly


@dataclass
class Session:
    """One browser session's model, runs and choices."""

    converter: Converter  # the model in use on every page
    model_name: str  # plain text: may hold an uploaded file's name
    setup: Setup  # the Train form: a link's values, or the last run's
    setup_problems: list[str] = field(default_factory=list)  # a link's bad values
    training: TrainingJob | None = None  # the running or the last training run
    adopted: bool = True  # whether that run's model is the model in use
    comparison: ComparisonJob | None = None  # the running or the last comparison
    exercise: str | None = None  # the exercise that comparison runs, if one does
    forced: dict[int, str] = field(default_factory=dict)  # step-through: step -> token
    forced_for: tuple[str, int] | None = None  # the (date, model) they were forced on
    upload: tuple[str, str | None] | None = None  # (file id, why it was refused)
    open_train_first: bool = False  # a link with a setup opens the Train page
    # The Convert page's input: the model in use's task until the user picks.
    convert_task: str | None = None
    # What padding did to every form: ((weights fingerprint, width), the
    # padding.PaddingEffect list).
    padding_effects: tuple[tuple[str, int], list] | None = None
    _facts: tuple[int, HeldOutFacts] | None = None

    @property
    def job(self) -> TrainingJob | ComparisonJob | None:
        """The run going on now, if any: a session runs one at a time."""
        for job in (self.training, self.comparison):
            if job is not None and job.running:
                return job
        return None

    def use(self, converter: Converter, name: str) -> None:
        """Make `converter` the model in use; forced tokens belonged to the old one."""
        self.converter, self.model_name = converter, name
        self.forced.clear()
        self.convert_task = converter.task  # Convert reads what the model reads

    def adopt_finished_training(self) -> bool:
        """Use a finished run's model once; return whether it happened now."""
        job = self.training
        if job is None or self.adopted or not job.done or job.error:
            return False
        self.adopted = True
        cfg = job.trainer.model_config
        self.use(
            Converter(job.checkpoint()),
            f"your model ({cfg.attention} attention, {cfg.cell}, {job.steps} steps)",
        )
        return True

    def held_out_exact_match(self) -> float | None:
        """The model in use's held-out exact match: from its history if there."""
        history = self.converter.checkpoint.history
        if history and "held_out_exact_match" in history[-1]:
            return history[-1]["held_out_exact_match"]
        return self.held_out_facts().exact_match  # e.g. a run stopped mid-epoch

    def held_out_facts(self) -> HeldOutFacts:
        """The model in use on its held-out dates (two decodes, once per model)."""
        converter = self.converter
        if self._facts is None or self._facts[0] != id(converter):
            pairs = converter.held_out_pairs()
            facts = HeldOutFacts(None, {}, [])
            if pairs:  # an uploaded model may have been trained without any
                held_out = DateDataset.from_pairs(pairs, converter.vocab)
                max_len = converter.decode_config.max_len
                metrics = evaluate_held_out(converter.model, held_out, max_len)
                facts = HeldOutFacts(
                    metrics["held_out_exact_match"],
                    {
                        "teacher_forced": metrics[
                            "held_out_teacher_forced_token_accuracy"
                        ],
                        "free_running": metrics["held_out_token_accuracy"],
                    },
                    wrong_inputs(converter, pairs, len(EXAMPLES)),
                )
            self._facts = (id(converter), facts)
        return self._facts[1]


@st.cache_resource(show_spinner=False)
def default_converter(path: str, mtime: float) -> Converter:
    """Load the default model once per server; (path, mtime) key the cache."""
    return Converter.from_path(path)


@st.cache_resource(show_spinner=False)
def default_model_job(task: str = "yymmdd") -> DefaultModelJob:
    """Train a task's default model once per server, however many sessions wait."""
    job = DefaultModelJob(task)
    job.start()
    return job


def default_converter_now(task: str = "yymmdd") -> Converter:
    """A task's default model, as saved now."""
    path = default_checkpoint_path(task)
    return default_converter(str(path), path.stat().st_mtime)


def session_alive_check() -> Callable[[], bool]:
    """Whether this browser session is still connected (for its jobs' threads)."""
    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():  # AppTest: no server, no tabs to close
        return lambda: True
    runtime, session_id = Runtime.instance(), ctx.session_id
    return lambda: runtime.is_active_session(session_id)


def session() -> Session:
    """This session's state, made on its first run (waiting for the default model)."""
    if "session" in st.session_state:
        return st.session_state.session
    path = default_checkpoint_path()
    if not path.exists():
        wait_for_default_model()
    try:
        converter = default_converter_now()
    except CheckpointError as e:
        st.error(plain(f"The default model at {path} cannot be used: {e}"))
        if st.button("Train a new default model", key="retrain_default"):
            path.unlink(missing_ok=True)
            default_model_job.clear()
            st.rerun()
        st.stop()
    params = st.query_params.to_dict()
    setup, problems = Setup.from_params(params)
    linked = any(name in Setup.__dataclass_fields__ for name in params)
    st.session_state.session = Session(
        converter, DEFAULT_NAME, setup, problems, open_train_first=linked
    )
    return st.session_state.session


def wait_for_default_model(task: str = "yymmdd") -> None:
    """Show a task's default model training, then rerun with it; never returns."""
    job = default_model_job(task)
    if task == "yymmdd":
        st.info(
            "No default model yet: training one now (a few seconds, first start only)."
        )
    else:
        st.info(
            "The model for dates as people write them is training now: about a "
            "minute, the first time on this server only. Other pages work meanwhile."
        )

    @st.fragment(run_every=0.5)
    def progress() -> None:
        if job.done:
            if job.error:
                st.error(plain(f"Training the default model failed: {job.error}"))
                return
            st.rerun()
        history = job.trainer.result.history
        exact = history[-1].get("held_out_exact_match", 0.0) if history else 0.0
        latest = job.latest
        step, total = (latest.step, latest.total_steps) if latest else (0, 1)
        st.progress(
            min(step / max(total, 1), 1.0),
            text=f"Step {step:,} of {total:,}: held-out exact match {exact:.1%}",
        )

    progress()
    st.stop()
