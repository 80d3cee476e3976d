"""Converter: the facade the CLI and the app use, on the session's trained model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from date_seq2seq import converter as converter_module
from date_seq2seq.checkpoint import CheckpointError
from date_seq2seq.config import DataConfig, DecodeConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import (
    Conversion,
    Converter,
    default_checkpoint_path,
    train_new,
)
from date_seq2seq.data import InputError, source_text, split, target_text

TINY_DATA = DataConfig(train_size=32, held_out_size=8, seed=1)
TINY_MODEL = ModelConfig(
    attention="general", embedding_dim=3, encoder_hidden=5, decoder_hidden=7
)
TINY_TRAIN = TrainConfig(epochs=1, batch_size=16)


def test_default_checkpoint_path(model_home, monkeypatch, tmp_path):
    assert default_checkpoint_path() == model_home / "default.pt"
    monkeypatch.delenv("DATE_SEQ2SEQ_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_checkpoint_path() == tmp_path / "xdg" / "date_seq2seq" / "default.pt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    want = tmp_path / "user" / ".cache" / "date_seq2seq" / "default.pt"
    assert default_checkpoint_path() == want


def test_convert_a_valid_date(converter):
    result = converter.convert("24-11-22")
    assert result.input == "24-11-22"
    assert result.expected == "22/Nov/2024"
    assert result.expected_tokens == ("2", "2", "/", "Nov", "/", "2", "0", "2", "4")
    assert result.output == "".join(result.tokens) == "22/Nov/2024"
    assert result.correct is True
    assert result.token_correct() == [True] * 9
    assert (result.error, result.warning, result.kind) == (None, None, "ok")
    assert len(result.attention) == len(result.tokens)
    for row in result.attention:
        assert len(row) == 8
        assert sum(row) == pytest.approx(1.0, abs=1e-5)


def test_surrounding_white_space_is_ignored(converter):
    result = converter.convert("\t 74-01-05 \n")
    assert result.input == "74-01-05" and result.expected == "05/Jan/1974"
    assert result.output is not None and result.error is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("24-02-30", "impossible"),
        ("2024-11-22", "malformed"),
        ("", "malformed"),
        ("٢٤-١١-٢٢", "malformed"),
    ],
)
def test_convert_refuses_invalid_input(converter, text, kind):
    result = converter.convert(text)
    assert result.kind == kind and result.error
    assert result.output is None and result.tokens == () and result.attention is None
    assert result.expected is None and result.warning is None
    assert result.correct is None and result.token_correct() is None


def test_a_date_outside_the_window_is_converted_with_a_warning(converter):
    result = converter.convert("50-01-01")
    assert result.kind == "outside_window"
    assert "outside" in result.warning and result.error is None
    assert isinstance(result.output, str) and result.output
    assert result.expected is None and result.correct is None
    assert result.token_correct() is None
    assert len(result.attention) == len(result.tokens)


def test_convert_many_keeps_order_and_matches_convert(converter, held_out_texts):
    inputs = [
        held_out_texts[0],
        "abc",
        "50-01-01",
        held_out_texts[1],
        "24-13-01",
        " 24-11-22",
        held_out_texts[2],
    ]
    results = list(converter.convert_many(inputs, chunk_size=3))
    assert [r.input for r in results] == [t.strip() for t in inputs]
    assert [r.kind for r in results] == [
        "ok",
        "malformed",
        "outside_window",
        "ok",
        "impossible",
        "ok",
        "ok",
    ]
    for batched, alone in zip(results, map(converter.convert, inputs), strict=True):
        # Batching may move attention in the last float bits; all else is identical.
        assert dataclasses.replace(batched, attention=None) == dataclasses.replace(
            alone, attention=None
        )
        if alone.attention is not None:
            torch.testing.assert_close(
                torch.tensor(batched.attention), torch.tensor(alone.attention)
            )


def test_convert_many_is_lazy(converter):
    pulled = []

    def endless() -> Iterator[str]:
        for i in itertools.count():
            pulled.append(i)
            yield source_text(dt.date(2000, 1, 1) + dt.timedelta(days=i))

    results = list(itertools.islice(converter.convert_many(endless(), chunk_size=4), 6))
    assert len(results) == 6 and len(pulled) <= 8
    assert [r.expected for r in results] == [
        target_text(dt.date(2000, 1, 1) + dt.timedelta(days=i)) for i in range(6)
    ]


def test_convert_many_survives_non_text_items(converter):
    results = list(converter.convert_many([None, "24-11-22", 241122]))
    assert [r.kind for r in results] == ["malformed", "ok", "malformed"]
    assert results[0].input == "None" and results[2].input == "241122"


def test_most_held_out_dates_convert_correctly(converter, held_out_texts):
    results = list(converter.convert_many(held_out_texts))
    assert sum(r.correct for r in results) >= 0.95 * len(results)
    assert all(r.correct == (r.output == r.expected) for r in results)


def test_beam_search_conversion(converter, held_out_texts):
    greedy = list(converter.convert_many(held_out_texts[:50]))
    beam = list(converter.convert_many(held_out_texts[:50], beam_size=3))
    assert sum(r.correct for r in beam) >= sum(r.correct for r in greedy) - 1
    assert all(len(r.attention) == len(r.tokens) for r in beam)


def test_a_short_max_len_truncates_the_output(trained):
    short = Converter(trained, DecodeConfig(max_len=3))
    result = short.convert("24-11-22")
    assert result.tokens == ("2", "2", "/")
    assert result.correct is False
    assert result.token_correct() == [True, True, True]


@pytest.mark.parametrize(
    ("tokens", "want"),
    [
        (("2", "2", "/", "Nov"), [True, True, True, True]),
        (("2", "3", "/", "Nov"), [True, False, True, True]),
        (("2", "2", "/", "Nov", "/"), [True, True, True, True, False]),  # extra token
        (("2",), [True]),  # missing tokens: nothing to mark
        ((), []),
    ],
)
def test_token_correct(tokens, want):
    result = Conversion(
        "x",
        output="".join(tokens),
        expected="22/Nov",
        tokens=tokens,
        expected_tokens=("2", "2", "/", "Nov"),
    )
    assert result.token_correct() == want


def test_trace_through_the_converter(converter):
    steps = converter.trace("24-11-22")
    assert "".join(s.chosen for s in steps[:-1]) == "22/Nov/2024"
    assert steps[-1].chosen == "<EOS>"
    for step in steps:
        probs = [p for _, p in step.top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1 + 1e-6
        assert sum(step.weights) == pytest.approx(1.0, abs=1e-5)
    assert len(converter.trace("24-11-22", top_k=5)[0].top) == 5
    nine = converter.vocab.encode(["9"])[0]
    pushed = converter.trace("24-11-22", force={1: nine})
    assert pushed[1].chosen == "9" and pushed[1].forced and pushed[2].fed == "9"
    assert pushed[0] == steps[0] and pushed[2].top != steps[2].top


def test_trace_refuses_unusable_input_but_not_outside_window(converter):
    for text, kind in (("abc", "malformed"), ("24-02-30", "impossible")):
        with pytest.raises(InputError) as info:
            converter.trace(text)
        assert info.value.kind == kind
    assert converter.trace(" 50-01-01 ")[0].fed == "<GO>"


def test_evaluate_and_held_out_days(converter, small_data):
    days = converter.held_out_days()
    assert converter.checkpoint.data_config == small_data
    assert days == split(small_data)[1] and len(days) == 200
    metrics = converter.evaluate(days)
    assert metrics["count"] == 200
    assert metrics["exact_match"] >= 0.95
    assert metrics["token_accuracy"] >= metrics["exact_match"]
    assert metrics["bleu"] >= 0.95 and metrics["year_accuracy"] >= 0.95
    by_chunks = converter.evaluate(iter(days), chunk_size=7)
    assert by_chunks == metrics


def test_from_path_refuses_a_bad_file(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_text("not a model")
    with pytest.raises(CheckpointError):
        Converter.from_path(path)


def test_default_loads_an_existing_model_without_training(
    trained_path, trained, model_home, monkeypatch
):
    shutil.copy(trained_path, model_home / "default.pt")

    def no_training(*args, **kwargs):
        raise AssertionError("must not train when a default model exists")

    monkeypatch.setattr(converter_module, "train_new", no_training)
    default = Converter.default()
    state, want = default.model.state_dict(), trained.model.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want)


def test_default_trains_and_saves_when_there_is_none(model_home, monkeypatch):
    events, calls = [], []

    def small_training(on_progress=None, should_stop=None):
        calls.append(1)
        return train_new(TINY_DATA, TINY_MODEL, TINY_TRAIN, on_progress=on_progress)

    monkeypatch.setattr(converter_module, "train_new", small_training)
    default = Converter.default(on_progress=events.append)
    assert calls == [1]
    assert (model_home / "default.pt").is_file()
    assert default.model.cfg == TINY_MODEL
    assert {e.kind for e in events} == {"step", "epoch"}
    Converter.default()  # now it exists: no second training
    assert calls == [1]


def test_train_new_packages_a_checkpoint():
    checkpoint, result = train_new(TINY_DATA, TINY_MODEL, TINY_TRAIN)
    assert checkpoint.history == result.history and len(result.history) == 1
    assert checkpoint.data_config == TINY_DATA
    assert checkpoint.train_config == TINY_TRAIN
    assert checkpoint.model.cfg == TINY_MODEL
    with pytest.raises(ValueError, match="vocab_size must be 27"):
        train_new(TINY_DATA, ModelConfig(vocab_size=30), TINY_TRAIN)


def test_explain_equals_convert_and_trace_in_one_decode(converter, held_out_texts):
    inputs = [*held_out_texts[:20], "50-01-01", " 99-12-31 ", "24-02-30", "abc", ""]
    for text in inputs:
        conversion, steps = converter.explain(text, top_k=4)
        converted = converter.convert(text)  # the packed batch path: same tokens,
        # attention equal up to float rounding (a different order of sums)
        assert dataclasses.replace(conversion, attention=None) == dataclasses.replace(
            converted, attention=None
        )
        if converted.attention is None:
            assert conversion.attention is None
        else:
            torch.testing.assert_close(
                torch.tensor(conversion.attention),
                torch.tensor(converted.attention),
                atol=1e-5,
                rtol=0,
            )
        if conversion.error is None:
            assert steps == converter.trace(text, top_k=4)
        else:
            assert steps == []


def test_predict_days_gives_what_convert_gives(converter, held_out_texts):
    days = converter.held_out_days()[:40]
    preds = converter.predict_days(days, chunk_size=9)
    assert len(preds) == 40
    for pred, text in zip(preds, held_out_texts[:40], strict=True):
        assert tuple(pred) == converter.convert(text).tokens
    assert converter.predict_days([]) == []


class Interrupted(Exception):
    """What the app's script raises inside on_progress when a click reruns it."""


def test_observers_see_every_event_even_when_the_run_is_interrupted():
    trainer = converter_module.Trainer(TINY_DATA, TINY_MODEL, TINY_TRAIN)
    seen, shown = [], []
    trainer.observers.append(lambda e: seen.append((e.kind, e.step)))

    def show(event):
        shown.append((event.kind, event.step))
        if event.step == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        trainer.run(on_progress=show)
    assert seen == shown == [("step", 1)]  # the observer went first
    assert trainer.done.is_set() and trainer.steps == 1


def test_observers_alone_receive_the_events():
    trainer = converter_module.Trainer(TINY_DATA, TINY_MODEL, TINY_TRAIN)
    seen = []
    trainer.observers.append(seen.append)
    trainer.run(eval_every=1)
    kinds = [e.kind for e in seen]
    assert kinds.count("step") == trainer.steps == 2  # 32 dates, batches of 16
    assert kinds.count("eval") == 2 and kinds[-1] == "epoch"


def test_convert_many_decodes_repeats_once_with_the_same_answers(
    converter, held_out_texts
):
    texts = [*held_out_texts[:30], "24-02-30", 7, "50-01-01"]  # type: ignore[list-item]
    repeated = texts * 3
    many = list(converter.convert_many(repeated, chunk_size=50))
    alone = [converter.convert(t) for t in repeated]  # type: ignore[arg-type]
    assert [c.output for c in many] == [c.output for c in alone]
    assert [c.error for c in many] == [c.error for c in alone]
    for a, b in zip(many, alone, strict=True):
        if a.attention is not None:
            torch.testing.assert_close(
                torch.tensor(a.attention), torch.tensor(b.attention)
            )
    lean = list(converter.convert_many(repeated, with_attention=False))
    assert [c.output for c in lean] == [c.output for c in many]
    assert all(c.attention is None for c in lean)


def test_training_and_loading_never_import_the_compiler(tmp_path):
    """torch._dynamo takes about a second to import: more than training takes.

    Any torch.optim optimizer or a tensor op on the meta device imports it;
    a fresh interpreter shows whether our train -> save -> load path does.
    """
    script = (
        "import sys\n"
        "from date_seq2seq.converter import Converter, train_new\n"
        "from date_seq2seq.config import DataConfig, TrainConfig\n"
        "checkpoint, _ = train_new(DataConfig(train_size=64, held_out_size=16),"
        " train_config=TrainConfig(epochs=1))\n"
        f"checkpoint.save({str(tmp_path / 'm.pt')!r})\n"
        f"Converter.from_path({str(tmp_path / 'm.pt')!r}).convert('24-11-22')\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert out.stdout.strip() == "False"
