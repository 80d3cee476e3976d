"""The fast paths equal the one decoding loop they optimize, for every variant.

- fused teacher forcing (`Seq2Seq.forward`) == `unroll` with `TeacherForcing`:
  logits, attention, and the gradients of every weight;
- the packed greedy decoder == `unroll` with `FreeRunning` (`greedy`): tokens,
  log-probabilities and attention.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from date_seq2seq.config import DataConfig
from date_seq2seq.data import Window, encode_sources, source_text
from date_seq2seq.decoding import distinct_rows, greedy, greedy_many
from date_seq2seq.fastpaths import PackedGreedy
from date_seq2seq.model import Seq2Seq, TeacherForcing, unroll
from date_seq2seq.vocab import Vocabulary

PAD, EOS = Vocabulary.pad_id, Vocabulary.eos_id

# --- fused teacher forcing -------------------------------------------------------

FUSED_VARIANTS = [
    {"attention": attention, "cell": cell, "num_layers": layers, "decoder_hidden": dec}
    for attention, cell, layers, dec in itertools.product(
        ("none", "dot", "general", "additive"), ("lstm", "gru"), (1, 2), (5, 7)
    )
    if not (attention == "dot" and dec != 5)
]


def _teacher_batch(seed: int = 1, vocab: int = 11, batch: int = 2, steps: int = 4):
    """src (batch, 6); tgt_in = <GO> + truth[:-1] and tgt_out = truth, no <EOS>
    before the last step."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(3, vocab, (batch, 6), generator=gen)
    truth = torch.randint(3, vocab, (batch, steps), generator=gen)
    truth[:, -1] = EOS
    tgt_in = torch.cat([torch.full((batch, 1), Vocabulary.go_id), truth[:, :-1]], 1)
    return src, tgt_in, truth


@pytest.mark.parametrize("overrides", FUSED_VARIANTS, ids=lambda v: _name(v))
def test_fused_teacher_forcing_equals_the_loop(make_model, overrides):
    model = make_model(seed=2, encoder_hidden=5, vocab_size=11, dropout=0.3,
                       **overrides)  # fmt: skip
    src, tgt_in, tgt_out = _teacher_batch()
    with torch.no_grad():
        fused, attended = model(src, tgt_in)
        loop = unroll(model, src, TeacherForcing(tgt_out))
    assert fused.shape == (2, 4, 11)
    torch.testing.assert_close(fused, loop.logits, atol=1e-5, rtol=1e-5)
    if overrides["attention"] == "none":
        assert attended is None and loop.attended is None
        return
    for name in ("weights", "scores", "context"):
        torch.testing.assert_close(
            getattr(attended, name), getattr(loop.attended, name), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize(
    ("attention", "cell"), [("general", "lstm"), ("additive", "gru"), ("none", "lstm")]
)
def test_fused_teacher_forcing_trains_the_cells_weights(make_model, attention, cell):
    """Same loss and the same gradients on every parameter, through either path."""
    model = make_model(attention=attention, cell=cell, num_layers=2, vocab_size=11)
    model.train()
    src, tgt_in, tgt_out = _teacher_batch()

    def grads(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 11), tgt_out.reshape(-1)
        )
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    fused = grads(model(src, tgt_in)[0])
    stepped = grads(unroll(model, src, TeacherForcing(tgt_out)).logits)
    assert fused.keys() == stepped.keys()
    decoder_cells = [n for n in fused if n.startswith("decoder.cells")]
    assert decoder_cells and all(fused[n].abs().sum() > 0 for n in decoder_cells)
    for name in fused:
        torch.testing.assert_close(fused[name], stepped[name], atol=1e-5, rtol=1e-4)


# --- packed greedy --------------------------------------------------------------

VARIANTS = [
    {"attention": attention, "cell": cell, "num_layers": layers, "decoder_hidden": dec}
    for attention, cell, layers, dec in itertools.product(
        ("none", "dot", "general", "additive"), ("lstm", "gru"), (1, 2), (5, 7)
    )
    if not (attention == "dot" and dec != 5)
]
# A bidirectional encoder hands over 2 × 5 wide outputs and states.
BIDIRECTIONAL = [
    {"attention": attention, "cell": cell, "num_layers": 2, "bidirectional": True,
     "decoder_hidden": 10 if attention == "dot" else 7}
    for attention in ("none", "dot", "additive") for cell in ("lstm", "gru")
]  # fmt: skip
# Other output layers: h alone (still fused), and input feeding (the loop).
OUTPUTS = [
    {"attention": attention, "cell": cell, "num_layers": layers, "output": output,
     "decoder_hidden": 5 if attention == "dot" else 7}
    for attention in ("dot", "additive") for cell in ("lstm", "gru")
    for layers in (1, 2) for output in ("hidden", "input")
]  # fmt: skip
VARIANTS += BIDIRECTIONAL + OUTPUTS
FUSED_VARIANTS += BIDIRECTIONAL + OUTPUTS


def _name(v: dict) -> str:
    both = "-bidirectional" if v.get("bidirectional") else ""
    output = f"-{v['output']}" if "output" in v else ""
    name = f"{v['attention']}-{v['cell']}-{v['num_layers']}x{v['decoder_hidden']}"
    return name + both + output


def _sources(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 27, (n, 8), generator=gen)


def _replay(model: Seq2Seq, src: torch.Tensor, ids: torch.Tensor, lengths=None):  # noqa: ANN001
    """Step path fed the given output ids: logits and attention of each step."""
    memory, state = model.encode(src, lengths)
    prev = torch.full((src.size(0),), Vocabulary.go_id)
    logits, weights = [], []
    for t in range(ids.size(1)):
        out = model.decode_step(prev, state, memory)
        logits.append(out.logits)
        if out.attended is not None:
            weights.append(out.attended.weights[:, 0])
        prev, state = ids[:, t], out.state
    return torch.stack(logits, 1), torch.stack(weights, 1) if weights else None


@torch.no_grad()
def _check_same(model: Seq2Seq, src: torch.Tensor, lengths=None) -> None:  # noqa: ANN001
    """The packed path's every token is the step path's argmax (up to float ties
    in untrained models), with the same log-probability and attention."""
    ids, att, logp = PackedGreedy(model).decode(src, 12, lengths)
    want_ids = greedy(model, src, 12, lengths).ids
    logits, weights = _replay(model, src, ids, lengths)
    is_eos = (ids == EOS).long()
    live = (is_eos.cumsum(dim=1) - is_eos) == 0  # up to and including <EOS>
    chosen = logits.gather(-1, ids[..., None])[..., 0]
    assert (logits.amax(-1) - chosen)[live].max() <= 1e-5
    # Ties aside, the very same sequences: all but a rare row agree.
    steps = min(ids.size(1), want_ids.size(1))
    same = (ids[:, :steps] == want_ids[:, :steps]).all(dim=1)
    assert same.float().mean() >= 0.95
    want_logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    torch.testing.assert_close(logp[live], want_logp[live], atol=1e-5, rtol=1e-5)
    assert (ids[~live] == PAD).all()
    if weights is None:
        assert att is None
    else:
        torch.testing.assert_close(att, weights, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", VARIANTS, ids=_name)
def test_packed_greedy_equals_the_step_path(make_model, overrides):
    model = make_model(seed=3, encoder_hidden=5, embedding_dim=4, **overrides).eval()
    if "output" in overrides:  # not packed: greedy_many runs the loop itself
        with pytest.raises(ValueError, match="use the loop"):
            PackedGreedy(model)
        src = _sources(64, seed=3)
        assert torch.equal(greedy_many(model, src, 12).ids, greedy(model, src, 12).ids)
        return
    _check_same(model, _sources(64, seed=3))


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_packed_greedy_masks_padding_like_the_step_path(make_model, attention):
    model = make_model(seed=4, encoder_hidden=5, decoder_hidden=5,
                       attention=attention).eval()  # fmt: skip
    src = _sources(32, seed=4)
    lengths = torch.randint(3, 9, (32,), generator=torch.Generator().manual_seed(4))
    src = src.masked_fill(torch.arange(8) >= lengths[:, None], PAD)
    _check_same(model, src, lengths)


def test_packed_greedy_equals_the_step_path_on_the_trained_model(trained, vocab):
    days = Window.from_config(DataConfig()).dates()[::7]  # 3,183 dates
    src = encode_sources([source_text(d) for d in days], vocab)
    _check_same(trained.model, src)


def test_packed_greedy_refuses_a_model_in_training_mode(make_model):
    with pytest.raises(ValueError, match="eval"):
        PackedGreedy(make_model().train())


def test_distinct_rows_round_trips():
    src = _sources(500, seed=5)[:, :2]  # 2 ids per row: many repeats
    first, inverse = distinct_rows(src, 27)
    assert len(first) == len(torch.unique(src, dim=0)) < 500
    assert torch.equal(src[first][inverse], src)
    for k, f in enumerate(first.tolist()):  # each group's first occurrence
        assert inverse[f] == k and not (inverse[:f] == k).any()


def test_distinct_rows_falls_back_for_long_rows():
    src = _sources(50, seed=6).repeat(1, 3)  # 24 ids: too many for one integer key
    src = torch.cat([src, src[:10]])
    first, inverse = distinct_rows(src, 27)
    assert len(first) == 50
    assert torch.equal(src[first][inverse], src)


def test_greedy_many_equals_greedy(trained, vocab):
    days = Window.from_config(DataConfig()).dates()
    gen = torch.Generator().manual_seed(7)
    picks = torch.randint(0, len(days), (3000,), generator=gen).tolist()  # repeats
    src = encode_sources([source_text(days[i]) for i in picks], vocab)
    got = greedy_many(trained.model, src, 12, chunk_size=256)
    want = greedy(trained.model, src, 12)
    assert torch.equal(got.ids, want.ids)
    torch.testing.assert_close(got.logprob, want.logprob)
    torch.testing.assert_close(got.attention, want.attention)


def test_greedy_many_pads_chunks_that_end_sooner(make_model):
    model = make_model(seed=8, encoder_hidden=5, decoder_hidden=5).eval()
    with torch.no_grad():
        model.decoder.out.bias[EOS] = 4.0  # some rows end early, others run on
    src = _sources(300, seed=8)
    got = greedy_many(model, src, 12, chunk_size=32)
    want = greedy(model, src, 12)
    steps = want.ids.size(1)
    assert torch.equal(got.ids[:, :steps], want.ids)
    assert (got.ids[:, steps:] == PAD).all()
    torch.testing.assert_close(got.attention[:, :steps], want.attention)
    assert (got.attention[:, steps:] == 0).all()
