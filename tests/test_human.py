"""The human task end to end: variable-length inputs, padded, packed and masked."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from date_seq2seq import checkpoint as ckpt
from date_seq2seq import cli
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import Converter
from date_seq2seq.data import (
    DateDataset,
    encode_sources,
    split_pairs,
    task_vocabulary,
)
from date_seq2seq.decoding import greedy, greedy_many
from date_seq2seq.forms import FORMS, human_source
from date_seq2seq.model import Seq2Seq
from date_seq2seq.padding import PAD_SHOWN, padded, padding_effect
from date_seq2seq.training import Trainer
from date_seq2seq.vocab import PAD_ID

VOCAB = task_vocabulary("human")
DATA = DataConfig(task="human", train_size=600, held_out_size=60)
MODEL = ModelConfig(vocab_size=len(VOCAB), encoder_hidden=16, decoder_hidden=16)


@pytest.fixture(scope="module")
def weak() -> Converter:
    """A human-task model trained a little: it gets some dates wrong."""
    trainer = Trainer(DATA, MODEL, TrainConfig(epochs=2, batch_size=32, seed=0))
    trainer.run()
    return Converter(trainer.checkpoint())


def test_the_draw_is_pairs_of_every_form_seeded_and_disjoint():
    train, held_out = split_pairs(DATA)
    assert (len(train), len(held_out)) == (600, 60)
    assert not set(train) & set(held_out)
    assert split_pairs(DATA) == (train, held_out)  # same seed, same draw
    written = {(human_source(day, f), day) for _, day in train for f in FORMS}
    assert set(train) <= written
    assert len({len(text) for text, _ in train}) > 5  # lengths vary: padding matters


def test_a_dataset_pads_each_source_after_its_end():
    train, _ = DateDataset.split_config(DATA)
    lengths = torch.tensor([len(s) for s in train.sources])
    assert train.src.size(1) == int(lengths.max())
    assert torch.equal((train.src != PAD_ID).sum(1), lengths)  # pads only at the end
    assert train.vocab == VOCAB


@pytest.mark.parametrize("attention", ["dot", "additive", "none"])
def test_the_fast_greedy_equals_the_loop_on_padded_batches(attention):
    cfg = ModelConfig(vocab_size=len(VOCAB), encoder_hidden=8, decoder_hidden=8,
                      attention=attention)  # fmt: skip
    model = Seq2Seq(cfg, generator=torch.Generator().manual_seed(1)).eval()
    day = dt.date(2024, 11, 22)
    texts = [human_source(day, f) for f in FORMS] * 2  # repeats, all lengths
    src = encode_sources(texts, VOCAB)
    fast, loop = greedy_many(model, src, 12, chunk_size=5), greedy(model, src, 12)
    assert torch.equal(fast.ids, loop.ids)
    torch.testing.assert_close(fast.logprob, loop.logprob, atol=1e-5, rtol=1e-5)
    if attention != "none":
        torch.testing.assert_close(fast.attention, loop.attention, atol=1e-6, rtol=1e-5)
        pads = (src == PAD_ID)[:, None, :].expand_as(loop.attention)
        assert bool((loop.attention[pads] == 0).all())  # the mask: none on <PAD>


def test_every_answer_has_one_attention_column_per_input_character(weak):
    days = weak.window.dates()[::997]
    texts = [f.write(day) for day in days for f in FORMS]
    for text, result in zip(texts, weak.convert_many(texts), strict=True):
        assert result.error is None, result.error
        assert result.input == " ".join(text.split()).lower()
        assert all(len(row) == len(result.input) for row in result.attention)
        assert all(abs(sum(row) - 1) < 1e-4 for row in result.attention)


def test_bad_human_dates_are_refused_with_reasons(weak):
    got = {t: weak.convert(t) for t in ("thu 22 nov 24", "31 Nov 2024", "tomorrow")}
    assert "is a Friday" in got["thu 22 nov 24"].error
    assert "30 days" in got["31 Nov 2024"].error
    assert "known form" in got["tomorrow"].error
    assert weak.convert("22 Nov 2050").warning  # outside the window: a guess


def test_a_checkpoint_records_its_task_and_is_checked_against_it(weak, tmp_path):
    path = weak.checkpoint.save(tmp_path / "human.pt")
    assert ckpt.load(path).data_config.task == "human"
    obj = weak.checkpoint.to_dict()
    obj["data_config"]["task"] = "yymmdd"  # a human model claiming the other task
    buffer = tmp_path / "liar.pt"
    torch.save(obj, buffer)
    with pytest.raises(ckpt.CheckpointError, match="not this task's"):
        ckpt.load(buffer)


def test_the_command_line_converts_and_evaluates_human_dates(weak, tmp_path, capsys):
    path = str(weak.checkpoint.save(tmp_path / "human.pt"))
    code = cli.main(["convert", "--checkpoint", path, "Friday, 22 November 2024",
                     "2024年11月22日", "thu 22 nov 24"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith("friday, 22 november 2024\t")
    assert "error: " in lines[2] and "Friday" in lines[2]
    assert cli.main(["evaluate", "--checkpoint", path, "--json"]) == 0
    assert '"split": "held-out"' in capsys.readouterr().out
    assert cli.main(["convert", "--checkpoint", path, "--task", "yymmdd", "x"]) == 2
    assert "human task, not yymmdd" in capsys.readouterr().err


# --- the masks, made visible --------------------------------------------------------


def test_with_the_mask_padding_changes_nothing(weak):
    days = weak.window.dates()[::1499]
    for effect in padding_effect(weak, days):
        assert effect.pad_attention == 0.0, effect
        assert effect.right_padded == effect.right_alone, effect
        assert effect.changed == ()
    assert effect.width == max(len(human_source(d, f)) for d in days for f in FORMS)
    alone, far = padded(weak, "Fri 22 Nov 24", 13), padded(weak, "Fri 22 Nov 24", 30)
    assert far.columns == (*"fri 22 nov 24", *[PAD_SHOWN] * 17)
    assert far.tokens == alone.tokens and far.pad_attention == 0.0
    assert padded(weak, "Fri 22 Nov 24", 5).width == 13  # never cut short
    with pytest.raises(ValueError, match="less than the longest input"):
        padding_effect(weak, days, width=20)  # "Friday, 22 November 2024" is 24


def test_without_the_attention_mask_padding_is_looked_at():
    cfg = ModelConfig(vocab_size=len(VOCAB), encoder_hidden=8, decoder_hidden=8,
                      mask_attention=False)  # fmt: skip
    trainer = Trainer(DATA, cfg, TrainConfig(epochs=1, batch_size=32))
    trainer.run()
    unmasked = Converter(trainer.checkpoint())
    effects = padding_effect(unmasked, unmasked.window.dates()[::2999])
    assert all(
        e.pad_attention > 0 for e in effects if e.form != "Weekday, d Month yyyy"
    )
    # One date, two paddings: the pad columns take weight, the answer may change.
    days = unmasked.window.dates()[::7499]
    texts = [human_source(d, f) for d in days for f in FORMS]
    changed = {t for e in padding_effect(unmasked, days, 30) for t in e.changed}
    for text in texts:
        alone, far = padded(unmasked, text, len(text)), padded(unmasked, text, 30)
        assert alone.pad_attention == 0.0 and len(alone.columns) == len(text)
        assert far.pad_attention > 0 and len(far.columns) == 30
        assert all(abs(sum(row) - 1) < 1e-5 for row in far.attention)
        assert (alone.tokens != far.tokens) == (text in changed)
    # The fast path keeps the padding it was given when attention can see it.
    texts = [human_source(dt.date(2024, 11, 22), f) for f in FORMS]
    src = encode_sources(texts, VOCAB)
    fast = greedy_many(unmasked.model, src, 12, chunk_size=5)
    loop = greedy(unmasked.model, src, 12)
    assert torch.equal(fast.ids, loop.ids)
    torch.testing.assert_close(fast.attention, loop.attention, atol=1e-6, rtol=1e-5)
