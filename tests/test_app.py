"""The Streamlit app, run headless with AppTest: convert, errors, train, stop, files."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from date_seq2seq.config import DataConfig, TrainConfig
from date_seq2seq.converter import Trainer

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AppTest]:
    """Open the app with no default model: it must train one, then convert."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATE_SEQ2SEQ_HOME", str(home))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return home, at


@pytest.fixture
def app(first_start: tuple[Path, AppTest], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """A fresh session of the app on the default model trained at first start."""
    monkeypatch.setenv("DATE_SEQ2SEQ_HOME", str(first_start[0]))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def charts(at: AppTest) -> list[dict]:
    """Vega-Lite specs of every chart on the page; their data rows under "_rows"."""
    out = []
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        raw = element.proto.data.data
        spec["_rows"] = pa.ipc.open_stream(raw).read_all().to_pylist() if raw else []
        out.append(spec)
    return out


def heatmap_rows(at: AppTest) -> list[dict]:
    (spec,) = [s for s in charts(at) if "layer" in s]
    return spec["_rows"]


def test_first_start_trains_the_default_model_and_converts(first_start) -> None:
    home, at = first_start
    assert not at.exception
    assert (home / "default.pt").is_file()
    assert "22/Nov/2024" in markdown_text(at)
    assert at.success and "Right" in at.success[0].value


def test_convert_shows_output_answer_and_heatmap_rows_summing_to_one(app) -> None:
    app.text_input(key="date").input("99-12-31").run()
    assert not app.exception
    text = markdown_text(app)
    assert "`31/Dec/1999`" in text
    rows = heatmap_rows(app)
    sums: dict[int, float] = defaultdict(float)
    for row in rows:
        sums[row["output_step"]] += row["weight"]
    assert len(sums) == 9  # one row per output token
    assert {r["input_position"] for r in rows} == set(range(8))  # '-' twice, kept
    assert all(abs(s - 1.0) < 1e-5 for s in sums.values())
    assert {r["input_char"] for r in rows} == set("99-12-31")


def test_trace_table_lists_every_step(app) -> None:
    table = app.dataframe[0].value
    assert list(table["emitted"][:9]) == list("22") + ["/", "Nov", "/"] + list("2024")
    assert table["emitted"].iloc[-1] == "<EOS>"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("24-02-30", "29 days"),
        ("23-02-29", "28 days"),
        ("24-13-01", "no month 13"),
        ("2024-11-22", "four-digit year"),
        ("24/11/22", "'/'"),
        ("abc", "not a date"),
        ("   ", "empty"),
        ("1" * 500, "too long"),
        ("٢٤-١١-٢٢", "0-9"),
        ("24-11-22; import os", "not a date"),
    ],
)
def test_bad_input_is_an_inline_error(app, text: str, needle: str) -> None:
    app.text_input(key="date").input(text).run()
    assert not app.exception
    assert len(app.error) == 1 and needle in app.error[0].value
    assert not [s for s in charts(app) if "layer" in s]  # no heatmap for it


def test_year_outside_the_window_warns_beside_the_guess(app) -> None:
    app.text_input(key="date").input("50-01-01").run()
    assert not app.exception
    assert len(app.warning) == 1 and "outside" in app.warning[0].value
    assert not app.error
    assert "01/Jan/" in markdown_text(app)  # the guess is still shown


def test_example_button_fills_the_date(app) -> None:
    app.button(key="example_74-01-01").click().run()
    assert app.text_input(key="date").value == "74-01-01"
    assert "`01/Jan/1974`" in markdown_text(app)


def test_beam_search_converts_too(app) -> None:
    app.radio(key="search").set_value("beam search").run()
    app.slider(key="beam").set_value(4).run()
    assert not app.exception
    assert "`22/Nov/2024`" in markdown_text(app)


def start_short_training(app: AppTest) -> AppTest:
    app.number_input(key="epochs").set_value(2)
    app.number_input(key="train_size").set_value(300)
    return app.button(key="FormSubmitter:train_form-Train").click().run()


def test_training_draws_curves_and_switches_the_model(app) -> None:
    start_short_training(app)
    assert not app.exception
    assert app.success and "Training finished" in app.success[-1].value
    specs = charts(app)
    titles = [json.dumps(s.get("title")) for s in specs]
    (loss,) = [s for s, t in zip(specs, titles, strict=True) if "loss" in t]
    (accuracy,) = [s for s, t in zip(specs, titles, strict=True) if "exposure" in t]
    assert len(loss["_rows"]) == 20  # 300 dates / 32 per batch = 10 steps, 2 epochs
    assert {r["decoding"] for r in accuracy["_rows"]} == {
        "teacher-forced",
        "free-running",
    }
    assert "your model" in app.sidebar.markdown[0].value
    # The new model is the one the Convert tab uses: its own held-out figure shows.
    assert app.sidebar.get("metric")


def test_stop_request_keeps_a_usable_model(app) -> None:
    # What the Stop button's callback does (AppTest cannot click mid-run; the
    # browser test clicks it for real).
    app.session_state["stop_requested"] = True
    app.session_state["stop_requested_by_user"] = True
    start_short_training(app)
    assert not app.exception
    assert app.warning and "Training stopped after" in app.warning[0].value
    assert "your model" in app.sidebar.markdown[0].value
    app.text_input(key="date").input("24-11-22").run()
    assert not app.exception and not app.error
    # Untrained or not, the model answers with tokens, and the answer is checked.
    assert "Correct answer" in markdown_text(app)


def test_two_sessions_do_not_share_a_model(first_start, monkeypatch) -> None:
    monkeypatch.setenv("DATE_SEQ2SEQ_HOME", str(first_start[0]))
    one = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    two = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    start_short_training(one)
    two.run()
    assert "your model" in one.sidebar.markdown[0].value
    assert "the default model" in two.sidebar.markdown[0].value
    assert one.session_state["converter"] is not two.session_state["converter"]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"", "empty"),
        (b"not a checkpoint at all", "not a readable checkpoint"),
        (b"PK\x03\x04" + b"\x00" * 64, "not a readable checkpoint"),
    ],
)
def test_broken_upload_is_refused_with_a_reason(
    app, payload: bytes, needle: str
) -> None:
    app.file_uploader(key="upload").set_value(
        ("model.pt", payload, "application/octet-stream")
    )
    app.run()
    assert not app.exception
    assert app.error and needle in app.error[0].value
    assert "the default model" in app.sidebar.markdown[0].value


def test_valid_upload_replaces_the_model(app, tmp_path) -> None:
    trainer = Trainer(
        DataConfig(train_size=50, held_out_size=20), train_config=TrainConfig(epochs=1)
    )
    trainer.run()
    raw = trainer.checkpoint().to_bytes()
    app.file_uploader(key="upload").set_value(
        ("mine.pt", raw, "application/octet-stream")
    )
    app.run()
    assert not app.exception
    assert "uploaded mine.pt" in app.sidebar.markdown[0].value
