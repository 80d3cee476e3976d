"""Model: the decoding loop and its feed policies, shapes, packing, initialisation.

The fast paths (fused teacher forcing, packed greedy) are held equal to the
loop in test_fastpaths.py.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from date_seq2seq.attention import Memory
from date_seq2seq.config import ATTENTION_KINDS, CELL_KINDS, ModelConfig
from date_seq2seq.model import (
    FreeRunning,
    Imposed,
    ScheduledSampling,
    Seq2Seq,
    TeacherForcing,
    unroll,
)
from date_seq2seq.vocab import EOS_ID, GO_ID, PAD_ID

VOCAB, EMB, ENC, DEC = 11, 3, 5, 7
BATCH, SRC_LEN, TGT_LEN = 2, 6, 4


def _cfg(**overrides: object) -> ModelConfig:
    values = {
        "vocab_size": VOCAB,
        "embedding_dim": EMB,
        "encoder_hidden": ENC,
        "decoder_hidden": DEC,
        "attention": "general",
        **overrides,
    }
    return ModelConfig(**values)


def _model(seed: int = 0, **overrides: object) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(_cfg(**overrides)).eval()


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (BATCH, SRC_LEN), generator=gen)
    tgt_in = torch.randint(3, VOCAB, (BATCH, TGT_LEN), generator=gen)
    tgt_in[:, 0] = 1  # <GO>
    return src, tgt_in


def _stepwise(model: Seq2Seq, src: torch.Tensor, tgt_in: torch.Tensor):
    """Run decode_step by hand; return logits and the attention of every step."""
    memory, state = model.encode(src)
    logits, weights, scores, contexts = [], [], [], []
    for t in range(tgt_in.size(1)):
        out = model.decode_step(tgt_in[:, t], state, memory)
        logits.append(out.logits)
        if out.attended is not None:
            weights.append(out.attended.weights[:, 0])
            scores.append(out.attended.scores[:, 0])
            contexts.append(out.attended.context[:, 0])
        state = out.state
    stack = lambda xs: torch.stack(xs, dim=1) if xs else None  # noqa: E731
    return stack(logits), stack(weights), stack(scores), stack(contexts)


VARIANTS = [
    (attention, cell, layers, dec)
    for attention, cell, layers, dec in itertools.product(
        ATTENTION_KINDS, CELL_KINDS, (1, 2), (ENC, DEC)
    )
    if not (attention == "dot" and dec != ENC)
]


def _fed_after(tokens: torch.Tensor) -> torch.Tensor:
    """What each step was fed when `tokens` were emitted: <GO>, then the tokens."""
    return torch.cat([torch.full((tokens.size(0), 1), GO_ID), tokens[:, :-1]], dim=1)


# --- the decoding loop: what the decoder is fed --------------------------------


@pytest.mark.parametrize(("attention", "cell", "layers", "dec"), VARIANTS)
def test_teacher_forcing_feeds_the_truth_at_every_step(attention, cell, layers, dec):
    model = _model(attention=attention, cell=cell, num_layers=layers,
                   decoder_hidden=dec, dropout=0.3)  # fmt: skip
    src, tgt_in = _batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((BATCH, 1), EOS_ID)], dim=1)
    with torch.no_grad():
        run = unroll(model, src, TeacherForcing(tgt_out))
        logits, weights, scores, contexts = _stepwise(model, src, tgt_in)
    assert torch.equal(run.tokens, tgt_out)
    torch.testing.assert_close(run.logits, logits)
    if attention == "none":
        assert run.attended is None
        return
    torch.testing.assert_close(run.attended.weights, weights)
    torch.testing.assert_close(run.attended.scores, scores)
    torch.testing.assert_close(run.attended.context, contexts)


@pytest.mark.parametrize("cell", CELL_KINDS)
def test_free_running_feeds_its_own_argmax(cell):
    model = _model(cell=cell)
    src, _ = _batch()
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = -100.0  # runs to max_len
        run = unroll(model, src, FreeRunning(max_len=6))
        logits, *_ = _stepwise(model, src, _fed_after(run.tokens))
    assert run.tokens.shape == (BATCH, 6)
    assert torch.equal(run.tokens, logits.argmax(-1))
    torch.testing.assert_close(run.logits, logits)


def test_a_row_that_emitted_eos_emits_pad_and_the_loop_ends_when_all_have():
    model = _model()
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = 100.0  # every row ends at once...
    src, _ = _batch()
    run = unroll(model, src, FreeRunning(max_len=6))
    assert run.tokens.tolist() == [[EOS_ID]] * BATCH  # ...and the loop with them
    tgt_out = torch.tensor([[4, EOS_ID, PAD_ID], [5, 6, EOS_ID]])
    forced = unroll(model, src, TeacherForcing(tgt_out))
    assert torch.equal(forced.tokens, tgt_out)  # the truth's own padding is kept


def test_scheduled_sampling_at_zero_is_teacher_forcing_and_at_one_free_running():
    model = _model()
    src, tgt_in = _batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((BATCH, 1), EOS_ID)], dim=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        never = unroll(model, src, ScheduledSampling(tgt_out, 0.0, gen))
        truth = unroll(model, src, TeacherForcing(tgt_out))
        always = unroll(model, src, ScheduledSampling(tgt_out, 1.0, gen))
        own = unroll(model, src, FreeRunning(max_len=TGT_LEN))
    assert torch.equal(never.tokens, truth.tokens)
    torch.testing.assert_close(never.logits, truth.logits)
    # p = 1 feeds its own argmax as free running does, up to each row's <EOS>;
    # then it goes on to the target's end (every step is scored), where free
    # running stops.
    assert always.tokens.size(1) == TGT_LEN
    steps = own.tokens.size(1)
    live = own.tokens != PAD_ID
    assert torch.equal(always.tokens[:, :steps][live], own.tokens[live])
    torch.testing.assert_close(always.logits[:, :steps][live], own.logits[live])


def test_scheduled_sampling_trains_every_step_even_after_an_early_eos():
    model = _model()
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = 100.0  # its own guess: <EOS> at once
    src, tgt_in = _batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((BATCH, 1), EOS_ID)], dim=1)
    gen = torch.Generator().manual_seed(0)
    run = unroll(model, src, ScheduledSampling(tgt_out, 1.0, gen))
    assert run.logits.shape[:2] == tgt_out.shape  # scored at every target step
    assert bool((run.tokens == EOS_ID).all())  # fed its own <EOS> on and on


def test_scheduled_sampling_flips_a_coin_per_token_from_its_generator():
    model = _model()
    with torch.no_grad():
        model.decoder.out.bias[[EOS_ID, PAD_ID]] = -100.0  # no row ends early
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(3, VOCAB, (400, SRC_LEN), generator=gen)
    tgt_out = torch.randint(3, VOCAB, (400, TGT_LEN), generator=gen)
    tgt_out[:, -1] = EOS_ID

    def run(seed: int) -> torch.Tensor:
        coins = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return unroll(model, src, ScheduledSampling(tgt_out, 0.3, coins)).tokens

    tokens = run(7)
    assert torch.equal(tokens, run(7)) and not torch.equal(tokens, run(8))
    own = tokens[:, :-1] != tgt_out[:, :-1]  # fed its own (different) token
    assert 0.2 < float(own.float().mean()) < 0.3  # about p, less its lucky guesses
    assert 0.6 * 400 < (tokens[:, -1] == EOS_ID).sum() < 0.8 * 400


def test_padding_in_the_truth_is_never_replaced_by_a_coin():
    model = _model()
    src, _ = _batch()
    tgt_out = torch.tensor([[4, EOS_ID, PAD_ID, PAD_ID], [5, 6, 7, EOS_ID]])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.decoder.out.bias[[EOS_ID, PAD_ID]] = -100.0  # never its own choice
        run = unroll(model, src, ScheduledSampling(tgt_out, 1.0, gen))
    own = run.logits.argmax(-1)
    assert torch.equal(run.tokens[0, :2], own[0, :2])  # every coin said "own"...
    assert EOS_ID not in own[0] and PAD_ID not in own[0]  # ...but past its end
    assert run.tokens[0, 2:].tolist() == [PAD_ID, PAD_ID]  # the padding stays


def test_imposed_tokens_are_emitted_where_forced_and_fed_on():
    model = _model()
    src, _ = _batch()
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = -100.0  # runs to max_len
        free = unroll(model, src, FreeRunning(max_len=5))
        run = unroll(model, src, Imposed({1: 9, 3: 4}, max_len=5))
        logits, *_ = _stepwise(model, src, _fed_after(run.tokens))
    assert (run.tokens[:, 1] == 9).all() and (run.tokens[:, 3] == 4).all()
    assert torch.equal(run.tokens[:, 0], free.tokens[:, 0])  # before: unchanged
    own = [0, 2, 4]
    assert torch.equal(run.tokens[:, own], logits.argmax(-1)[:, own])
    torch.testing.assert_close(run.logits, logits)


def test_the_decoder_recurrence_has_the_cells_weights_only():
    model = _model(num_layers=2)
    names = {n for n, _ in model.decoder.named_parameters()}
    assert {n for n in names if "weight_hh" in n} == {
        "cells.0.weight_hh",
        "cells.1.weight_hh",
    }
    cell_params = sum(p.numel() for p in model.decoder.cells.parameters())
    assert cell_params == 4 * DEC * (EMB + DEC + 2) + 4 * DEC * (DEC + DEC + 2)


@pytest.mark.parametrize("cell", CELL_KINDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_encoder_and_state_shapes(cell, layers):
    model = _model(cell=cell, num_layers=layers)
    src, _ = _batch()
    outputs, (h, c) = model.encoder(src)
    assert outputs.shape == (BATCH, SRC_LEN, ENC)
    assert h.shape == (layers, BATCH, ENC)
    assert (c is None) == (cell == "gru")
    if c is not None:
        assert c.shape == (layers, BATCH, ENC)
    memory, (dh, dc) = model.encode(src)
    assert dh.shape == (layers, BATCH, DEC)
    assert dc is None or dc.shape == (layers, BATCH, DEC)
    assert memory.keys.shape == (BATCH, SRC_LEN, ENC)
    assert memory.mask.all()


def test_bridge_is_tanh_of_a_linear_map_of_the_encoder_state():
    model = _model(num_layers=2)
    h, c = torch.randn(2, BATCH, ENC), torch.randn(2, BATCH, ENC)
    bh, bc = model.decoder.init_state((h, c))
    dec = model.decoder
    torch.testing.assert_close(
        bh, torch.tanh(h @ dec.bridge_h.weight.T + dec.bridge_h.bias)
    )
    torch.testing.assert_close(
        bc, torch.tanh(c @ dec.bridge_c.weight.T + dec.bridge_c.bias)
    )
    same = _model(decoder_hidden=ENC)
    assert same.decoder.bridge_h is None
    sh, sc = same.decoder.init_state((h, c))
    assert sh is h and sc is c
    gru = _model(cell="gru")
    assert gru.decoder.bridge_h is not None and gru.decoder.bridge_c is None


def test_output_layer_reads_context_and_hidden():
    assert _model().decoder.out.in_features == ENC + DEC
    assert _model(attention="none").decoder.out.in_features == DEC
    assert _model().decoder.out.out_features == VOCAB


def test_the_query_is_the_previous_hidden_state_never_the_cell_state():
    model = _model()
    src, _ = _batch()
    memory, (h, c) = model.encode(src)
    prev = torch.full((BATCH,), 1)
    out = model.decode_step(prev, (h, c), memory)
    torch.testing.assert_close(out.query, h[-1])
    other = model.decode_step(prev, (h, c + 1.0), memory)
    torch.testing.assert_close(other.attended.weights, out.attended.weights)
    assert not torch.allclose(other.logits, out.logits)  # c still drives the cell


def test_decode_step_state_has_the_decoder_shape():
    model = _model(num_layers=2)
    src, _ = _batch()
    memory, state = model.encode(src)
    out = model.decode_step(torch.full((BATCH,), 1), state, memory)
    assert out.logits.shape == (BATCH, VOCAB)
    assert out.state[0].shape == out.state[1].shape == (2, BATCH, DEC)
    assert out.attended.weights.shape == (BATCH, 1, SRC_LEN)


# --- variable-length (padded) batches -------------------------------------------


@pytest.mark.parametrize("cell", CELL_KINDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_packed_encoder_rows_equal_each_row_alone(cell, layers):
    model = _model(cell=cell, num_layers=layers)
    lengths = [6, 4, 2]
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randint(3, VOCAB, (n,), generator=gen) for n in lengths]
    src = torch.zeros(len(rows), max(lengths), dtype=torch.long)
    for i, row in enumerate(rows):
        src[i, : len(row)] = row
    with torch.no_grad():
        outputs, (h, c) = model.encoder(src, torch.tensor(lengths))
        for i, row in enumerate(rows):
            alone, (h1, c1) = model.encoder(row[None])
            n = lengths[i]
            torch.testing.assert_close(outputs[i, :n], alone[0], atol=1e-6, rtol=1e-5)
            assert (outputs[i, n:] == 0).all()
            torch.testing.assert_close(h[:, i], h1[:, 0], atol=1e-6, rtol=1e-5)
            if c is not None:
                torch.testing.assert_close(c[:, i], c1[:, 0], atol=1e-6, rtol=1e-5)
        # Not given, the lengths are read from where the padding starts.
        _, (h_read, _) = model.encoder(src)
        torch.testing.assert_close(h_read, h)
        # Run over the padding as if it were input, it leaks into the state:
        # packing matters.
        everything = torch.full((len(rows),), src.size(1))
        _, (h_unpacked, _) = model.encoder(src, everything)
        assert not torch.allclose(h_unpacked[:, 2], h[:, 2], atol=1e-4)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_padded_batch_logits_equal_each_row_alone(attention):
    model = _model(attention=attention, decoder_hidden=ENC)
    lengths = torch.tensor([6, 3])
    src, tgt_in = _batch()
    src[1, 3:] = 0  # <PAD>
    with torch.no_grad():
        logits, attended = model(src, tgt_in, lengths)
        alone, _ = model(src[1:, :3], tgt_in[1:])
        first, _ = model(src[:1], tgt_in[:1])
    torch.testing.assert_close(logits[1], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[0], first[0], atol=1e-5, rtol=1e-5)
    if attended is not None:
        assert (attended.weights[1, :, 3:] == 0).all()


def test_full_lengths_are_the_same_as_no_lengths():
    model = _model()
    src, tgt_in = _batch()
    with torch.no_grad():
        a, _ = model(src, tgt_in, torch.tensor([SRC_LEN] * BATCH))
        b, _ = model(src, tgt_in)
    assert torch.equal(a, b)


def test_memory_mask_marks_padding():
    model = _model()
    src = torch.tensor([[5, 6, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10]])
    memory, _ = model.encode(src, torch.tensor([2, 6]))
    assert isinstance(memory, Memory)
    assert memory.mask.tolist() == [
        [True, True, False, False, False, False],
        [True] * 6,
    ]


# --- initialisation -------------------------------------------------------------


def test_initialisation_is_seeded_and_follows_the_recipe():
    a, b, c = _model(seed=5), _model(seed=5), _model(seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    for name, p in a.named_parameters():
        if "bias_ih" in name:
            gates = p.view(4, -1)  # i, f, g, o
            assert (gates[1] == 1).all() and (gates[[0, 2, 3]] == 0).all(), name
        elif "bias" in name:
            assert (p == 0).all(), name
    gru = _model(cell="gru")
    assert all((p == 0).all() for n, p in gru.named_parameters() if "bias" in n)
    emb = _model(seed=0, vocab_size=500, embedding_dim=40).encoder.embedding.weight
    assert 0.9 < float(emb.detach().std()) < 1.1


@pytest.mark.parametrize("cell", CELL_KINDS)
def test_a_bidirectional_encoder_hands_over_both_directions(cell):
    model = _model(cell=cell, num_layers=2, bidirectional=True, attention="general")
    hidden = model.cfg.encoder_hidden
    src = torch.randint(3, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))
    src[1, 4:] = PAD_ID  # a shorter row, padded
    lengths = (src != PAD_ID).sum(1)
    with torch.no_grad():
        outputs, (h, c) = model.encoder(src)
    assert outputs.shape == (3, 6, 2 * hidden) and h.shape == (2, 3, 2 * hidden)
    for row, n in enumerate(lengths.tolist()):
        # Forward ends at the last real character, backward at the first.
        torch.testing.assert_close(h[-1, row, :hidden], outputs[row, n - 1, :hidden])
        torch.testing.assert_close(h[-1, row, hidden:], outputs[row, 0, hidden:])
        assert (outputs[row, n:] == 0).all()  # packed: nothing past the end
    with pytest.raises(ValueError, match="2 × encoder_hidden"):
        _cfg(bidirectional=True, attention="dot")
