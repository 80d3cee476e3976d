"""Lab: exposure bias, forced steps, attention snapshots and run comparison."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import torch

from date_seq2seq import lab
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import Converter, Trainer
from date_seq2seq.data import InputError, Pairs, source_text, split, target_tokens
from date_seq2seq.training import Progress
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


# --- exposure bias ------------------------------------------------------------


def test_teacher_forcing_feeds_the_truth_and_free_running_its_own_output(untrained):
    got = lab.exposure(untrained, " 24-11-22 ")
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
    got = lab.exposure(untrained, "74-01-05")
    truth = untrained.vocab.encode([*target_tokens(dt.date(1974, 1, 5)), EOS])
    stepped = untrained.trace("74-01-05", top_k=1, force=dict(enumerate(truth)))
    assert [s.teacher_chose for s in got.steps[:10]] == [s.top[0][0] for s in stepped]
    said = untrained.vocab.decode(truth, strip=False)
    assert got.right("teacher") == sum(
        s.top[0][0] == t for s, t in zip(stepped, said, strict=True)
    )


def test_a_right_model_never_diverges(converter):
    got = lab.exposure(converter, "24-11-22")
    assert got.first_divergence is None
    assert got.right("teacher") == got.right("free") == 10
    assert len(got.steps) == 10 and not any(s.diverged for s in got.steps)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("24-02-30", "29 days"), ("abc", "not a date"), ("50-01-01", "needs the right")],
)
def test_exposure_refuses_a_date_without_a_right_answer(converter, text, needle):
    with pytest.raises(InputError, match=needle):
        lab.exposure(converter, text)


def test_token_accuracies_count_what_exposure_shows_date_by_date(untrained):
    """The batched, fused measure against the stepwise one of `exposure`."""
    weak = small_trainer(epochs=3)
    weak.run()
    for converter in (untrained, Converter(weak.checkpoint())):
        pairs = Pairs.from_days(converter.held_out_days(), converter.vocab)
        got = lab.token_accuracies(converter.model, pairs, max_len=12)
        teacher = free = total = 0
        for day in pairs.days:
            steps = lab.exposure(converter, source_text(day)).steps
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
    got = lab.token_accuracies(weak.model, weak.held_out_pairs, max_len=12)
    assert 0 < got["free_running"] < got["teacher_forced"] < 1  # exposure bias
    pairs = Pairs.from_days(split(trained.data_config)[1], trained.vocab)
    right = lab.token_accuracies(trained.model, pairs, max_len=12)
    assert right["teacher_forced"] > 0.99 and right["free_running"] > 0.99
    assert weak.model.training is False and trained.model.training is False


def test_wrong_dates_are_the_ones_the_model_gets_wrong(untrained, converter):
    days = untrained.held_out_days()
    wrong = lab.wrong_dates(untrained, days, limit=5)
    assert len(wrong) == 5
    for text in wrong:
        assert untrained.convert(text).correct is False
    assert wrong == [t for t in map(source_text, days) if t in wrong][:5]  # in order
    right_ones = [d for d in converter.held_out_days()
                  if converter.convert(source_text(d)).correct]  # fmt: skip
    assert lab.wrong_dates(converter, right_ones, limit=5) == []


# --- step-through with forced tokens -----------------------------------------


def test_a_walk_without_forcing_is_the_trace(converter):
    got = lab.walk(converter, "24-11-22", {})
    assert list(got.steps) == converter.trace("24-11-22", top_k=5)
    assert got.verdicts() == ["right"] * 10
    assert got.after_forcing() is None
    assert got.expected == (*target_tokens(NOV22), EOS)


def test_forcing_a_token_decodes_on_from_it(converter):
    got = lab.walk(converter, "24-11-22", {0: "3"})
    assert got.steps[0].chosen == "3" and got.steps[0].forced
    assert got.steps[1].fed == "3"
    verdicts = got.verdicts()
    assert verdicts[0] == "forced"
    right, total = got.after_forcing()
    assert total == len(got.steps) - 1
    assert right == sum(
        s.chosen == e for s, e in zip(got.steps[1:], got.expected[1:], strict=False)
    )
    assert right == verdicts.count("right")


def test_forcing_the_models_own_choice_changes_nothing(converter):
    got = lab.walk(converter, "24-11-22", {0: "2"})
    assert got.verdicts() == ["right"] * 10 and got.after_forcing() is None


def test_a_walk_outside_the_window_has_no_verdict(converter):
    got = lab.walk(converter, "50-01-01", {1: "9"})
    assert got.expected is None and got.after_forcing() is None
    assert got.verdicts()[1] == "forced"
    assert set(got.verdicts()) == {"forced", "unknown"}


@pytest.mark.parametrize(
    ("forced", "needle"),
    [({0: "<PAD>"}, "cannot be emitted"), ({0: "<GO>"}, "cannot be emitted"),
     ({0: "Foo"}, "cannot be emitted"), ({12: "1"}, "not in 0..11"),
     ({-1: "1"}, "not in 0..11")],
)  # fmt: skip
def test_walk_refuses_a_token_or_step_it_cannot_force(converter, forced, needle):
    with pytest.raises(ValueError, match=needle):
        lab.walk(converter, "24-11-22", forced)


def test_a_step_forced_after_the_end_changes_nothing(converter):
    plain = lab.walk(converter, "24-11-22", {})
    late = lab.walk(converter, "24-11-22", {11: "5"})  # the output ends at step 10
    assert late == plain and late.after_forcing() is None


def test_walk_refuses_a_bad_date(converter):
    with pytest.raises(InputError):
        lab.walk(converter, "24-13-01", {})


def test_forceable_tokens(vocab):
    tokens = lab.forceable_tokens(vocab)
    assert EOS in tokens and "Nov" in tokens and "7" in tokens
    assert "<PAD>" not in tokens and GO not in tokens


# --- attention forming --------------------------------------------------------


def small_trainer(**train) -> Trainer:
    model = ModelConfig(embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
    train_config = TrainConfig(**{"epochs": 1, "batch_size": 16, "seed": 3, **train})
    return Trainer(SMALL_DATA, model, train_config)


def test_recording_does_not_change_training():
    plain, watched = small_trainer(sampling_prob=0.3), small_trainer(sampling_prob=0.3)
    recorder = lab.probe_recorder(watched, "24-11-22", every=4)
    gap = lab.GapRecorder(watched)
    plain.run(eval_every=3)
    watched.run(eval_every=3)
    assert watched.result.step_losses == plain.result.step_losses
    # Evaluated at steps 3, 6, 9 and at the epoch's end, step 10.
    assert [p["step"] for p in gap.points] == [3, 6, 9, 10]
    assert gap.points[-1] == {
        "step": 10,
        **lab.token_accuracies(watched.model, watched.held_out_pairs, 12),
    }
    state, want = watched.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want)
    recorder.finish(watched.steps)
    steps = [s.step for s in recorder.snapshots]
    assert steps == [*range(0, watched.steps, 4), watched.steps]  # 10 steps
    for snap in recorder.snapshots:
        assert len(snap.weights) == 9
        assert all(abs(sum(row) - 1) < 1e-5 for row in snap.weights)
    assert recorder.tokens == tuple(target_tokens(NOV22))
    recorder.finish(watched.steps)  # the end is recorded once
    assert len(recorder.snapshots) == len(steps)


def test_snapshots_are_thinned_past_the_limit():
    trainer = small_trainer(epochs=2)  # 20 steps
    recorder = lab.AttentionRecorder(
        trainer.model, trainer.vocab, NOV22, every=1, max_snapshots=4
    )
    trainer.observers.append(recorder)
    trainer.run()
    steps = [s.step for s in recorder.snapshots]
    assert 2 <= len(steps) <= 4 and recorder.every > 1
    # Evenly spaced from the start, at the interval reached.
    assert steps == list(range(0, steps[-1] + 1, recorder.every))
    assert trainer.steps - steps[-1] < recorder.every


def test_the_end_of_a_run_survives_thinning(vocab):
    recorder = lab.AttentionRecorder(
        small_trainer().model, vocab, NOV22, every=1, max_snapshots=4
    )
    for step in range(1, 7):
        recorder(Progress("step", step, 1, 100, 0.0, 0.0))
    assert [s.step for s in recorder.snapshots] == [0, 2, 4, 6]
    recorder.finish(7)  # a fifth snapshot: the interval doubles to 4
    assert [s.step for s in recorder.snapshots] == [0, 4, 7]


def test_a_snapshot_of_a_right_model_is_the_heatmap_convert_shows(trained, converter):
    recorder = lab.AttentionRecorder(trained.model, trained.vocab, NOV22, every=1)
    (snap,) = recorder.snapshots
    assert snap.output == "22/Nov/2024"
    torch.testing.assert_close(
        torch.tensor(snap.weights),
        torch.tensor(converter.convert("24-11-22").attention),
        atol=1e-5,
        rtol=0,
    )


def test_sharpness_goes_from_a_blur_to_a_focus(trained):
    blur = small_trainer().model
    before = lab.AttentionRecorder(blur, trained.vocab, NOV22, every=1)
    after = lab.AttentionRecorder(trained.model, trained.vocab, NOV22, every=1)
    assert before.snapshots[0].sharpness() == pytest.approx(1 / 8, abs=0.05)
    assert after.snapshots[0].sharpness() > 0.6
    assert lab.Snapshot(0, ((0.5, 0.5), (1.0, 0.0)), "").sharpness() == 0.75


def test_recorder_refuses_a_model_without_attention_and_a_bad_probe(vocab):
    plain = Trainer(SMALL_DATA, ModelConfig(attention="none"), SMALL_TRAIN)
    with pytest.raises(ValueError, match="no attention"):
        lab.AttentionRecorder(plain.model, vocab, NOV22, every=5)
    with pytest.raises(InputError):
        lab.probe_recorder(small_trainer(), "24-02-30", every=5)
    with pytest.raises(ValueError, match="every"):
        lab.AttentionRecorder(small_trainer().model, vocab, NOV22, every=0)


# --- comparing runs -----------------------------------------------------------

VARIANTS = [lab.Variant("none", "lstm"), lab.Variant("dot", "gru")]


def comparison(variants=VARIANTS) -> lab.Comparison:
    return lab.Comparison(variants, SMALL_DATA, SMALL_TRAIN, SMALL_MODEL)


def test_each_variant_trains_as_it_would_alone():
    """Same data, seed and settings: a compared run equals a standalone one."""
    reports = comparison().run(eval_every=3)
    assert [r.variant for r in reports] == VARIANTS
    for report in reports:
        v = report.variant
        model = dataclasses.replace(SMALL_MODEL, attention=v.attention, cell=v.cell)
        alone = Trainer(SMALL_DATA, model, SMALL_TRAIN)
        result = alone.run()
        converter = Converter(alone.checkpoint())
        assert report.metrics == converter.evaluate(converter.held_out_days())
        assert (report.epochs, report.steps) == (len(result.history), alone.steps)
        assert report.stop_reason == result.stop_reason == "epochs"


def test_reports_and_curves_agree():
    runs = comparison()
    reports = runs.run(eval_every=3)
    for report in reports:
        curve = runs.curves[report.variant]
        # 160 dates in batches of 32: 5 steps an epoch; evaluated every 3 steps
        # and at each epoch's end.
        assert [p["step"] for p in curve] == [3, 5, 6, 9, 10]
        assert curve[-1]["step"] == report.steps
        count = report.metrics["count"]
        assert count == SMALL_DATA.held_out_size
        wrong = round((1 - report.metrics["exact_match"]) * count)
        assert report.errors["wrong"] == wrong and report.perfect == (wrong == 0)
        assert sum(report.month_confusion.values()) == count
        right_months = sum(n for (a, b), n in report.month_confusion.items() if a == b)
        assert right_months == round(report.metrics["month_accuracy"] * count)
        full = [p for p in curve if p["exact_match"] >= 1.0]
        if full:
            assert report.reached == {
                k: full[0][k] for k in ("step", "epoch", "seconds")
            }
        else:
            assert report.reached is None


def test_reached_is_the_first_point_at_full_accuracy():
    fast = lab.Comparison(
        [lab.Variant("dot", "gru")],
        DataConfig(train_size=1000, held_out_size=50, seed=0),
        TrainConfig(epochs=8, seed=0),
    )
    (report,) = fast.run()
    assert report.perfect and report.stop_reason == "target"
    curve = fast.curves[lab.Variant("dot", "gru")]
    first = next(p for p in curve if p["exact_match"] == 1.0)
    assert report.reached["epoch"] == first["epoch"] < report.epochs
    assert report.errors == {"wrong": 0, "day": 0, "month": 0, "year": 0, "shape": 0}


def test_a_stop_request_ends_the_current_variant_and_skips_the_rest():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    reports = comparison().run(should_stop=stop)
    assert len(reports) == 1
    assert reports[0].stop_reason == "requested" and reports[0].steps == 3


class Interrupted(Exception):
    pass


def test_an_interrupted_comparison_reports_what_it_trained_and_resumes():
    variants = [*VARIANTS, lab.Variant("general", "lstm")]
    runs = comparison(variants)

    def show(variant, event):
        if variant == variants[1] and event.step == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        runs.run(on_progress=show)
    assert runs.done.is_set()
    first, cut = runs.reports
    assert first.stop_reason == "epochs" and first.steps == 10
    assert (cut.variant, cut.stop_reason, cut.steps) == (variants[1], "interrupted", 2)
    assert cut.metrics["count"] == SMALL_DATA.held_out_size  # scored all the same
    runs.run()
    assert [r.variant for r in runs.reports] == variants


@pytest.mark.parametrize(
    ("variants", "data", "needle"),
    [([], SMALL_DATA, "at least one"),
     ([lab.Variant("dot", "lstm")] * 2, SMALL_DATA, "once"),
     ([lab.Variant("luong", "lstm")], SMALL_DATA, "attention must be one of"),
     (VARIANTS, DataConfig(train_size=50, held_out_size=0), "held-out")],
)  # fmt: skip
def test_comparison_refuses_what_it_cannot_run(variants, data, needle):
    with pytest.raises(ValueError, match=needle):
        lab.Comparison(variants, data, SMALL_TRAIN)
    with pytest.raises(ValueError, match="dot attention needs"):
        lab.Comparison([lab.Variant("dot", "lstm")], SMALL_DATA, SMALL_TRAIN,
                       ModelConfig(attention="general", encoder_hidden=8,
                                   decoder_hidden=6))  # fmt: skip


def test_variant_names():
    assert lab.Variant("additive", "gru").name == "additive · GRU"
