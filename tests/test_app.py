"""The Streamlit app, run headless with AppTest: every tab, errors, links, files."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from date_seq2seq.config import DataConfig, TrainConfig
from date_seq2seq.train_setup import Setup
from date_seq2seq.training import Trainer

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


def chart(at: AppTest, description: str) -> dict:
    """The one chart with this description (every chart of the app has one)."""
    (spec,) = [s for s in charts(at) if s.get("description") == description]
    return spec


def heatmap_rows(at: AppTest) -> list[dict]:
    return chart(at, "attention heatmap")["_rows"]


def tab(at: AppTest, label: str):  # noqa: ANN201 - AppTest's Tab
    (found,) = [t for t in at.tabs if t.label == label]
    return found


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
    assert not [s for s in charts(app) if s["description"] == "attention heatmap"]


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


def start_short_training(
    app: AppTest, epochs: int = 2, train_size: int = 300
) -> AppTest:
    app.number_input(key="epochs").set_value(epochs)
    app.number_input(key="train_size").set_value(train_size)
    return app.button(key="FormSubmitter:train_form-Train").click().run()


def test_training_draws_curves_and_switches_the_model(app) -> None:
    start_short_training(app)
    assert not app.exception
    assert app.success and "Training finished" in app.success[-1].value
    loss = chart(app, "training loss")
    accuracy = chart(app, "held-out accuracy")
    assert "exposure bias" in json.dumps(accuracy["title"])
    # The rows passed with a chart are its only data: Altair's placeholder
    # data set of one blank row would draw as an "undefined" series.
    for spec in charts(app):
        assert "datasets" not in spec and "data" not in spec
        assert not [layer for layer in spec.get("layer", []) if "data" in layer]
    assert len(loss["_rows"]) == 20  # 300 dates / 32 per batch = 10 steps, 2 epochs
    measures = [r["measure"] for r in accuracy["_rows"]]
    assert set(measures) == {"tokens, teacher-forced", "tokens, free-running",
                             "dates exact"}  # fmt: skip
    # Every evaluation (each 25 steps and each epoch's end) measures both ways.
    assert measures.count("tokens, teacher-forced") == measures.count("dates exact")
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
    (warning,) = tab(app, "Train").warning
    assert "Training stopped after" in warning.value
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
    app.file_uploader(key="upload").set_value(None).run()  # the file is removed
    assert not app.error  # and so is what was said about it


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


# --- shareable setups ---------------------------------------------------------


def open_with(first_start, monkeypatch, params: dict[str, str]) -> AppTest:
    monkeypatch.setenv("DATE_SEQ2SEQ_HOME", str(first_start[0]))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = dict(params)
    return at.run()


def test_a_link_fills_the_train_form(first_start, monkeypatch) -> None:
    link = {"attention": "additive", "cell": "gru", "epochs": "3", "lr": "1e-3",
            "sampling": "0.5", "probe": "99-12-31"}  # fmt: skip
    at = open_with(first_start, monkeypatch, link)
    assert not at.exception and not at.warning
    assert at.selectbox(key="attention").value == "additive"
    assert at.selectbox(key="cell").value == "gru"
    assert at.number_input(key="epochs").value == 3
    assert at.select_slider(key="lr").value == 1e-3
    assert at.slider(key="sampling").value == 0.5
    assert at.text_input(key="probe").value == "99-12-31"
    assert at.number_input(key="hidden").value == 32  # not in the link: default
    assert at.session_state["first_tab"] == "Train"


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"epochs": "lots"}, ["epochs=lots: not a whole number; using 30"]),
        ({"epochs": "100000", "lr": "0.5"}, ["from 1 to 200", "must be one of"]),
        ({"hidden": "-1", "cell": "tcn"}, ["from 2 to 512", "must be one of lstm"]),
        ({"dropout": "nan"}, ["dropout=nan:"]),
        ({"probe": "24-02-30"}, ["29 days"]),
        ({"bogus": "1"}, ["bogus is not a setting"]),
        ({"seed": "9" * 400}, ["too long for a number"]),
        ({"seed": "9" * 30}, ["from 0 to 2147483647"]),
    ],
)
def test_bad_link_values_are_reported_and_fall_back(
    first_start, monkeypatch, params, needles
) -> None:
    at = open_with(first_start, monkeypatch, {**params, "batch": "64"})
    assert not at.exception
    (warning,) = at.warning
    assert "cannot be used" in warning.value
    problems = at.code[0].value  # the first code on the page: above the tabs
    assert all(needle in problems for needle in needles), problems
    assert len(problems) < 1000  # a long value is not echoed in full
    for name in params:
        if name != "bogus":
            assert at.session_state[name] == getattr(Setup(), name)
    assert at.select_slider(key="batch").value == 64  # the good value is kept
    assert "22/Nov/2024" in markdown_text(at)  # the app works as usual


def test_a_link_cannot_put_markdown_on_the_page(first_start, monkeypatch) -> None:
    link = {"a`[login](//ev.il)": "1", "probe": "`[x](//ev.il)"}
    at = open_with(first_start, monkeypatch, link)
    assert not at.exception
    assert "[login](//ev.il)" in at.code[0].value  # shown, as plain text
    elements = [*at.markdown, *at.caption, *at.warning, *at.info, *at.error]
    assert not [e.value for e in elements if "ev.il" in e.value]


def test_training_puts_the_setup_in_the_link(app) -> None:
    assert app.query_params == {}
    app.slider(key="sampling").set_value(0.25)
    start_short_training(app)
    assert not app.exception
    params = {
        k: v[0] if isinstance(v, list) else v for k, v in app.query_params.items()
    }
    setup, problems = Setup.from_params(params)
    assert problems == []
    assert (setup.epochs, setup.train_size, setup.sampling) == (2, 300, 0.25)
    (code,) = tab(app, "Train").code
    assert "epochs=2" in code.value and "train_size=300" in code.value


# --- step through ---------------------------------------------------------------


def test_step_through_shows_query_scores_weights_context_and_top(app) -> None:
    page = tab(app, "Step through")
    assert "Walk one conversion step by step" in page.markdown[0].value
    app.select_slider(key="walk_step").set_value(4).run()  # emits "Nov"
    assert not app.exception
    scores = [r["value"] for r in chart(app, "attention scores")["_rows"]]
    weights = [r["value"] for r in chart(app, "attention weights")["_rows"]]
    assert len(scores) == len(weights) == 8
    softmax = [math.exp(x - max(scores)) for x in scores]
    assert weights == pytest.approx([x / sum(softmax) for x in softmax], abs=1e-6)
    assert len(chart(app, "query vector")["_rows"]) == 32  # hidden size
    assert len(chart(app, "context vector")["_rows"]) == 32
    top = chart(app, "top outputs")["_rows"]
    assert top[0]["token"] == "Nov" and len(top) == 5
    assert "Fed in: `/`" in markdown_text(app)


def test_forcing_a_token_decodes_on_from_it(app) -> None:
    app.selectbox(key="force_token_0").set_value("3")
    app.button(key="force_0").click().run()
    assert not app.exception
    page = tab(app, "Step through")
    assert ":violet-background[3]" in page.markdown[1].value
    (info,) = page.info
    assert "After the token forced at step 1" in info.value
    app.select_slider(key="walk_step").set_value(2).run()
    assert "Fed in: `3`" in markdown_text(app)
    app.button(key="clear_forced").click().run()
    assert "violet" not in tab(app, "Step through").markdown[1].value
    # A new date forgets the forced tokens.
    app.button(key="force_1").click().run()
    app.text_input(key="walk_date").input("99-12-31").run()
    assert not tab(app, "Step through").info


def test_emit_instead_shows_the_token_of_the_path_shown(app) -> None:
    app.selectbox(key="force_token_0").set_value("<EOS>")
    app.button(key="force_0").click().run()
    app.text_input(key="walk_date").input("99-12-31").run()  # 31/Dec/1999
    assert app.selectbox(key="force_token_0").value == "3"  # not the old <EOS>
    app.selectbox(key="force_token_0").set_value("1")
    app.button(key="force_0").click().run()
    app.select_slider(key="walk_step").set_value(2).run()
    emitted = tab(app, "Step through").markdown[4].value  # "Emitted: `x`"
    assert f"`{app.selectbox(key='force_token_1').value}`" in emitted
    app.button(key="clear_forced").click().run()
    app.select_slider(key="walk_step").set_value(1).run()
    assert app.selectbox(key="force_token_0").value == "3"
    assert not app.exception


def test_a_half_trained_model_can_be_stepped_through(first_start, monkeypatch):
    weak = {"train_size": "50", "epochs": "1", "batch": "256", "seed": "0",
            "attention": "general", "lr": "0.001"}  # fmt: skip
    at = open_with(first_start, monkeypatch, weak)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    emitted = [tab(at, "Step through").markdown[4].value]
    for step in range(2, len(at.select_slider(key="walk_step").options) + 1):
        at.select_slider(key="walk_step").set_value(step).run()
        assert not at.exception
        emitted.append(tab(at, "Step through").markdown[4].value)
    assert any("<PAD>" in e or "<GO>" in e for e in emitted), emitted
    assert "nothing" not in " ".join(i.value for i in tab(at, "Exposure bias").info)


@pytest.mark.parametrize(("text", "needle"), [("24-02-30", "29 days"), ("", "empty")])
def test_step_through_bad_date_is_an_inline_error(app, text, needle) -> None:
    app.text_input(key="walk_date").input(text).run()
    assert not app.exception
    (error,) = tab(app, "Step through").error
    assert needle in error.value


# --- exposure bias --------------------------------------------------------------


def test_exposure_lab_of_a_right_model_feeds_both_runs_alike(app) -> None:
    page = tab(app, "Exposure bias")
    assert "exposure bias" in page.markdown[0].value
    assert not page.button  # the default model gets every held-out date right
    (success,) = page.success
    assert "same tokens all the way" in success.value
    table = page.dataframe[0].value
    assert list(table.loc["teacher forcing: fed"]) == list(
        table.loc["free-running: fed"]
    )


def test_exposure_lab_shows_where_a_weak_model_parts(app) -> None:
    start_short_training(app, epochs=1, train_size=200)
    page = tab(app, "Exposure bias")
    assert page.button, "a weak model gets some held-out dates wrong"
    wrong = page.button[0].label
    page.button[0].click().run()
    assert not app.exception
    assert app.text_input(key="lab_date").value == wrong
    page = tab(app, "Exposure bias")
    (info,) = page.info
    first = int(re.search(r"From step (\d+)", info.value).group(1))
    table = page.dataframe[0].value
    fed_tf = list(table.loc["teacher forcing: fed"])
    fed_free = list(table.loc["free-running: fed"])
    emits = list(table.loc["free-running: emits"])
    right = list(table.loc["right answer"])
    assert fed_tf[1:10] == right[:9]  # teacher forcing feeds the right answer
    for t in range(1, len(fed_free)):  # the free run is fed what it emitted
        assert fed_free[t] == ("" if emits[t - 1] == "<EOS>" else emits[t - 1])
    assert fed_free[: first - 1] == fed_tf[: first - 1]
    assert fed_free[first - 1] != fed_tf[first - 1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("24-02-30", "29 days"), ("50-01-01", "needs the right answer"), ("x", "not")],
)
def test_exposure_lab_bad_date_is_an_inline_error(app, text, needle) -> None:
    app.text_input(key="lab_date").input(text).run()
    assert not app.exception
    (error,) = tab(app, "Exposure bias").error
    assert needle in error.value


# --- attention forming ----------------------------------------------------------


def test_attention_forming_replays_the_recorded_snapshots(app) -> None:
    assert "Train a model" in tab(app, "Attention forming").info[0].value
    app.number_input(key="snapshot_every").set_value(3)
    start_short_training(app)  # 20 steps
    assert not app.exception
    slider = app.select_slider(key="forming_step")
    assert slider.options == [str(s) for s in (0, 3, 6, 9, 12, 15, 18, 20)]
    assert slider.value == 20
    late = chart(app, "attention forming heatmap")["_rows"]
    slider.set_value(0).run()
    early = chart(app, "attention forming heatmap")["_rows"]
    for rows in (early, late):
        sums: dict[int, float] = defaultdict(float)
        for row in rows:
            sums[row["output_step"]] += row["weight"]
        assert len(sums) == 9 and all(abs(v - 1) < 1e-5 for v in sums.values())
    assert [r["weight"] for r in early] != [r["weight"] for r in late]
    assert max(r["weight"] for r in early) < 0.3  # untrained: a blur
    sharpness = chart(app, "sharpness")["_rows"]
    assert [r["step"] for r in sharpness] == [0, 3, 6, 9, 12, 15, 18, 20]
    assert sharpness[0]["sharpness"] < sharpness[-1]["sharpness"]


def test_attention_forming_without_attention(app) -> None:
    app.selectbox(key="attention").set_value("none")
    start_short_training(app)
    assert not app.exception
    (info,) = tab(app, "Attention forming").info
    assert "no attention" in info.value


# --- compare runs ---------------------------------------------------------------


def test_compare_runs_overlays_curves_and_breaks_down_errors(app) -> None:
    app.multiselect(key="compare_attention").set_value(["none", "additive"])
    app.number_input(key="compare_epochs").set_value(1)
    app.number_input(key="compare_train_size").set_value(400)
    app.button(key="FormSubmitter:compare_form-Compare").click().run()
    assert not app.exception
    page = tab(app, "Compare runs")
    table = page.dataframe[0].value
    assert list(table["variant"]) == ["none · LSTM", "additive · LSTM"]
    assert list(table["epochs"]) == [1, 1]
    curves = chart(app, "compared curves")
    assert {r["variant"] for r in curves["_rows"]} == set(table["variant"])
    errors = page.dataframe[1].value  # one epoch on 400 dates: not perfect
    assert (errors["wrong"] > 0).all()
    assert (errors["wrong"] >= errors[["day", "month", "year"]].max(axis=1)).all()
    confusion = chart(app, "month confusion")["_rows"]
    assert sum(r["count"] for r in confusion) == 1000  # every held-out date
    app.selectbox(key="confusion_variant").set_value(errors["variant"].iloc[-1]).run()
    assert not app.exception


def test_compare_with_nothing_chosen_says_so(app) -> None:
    app.multiselect(key="compare_attention").set_value([])
    app.button(key="FormSubmitter:compare_form-Compare").click().run()
    assert not app.exception
    (error,) = tab(app, "Compare runs").error
    assert "choose at least one variant" in error.value


def test_forcing_the_end_at_the_first_step_leaves_one_step(app) -> None:
    app.selectbox(key="force_token_0").set_value("<EOS>")
    app.button(key="force_0").click().run()
    assert not app.exception
    assert app.select_slider(key="walk_step").options == ["1"]
    (info,) = tab(app, "Step through").info
    assert "ended the output: the model chose nothing after it" in info.value


def test_a_model_without_attention_steps_through_without_scores(app) -> None:
    app.selectbox(key="attention").set_value("none")
    start_short_training(app)
    assert not app.exception
    assert "no attention" in tab(app, "Step through").info[0].value
    descriptions = {s["description"] for s in charts(app)}
    assert {"query vector", "top outputs"} <= descriptions
    assert not descriptions & {
        "attention scores",
        "attention weights",
        "context vector",
    }


def test_a_model_without_held_out_dates_still_opens_the_lab(app) -> None:
    trainer = Trainer(
        DataConfig(train_size=50, held_out_size=0), train_config=TrainConfig(epochs=1)
    )
    trainer.run()
    raw = trainer.checkpoint().to_bytes()
    app.file_uploader(key="upload").set_value(
        ("bare.pt", raw, "application/octet-stream")
    )
    app.run()
    assert not app.exception
    page = tab(app, "Exposure bias")
    assert not page.get("metric") and not page.button  # nothing held out to score
    assert page.dataframe  # the probe date is still compared step by step


@pytest.mark.parametrize(("probe", "needle"), [("24-02-30", "29 days"),
                                               ("50-01-01", "outside")])  # fmt: skip
def test_a_bad_probe_date_is_refused_before_training(app, probe, needle) -> None:
    app.text_input(key="probe").input(probe)
    start_short_training(app)
    assert not app.exception
    (error,) = tab(app, "Train").error
    assert "cannot be trained" in error.value and needle in error.value
    assert "the default model" in app.sidebar.markdown[0].value  # nothing trained
    assert app.query_params == {}  # nor written into the link
