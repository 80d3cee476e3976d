"""Background jobs: a run in its own thread that stops when asked, when its time is
up or when its browser session has gone, and a server that runs only so many."""

from __future__ import annotations

import time

import pytest
import torch

from date_seq2seq.comparison import Comparison, Variant
from date_seq2seq.config import DataConfig, TrainConfig
from date_seq2seq.train_setup import Setup
from ui import jobs
from ui.jobs import ComparisonJob, ServerBusy, TrainingJob

QUICK = Setup(train_size=300, epochs=2)  # 20 steps
LONG = Setup(train_size=20000, epochs=30, lr=1e-3)  # 18,750 steps: minutes


def test_a_run_trains_in_its_thread_and_records_what_the_pages_draw():
    job = TrainingJob(QUICK)
    job.start()
    assert job.wait(60) and job.end == "finished" and job.error is None
    assert job.steps == 20 and job.max_steps == 20
    assert job.evals and job.evals[-1]["step"] == 20  # the last epoch's check
    assert len(job.gaps) == len(job.evals)  # token accuracy both ways, each check
    assert job.recorder.snapshots[-1].step == 20  # the model as the run left it
    step, converter = job.live_converter()
    assert step == 20
    want = job.checkpoint().model.state_dict()
    got = converter.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_stop_request_ends_a_long_run_at_once():
    job = TrainingJob(LONG)
    job.start()
    while job.steps < 5:
        time.sleep(0.01)
    job.stop()
    assert job.wait(1.0), "the run did not stop within a second"
    assert job.end == "stopped" and 5 <= job.steps < 1000


def test_a_run_whose_session_has_gone_stops_by_itself(monkeypatch):
    monkeypatch.setattr(jobs, "SESSION_GRACE_SECONDS", 0.2)
    alive = [True]
    job = TrainingJob(LONG, session_alive=lambda: alive[0])
    job.start()
    time.sleep(1.5)  # the session is looked at about once a second
    assert job.running
    alive[0] = False  # the browser tab was closed
    assert job.wait(5.0)
    assert job.end == "limit" and job.limit == "session"


def test_a_run_stops_at_its_time_limit(monkeypatch):
    monkeypatch.setattr(jobs, "MAX_RUN_SECONDS", 0.5)
    job = TrainingJob(LONG)
    job.start()
    assert job.wait(5.0)
    assert job.end == "limit" and job.limit == "time" and job.steps > 0


def test_the_server_runs_only_so_many_jobs_and_frees_their_places(monkeypatch):
    monkeypatch.setattr(jobs, "MAX_RUNNING_JOBS", 1)
    first = TrainingJob(LONG)
    first.start()
    try:
        with pytest.raises(ServerBusy, match="1 runs are going on"):
            TrainingJob(QUICK).start()
    finally:
        first.stop()
        first.wait(5.0)
    second = TrainingJob(QUICK)
    second.start()  # the first one's place is free again
    assert second.wait(60) and jobs.running_jobs() == 0


def test_a_failure_in_the_thread_is_reported_not_raised(monkeypatch):
    job = TrainingJob(QUICK)

    def broken(**_: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(job.trainer, "run", broken)
    job.start()
    assert job.wait(5.0)
    assert job.end == "failed" and "RuntimeError: out of memory" in job.error
    assert jobs.running_jobs() == 0


def test_a_comparison_job_trains_its_variants_and_stops():
    variants = [Variant("dot", "lstm"), Variant("none", "lstm")]
    data = DataConfig(train_size=200, held_out_size=50)
    job = ComparisonJob(Comparison(variants, data, TrainConfig(epochs=1)))
    job.start()
    assert job.wait(60) and job.error is None
    assert [r.variant for r in job.comparison.reports] == variants
    assert job.latest[0] == variants[-1]
    long = ComparisonJob(
        Comparison(variants, DataConfig(train_size=20000), TrainConfig(epochs=20))
    )
    long.start()
    time.sleep(0.5)
    long.stop()
    assert long.wait(1.0)
    assert len(long.comparison.reports) == 1  # the one it was training, stopped
