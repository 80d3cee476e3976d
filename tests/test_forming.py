"""Attention forming: snapshots of a probe date's attention during training."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.data import InputError, target_tokens, task_vocabulary
from date_seq2seq.exposure import GapRecorder, token_accuracies
from date_seq2seq.forming import AttentionRecorder, Snapshot, probe_recorder
from date_seq2seq.training import Progress, Trainer

NOV22 = dt.date(2024, 11, 22)
# Small enough to train in a fraction of a second, big enough to learn a little.
SMALL_DATA = DataConfig(train_size=160, held_out_size=40, seed=3)
SMALL_MODEL = ModelConfig(embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
SMALL_TRAIN = TrainConfig(epochs=2, batch_size=32, seed=3)


def small_trainer(**train) -> Trainer:
    model = ModelConfig(embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
    train_config = TrainConfig(**{"epochs": 1, "batch_size": 16, "seed": 3, **train})
    return Trainer(SMALL_DATA, model, train_config)


def test_recording_does_not_change_training():
    plain, watched = small_trainer(sampling_prob=0.3), small_trainer(sampling_prob=0.3)
    recorder = probe_recorder(watched, "24-11-22", every=4)
    gap = GapRecorder(watched)
    plain.run(eval_every=3)
    watched.run(eval_every=3)
    assert watched.result.step_losses == plain.result.step_losses
    # Evaluated at steps 3, 6, 9 and at the epoch's end, step 10.
    assert [p["step"] for p in gap.points] == [3, 6, 9, 10]
    assert gap.points[-1] == {
        "step": 10,
        **token_accuracies(watched.model, watched.held_out_set, 12),
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
    recorder = AttentionRecorder(
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
    recorder = AttentionRecorder(
        small_trainer().model, vocab, NOV22, every=1, max_snapshots=4
    )
    for step in range(1, 7):
        recorder(Progress("step", step, 1, 100, 0.0, 0.0))
    assert [s.step for s in recorder.snapshots] == [0, 2, 4, 6]
    recorder.finish(7)  # a fifth snapshot: the interval doubles to 4
    assert [s.step for s in recorder.snapshots] == [0, 4, 7]


def test_a_snapshot_of_a_right_model_is_the_heatmap_convert_shows(trained, converter):
    recorder = AttentionRecorder(trained.model, trained.vocab, NOV22, every=1)
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
    before = AttentionRecorder(blur, trained.vocab, NOV22, every=1)
    after = AttentionRecorder(trained.model, trained.vocab, NOV22, every=1)
    assert before.snapshots[0].sharpness() == pytest.approx(1 / 8, abs=0.05)
    assert after.snapshots[0].sharpness() > 0.6
    assert Snapshot(0, ((0.5, 0.5), (1.0, 0.0)), "").sharpness() == 0.75


def test_recorder_refuses_a_model_without_attention_and_a_bad_probe(vocab):
    plain = Trainer(SMALL_DATA, ModelConfig(attention="none"), SMALL_TRAIN)
    with pytest.raises(ValueError, match="no attention"):
        AttentionRecorder(plain.model, vocab, NOV22, every=5)
    with pytest.raises(InputError):
        probe_recorder(small_trainer(), "24-02-30", every=5)
    with pytest.raises(ValueError, match="every"):
        AttentionRecorder(small_trainer().model, vocab, NOV22, every=0)


def test_a_human_task_probe_is_recorded_as_the_model_reads_it():
    vocab_size = len(task_vocabulary("human"))
    trainer = Trainer(
        DataConfig(task="human", train_size=64, held_out_size=16, seed=3),
        ModelConfig(vocab_size=vocab_size, embedding_dim=4, encoder_hidden=8,
                    decoder_hidden=8),
        TrainConfig(epochs=1, batch_size=16, seed=3),
    )  # fmt: skip
    recorder = probe_recorder(trainer, "  Friday, 22 NOVEMBER 2024 ", every=2)
    trainer.run()
    assert recorder.source == "friday, 22 november 2024"  # lower case, stripped
    assert recorder.tokens == tuple(target_tokens(NOV22))
    for snap in recorder.snapshots:  # one column per character, none for padding
        assert {len(row) for row in snap.weights} == {len(recorder.source)}
    with pytest.raises(InputError, match="not a Thursday"):
        probe_recorder(trainer, "thu 22 nov 24", every=2)
