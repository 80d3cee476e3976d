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
    forceable_tokens,
)
from date_seq2seq.data import (
    encode_sources,
    source_text,
    split,
    target_text,
    target_tokens,
)
from date_seq2seq.decoding import beam_hypotheses
from date_seq2seq.train_setup import Setup
from date_seq2seq.training import Trainer, default_configs, train
from date_seq2seq.vocab import EOS, GO

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


def test_step_through_the_converter(converter):
    steps = converter.step_through("24-11-22").steps
    assert "".join(s.chosen for s in steps[:-1]) == "22/Nov/2024"
    assert steps[-1].chosen == "<EOS>"
    for step in steps:
        probs = [p for _, p in step.top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1 + 1e-6
        assert sum(step.weights) == pytest.approx(1.0, abs=1e-5)
    assert len(converter.step_through("24-11-22", top_k=5).steps[0].top) == 5
    pushed = converter.step_through("24-11-22", {1: "9"}).steps
    assert pushed[1].chosen == "9" and pushed[1].forced and pushed[2].fed == "9"
    assert pushed[0] == steps[0] and pushed[2].top != steps[2].top


def test_step_through_refuses_unusable_input_but_not_outside_window(converter):
    for text, kind in (("abc", "malformed"), ("24-02-30", "impossible")):
        got = converter.step_through(text)
        assert got.conversion.kind == kind and got.conversion.error
        assert got.steps == () and got.verdicts() == []
    outside = converter.step_through(" 50-01-01 ")
    assert outside.steps[0].fed == "<GO>" and outside.conversion.warning


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

    monkeypatch.setattr(converter_module, "train", no_training)
    default = Converter.default()
    state, want = default.model.state_dict(), trained.model.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want)


def test_default_trains_and_saves_when_there_is_none(model_home, monkeypatch):
    events, calls = [], []

    def small_training(*configs, on_progress=None, should_stop=None):
        calls.append(configs)
        return train(TINY_DATA, TINY_MODEL, TINY_TRAIN, on_progress=on_progress)

    monkeypatch.setattr(converter_module, "train", small_training)
    default = Converter.default(on_progress=events.append)
    assert calls == [default_configs()]
    assert (model_home / "default.pt").is_file()
    assert default.model.cfg == TINY_MODEL
    assert {e.kind for e in events} == {"step", "epoch"}
    Converter.default()  # now it exists: no second training
    assert len(calls) == 1


def test_step_through_equals_convert_in_one_decode(converter, held_out_texts):
    inputs = [*held_out_texts[:20], "50-01-01", " 99-12-31 ", "24-02-30", "abc", ""]
    for text in inputs:
        walked = converter.step_through(text, top_k=4)
        conversion = walked.conversion
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
        assert (walked.steps == ()) == (conversion.error is not None)


def test_predict_days_gives_what_convert_gives(converter, held_out_texts):
    days = converter.held_out_days()[:40]
    preds = converter.predict_days(days, chunk_size=9)
    assert len(preds) == 40
    for pred, text in zip(preds, held_out_texts[:40], strict=True):
        assert tuple(pred) == converter.convert(text).tokens
    assert converter.predict_days([]) == []


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


def test_loading_and_converting_never_import_the_compiler(trained_path):
    """torch._dynamo takes about a second to import, once per process.

    Building a torch.optim optimizer imports it (training pays it once, at
    start-up), and so does a tensor op on the meta device; the convert
    command's path – import, load, convert – must not.
    """
    script = (
        "import sys\n"
        "import date_seq2seq\n"
        f"c = date_seq2seq.Converter.from_path({str(trained_path)!r})\n"
        "assert c.convert('24-11-22').output\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert out.stdout.strip() == "False"


# --- the step-through, with forced tokens ----------------------------------


def test_a_step_through_without_forcing_is_every_right_step(converter):
    got = converter.step_through("24-11-22", {}, top_k=5)
    assert len(got.steps) == 10 and len(got.steps[0].top) == 5
    assert got.verdicts() == ["right"] * 10
    assert got.after_forcing() is None
    assert got.expected == (*target_tokens(dt.date(2024, 11, 22)), EOS)


def test_forcing_a_token_decodes_on_from_it(converter):
    got = converter.step_through("24-11-22", {0: "3"}, top_k=5)
    assert got.steps[0].chosen == "3" and got.steps[0].forced
    assert got.steps[1].fed == "3"
    verdicts = got.verdicts()
    assert verdicts[0] == "forced"
    after = got.after_forcing()
    assert after.forced_at == 0 and after.chose == len(got.steps) - 1
    assert after.right == sum(
        s.chosen == e for s, e in zip(got.steps[1:], got.expected[1:], strict=False)
    )
    assert after.right == verdicts.count("right")


def test_a_forced_end_is_not_a_recovery(converter):
    """Forcing 9 at step 1 and <EOS> at step 3 leaves "9 2 <EOS>": the second
    token is right where it stands, but the answer is seven tokens short."""
    got = converter.step_through("24-11-22", {0: "9", 2: "<EOS>"})
    assert [s.chosen for s in got.steps] == ["9", "2", "<EOS>"]
    after = got.after_forcing()
    assert (after.chose, after.right, after.missing, after.extra) == (1, 1, 7, 0)
    assert not after.recovered
    assert converter.step_through("24-11-22", {0: "2"}).after_forcing() is None
    wrong_month = converter.step_through("24-11-22", {3: "Oct"}).after_forcing()
    assert wrong_month.recovered  # the model carries on right after it


def test_forcing_the_models_own_choice_changes_nothing(converter):
    got = converter.step_through("24-11-22", {0: "2"}, top_k=5)
    assert got.verdicts() == ["right"] * 10 and got.after_forcing() is None


def test_a_step_through_outside_the_window_has_no_verdict(converter):
    got = converter.step_through("50-01-01", {1: "9"}, top_k=5)
    assert got.expected is None and got.after_forcing() is None
    assert got.verdicts()[1] == "forced"
    assert set(got.verdicts()) == {"forced", "unknown"}


@pytest.mark.parametrize(
    ("forced", "needle"),
    [({0: "<PAD>"}, "cannot be emitted"), ({0: "<GO>"}, "cannot be emitted"),
     ({0: "Foo"}, "cannot be emitted"), ({12: "1"}, "not in 0..11"),
     ({-1: "1"}, "not in 0..11")],
)  # fmt: skip
def test_step_through_refuses_a_token_or_step_it_cannot_force(
    converter, forced, needle
):
    with pytest.raises(ValueError, match=needle):
        converter.step_through("24-11-22", forced, top_k=5)


def test_a_step_forced_after_the_end_changes_nothing(converter):
    plain = converter.step_through("24-11-22", {}, top_k=5)
    late = converter.step_through(
        "24-11-22", {11: "5"}, top_k=5
    )  # the output ends at step 10
    assert late == plain and late.after_forcing() is None


def test_a_bad_date_steps_nowhere(converter):
    got = converter.step_through("24-13-01", {0: "1"})
    assert got.conversion.error and got.steps == () and got.after_forcing() is None


def test_forceable_tokens(vocab):
    tokens = forceable_tokens(vocab)
    assert EOS in tokens and "Nov" in tokens and "7" in tokens
    assert "<PAD>" not in tokens and GO not in tokens


# --- beam search made visible ---------------------------------------------------


def test_a_beam_view_rescored_equals_the_search(converter, held_out_texts):
    for text in held_out_texts[:5]:
        view = converter.beam(text, 4)
        beam = beam_hypotheses(converter.model, encode_sources([text], converter.vocab),
                               4, 12, alpha=view.alpha)  # fmt: skip
        want = beam.logprob[0][beam.logprob[0].isfinite()]
        got = torch.tensor([h.logprob for h in view.hypotheses])
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        scores = [h.score for h in view.hypotheses]
        assert scores == sorted(scores, reverse=True)  # best first: [0] won
        assert view.conversion.output == view.hypotheses[0].output
        assert view.conversion == converter.convert(text, 4)
        assert view.greedy.output == converter.convert(text).output
        assert len(view.conversion.attention) == len(view.conversion.tokens)


def test_where_beam_and_greedy_differ_the_view_says_where_and_why():
    weak = Trainer(*Setup(epochs=3, train_size=500, seed=2).configs())
    weak.run()
    converter = Converter(weak.checkpoint())
    texts = [source_text(d) for d in converter.window.dates()[::37]]
    views = [converter.beam(text, 5) for text in texts]
    differ = [v for v in views if v.greedy_rank != 0]
    assert differ, "a weak model's beam should overrule greedy somewhere"
    for view in differ:
        won, greedy = view.hypotheses[0], view.greedy
        assert won.score > greedy.score
        said = view.why()
        assert said.startswith("They part at step") and f"{won.logprob:.3f}" in said
    same = next(v for v in views if v.greedy_rank == 0)
    assert same.why().startswith("Beam search agrees with greedy")


def test_a_beam_view_of_a_bad_date_is_its_error(converter):
    view = converter.beam("24-02-30", 3)
    assert view.conversion.error and view.hypotheses == ()
    with pytest.raises(ValueError, match="alpha"):
        converter.beam("24-11-22", 3, alpha=-1)
