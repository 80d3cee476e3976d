"""The d2l exercises: each a valid comparison, read from its own numbers."""

from __future__ import annotations

import dataclasses
import re

import pytest

from date_seq2seq.config import DataConfig, TrainConfig
from date_seq2seq.exercises import EXERCISES, ranking

TINY_DATA = DataConfig(train_size=200, held_out_size=40)
TINY_TRAIN = TrainConfig(epochs=1)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_every_exercise_is_a_comparison_of_distinct_variants(exercise):
    comparison = exercise.comparison()  # refuses an impossible variant
    names = [v.name for v in exercise.variants]
    assert len(set(names)) == len(names) >= 2
    configs = [(comparison.model_configs[v], comparison.train_configs[v])
               for v in exercise.variants]  # fmt: skip
    assert len(set(configs)) == len(configs)  # each variant really differs


def test_an_observation_is_read_from_the_run():
    feeding = next(e for e in EXERCISES if e.key == "feeding")
    small = dataclasses.replace(feeding, data=TINY_DATA, train=TINY_TRAIN)
    comparison = small.comparison()
    reports = comparison.run()
    said = small.observe(comparison)
    by_name = {r.variant.name: r for r in reports}
    own = by_name["own predictions"].metrics["exact_match"]
    forced = by_name["teacher forcing"].metrics["exact_match"]
    if own != forced:
        assert f"{own:.1%} against {forced:.1%}" in said
    for report in reports:
        assert report.variant.name in said
    assert said.endswith(ranking(reports))


def test_the_ranking_goes_by_steps_to_100_percent():
    cells = next(e for e in EXERCISES if e.key == "cells")
    small = dataclasses.replace(
        cells, data=DataConfig(train_size=2000, held_out_size=100),
        train=TrainConfig(epochs=3),
    )  # fmt: skip
    reports = small.comparison().run()
    said = ranking(reports)
    reached = sorted((r for r in reports if r.reached), key=lambda r: r.reached["step"])
    positions = [said.index(r.variant.name) for r in reached]
    assert positions == sorted(positions)
    for r in reached:
        assert f"at step {int(r.reached['step']):,}" in said


def test_the_masks_exercise_reads_attention_on_padding_and_the_loss_mask():
    masks = next(e for e in EXERCISES if e.key == "masks")
    small = dataclasses.replace(
        masks, data=dataclasses.replace(masks.data, train_size=300, held_out_size=40),
        train=dataclasses.replace(masks.train, epochs=1),
    )  # fmt: skip
    comparison = small.comparison()
    comparison.run()
    said = small.observe(comparison)
    assert "Masked: 0.0% of the attention on <PAD>" in said
    assert "No attention mask: " in said and "No attention mask: 0.0%" not in said
    assert "identical, bit for bit" in said  # the loss mask: nothing to drop
    example = re.search(
        r"mask, '([^']+)' became (\S*) padded to its own length, (\S*) padded", said
    )
    assert example or "Without the attention mask, no answer moved" in said
    if example:  # two paddings, two answers
        assert example[2] != example[3]
