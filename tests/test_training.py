"""Training: the masked loss, seeded runs, own generators, stop requests, the NaN
guard, overfitting, the Trainer."""

from __future__ import annotations

import copy
import math
import threading

import pytest
import torch

from date_seq2seq import checkpoint as ckpt
from date_seq2seq import training
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.data import DateDataset, split, target_tokens
from date_seq2seq.decoding import greedy
from date_seq2seq.metrics import exact_match, token_accuracy
from date_seq2seq.model import Seq2Seq
from date_seq2seq.training import (
    Trainer,
    evaluate_held_out,
    fit,
    masked_cross_entropy,
    train,
)

PAD = 0
TINY_MODEL = ModelConfig(
    embedding_dim=4, encoder_hidden=6, decoder_hidden=6, num_layers=2, dropout=0.3
)
TINY_DATA = DataConfig(train_size=64, held_out_size=16, seed=2)
TINY_TRAIN = TrainConfig(epochs=2, batch_size=16, seed=3)


def _pairs(vocab, cfg: DataConfig = TINY_DATA) -> tuple[DateDataset, DateDataset]:
    train, held = split(cfg)
    return DateDataset(train, vocab), DateDataset(held, vocab)


def _tiny(seed: int = 0, cfg: ModelConfig = TINY_MODEL) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(cfg)


def _weights(model: Seq2Seq) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the masked loss --------------------------------------------------------------


def _loss_batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, 7, generator=gen)
    tgt_out = torch.tensor([[3, 4, 5, 2, PAD], [6, 2, PAD, PAD, PAD], [3, 3, 3, 3, 2]])
    return logits, tgt_out


def test_masked_loss_is_the_mean_over_real_tokens():
    logits, tgt_out = _loss_batch()
    loss, count = masked_cross_entropy(logits, tgt_out, PAD)
    logp = torch.log_softmax(logits, dim=-1)
    terms = [
        -logp[b, t, tgt_out[b, t]]
        for b in range(3)
        for t in range(5)
        if tgt_out[b, t] != PAD
    ]
    assert count == len(terms) == 11
    torch.testing.assert_close(loss, torch.stack(terms).mean())


@pytest.mark.parametrize("filler", ["random", "huge", "nan"])
def test_masked_loss_ignores_padding(filler):
    logits, tgt_out = _loss_batch()
    loss, count = masked_cross_entropy(logits, tgt_out, PAD)
    extra = {
        "random": 50 * torch.randn(3, 4, 7),
        "huge": torch.full((3, 4, 7), 1e30),
        "nan": torch.full((3, 4, 7), float("nan")),
    }[filler]
    # The same batch with more padding, and junk logits where the padding is.
    wide_logits = torch.cat([logits, extra], dim=1)
    wide_tgt = torch.cat([tgt_out, torch.full((3, 4), PAD)], dim=1)
    wide_logits[1, 2:5] = extra[1, :3]  # also overwrite the existing padding
    wide_loss, wide_count = masked_cross_entropy(wide_logits, wide_tgt, PAD)
    assert wide_count == count
    torch.testing.assert_close(wide_loss, loss)


def test_padding_gets_no_gradient_and_an_all_padding_batch_is_zero():
    logits, tgt_out = _loss_batch()
    logits.requires_grad_(True)
    loss, _ = masked_cross_entropy(logits, tgt_out, PAD)
    loss.backward()
    assert (logits.grad[tgt_out == PAD] == 0).all()
    assert (logits.grad[tgt_out != PAD].abs().sum(-1) > 0).all()
    empty, count = masked_cross_entropy(
        torch.randn(2, 3, 7), torch.zeros(2, 3).long(), PAD
    )
    assert count == 0 and float(empty) == 0.0


# --- fit ----------------------------------------------------------------------------


def test_fit_reports_every_step_and_epoch(vocab):
    train, held = _pairs(vocab, DataConfig(train_size=40, held_out_size=8, seed=1))
    events = []
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, lr_decay=0.5)
    result = fit(_tiny(), train, held, cfg, on_progress=events.append)
    steps = [e for e in events if e.kind == "step"]
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.step for e in steps] == list(range(1, 7))  # ceil(40 / 16) = 3 a epoch
    assert [e.epoch for e in steps] == [1, 1, 1, 2, 2, 2]
    assert all(e.total_steps == 6 for e in events)
    assert [e.loss for e in steps] == result.step_losses
    assert [(e.epoch, e.step) for e in epochs] == [(1, 3), (2, 6)]
    assert all(
        set(e.metrics)
        == {
            "held_out_loss",
            "held_out_exact_match",
            "held_out_token_accuracy",
            "held_out_teacher_forced_token_accuracy",
        }
        for e in epochs
    )
    assert result.stop_reason == "epochs" and len(result.history) == 2
    # Per-token epoch loss: batches of 16, 16 and 8 dates weigh 16:16:8.
    a, b, c = result.step_losses[:3]
    assert result.history[0]["loss"] == pytest.approx((16 * a + 16 * b + 8 * c) / 40)
    assert [h["lr"] for h in result.history] == pytest.approx([5e-3, 2.5e-3])
    assert result.final is result.history[-1]
    assert all(math.isfinite(x) for x in result.step_losses)


def test_fit_leaves_the_model_in_eval_mode_and_changes_it(vocab):
    model = _tiny()
    before = _weights(model)
    train, held = _pairs(vocab)
    fit(model, train, held, TrainConfig(epochs=1, batch_size=32))
    assert not model.training
    assert not _same(before, _weights(model))


def test_same_seed_same_run_different_seed_different_run():
    data = DataConfig(train_size=48, held_out_size=8, seed=5)
    first_ckpt, first = train(data, TINY_MODEL, TINY_TRAIN)
    second_ckpt, second = train(data, TINY_MODEL, TINY_TRAIN)
    assert first.step_losses == second.step_losses and len(first.step_losses) == 6
    assert _same(_weights(first_ckpt.model), _weights(second_ckpt.model))
    assert [h["held_out_loss"] for h in first.history] == [
        h["held_out_loss"] for h in second.history
    ]
    other_seed = TrainConfig(epochs=2, batch_size=16, seed=4)
    _, third = train(data, TINY_MODEL, other_seed)
    assert third.step_losses != first.step_losses
    assert split(DataConfig(train_size=48, held_out_size=8, seed=6)) != split(data)


def test_fit_with_dropout_depends_only_on_its_seed(vocab):
    train, held = _pairs(vocab)
    model = _tiny()
    twin = copy.deepcopy(model)
    torch.manual_seed(1)
    first = fit(model, train, held, TINY_TRAIN)
    torch.manual_seed(2)
    second = fit(twin, train, held, TINY_TRAIN)
    assert first.step_losses == second.step_losses


def test_a_stop_request_leaves_a_usable_model(vocab, tmp_path):
    train, held = _pairs(vocab, DataConfig(train_size=1000, held_out_size=100, seed=3))
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig())
    untrained = copy.deepcopy(model).eval()
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 25

    result = fit(model, train, held, TrainConfig(epochs=5), should_stop=should_stop)
    assert result.stop_reason == "requested" and result.message
    assert len(result.step_losses) == 25 and len(result.history) == 1
    assert result.history[0]["step"] == 25
    assert all(torch.isfinite(p).all() for p in model.parameters())
    refs = [target_tokens(d) for d in held.days]

    def accuracy(m: Seq2Seq) -> float:
        ids = greedy(m, held.src, 12).ids
        return token_accuracy([vocab.decode(r) for r in ids.tolist()], refs)

    assert accuracy(model) > max(accuracy(untrained), 1 / len(vocab)) + 0.05
    path = ckpt.Checkpoint(
        model, vocab, DataConfig(), TrainConfig(), result.history
    ).save(tmp_path / "stopped.pt")
    loaded = ckpt.load(path)
    assert _same(_weights(loaded.model), _weights(model))
    assert loaded.history == result.history
    assert torch.equal(
        greedy(loaded.model, held.src, 12).ids, greedy(model, held.src, 12).ids
    )


def test_a_stop_before_the_first_step_changes_nothing(vocab):
    model = _tiny()
    before = _weights(model)
    train, held = _pairs(vocab)
    result = fit(model, train, held, TINY_TRAIN, should_stop=lambda: True)
    assert result.stop_reason == "requested"
    assert result.history == [] and result.step_losses == []
    assert _same(before, _weights(model))


def test_nan_loss_restores_the_last_good_weights(vocab, monkeypatch):
    train, held = _pairs(vocab)
    real = training.masked_cross_entropy
    calls = []

    def poisoned(logits, tgt_out, pad_id=PAD):
        calls.append(1)
        loss, count = real(logits, tgt_out, pad_id)
        return (loss * float("nan") if len(calls) == 4 else loss), count

    monkeypatch.setattr(training, "masked_cross_entropy", poisoned)
    snapshots = {}

    def snap(event):
        if event.kind == "step":
            snapshots[event.step] = _weights(model)

    model = _tiny()
    cfg = TrainConfig(epochs=3, batch_size=8)  # 8 steps an epoch
    result = fit(model, train, held, cfg, on_progress=snap)
    assert result.stop_reason == "diverged"
    assert "nan" in result.message and "step 4" in result.message
    assert len(result.step_losses) == 3 and len(result.history) == 1
    # Step 4's loss was computed with the weights after step 3: those are bad;
    # the last weights known to give a finite loss are the ones after step 2.
    assert _same(_weights(model), snapshots[2])
    assert not _same(_weights(model), snapshots[3])


def test_weights_blowing_up_mid_run_end_as_diverged_with_finite_weights(vocab):
    train, held = _pairs(vocab, DataConfig(train_size=256, held_out_size=16, seed=3))
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig())

    def blow_up(event):
        if event.kind == "step" and event.step == 3:
            with torch.no_grad():
                model.decoder.out.weight.fill_(float("inf"))

    result = fit(model, train, held, TrainConfig(epochs=2), on_progress=blow_up)
    assert result.stop_reason == "diverged"
    assert len(result.step_losses) == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(x) for x in result.step_losses)


def test_an_absurd_learning_rate_is_refused():
    with pytest.raises(ValueError, match="lr must be in"):
        TrainConfig(lr=1e30)


def test_reaching_the_target_stops_after_the_patience(vocab):
    train, held = _pairs(vocab)
    for patience, epochs in ((0, 1), (2, 3)):
        cfg = TrainConfig(
            epochs=6, batch_size=32, target_accuracy=0.0, patience=patience
        )
        result = fit(_tiny(), train, held, cfg)
        assert result.stop_reason == "target" and len(result.history) == epochs


def test_overfits_sixteen_dates(vocab):
    days = split(DataConfig(train_size=16, held_out_size=0, seed=5))[0]
    train = DateDataset(days, vocab)
    model = _tiny(0, ModelConfig())
    result = fit(
        model, train, DateDataset([], vocab), TrainConfig(epochs=200, batch_size=16)
    )
    assert len(result.step_losses) == 200 and result.history[-1]["epoch"] == 200
    assert result.step_losses[-1] < 0.01 * result.step_losses[0]
    ids = greedy(model, train.src, 12).ids
    preds = [vocab.decode(r) for r in ids.tolist()]
    assert exact_match(preds, [target_tokens(d) for d in days]) == 1.0


def test_evaluate_held_out_keeps_the_models_mode(vocab):
    model = _tiny()
    _, held = _pairs(vocab)
    model.train()
    metrics = evaluate_held_out(model, held, 12)
    assert model.training
    assert metrics["held_out_loss"] > 0
    assert 0 <= metrics["held_out_exact_match"] <= 1
    model.eval()
    again = evaluate_held_out(model, held, 12)
    assert not model.training and again == metrics  # eval mode: no dropout noise


def test_evaluate_held_out_of_the_trained_model(trained, held_out_set):
    metrics = evaluate_held_out(trained.model, held_out_set, 12)
    assert metrics["held_out_exact_match"] >= 0.95
    assert metrics["held_out_token_accuracy"] >= 0.99
    assert metrics["held_out_teacher_forced_token_accuracy"] >= 0.99
    assert metrics["held_out_loss"] < 0.1


def test_scheduled_sampling_trains_and_is_seeded(vocab):
    train, held = _pairs(vocab)
    cfg = TrainConfig(epochs=1, batch_size=16, sampling_prob=0.5, seed=8)
    first = fit(_tiny(1), train, held, cfg)
    second = fit(_tiny(1), train, held, cfg)
    assert first.step_losses == second.step_losses
    plain = fit(_tiny(1), train, held, TrainConfig(epochs=1, batch_size=16, seed=8))
    assert plain.step_losses != first.step_losses


# --- one generator per run ----------------------------------------------------------


def test_a_run_draws_nothing_from_the_global_generator(vocab):
    train_set, held = _pairs(vocab)
    cfg = TrainConfig(epochs=1, batch_size=16, sampling_prob=0.3, seed=4)
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    trainer = Trainer(TINY_DATA, TINY_MODEL, cfg)  # initial weights, dropout too
    trainer.run()
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(12)  # another global state: the very same run
    again = Trainer(TINY_DATA, TINY_MODEL, cfg)
    again.run()
    assert again.result.step_losses == trainer.result.step_losses
    assert _same(_weights(again.model), _weights(trainer.model))


def test_concurrent_runs_end_exactly_as_each_would_alone():
    """Dropout, scheduled sampling and shuffling, in two threads at once."""
    data = DataConfig(train_size=96, held_out_size=8, seed=1)
    model = ModelConfig(embedding_dim=4, encoder_hidden=6, decoder_hidden=6,
                        num_layers=2, dropout=0.3)  # fmt: skip
    configs = [TrainConfig(epochs=2, batch_size=8, sampling_prob=0.2, seed=s)
               for s in (5, 5, 6)]  # fmt: skip
    alone = []
    for cfg in configs:
        trainer = Trainer(data, model, cfg)
        trainer.run()
        alone.append(_weights(trainer.model))
    together: dict[int, Trainer] = {}

    def build_and_run(i: int) -> None:  # built in the thread too: initialisation
        together[i] = Trainer(data, model, configs[i])
        together[i].run()

    threads = [threading.Thread(target=build_and_run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, weights in enumerate(alone):
        assert _same(_weights(together[i].model), weights)
    assert not _same(alone[0], alone[2])


# --- the Trainer ----------------------------------------------------------------------


def test_train_packages_a_checkpoint():
    checkpoint, result = train(TINY_DATA, TINY_MODEL, TINY_TRAIN)
    assert checkpoint.history == result.history and len(result.history) == 2
    assert checkpoint.data_config == TINY_DATA
    assert checkpoint.train_config == TINY_TRAIN
    assert checkpoint.model.cfg == TINY_MODEL and not checkpoint.model.training
    with pytest.raises(ValueError, match="vocab_size must be 27"):
        train(TINY_DATA, ModelConfig(vocab_size=30), TINY_TRAIN)


CONVERTER_DATA = DataConfig(train_size=32, held_out_size=8, seed=1)
ONE_EPOCH = TrainConfig(epochs=1, batch_size=16)


class Interrupted(Exception):
    """What the app's script raises inside on_progress when a click reruns it."""


def test_observers_see_every_event_even_when_the_run_is_interrupted():
    trainer = Trainer(CONVERTER_DATA, TINY_MODEL, ONE_EPOCH)
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
    trainer = Trainer(CONVERTER_DATA, TINY_MODEL, ONE_EPOCH)
    seen = []
    trainer.observers.append(seen.append)
    trainer.run(eval_every=1)
    kinds = [e.kind for e in seen]
    assert kinds.count("step") == trainer.steps == 2  # 32 dates, batches of 16
    assert kinds.count("eval") == 2 and kinds[-1] == "epoch"


# --- divergence and stopping in the middle of a check ------------------------------


def test_a_loss_that_grows_far_past_its_start_ends_the_run_as_diverged(vocab):
    train_set, held = _pairs(vocab, DataConfig(train_size=640, held_out_size=16))
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e6)
    result = fit(_tiny(), train_set, held, cfg)
    assert result.stop_reason == "diverged"
    assert "grew from" in result.message and "learning rate, 1e+06" in result.message
    assert len(result.step_losses) >= training.GROWTH_WINDOW


def test_a_trained_models_blips_are_not_divergence():
    low = [0.01] * 30 + [0.5] * 30  # a trained model's loss jumping 50-fold
    assert training._loss_growth(low) is None  # below 1 nat a token: a blip
    assert training._loss_growth([3.3] * 10 + [12.0] * 20) == (3.3, 12.0)
    assert training._loss_growth([3.3] * 19) is None  # too few steps to judge


def test_the_default_run_never_looks_diverged(trained_run):
    _, result = trained_run
    assert result.stop_reason != "diverged"


def test_held_out_checks_in_chunks_equal_one_and_stop_when_asked(trained, vocab):
    held = DateDataset(split(DataConfig(held_out_size=600))[1], vocab)
    whole = evaluate_held_out(trained.model, held, 12, chunk_size=600)
    chunked = evaluate_held_out(trained.model, held, 12, chunk_size=7)
    assert whole.keys() == chunked.keys()
    for name in whole:
        assert chunked[name] == pytest.approx(whole[name], rel=1e-5)
    asked = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 2

    assert evaluate_held_out(trained.model, held, 12, stop_after_two, 100) is None
    assert len(asked) == 3  # asked before each chunk, stopped before the third


def test_a_stop_during_a_check_ends_the_run_without_held_out_figures(vocab):
    train_set, held = _pairs(vocab)
    calls = []

    def stop_in_the_first_check() -> bool:
        calls.append(1)
        return len(calls) > 2  # two steps, then the check asks: stop

    result = fit(_tiny(), train_set, held, TINY_TRAIN, on_progress=lambda e: None,
                 should_stop=stop_in_the_first_check, eval_every=2)  # fmt: skip
    assert result.stop_reason == "requested" and len(result.step_losses) == 2
    assert "held_out_exact_match" not in result.history[-1]


def test_the_loss_mask_changes_nothing_when_no_target_is_padded():
    """Every target is 11 tokens, so there is no <PAD> for the mask to drop."""
    data = DataConfig(train_size=96, held_out_size=8)
    runs = []
    for mask_loss in (True, False):
        trainer = Trainer(data, train_config=TrainConfig(epochs=1, mask_loss=mask_loss))
        trainer.run()
        runs.append(trainer.checkpoint().fingerprint)
    assert runs[0] == runs[1]


def test_without_the_loss_mask_padding_is_scored_too():
    logits = torch.zeros(1, 3, 5)
    logits[0, :, 4] = 5.0  # sure of token 4 everywhere, <PAD> included
    tgt_out = torch.tensor([[4, 4, PAD]])
    masked, count = masked_cross_entropy(logits, tgt_out)
    unmasked, all_count = masked_cross_entropy(logits, tgt_out, pad_id=None)
    assert (count, all_count) == (2, 3)
    assert float(unmasked) > float(masked)  # the <PAD> it was not sure of counts
