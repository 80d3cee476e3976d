"""Background jobs: a training run or a comparison, each in its own thread.

Streamlit reruns the page script on every click, and a loop inside the script
ends with the next click. So a run is a Job: its own thread, its own stop
flag, its progress kept in plain Python objects that the pages read, polling
with `st.fragment(run_every=...)`. A job never calls Streamlit, and nothing
here imports it.

Limits keep one server usable by many people: at most MAX_RUNNING_JOBS jobs
run at once (another is refused with a message), a run stops itself after
MAX_RUN_SECONDS, and a job whose browser session has gone (the tab closed)
stops once it has been gone SESSION_GRACE_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import torch

from date_seq2seq.checkpoint import Checkpoint
from date_seq2seq.comparison import Comparison, Variant
from date_seq2seq.converter import Converter, default_checkpoint_path
from date_seq2seq.exposure import GapRecorder
from date_seq2seq.forming import AttentionRecorder, probe_recorder
from date_seq2seq.model import Seq2Seq
from date_seq2seq.train_setup import Setup
from date_seq2seq.training import Progress, Trainer, TrainResult, default_configs

log = logging.getLogger(__name__)

MAX_RUNNING_JOBS = 2  # per server: a small machine's cores; more only slow each other
MAX_RUN_SECONDS = 600  # one run: minutes, not hours
SESSION_GRACE_SECONDS = 15  # a reconnecting browser gets its run back
CHECK_SECONDS = 1.0  # training time between held-out checks: as often as a redraw
COMPARE_EVAL_EVERY = 25  # steps between checks of a compared run: its curve

_running: set[Job] = set()
_running_lock = threading.Lock()


class ServerBusy(Exception):
    """Too many runs on this server already; the message says what to do."""


class Job:
    """A run in a thread of its own, with a stop flag; subclasses define `_run`."""

    def __init__(self, session_alive: Callable[[], bool] | None = None) -> None:
        self._stop = threading.Event()
        self._session_alive = session_alive or (lambda: True)
        self._gone_since: float | None = None
        self._last_look = 0.0
        self.thread: threading.Thread | None = None
        self.started_at: float | None = None  # time.monotonic()
        self.limit: str | None = None  # "time" or "session" when a limit ended it
        self.error: str | None = None  # an unexpected failure, as text

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def done(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    def start(self) -> None:
        """Start the thread; raise ServerBusy if the server runs enough jobs."""
        with _running_lock:
            if len(_running) >= MAX_RUNNING_JOBS:
                raise ServerBusy(
                    f"{len(_running)} runs are going on this server, the most it "
                    "takes at once: try again when one has ended."
                )
            _running.add(self)
        self.started_at = time.monotonic()
        self.thread = threading.Thread(
            target=self._main, name=type(self).__name__, daemon=True
        )
        self.thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Ask the run to stop, and wait up to `wait` seconds for it to have.

        It stops at its next step or chunk of a held-out check: well within a
        second on any model the Train form allows.
        """
        self._stop.set()
        if wait:
            self.wait(wait)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; return whether it has."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.done

    def should_stop(self) -> bool:
        """The run's stop check: a request, the time limit, or the session gone."""
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if self.started_at is not None and now - self.started_at > MAX_RUN_SECONDS:
            self.limit = "time"
            return True
        if now - self._last_look >= 1.0:  # asking the server is cheap; not free
            self._last_look = now
            if self._session_alive():
                self._gone_since = None
            elif self._gone_since is None:
                self._gone_since = now
        if (
            self._gone_since is not None
            and now - self._gone_since > SESSION_GRACE_SECONDS
        ):
            self.limit = "session"
            return True
        return False

    def _main(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported on the page, logged in full
            log.exception("a background job failed")
            self.error = f"{type(e).__name__}: {e}"
        finally:
            with _running_lock:
                _running.discard(self)
            if self.limit is not None:
                log.warning(
                    "a %s ended at its %s limit", type(self).__name__, self.limit
                )

    def _run(self) -> None:
        raise NotImplementedError


def running_jobs() -> int:
    """How many jobs run on this server now."""
    with _running_lock:
        return len(_running)


class TrainingJob(Job):
    """Train one model from a Train-form setup, recording what the pages draw."""

    def __init__(
        self, setup: Setup, session_alive: Callable[[], bool] | None = None
    ) -> None:
        super().__init__(session_alive)
        data_config, model_config, train_config = setup.configs()
        self.setup = setup
        self.trainer = Trainer(data_config, model_config, train_config)
        self.recorder: AttentionRecorder | None = None
        if model_config.attention != "none":  # InputError for a bad probe date
            self.recorder = probe_recorder(
                self.trainer, setup.probe, setup.snapshot_every
            )
        self.gaps = GapRecorder(self.trainer).points  # token accuracy both ways
        self.evals: list[dict[str, float]] = []  # step and held-out metrics
        self.latest: Progress | None = None  # the last event
        self.result: TrainResult | None = None  # once the run has ended
        self._live: tuple[int, dict[str, torch.Tensor]] | None = None
        self.trainer.observers.append(self._record)

    def _record(self, event: Progress) -> None:
        self.latest = event
        if event.metrics:
            self.evals.append({"step": event.step, **event.metrics})
            # Between two steps: a consistent copy of the weights, for trying
            # the model while it trains.
            state = self.trainer.model.state_dict()
            self._live = (event.step, {k: v.detach().clone() for k, v in state.items()})

    def _run(self) -> None:
        self.result = self.trainer.run(
            should_stop=self.should_stop, eval_seconds=CHECK_SECONDS
        )
        if self.recorder is not None:
            self.recorder.finish(self.trainer.steps)  # the model as the run left it

    @property
    def steps(self) -> int:
        return self.trainer.steps

    @property
    def max_steps(self) -> int:
        return self.latest.total_steps if self.latest else 0

    @property
    def end(self) -> str:
        """How the run ended: finished, stopped, diverged, limit or failed."""
        if self.error is not None:
            return "failed"
        if self.limit is not None:
            return "limit"
        reason = self.result.stop_reason if self.result else "requested"
        return {"requested": "stopped", "diverged": "diverged"}.get(reason, "finished")

    def checkpoint(self) -> Checkpoint:
        """The model as the run left it, with its history (once it has ended)."""
        return self.trainer.checkpoint()

    def live_converter(self) -> tuple[int, Converter] | None:
        """The model as of the run's last held-out check, and that step."""
        if self._live is None:
            return None
        step, state = self._live
        model = Seq2Seq(self.trainer.model_config, generator=torch.Generator())
        model.load_state_dict(state)
        checkpoint = Checkpoint(
            model.eval(),
            self.trainer.vocab,
            self.trainer.data_config,
            self.trainer.train_config,
        )
        return step, Converter(checkpoint)


class ComparisonJob(Job):
    """Train several variants one after another; see comparison.Comparison."""

    def __init__(
        self,
        comparison: Comparison,
        session_alive: Callable[[], bool] | None = None,
        read: Callable[[Comparison], str] | None = None,
    ) -> None:
        super().__init__(session_alive)
        self.comparison = comparison
        self.latest: tuple[Variant, Progress] | None = None
        self.read = read  # what the run showed, worded once it has ended (exercises)
        self.reading: str | None = None

    def _record(self, variant: Variant, event: Progress) -> None:
        self.latest = (variant, event)

    def _run(self) -> None:
        self.comparison.run(
            self._record, self.should_stop, eval_every=COMPARE_EVAL_EVERY
        )
        if self.read is not None and self.comparison.reports:
            self.reading = self.read(self.comparison)  # here, not on a page's run


class DefaultModelJob(Job):
    """Train and save a task's default model, once per server, when first needed."""

    def __init__(self, task: str = "yymmdd") -> None:
        super().__init__()
        self.task = task
        self.trainer = Trainer(*default_configs(task))
        self.latest: Progress | None = None
        self.trainer.observers.append(self._record)

    def _record(self, event: Progress) -> None:
        self.latest = event

    def start(self) -> None:
        """Start without taking one of the server's places: every page waits on it."""
        self.started_at = time.monotonic()
        self.thread = threading.Thread(target=self._main, name="DefaultModel")
        self.thread.daemon = True
        self.thread.start()

    def should_stop(self) -> bool:
        return False  # nobody may stop what every session needs

    def _run(self) -> None:
        self.trainer.run()
        self.trainer.checkpoint().save(default_checkpoint_path(self.task))
