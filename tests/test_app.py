"""The Streamlit app, run headless with AppTest: every page, errors, links, files, runs.

Training and comparisons run in background threads: a test starts one with a
click, waits for the thread (`finish`), and reruns the page to see its end.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

from date_seq2seq import checkpoint
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.data import task_vocabulary
from date_seq2seq.train_setup import BOUNDS, CHOICES, MAX_BIDIRECTIONAL_HIDDEN, Setup
from date_seq2seq.training import Trainer
from ui.text import plain

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120
PAGES = {"convert": "ui/convert_page.py", "step": "ui/step_through_page.py",
         "exposure": "ui/exposure_page.py", "train": "ui/train_page.py",
         "forming": "ui/forming_page.py", "compare": "ui/compare_page.py",
         "exercises": "ui/exercises_page.py"}  # fmt: skip


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AppTest]:
    """Open the app with no default model: it must train one, then convert."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATE_SEQ2SEQ_HOME", str(home))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        from ui.state import default_model_job  # the page waits for it

        default_model_job().wait(TIMEOUT)
        at.run()
    return home, at


def open_app(first_start, monkeypatch, params: dict[str, str] | None = None) -> AppTest:
    monkeypatch.setenv("DATE_SEQ2SEQ_HOME", str(first_start[0]))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = dict(params or {})
    at.run()
    assert not at.exception
    return at


@pytest.fixture
def app(first_start, monkeypatch) -> AppTest:
    """A fresh session of the app on the default model trained at first start."""
    return open_app(first_start, monkeypatch)


def on(at: AppTest, page: str) -> AppTest:
    """Open one of the app's pages, as a click in the sidebar does."""
    at.switch_page(PAGES[page]).run()
    assert not at.exception
    return at


def session(at: AppTest):  # noqa: ANN201 - ui.state.Session
    return at.session_state["session"]


def finish(at: AppTest) -> AppTest:
    """Let this session's runs end, then rerun the page, as its poll does."""
    this = session(at)
    for job in (this.training, this.comparison):
        if job is not None:
            assert job.wait(TIMEOUT), "the run did not end"
    at.run()
    assert not at.exception
    return at


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def charts(at: AppTest) -> list[dict]:
    """Vega-Lite specs of every chart on the page, in page order; their data rows
    (which Streamlit sends beside the spec) under "_rows"."""
    out = []
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        raw = element.proto.data.data
        spec["_rows"] = pa.ipc.open_stream(raw).read_all().to_pylist() if raw else []
        out.append(spec)
    return out


def chart(at: AppTest, description: str) -> dict:
    """The one chart with this description (every chart of the app has one)."""
    (spec,) = [s for s in charts(at) if s.get("description") == description]
    return spec


def rows(spec: dict) -> list[dict]:
    return spec["_rows"]


WIDGETS = {"attention": "selectbox", "cell": "selectbox", "lr": "select_slider",
           "batch": "select_slider", "sampling": "slider", "dropout": "slider",
           "probe": "text_input", "mask_attention": "checkbox",
           "bidirectional": "checkbox", "mask_loss": "checkbox"}  # fmt: skip


def start_training(
    at: AppTest, epochs: int = 2, train_size: int = 300, **values: object
) -> AppTest:
    """Fill the Train form (a form sends its values with its button) and train."""
    on(at, "train")
    for key, value in {"epochs": epochs, "train_size": train_size, **values}.items():
        getattr(at, WIDGETS.get(key, "number_input"))(key=key).set_value(value)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    return at


# --- first start and converting ---------------------------------------------------


def test_first_start_trains_the_default_model_and_converts(first_start) -> None:
    home, at = first_start
    assert not at.exception
    assert (home / "default.pt").is_file()
    assert "22/Nov/2024" in markdown_text(at)
    assert at.success and "Right" in at.success[0].value


def test_convert_shows_output_answer_and_heatmap_rows_summing_to_one(app) -> None:
    app.text_input(key="date").input("99-12-31").run()
    assert not app.exception
    assert "`31/Dec/1999`" in markdown_text(app)
    heatmap = chart(app, "attention heatmap")
    sums: dict[int, float] = defaultdict(float)
    for row in rows(heatmap):
        sums[row["output_step"]] += row["weight"]
    assert len(sums) == 9  # one row per output token
    assert {r["input_position"] for r in rows(heatmap)} == set(range(8))  # '-' twice
    assert all(abs(s - 1.0) < 1e-5 for s in sums.values())
    # A weight of nothing is drawn white, not light blue.
    scale = heatmap["layer"][0]["encoding"]["color"]["scale"]
    assert len(heatmap["layer"]) == 2  # 8 columns: each weight written in its cell
    assert scale["range"][0] == "#ffffff" and scale["domain"] == [0, 1]


def test_the_step_table_lists_every_step(app) -> None:
    table = app.dataframe[0].value
    assert list(table["emitted"][:9]) == list("22") + ["/", "Nov", "/"] + list("2024")
    assert table["emitted"].iloc[-1] == "<EOS>"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("24-02-30", "29 days"), ("23-02-29", "28 days"), ("24-13-01", "no month 13"),
     ("2024-11-22", "four-digit year"), ("24/11/22", "'/'"), ("abc", "not a date"),
     ("   ", "empty"), ("1" * 500, "too long"), ("٢٤-١١-٢٢", "0-9"),
     ("24-11-22; import os", "not a date")],
)  # fmt: skip
def test_bad_input_is_an_inline_error(app, text: str, needle: str) -> None:
    app.text_input(key="date").input(text).run()
    assert not app.exception
    assert len(app.error) == 1 and plain(needle) in app.error[0].value
    assert not [s for s in charts(app) if s["description"] == "attention heatmap"]


@pytest.mark.parametrize("text", ["**24**-11-22", "[a](http://e.com)", ":red[x]"])
def test_typed_markdown_comes_back_as_plain_text(app, text: str) -> None:
    app.text_input(key="date").input(text).run()
    (error,) = app.error
    message = session(app).converter.convert(text).error
    assert text in message and error.value == plain(message)  # every mark escaped
    assert "**24**" not in error.value and "](" not in error.value


def test_a_year_outside_the_window_says_what_the_model_wrote(app) -> None:
    app.text_input(key="date").input("50-01-01").run()
    assert not app.exception and not app.error
    (warning,) = app.warning
    output = re.search(r"`(\d\d/Jan/\d{4})`", markdown_text(app)).group(1)
    assert "outside" in warning.value
    assert plain(f"it wrote {output}") in warning.value  # not just "its century"


def test_an_empty_answer_is_shown_as_nothing_with_every_token_missing(app) -> None:
    trainer = Trainer(DataConfig(train_size=50, held_out_size=20),
                      train_config=TrainConfig(epochs=1))  # fmt: skip
    with torch.no_grad():
        trainer.model.decoder.out.bias[2] = 100.0  # <EOS> at once
    on(app, "train")
    app.file_uploader(key="upload").set_value(
        ("silent.pt", trainer.checkpoint().to_bytes(), "application/octet-stream")
    )
    app.run()
    on(app, "convert")
    text = markdown_text(app)
    assert "### *(nothing)*" in text and "``" not in text
    assert "9 missing" in text
    (info,) = app.info
    assert "output is empty" in info.value  # not "this model has no attention"


def test_example_buttons_fill_the_date(app) -> None:
    app.button(key="example_74-01-01").click().run()
    assert app.text_input(key="date").value == "74-01-01"
    assert "`01/Jan/1974`" in markdown_text(app)


def test_beam_search_converts_too(app) -> None:
    app.radio(key="search").set_value("beam search").run()
    app.slider(key="beam").set_value(4).run()
    assert not app.exception
    assert "`22/Nov/2024`" in markdown_text(app)
    kept = next(d.value for d in app.dataframe if "score" in d.value.columns)
    assert len(kept) == 4 and kept["answer"][0] == "22/Nov/2024"
    assert kept["note"][0] == "won, greedy's answer"
    assert list(kept["score"]) == sorted(kept["score"], reverse=True)
    assert any("agrees with greedy" in c.value for c in app.caption)
    app.slider(key="alpha").set_value(0.0).run()  # no length penalty
    kept = next(d.value for d in app.dataframe if "score" in d.value.columns)
    assert list(kept["score"]) == list(kept["log-probability"])


def test_dates_as_people_write_them(app, monkeypatch) -> None:
    """The human task's model trains on first use (here small), then converts."""
    from ui import jobs
    from ui.state import default_model_job

    small = (DataConfig(task="human", train_size=600, held_out_size=50),
             ModelConfig(vocab_size=len(task_vocabulary("human"))),
             TrainConfig(epochs=1))  # fmt: skip
    monkeypatch.setattr(jobs, "default_configs", lambda task: small)
    default_model_job.clear()
    app.radio(key="convert_task").set_value("human").run()
    assert not app.exception
    assert any("training now" in i.value for i in app.info)
    assert default_model_job("human").wait(TIMEOUT)
    app.run()  # as the progress poll does once it is saved
    assert not app.exception and not any("training now" in i.value for i in app.info)
    assert app.text_input(key="human_date").value == "Friday, 22 November 2024"
    assert "`22/Nov/2024`" in markdown_text(app)  # the calendar's answer
    heatmap = app.get("vega_lite_chart")[0]
    assert heatmap is not None
    # The same date, two paddings: pad columns drawn; the mask keeps them at 0.
    padded = chart(app, "padded heatmap")
    assert len(padded["layer"]) == 1  # 30 columns: colours only, numbers in tooltips
    said = markdown_text(app)  # 24 characters: "friday, 22 november 2024"
    assert "Padded to its own length (24), as above" in said
    assert {r["input_position"] for r in rows(padded)} == set(range(30))
    assert {r["input_char"] for r in rows(padded) if r["input_position"] >= 24} == {"·"}
    assert all(r["weight"] == 0 for r in rows(padded) if r["input_position"] >= 24)
    said = app.info[0].value
    assert (
        plain("the padding took 0.0% of the attention") in said
        and "stayed the same" in said
    )
    app.button(key="measure_padding").click().run()  # every form: nothing moves
    table = next(d.value for d in app.dataframe if "form" in d.value.columns)
    assert set(table["on <PAD>"]) == {"0.00%"} and len(table) == 12
    assert table["moved"].sum() == 0
    assert list(table["right at 30"]) == list(table["right unpadded"])
    app.radio(key="search").set_value("beam search").run()  # "as above" is greedy's
    assert not [c for c in charts(app) if c.get("description") == "padded heatmap"]
    app.radio(key="search").set_value("greedy").run()
    app.text_input(key="human_date").set_value("thu 22 nov 24").run()
    assert plain("is a Friday, not a Thursday") in app.error[0].value
    app.button(key="example_2024年11月22日").click().run()
    assert not app.error and app.text_input(key="human_date").value == "2024年11月22日"
    app.radio(key="convert_task").set_value("yymmdd").run()  # back: the classic task
    assert app.text_input(key="date").value == "24-11-22"


def test_the_model_training_now_is_offered_for_its_own_task(app, monkeypatch):
    """A human-task run while the model in use reads yy-mm-dd: Convert offers the
    run's model so far beside the human default, and not for yy-mm-dd."""
    from ui import jobs
    from ui.state import default_model_job

    small = (DataConfig(task="human", train_size=600, held_out_size=50),
             ModelConfig(vocab_size=len(task_vocabulary("human"))),
             TrainConfig(epochs=1))  # fmt: skip
    monkeypatch.setattr(jobs, "default_configs", lambda task: small)
    default_model_job.clear()
    on(app, "train")
    app.radio(key="task").set_value("human").run()
    start_training(app, epochs=15, train_size=20000)  # far longer than this test
    job = session(app).training
    try:
        for _ in range(600):  # its first held-out check: a model so far
            if job.live_converter() is not None:
                break
            job.wait(0.1)
        on(app, "convert")
        assert app.radio(key="convert_task").value == "yymmdd"  # the model in use's
        assert not [r for r in app.radio if r.key == "convert_with"]
        app.radio(key="convert_task").set_value("human").run()
        if not app.text_input:  # the human default trains first (here small)
            assert default_model_job("human").wait(TIMEOUT)
            app.run()
        offered = app.radio(key="convert_with").options
        assert offered[0] == "the default model for dates as people write them"
        assert offered[1].startswith("the model training now, as of step")
        app.radio(key="convert_with").set_value(offered[1]).run()
        assert not app.exception and app.text_input(key="human_date").value
    finally:
        job.stop(wait=TIMEOUT)


# --- training in the background -----------------------------------------------------


def test_training_runs_in_the_background_and_its_model_is_used(app) -> None:
    start_training(app)
    job = session(app).training
    assert job is not None and job.thread is not None
    on(app, "convert")  # typing, switching pages: the run goes on
    app.text_input(key="date").input("99-12-31").run()
    on(app, "step")
    assert not job.stop_requested
    on(app, "train")
    finish(app)
    assert job.end == "finished" and job.steps == 20  # 300 dates / 32: 10 a epoch
    assert app.success and "Training finished after 20 steps" in app.success[-1].value
    assert "your model" in app.sidebar.markdown[0].value
    assert app.sidebar.get("metric")  # its own held-out figure
    loss, accuracy = chart(app, "training loss"), chart(app, "held-out accuracy")
    assert len(rows(loss)) == 20
    measures = [r["measure"] for r in rows(accuracy)]
    assert set(measures) == {"tokens, teacher-forced", "tokens, free-running",
                             "dates exact"}  # fmt: skip
    assert measures.count("tokens, teacher-forced") == measures.count("dates exact")
    # One x range for both, whole steps on the axis (never "25.000000").
    x_loss, x_accuracy = loss["encoding"]["x"], accuracy["encoding"]["x"]
    assert x_loss["scale"]["domain"] == x_accuracy["scale"]["domain"] == [0, 20]
    assert x_loss["axis"]["format"] == x_accuracy["axis"]["format"] == "d"
    # The subtitle is short lines: a narrow screen cuts none of its words.
    subtitle = accuracy["title"]["subtitle"]
    assert "exposure bias" in " ".join(subtitle) and max(map(len, subtitle)) <= 45


def test_the_human_task_trains_on_the_train_page_and_every_page_reads_it(app):
    on(app, "train")
    app.radio(key="task").set_value("human").run()  # fills in the task's good start
    assert app.number_input(key="hidden").value == 64
    assert app.number_input(key="train_size").value == 20000
    assert app.text_input(key="probe").value == "Friday, 22 November 2024"
    finish(start_training(app, epochs=1, train_size=300, batch=64,
                          mask_attention=False))  # fmt: skip
    job = session(app).training
    assert job.setup.task == "human" and job.steps == 5  # 300 pairs / 64
    assert job.trainer.model_config.mask_attention is False
    (link,) = app.code
    assert "task=human" in link.value and "hidden=64" in link.value  # to share
    assert "as people write them" in app.sidebar.caption[0].value
    on(app, "convert")
    assert app.radio(key="convert_task").value == "human"
    assert any("Converting with your model" in c.value for c in app.caption)
    padded = rows(chart(app, "padded heatmap"))  # the padding is looked at
    assert sum(r["weight"] for r in padded if r["input_char"] == "·") > 0
    assert "does not mask attention" in app.info[0].value
    app.button(key="measure_padding").click().run()
    assert not app.exception
    table = next(d.value for d in app.dataframe if "form" in d.value.columns)
    moved = [b for b in app.button if b.key.startswith("moved_")]
    assert len(table) == 12 and len(moved) == min(6, table["moved"].sum())
    if moved:  # one click puts it in the box: its two answers differ
        moved[0].click().run()
        assert "answer changed" in app.info[0].value
    on(app, "step")
    app.text_input(key="walk_date").set_value("22 Nov 2024").run()
    assert not app.exception and not app.error
    on(app, "exposure")
    app.text_input(key="lab_date").set_value("fri 22 nov 24").run()
    assert not app.exception and not app.error
    assert app.dataframe  # the two runs, step by step
    on(app, "forming")
    cells = rows(chart(app, "attention forming heatmap"))
    probe = "friday, 22 november 2024"  # as the model reads it
    assert len({r["input_position"] for r in cells}) == len(probe)
    assert "".join(r["input_char"] for r in cells[: len(probe)]) == probe
    assert "1/24 is a blur." in json.dumps(chart(app, "sharpness"))


def test_progress_shows_the_steps_loss_and_counts_steps(app) -> None:
    from ui.train_page import progress_text

    start_training(app, epochs=2)
    job = session(app).training
    job.wait(TIMEOUT)
    last_step_loss = job.trainer.result.step_losses[-1]
    epoch_mean = job.trainer.result.history[-1]["loss"]
    assert f"loss {last_step_loss:.4f} at this step" in progress_text(job)
    assert f"{epoch_mean:.4f}" not in progress_text(job)
    assert "Step 20 of at most 20" in progress_text(job)


def test_stop_keeps_a_usable_model_and_its_held_out_figure(app) -> None:
    start_training(app, epochs=30, train_size=20000)  # 18,750 steps: it would go on
    job = session(app).training
    job.stop()
    finish(app)
    assert job.end == "stopped"
    (warning,) = app.warning
    assert "Training stopped after" in warning.value
    assert "your model" in app.sidebar.markdown[0].value
    assert app.sidebar.get("metric")  # measured even though no epoch ended
    on(app, "convert")
    assert not app.exception and not app.error
    assert "Correct answer" in markdown_text(app)


def test_a_session_runs_one_job_at_a_time(app) -> None:
    start_training(app, epochs=30, train_size=20000)
    job = session(app).training
    try:
        on(app, "compare")
        assert app.button(key="FormSubmitter:compare_form-Compare").disabled
        assert "one at a time" in " ".join(c.value for c in app.caption)
        on(app, "train")
        assert not app.get("form")  # the run's progress instead of the form
        assert app.button(key="stop")
    finally:
        job.stop()
        finish(app)


def test_a_busy_server_refuses_a_run_with_a_reason(app, monkeypatch) -> None:
    from ui import jobs

    monkeypatch.setattr(jobs, "MAX_RUNNING_JOBS", 0)
    start_training(app)
    (error,) = app.error
    assert "runs are going on this server" in error.value
    assert session(app).training is None


def test_a_diverging_run_is_flagged_with_the_learning_rate(first_start, monkeypatch):
    at = open_app(first_start, monkeypatch, {"lr": "0.1", "train_size": "2000"})
    from date_seq2seq import training

    monkeypatch.setattr(training, "GROWTH_FACTOR", 0.0)  # any loss counts as growth
    at.button(key="FormSubmitter:train_form-Train").click().run()
    finish(at)
    assert session(at).training.end == "diverged"
    (error,) = at.error
    assert "diverged" in error.value and "learning rate" in error.value


def test_two_sessions_do_not_share_a_model(first_start, monkeypatch) -> None:
    one = open_app(first_start, monkeypatch)
    two = open_app(first_start, monkeypatch)
    finish(start_training(one))
    two.run()
    assert "your model" in one.sidebar.markdown[0].value
    assert "the default model" in two.sidebar.markdown[0].value
    assert session(one).converter is not session(two).converter


# --- files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "needle"),
    [(b"", "empty"), (b"not a checkpoint at all", "not a readable checkpoint"),
     (b"PK\x03\x04" + b"\x00" * 64, "not a readable checkpoint")],
)  # fmt: skip
def test_a_broken_upload_is_refused_with_a_reason(app, payload, needle) -> None:
    on(app, "train")
    app.file_uploader(key="upload").set_value(("m.pt", payload, "application/x"))
    app.run()
    assert not app.exception
    assert app.error and plain(needle) in app.error[0].value
    assert "the default model" in app.sidebar.markdown[0].value
    app.file_uploader(key="upload").set_value(None).run()  # the file is removed
    assert not app.error  # and so is what was said about it


def test_a_valid_upload_replaces_the_model_its_name_shown_plainly(app) -> None:
    trainer = Trainer(DataConfig(train_size=50, held_out_size=20),
                      train_config=TrainConfig(epochs=1))  # fmt: skip
    trainer.run()
    on(app, "train")
    name = "[x](http:__e.invalid) **b**.pt"
    app.file_uploader(key="upload").set_value(
        (name, trainer.checkpoint().to_bytes(), "application/octet-stream")
    )
    app.run()
    assert not app.exception
    assert (
        app.sidebar.markdown[0].value
        == f"**Model in use:** {plain('uploaded ' + name)}"
    )


def test_a_refusal_quoting_the_file_shows_it_as_plain_text(app) -> None:
    trainer = Trainer(DataConfig(train_size=50, held_out_size=20),
                      train_config=TrainConfig(epochs=1))  # fmt: skip
    trainer.run()
    saved = trainer.checkpoint().to_dict()
    weight = "[x](http://evil.invalid/k) **B**"
    saved["state_dict"] = {**saved["state_dict"], weight: torch.zeros(1)}
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    on(app, "train")
    app.file_uploader(key="upload").set_value(
        ("[m](http:__e.invalid).pt", buffer.getvalue(), "application/octet-stream")
    )
    app.run()
    shown = app.error[0].value
    assert "unexpected" in shown and plain(weight) in shown
    assert "](http" not in shown and "**" not in shown  # no link, no bold
    assert "the default model" in app.sidebar.markdown[0].value


def test_an_uploaded_human_task_model_reads_dates_as_people_write_them(app) -> None:
    vocab_size = len(task_vocabulary("human"))
    trainer = Trainer(DataConfig(task="human", train_size=50, held_out_size=20),
                      ModelConfig(vocab_size=vocab_size),
                      TrainConfig(epochs=1))  # fmt: skip
    trainer.run()
    on(app, "train")
    app.file_uploader(key="upload").set_value(
        ("human.pt", trainer.checkpoint().to_bytes(), "application/octet-stream")
    )
    app.run()
    assert not app.exception and not app.error
    assert plain("uploaded human.pt") in app.sidebar.markdown[0].value
    assert "as people write them" in app.sidebar.caption[0].value
    on(app, "convert")
    assert app.radio(key="convert_task").value == "human"  # the model's own task
    on(app, "step")
    on(app, "convert")  # another page in between: the choice stays
    assert app.radio(key="convert_task").value == "human"
    app.radio(key="convert_task").set_value("yymmdd").run()
    on(app, "step")
    on(app, "convert")  # the user's own choice stays too
    assert app.radio(key="convert_task").value == "yymmdd"
    app.radio(key="convert_task").set_value("human").run()
    assert any(plain("with uploaded human.pt") in c.value for c in app.caption)
    app.text_input(key="human_date").set_value("22 Nov 2024").run()
    assert not app.error and "`22/Nov/2024`" in markdown_text(app)


@pytest.mark.parametrize("both_ways", [False, True])
def test_the_largest_model_the_form_allows_can_be_uploaded_again(both_ways) -> None:
    hidden = MAX_BIDIRECTIONAL_HIDDEN if both_ways else BOUNDS["hidden"][1]
    biggest = Setup(
        attention="additive", cell="lstm", embedding=BOUNDS["embedding"][1],
        hidden=hidden, layers=BOUNDS["layers"][1], epochs=1,
        batch=max(CHOICES["batch"]), train_size=50, bidirectional=both_ways,
    )  # fmt: skip
    trainer = Trainer(*biggest.configs())  # untrained: the size is the same
    raw = trainer.checkpoint().to_bytes()
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    upload_limit = config["server"]["maxUploadSize"] * 1024 * 1024
    assert len(raw) < upload_limit == checkpoint.MAX_BYTES
    assert checkpoint.load(raw).model.cfg == trainer.model_config


# --- shareable setups --------------------------------------------------------------


def test_a_link_opens_the_train_page_filled_in(first_start, monkeypatch) -> None:
    link = {"attention": "additive", "cell": "gru", "epochs": "3", "lr": "1e-3",
            "sampling": "0.5", "probe": "99-12-31"}  # fmt: skip
    at = open_app(first_start, monkeypatch, link)
    assert not at.warning
    assert at.selectbox(key="attention").value == "additive"  # the Train page's form
    assert at.selectbox(key="cell").value == "gru"
    assert at.number_input(key="epochs").value == 3
    assert at.select_slider(key="lr").value == 1e-3
    assert at.slider(key="sampling").value == 0.5
    assert at.text_input(key="probe").value == "99-12-31"
    assert at.number_input(key="hidden").value == 32  # not in the link: default


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"epochs": "lots"}, ["epochs=lots: not a whole number; using 30"]),
        ({"epochs": "100000", "lr": "0.5"}, ["from 1 to 50", "must be one of"]),
        ({"hidden": "-1", "cell": "tcn"}, ["from 2 to 256", "must be one of lstm"]),
        ({"dropout": "nan"}, ["dropout=nan:"]),
        ({"probe": "24-02-30"}, ["29 days"]),
        ({"bogus": "1"}, ["bogus is not a setting"]),
        ({"seed": "9" * 400}, ["too long for a number"]),
        ({"seed": "9" * 30}, ["from 0 to 2147483647"]),
        (
            {"epochs": "50", "train_size": "20000", "batch": "16"},
            ["a run takes at most 20,000", "using 16 epochs"],
        ),
    ],
)
def test_bad_link_values_are_reported_and_fall_back(
    first_start, monkeypatch, params, needles
) -> None:
    at = open_app(first_start, monkeypatch, {"batch": "64", **params})
    (warning,) = at.warning
    assert "cannot be used" in warning.value
    problems = at.code[0].value  # the first code on the page: above it
    assert all(needle in problems for needle in needles), problems
    assert len(problems) < 1000  # a long value is not echoed in full
    if "batch" not in params:
        assert at.select_slider(key="batch").value == 64  # a good value is kept
    on(at, "convert")
    assert "22/Nov/2024" in markdown_text(at)  # the app works as usual


def test_a_link_cannot_put_markdown_on_the_page(first_start, monkeypatch) -> None:
    link = {"a`[login](//ev.il)": "1", "probe": "`[x](//ev.il)"}
    at = open_app(first_start, monkeypatch, link)
    assert "[login](//ev.il)" in at.code[0].value  # shown, as plain text
    elements = [*at.markdown, *at.caption, *at.warning, *at.info, *at.error]
    assert not [e.value for e in elements if "ev.il" in e.value]


def test_training_puts_the_setup_in_the_link(app) -> None:
    assert app.query_params == {}
    finish(start_training(app, sampling=0.25))
    params = {
        k: v[0] if isinstance(v, list) else v for k, v in app.query_params.items()
    }
    setup, problems = Setup.from_params(params)
    assert problems == []
    assert (setup.epochs, setup.train_size, setup.sampling) == (2, 300, 0.25)
    (code,) = app.code
    assert "epochs=2" in code.value and "train_size=300" in code.value


@pytest.mark.parametrize(("probe", "needle"), [("24-02-30", "29 days"),
                                               ("50-01-01", "outside")])  # fmt: skip
def test_a_bad_probe_date_is_refused_before_training(app, probe, needle) -> None:
    start_training(app, probe=probe)
    (error,) = app.error
    assert "cannot be trained" in error.value and plain(needle) in error.value
    assert session(app).training is None
    assert app.query_params == {}  # nor written into the link


# --- step through ----------------------------------------------------------------


def test_step_through_shows_the_five_stages_in_reading_order(app) -> None:
    on(app, "step")
    app.select_slider(key="walk_step").set_value(4).run()  # emits "Nov"
    assert not app.exception
    order = [s["description"] for s in charts(app)]
    assert order == ["query vector", "attention scores", "attention weights",
                     "context vector", "top outputs"]  # fmt: skip
    scores = [r["value"] for r in rows(chart(app, "attention scores"))]
    weights = [r["value"] for r in rows(chart(app, "attention weights"))]
    softmax = [math.exp(x - max(scores)) for x in scores]
    assert weights == pytest.approx([x / sum(softmax) for x in softmax], abs=1e-6)
    assert len(rows(chart(app, "query vector"))) == 32  # hidden size
    assert len(rows(chart(app, "context vector"))) == 32
    top = rows(chart(app, "top outputs"))
    assert top[0]["token"] == "Nov" and len(top) == 5
    assert "Fed in: `/`" in markdown_text(app)


def test_forcing_a_token_decodes_on_from_it(app) -> None:
    on(app, "step")
    app.selectbox(key="force_token_0").set_value("3")
    app.button(key="force_0").click().run()
    assert not app.exception
    assert ":violet-background[3]" in markdown_text(app)
    (info,) = app.info
    assert "After the token forced at step 1" in info.value
    app.select_slider(key="walk_step").set_value(2).run()
    assert "Fed in: `3`" in markdown_text(app)
    app.button(key="clear_forced").click().run()
    assert "violet" not in markdown_text(app)
    app.button(key="force_1").click().run()  # a new date forgets forced tokens
    app.text_input(key="walk_date").input("99-12-31").run()
    assert not app.info


def test_a_forced_end_is_not_called_a_recovery(app) -> None:
    on(app, "step")
    app.selectbox(key="force_token_0").set_value("9")
    app.button(key="force_0").click().run()
    app.select_slider(key="walk_step").set_value(3).run()
    app.selectbox(key="force_token_2").set_value("<EOS>")
    app.button(key="force_2").click().run()
    (info,) = app.info
    assert "7 token(s) short" in info.value and "did not recover" in info.value


def test_forcing_the_end_at_the_first_step_leaves_one_step(app) -> None:
    on(app, "step")
    app.selectbox(key="force_token_0").set_value("<EOS>")
    app.button(key="force_0").click().run()
    assert app.select_slider(key="walk_step").options == ["1"]
    (info,) = app.info
    assert "ended the output" in info.value and "chose nothing after it" in info.value


def test_emit_instead_shows_the_token_of_the_path_shown(app) -> None:
    on(app, "step")
    app.selectbox(key="force_token_0").set_value("<EOS>")
    app.button(key="force_0").click().run()
    app.text_input(key="walk_date").input("99-12-31").run()  # 31/Dec/1999
    assert app.selectbox(key="force_token_0").value == "3"  # not the old <EOS>
    app.selectbox(key="force_token_0").set_value("1")
    app.button(key="force_0").click().run()
    app.select_slider(key="walk_step").set_value(2).run()
    assert f"Emitted: `{app.selectbox(key='force_token_1').value}`" in markdown_text(
        app
    )


def test_a_half_trained_model_can_be_stepped_through(first_start, monkeypatch):
    weak = {"train_size": "50", "epochs": "1", "batch": "256", "seed": "0",
            "attention": "general", "lr": "0.001"}  # fmt: skip
    at = open_app(first_start, monkeypatch, weak)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    finish(at)
    on(at, "step")
    emitted = []
    for step in range(1, len(at.select_slider(key="walk_step").options) + 1):
        at.select_slider(key="walk_step").set_value(step).run()
        assert not at.exception
        emitted.append(re.search(r"Emitted: (\S+)", markdown_text(at)).group(1))
    assert "`<PAD>`" in emitted or "`<GO>`" in emitted, emitted


@pytest.mark.parametrize(("text", "needle"), [("24-02-30", "29 days"), ("", "empty")])
def test_step_through_bad_date_is_an_inline_error(app, text, needle) -> None:
    on(app, "step")
    app.text_input(key="walk_date").input(text).run()
    (error,) = app.error
    assert plain(needle) in error.value


def test_a_model_without_attention_steps_through_without_scores(app) -> None:
    finish(start_training(app, attention="none"))
    on(app, "step")
    assert "no attention" in app.info[0].value
    descriptions = {s["description"] for s in charts(app)}
    assert descriptions == {"query vector", "top outputs"}


# --- exposure bias ---------------------------------------------------------------


def test_the_lab_of_a_right_model_feeds_both_runs_alike(app) -> None:
    on(app, "exposure")
    assert not [b for b in app.button if b.key.startswith("lab_")]
    (success,) = app.success
    assert "same tokens all the way" in success.value
    table = app.dataframe[0].value
    assert list(table["teacher: fed"]) == list(table["free: fed"])


def test_the_lab_shows_where_a_weak_model_parts(app) -> None:
    finish(start_training(app, epochs=1, train_size=200))  # the README's recipe
    on(app, "exposure")
    wrong = [b for b in app.button if b.key.startswith("lab_")]
    assert wrong, "a weak model gets some held-out dates wrong"
    wrong[0].click().run()
    assert app.text_input(key="lab_date").value == wrong[0].label
    (info,) = app.info
    first = int(re.search(r"At step (\d+)", info.value).group(1))
    table = app.dataframe[0].value
    fed_tf, fed_free = (
        list(table["teacher: fed"]),
        list(table["free: fed"]),
    )
    emits, right = list(table["free: emits"]), list(table["answer"])
    assert fed_tf[1:10] == right[:9]  # teacher forcing feeds the right answer
    for t in range(1, len(fed_free)):  # the free run is fed what it emitted
        assert fed_free[t] == ("" if emits[t - 1] == "<EOS>" else emits[t - 1])
    assert fed_free[: first - 1] == fed_tf[: first - 1]
    assert fed_free[first - 1] != fed_tf[first - 1]
    (caption,) = [c.value for c in app.main.caption if "Amber" in c.value]
    assert "from here on" not in caption and "at this step" in caption


@pytest.mark.parametrize(
    ("text", "needle"),
    [("24-02-30", "29 days"), ("50-01-01", "needs the right answer"), ("x", "not")],
)
def test_the_lab_bad_date_is_an_inline_error(app, text, needle) -> None:
    on(app, "exposure")
    app.text_input(key="lab_date").input(text).run()
    (error,) = app.error
    assert plain(needle) in error.value


def test_a_model_without_held_out_dates_still_opens_the_lab(app) -> None:
    trainer = Trainer(DataConfig(train_size=50, held_out_size=0),
                      train_config=TrainConfig(epochs=1))  # fmt: skip
    trainer.run()
    on(app, "train")
    app.file_uploader(key="upload").set_value(
        ("bare.pt", trainer.checkpoint().to_bytes(), "application/octet-stream")
    )
    app.run()
    on(app, "exposure")
    assert not app.get("metric")  # nothing held out to score
    assert app.dataframe  # the probe date is still compared step by step


# --- attention forming -------------------------------------------------------------


def test_attention_forming_replays_the_recorded_snapshots(app) -> None:
    on(app, "forming")
    assert "Train a model" in app.info[0].value
    finish(start_training(app, snapshot_every=3))  # 20 steps
    on(app, "forming")
    slider = app.select_slider(key="forming_step")
    assert slider.options == [str(s) for s in (0, 3, 6, 9, 12, 15, 18, 20)]
    assert slider.value == 20
    late = rows(chart(app, "attention forming heatmap"))
    slider.set_value(0).run()
    early = rows(chart(app, "attention forming heatmap"))
    for cells in (early, late):
        sums: dict[int, float] = defaultdict(float)
        for row in cells:
            sums[row["output_step"]] += row["weight"]
        assert len(sums) == 9 and all(abs(v - 1) < 1e-5 for v in sums.values())
    assert [r["weight"] for r in early] != [r["weight"] for r in late]
    assert max(r["weight"] for r in early) < 0.3  # untrained: a blur
    assert "1/8 is a blur." in json.dumps(chart(app, "sharpness"))
    sharpness = rows(chart(app, "sharpness"))
    assert [r["step"] for r in sharpness] == [0, 3, 6, 9, 12, 15, 18, 20]
    assert sharpness[0]["sharpness"] < sharpness[-1]["sharpness"]


def test_attention_forming_without_attention(app) -> None:
    finish(start_training(app, attention="none"))
    on(app, "forming")
    (info,) = app.info
    assert "no attention" in info.value


# --- compare runs --------------------------------------------------------------------


def start_comparison(at: AppTest, kinds: list[str], epochs: int, size: int) -> None:
    on(at, "compare")
    at.multiselect(key="compare_attention").set_value(kinds)
    at.number_input(key="compare_epochs").set_value(epochs)
    at.number_input(key="compare_train_size").set_value(size)
    at.button(key="FormSubmitter:compare_form-Compare").click().run()
    assert not at.exception


def test_compare_runs_ranks_by_steps_and_breaks_down_errors(app) -> None:
    start_comparison(app, ["none", "dot"], epochs=2, size=2000)
    finish(app)
    table = app.dataframe[0].value
    assert set(table["variant"]) == {"none · LSTM", "dot · LSTM"}
    reached = list(table["100% at"])
    # A lasting 100% first, by steps; only a run that ended at 100% has a figure.
    assert table["variant"].iloc[0] == "dot · LSTM" and int(reached[0]) > 0
    for steps, ended_at in zip(reached, table["exact"], strict=True):
        assert (steps == "–") == (ended_at != "100.0%")
    curves = chart(app, "compared curves")
    scale = curves["layer"][0]["encoding"]["color"]["scale"]
    colour = dict(zip(scale["domain"], scale["range"], strict=True))
    assert colour == {"none · LSTM": "#7f7f7f", "dot · LSTM": "#1f77b4"}  # fixed
    assert {r["variant"] for r in rows(curves)} == set(table["variant"])
    errors = app.dataframe[1].value  # no attention: not perfect
    assert list(errors["variant"]) == ["none · LSTM"]
    confusion = chart(app, "month confusion")
    assert sum(r["count"] for r in rows(confusion)) == 1000  # every held-out date
    x_axis = confusion["layer"][0]["encoding"]["x"]["axis"]
    assert x_axis["labelOverlap"] is False  # every month named, on a small screen too


def test_compare_runs_on_dates_as_people_write_them(app) -> None:
    on(app, "compare")
    app.radio(key="compare_task").set_value("human")
    app.multiselect(key="compare_attention").set_value(["dot", "additive"])
    app.number_input(key="compare_epochs").set_value(1)
    app.number_input(key="compare_train_size").set_value(600)
    app.button(key="FormSubmitter:compare_form-Compare").click().run()
    assert not app.exception
    finish(app)
    comparison = session(app).comparison.comparison
    assert comparison.data_config.task == "human"
    assert {r.metrics["count"] for r in comparison.reports} == {1000}  # pairs
    table = app.dataframe[0].value
    assert set(table["variant"]) == {"dot · LSTM", "additive · LSTM"}
    assert app.radio(key="compare_task").value == "human"  # the form as it ran


def test_a_stopped_comparison_speaks_of_the_trained_variants_only(app) -> None:
    start_comparison(app, ["dot", "general", "additive"], epochs=20, size=4000)
    job = session(app).comparison
    job.stop()
    finish(app)
    trained = len(job.comparison.reports)
    assert trained < 3
    text = " ".join(e.value for e in [*app.caption, *app.success, *app.info])
    assert f"{3 - trained} variant(s) not trained" in text or trained == 0
    assert "Every variant converts" not in text


def test_compare_with_nothing_chosen_says_so(app) -> None:
    start_comparison(app, [], epochs=1, size=400)
    (error,) = app.error
    assert "choose at least one variant" in error.value


# --- exercises ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["tune", "masks", "bridge", "feeding", "output", "cells"]
)
def test_an_exercise_runs_in_the_background_and_reads_its_own_numbers(
    app, monkeypatch, key
) -> None:
    from date_seq2seq import exercises

    small = tuple(
        dataclasses.replace(
            e,
            data=dataclasses.replace(e.data, train_size=300, held_out_size=40),
            train=dataclasses.replace(e.train, epochs=1),
        )
        for e in exercises.EXERCISES
    )
    exercise = next(e for e in small if e.key == key)
    monkeypatch.setattr(exercises, "EXERCISES", small)
    on(app, "exercises")
    assert [b.key for b in app.button if b.key.startswith("run_")] == [
        f"run_{e.key}" for e in small
    ]
    app.button(key=f"run_{key}").click().run()
    assert not app.exception
    this = session(app)
    assert this.exercise == key and this.comparison is not None
    assert app.button(key="run_tune").disabled  # one run at a time
    finish(app)
    assert not app.exception
    said = [
        i.value for i in app.info if "100% held-out" in i.value or "never" in i.value
    ]
    reading = this.comparison.reading  # worded once, in the background
    assert said == [reading]
    assert all(variant.name in reading for variant in exercise.variants)
    if key != "output":  # the same numbers, the same words (not so for timings)
        assert exercise.observe(this.comparison.comparison) == reading
    assert not app.button(key="run_tune").disabled


def test_an_exercises_variants_get_a_colour_each() -> None:
    from date_seq2seq.comparison import Variant
    from ui.charts import curves_chart

    def colours(variants: list) -> list:  # noqa: ANN001
        point = {"step": 1, "epoch": 1, "seconds": 0.1, "exact_match": 0.5}
        spec = curves_chart({v: [point] for v in variants})
        return spec["layer"][0]["encoding"]["color"]["scale"]["range"]

    # A colour per attention kind, fixed; an exercise's variants a colour each.
    assert colours([Variant("dot", "lstm"), Variant("dot", "gru")]) == ["#1f77b4"] * 2
    labelled = [Variant("dot", "lstm", label="a"), Variant("dot", "lstm", label="b")]
    assert colours(labelled) == ["#1f77b4", "#ff7f0e"]
