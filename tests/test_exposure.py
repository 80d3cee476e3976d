"""Exposure bias: the decoder fed the truth against fed its own output."""

from __future__ import annotations

import datetime as dt

import pytest

from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import Converter
from date_seq2seq.data import DateDataset, InputError, source_text, split, target_tokens
from date_seq2seq.exposure import exposure, token_accuracies, wrong_inputs
from date_seq2seq.training import Trainer
from date_seq2seq.vocab import EOS, GO

NOV22 = dt.date(2024, 11, 22)
# Small enough to train in a fraction of a second, big enough to learn a little.
SMALL_DATA = DataConfig(train_size=160, held_out_size=40, seed=3)
SMALL_MODEL = ModelConfig(embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
SMALL_TRAIN = TrainConfig(epochs=2, batch_size=32, seed=3)


@pytest.fixture
def untrained() -> Converter:
    """A model that has not learned anything: it gets dates wrong."""
    return Converter(Trainer(SMALL_DATA, SMALL_MODEL, SMALL_TRAIN).checkpoint())


def small_trainer(**train) -> Trainer:
    model = ModelConfig(embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
    train_config = TrainConfig(**{"epochs": 1, "batch_size": 16, "seed": 3, **train})
    return Trainer(SMALL_DATA, model, train_config)


def test_teacher_forcing_feeds_the_truth_and_free_running_its_own_output(untrained):
    got = exposure(untrained, " 24-11-22 ")
    assert got.input == "24-11-22"
    want = [*target_tokens(NOV22), EOS]
    steps = got.steps
    assert [s.target for s in steps[:10]] == want
    assert [s.teacher_fed for s in steps[:10]] == [GO, *want[:-1]]
    assert steps[0].free_fed == GO
    free = [s for s in steps if s.free_fed is not None]
    for before, after in zip(free, free[1:], strict=False):
        assert after.free_fed == before.free_chose
    # The untrained model errs, so the runs part one step after its first error.
    first_error = next(t for t, s in enumerate(steps) if s.free_chose != s.target)
    assert got.first_divergence == first_error + 1


def test_teacher_forced_choices_equal_stepping_with_the_truth_forced(untrained):
    """The fused teacher-forced pass against the step-by-step decoder."""
    got = exposure(untrained, "74-01-05")
    truth = untrained.vocab.encode([*target_tokens(dt.date(1974, 1, 5)), EOS])
    forced = dict(enumerate(untrained.vocab.decode(truth, strip=False)))
    stepped = untrained.step_through("74-01-05", forced, top_k=1).steps
    assert [s.teacher_chose for s in got.steps[:10]] == [s.top[0][0] for s in stepped]
    said = untrained.vocab.decode(truth, strip=False)
    assert got.right("teacher") == sum(
        s.top[0][0] == t for s, t in zip(stepped, said, strict=True)
    )


def test_a_right_model_never_diverges(converter):
    got = exposure(converter, "24-11-22")
    assert got.first_divergence is None
    assert got.right("teacher") == got.right("free") == 10
    assert len(got.steps) == 10 and not any(s.diverged for s in got.steps)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("24-02-30", "29 days"), ("abc", "not a date"), ("50-01-01", "needs the right")],
)
def test_exposure_refuses_a_date_without_a_right_answer(converter, text, needle):
    with pytest.raises(InputError, match=needle):
        exposure(converter, text)


def test_token_accuracies_count_what_exposure_shows_date_by_date(untrained):
    """The batched, fused measure against the stepwise one of `exposure`."""
    weak = small_trainer(epochs=3)
    weak.run()
    for converter in (untrained, Converter(weak.checkpoint())):
        pairs = DateDataset(converter.held_out_days(), converter.vocab)
        got = token_accuracies(converter.model, pairs, max_len=12)
        teacher = free = total = 0
        for day in pairs.days:
            steps = exposure(converter, source_text(day)).steps
            real = [s for s in steps if s.target is not None]
            teacher += sum(s.teacher_chose == s.target for s in real)
            free += sum(s.free_chose == s.target for s in real)
            total += len(real)
        assert got == {
            "teacher_forced": pytest.approx(teacher / total),
            "free_running": pytest.approx(free / total),
        }


def test_a_weak_model_does_better_fed_the_truth(trained):
    weak = small_trainer(epochs=3)
    weak.run()
    got = token_accuracies(weak.model, weak.held_out_set, max_len=12)
    assert 0 < got["free_running"] < got["teacher_forced"] < 1  # exposure bias
    pairs = DateDataset(split(trained.data_config)[1], trained.vocab)
    right = token_accuracies(trained.model, pairs, max_len=12)
    assert right["teacher_forced"] > 0.99 and right["free_running"] > 0.99
    assert weak.model.training is False and trained.model.training is False


def test_wrong_inputs_are_the_ones_the_model_gets_wrong(untrained, converter):
    pairs = untrained.held_out_pairs()
    wrong = wrong_inputs(untrained, pairs, limit=5)
    assert len(wrong) == 5
    for text in wrong:
        assert untrained.convert(text).correct is False
    assert wrong == [t for t, _ in pairs if t in wrong][:5]  # in order
    right_ones = [(t, d) for t, d in converter.held_out_pairs()
                  if converter.convert(t).correct]  # fmt: skip
    assert wrong_inputs(converter, right_ones, limit=5) == []


def test_the_readmes_recipe_shows_exposure_bias_plainly():
    """1 epoch of 200 dates (the README's and the lab's hint): a wide gap between
    fed the truth and fed its own output, and wrong dates to look at."""
    from date_seq2seq.train_setup import Setup

    weak = Trainer(*Setup(epochs=1, train_size=200).configs())
    weak.run()
    got = token_accuracies(weak.model, weak.held_out_set, max_len=12)
    assert got["teacher_forced"] - got["free_running"] > 0.2
    converter = Converter(weak.checkpoint())
    assert len(wrong_inputs(converter, converter.held_out_pairs(), limit=6)) == 6
