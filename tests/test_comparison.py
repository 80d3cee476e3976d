"""Comparing runs: variants trained on the same data and seed, reported alike."""

from __future__ import annotations

import dataclasses

import pytest

from date_seq2seq.comparison import Comparison, Variant
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import Converter
from date_seq2seq.training import Trainer

# Small enough to train in a fraction of a second, big enough to learn a little.
SMALL_DATA = DataConfig(train_size=160, held_out_size=40, seed=3)
SMALL_MODEL = ModelConfig(embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
SMALL_TRAIN = TrainConfig(epochs=2, batch_size=32, seed=3)


VARIANTS = [Variant("none", "lstm"), Variant("dot", "gru")]


def comparison(variants=VARIANTS) -> Comparison:
    return Comparison(variants, SMALL_DATA, SMALL_TRAIN, SMALL_MODEL)


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
    fast = Comparison(
        [Variant("dot", "gru")],
        DataConfig(train_size=1000, held_out_size=50, seed=0),
        TrainConfig(epochs=8, seed=0),
    )
    (report,) = fast.run()
    assert report.perfect and report.stop_reason == "target"
    curve = fast.curves[Variant("dot", "gru")]
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
    variants = [*VARIANTS, Variant("general", "lstm")]
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
     ([Variant("dot", "lstm")] * 2, SMALL_DATA, "once"),
     ([Variant("luong", "lstm")], SMALL_DATA, "attention must be one of"),
     (VARIANTS, DataConfig(train_size=50, held_out_size=0), "held-out")],
)  # fmt: skip
def test_comparison_refuses_what_it_cannot_run(variants, data, needle):
    with pytest.raises(ValueError, match=needle):
        Comparison(variants, data, SMALL_TRAIN)
    with pytest.raises(ValueError, match="dot attention needs"):
        Comparison([Variant("dot", "lstm")], SMALL_DATA, SMALL_TRAIN,
                       ModelConfig(attention="general", encoder_hidden=8,
                                   decoder_hidden=6))  # fmt: skip


def test_variant_names():
    assert Variant("additive", "gru").name == "additive · GRU"
