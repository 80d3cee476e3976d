"""Decoding: greedy stops at <EOS>, beam 1 is greedy, the step-through is true."""

from __future__ import annotations

import itertools

import pytest
import torch

from date_seq2seq.attention import Memory
from date_seq2seq.config import ModelConfig
from date_seq2seq.data import encode_sources
from date_seq2seq.decoding import (
    beam_hypotheses,
    beam_search,
    decode,
    greedy,
    length_penalty,
    step_through,
)
from date_seq2seq.model import Seq2Seq, StepOutput
from date_seq2seq.vocab import Vocabulary

PAD, GO, EOS = Vocabulary.pad_id, Vocabulary.go_id, Vocabulary.eos_id
FILLER = 5  # the scripted model's ordinary token


class ScriptedModel:
    """A stand-in model: row i emits FILLER until <EOS> at step eos_at[i], then
    FILLER again (decoders must pad finished rows themselves). Counts its steps."""

    def __init__(self, eos_at: list[int], vocab_size: int = 27) -> None:
        self.eos_at = torch.tensor(eos_at, dtype=torch.float)
        self.cfg = ModelConfig(vocab_size=vocab_size)
        self.calls = 0

    def encode(self, src, src_lengths=None):
        batch, src_len = src.shape
        keys = torch.zeros(batch, src_len, 1)
        memory = Memory(keys, keys, torch.ones(batch, src_len, dtype=torch.bool))
        h = torch.stack([self.eos_at, torch.zeros(batch)], dim=-1)[None]  # (1, b, 2)
        return memory, (h, None)

    def decode_step(self, prev, state, memory):
        self.calls += 1
        h, _ = state
        eos_at, step = h[0, :, 0], h[0, :, 1]
        logits = torch.full((prev.size(0), self.cfg.vocab_size), -10.0)
        logits[:, FILLER] = 0.0
        logits[step == eos_at, EOS] = 10.0
        after = h.clone()
        after[0, :, 1] += 1
        return StepOutput(logits, (after, None), h[0], None)


def test_greedy_stops_each_row_at_eos_and_pads_after_it():
    model = ScriptedModel([1, 3, 0])
    out = greedy(model, torch.zeros(3, 8, dtype=torch.long), max_len=12)
    assert out.ids.tolist() == [
        [FILLER, EOS, PAD, PAD],
        [FILLER, FILLER, FILLER, EOS],
        [EOS, PAD, PAD, PAD],
    ]
    assert model.calls == 4  # ended as soon as every row had finished
    assert out.attention is None
    assert out.logprob.shape == (3,)


def test_greedy_respects_max_len():
    model = ScriptedModel([1, 5])
    out = greedy(model, torch.zeros(2, 8, dtype=torch.long), max_len=3)
    assert out.ids.tolist() == [[FILLER, EOS, PAD], [FILLER] * 3]
    assert model.calls == 3


def _trim(ids: torch.Tensor) -> list[list[int]]:
    """Rows as lists without trailing <PAD>."""
    rows = ids.tolist()
    for row in rows:
        while row and row[-1] == PAD:
            row.pop()
    return rows


def test_beam_search_stops_at_eos_too():
    model = ScriptedModel([1, 3, 0])
    out = beam_search(model, torch.zeros(3, 8, dtype=torch.long), 2, max_len=12)
    # The runner-up hypotheses never end, so the search runs to max_len; the
    # best ones have ended, and nothing but <PAD> follows their <EOS>.
    assert _trim(out.ids) == [[FILLER, EOS], [FILLER, FILLER, FILLER, EOS], [EOS]]
    torch.testing.assert_close(
        out.logprob, greedy(model, torch.zeros(3, 8), 12).logprob
    )


A, B, C, D = 5, 6, 7, 8  # the chain model's tokens
# Fed token -> the next token's probabilities. From <GO>: A (0.55) or B (0.45);
# A ends at once (0.7); B goes on through C and D (0.9 each) before <EOS>.
CHAIN = {GO: {A: 0.55, B: 0.45}, A: {EOS: 0.7, C: 0.3}, B: {C: 0.9, EOS: 0.1},
         C: {D: 0.9, EOS: 0.1}, D: {EOS: 1.0}}  # fmt: skip


class ChainModel:
    """A stand-in whose next-token probabilities depend on the fed token only."""

    cfg = ModelConfig(vocab_size=9)

    def encode(self, src, src_lengths=None):
        batch, src_len = src.shape
        keys = torch.zeros(batch, src_len, 1)
        memory = Memory(keys, keys, torch.ones(batch, src_len, dtype=torch.bool))
        return memory, (torch.zeros(1, batch, 1), None)

    def decode_step(self, fed, state, memory):
        probs = torch.full((fed.size(0), self.cfg.vocab_size), 1e-9)
        for row, token in enumerate(fed.tolist()):
            for following, p in CHAIN.get(token, {EOS: 1.0}).items():
                probs[row, following] = p
        return StepOutput(probs.log(), state, state[0][0], None)


def test_the_length_penalty_stops_beam_search_preferring_short_answers():
    src = torch.zeros(1, 8, dtype=torch.long)
    short, long = [A, EOS], [B, C, D, EOS]  # log-probabilities -0.955, -1.010
    assert _trim(greedy(ChainModel(), src, 12).ids) == [short]
    assert _trim(beam_search(ChainModel(), src, 3, 12, alpha=0.0).ids) == [short]
    # Per GNMT's penalty, ((5 + 2) / 6) and ((5 + 4) / 6): -0.819 against -0.673.
    assert _trim(beam_search(ChainModel(), src, 3, 12, alpha=1.0).ids) == [long]


def test_beam_hypotheses_come_best_first_with_their_scores():
    src = torch.zeros(2, 8, dtype=torch.long)
    beam = beam_hypotheses(ChainModel(), src, 4, 12, alpha=0.6)
    assert beam.ids.shape[:2] == (2, 4) and beam.logprob.shape == (2, 4)
    lengths = ((beam.ids != PAD) & (beam.ids != EOS)).sum(-1) + (beam.ids == EOS).any(
        -1
    )
    assert torch.allclose(beam.score, beam.logprob / length_penalty(lengths, 0.6))
    assert bool((beam.score[:, :-1] >= beam.score[:, 1:]).all())  # best first
    got = [tuple(row) for row in _trim(beam.ids[0])]
    assert len(set(got)) == 4  # four different hypotheses
    assert torch.equal(beam.best().ids, beam.ids[:, 0])


def test_an_output_bias_for_eos_ends_decoding_at_once(trained, held_out_set):
    model = trained.model
    with torch.no_grad():
        model.decoder.out.bias[EOS] = 1e4
    src = held_out_set.src[:5]
    assert greedy(model, src, 12).ids.tolist() == [[EOS]] * 5
    assert _trim(beam_search(model, src, 3, 12).ids) == [[EOS]] * 5


def _ended_before(ids: torch.Tensor) -> torch.Tensor:
    """(batch, steps) True where the row emitted <EOS> at an earlier step."""
    eos = (ids == EOS).int()
    return (eos.cumsum(dim=1) - eos) > 0


def _own_output_logits(model: Seq2Seq, src: torch.Tensor, ids: torch.Tensor):
    """Step the decoder feeding back the given ids; return logits per step."""
    memory, state = model.encode(src)
    prev = torch.full((src.size(0),), GO)
    logits = []
    for t in range(ids.size(1)):
        out = model.decode_step(prev, state, memory)
        logits.append(out.logits)
        prev, state = ids[:, t], out.state
    return torch.stack(logits, dim=1)


def _untrained(seed: int, **overrides: object) -> Seq2Seq:
    torch.manual_seed(seed)
    values = {
        "embedding_dim": 3,
        "encoder_hidden": 5,
        "decoder_hidden": 7,
        "attention": "general",
        **overrides,
    }
    return Seq2Seq(ModelConfig(**values)).eval()


UNTRAINED = [
    {"attention": "general", "num_layers": 2, "dropout": 0.2},
    {"attention": "additive", "cell": "gru"},
    {"attention": "dot", "decoder_hidden": 5},
    {"attention": "none"},
]


def _sources(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 27, (n, 8), generator=gen)


def _check_teacher_forced_equals_own_output(model: Seq2Seq, src: torch.Tensor):
    with torch.no_grad():
        ids = greedy(model, src, 12).ids
        stepped = _own_output_logits(model, src, ids)
        tgt_in = torch.cat([torch.full((src.size(0), 1), GO), ids[:, :-1]], dim=1)
        forced, _ = model(src, tgt_in)
    live = ~_ended_before(ids)
    assert torch.equal(stepped.argmax(-1)[live], ids[live])
    torch.testing.assert_close(forced, stepped, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forced.argmax(-1)[live], ids[live])


def test_teacher_forced_logits_on_own_greedy_output_equal_stepwise_trained(
    trained, held_out_set
):
    """d2l's defect: prediction must see the same context as training."""
    _check_teacher_forced_equals_own_output(trained.model, held_out_set.src[:64])


@pytest.mark.parametrize("overrides", UNTRAINED, ids=lambda o: o["attention"])
def test_teacher_forced_logits_on_own_greedy_output_equal_stepwise_untrained(
    overrides,
):
    _check_teacher_forced_equals_own_output(_untrained(1, **overrides), _sources(16))


def _sequence_logp(model: Seq2Seq, src: torch.Tensor, ids: torch.Tensor):
    """Total log-probability of each row of ids, up to and including its <EOS>."""
    with torch.no_grad():
        logp = torch.log_softmax(_own_output_logits(model, src, ids), dim=-1)
    picked = logp.gather(-1, ids[..., None])[..., 0]  # (batch, steps)
    return picked.masked_fill(_ended_before(ids), 0.0).sum(dim=1)


def test_greedy_logprob_is_the_log_probability_of_the_output(trained, held_out_set):
    src = held_out_set.src[:20]
    out = greedy(trained.model, src, 12)
    torch.testing.assert_close(out.logprob, _sequence_logp(trained.model, src, out.ids))
    assert (out.logprob <= 0).all()


def test_beam_one_equals_greedy_on_the_trained_model(trained, held_out_set):
    src = held_out_set.src
    g = greedy(trained.model, src, 12)
    b = beam_search(trained.model, src, 1, 12)
    assert torch.equal(b.ids, g.ids)
    torch.testing.assert_close(b.logprob, g.logprob)
    torch.testing.assert_close(b.attention, g.attention)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("overrides", UNTRAINED, ids=lambda o: o["attention"])
def test_beam_one_equals_greedy_on_untrained_models(overrides, seed):
    model = _untrained(seed, **overrides)
    src = _sources(8, seed)
    g = greedy(model, src, 12)
    b = beam_search(model, src, 1, 12)
    assert torch.equal(b.ids, g.ids)
    torch.testing.assert_close(b.logprob, g.logprob)
    if g.attention is None:
        assert b.attention is None
    else:
        torch.testing.assert_close(b.attention, g.attention)


def test_wider_beam_scores_at_least_greedy_on_the_trained_model(trained, held_out_set):
    src = held_out_set.src
    g = greedy(trained.model, src, 12)
    b = beam_search(trained.model, src, 3, 12)
    assert (b.logprob >= g.logprob - 1e-5).all()
    torch.testing.assert_close(b.logprob, _sequence_logp(trained.model, src, b.ids))
    assert b.attention.shape == (len(src), b.ids.size(1), 8)
    torch.testing.assert_close(b.attention.sum(-1), torch.ones(b.attention.shape[:2]))


@pytest.mark.parametrize("overrides", UNTRAINED, ids=lambda o: o["attention"])
def test_beam_scores_are_the_log_probability_of_the_returned_ids(overrides):
    model = _untrained(3, **overrides)
    src = _sources(6, 3)
    out = beam_search(model, src, 3, 12)
    torch.testing.assert_close(out.logprob, _sequence_logp(model, src, out.ids))


def test_a_beam_as_wide_as_every_hypothesis_finds_the_best_sequence():
    vocab_size, max_len = 5, 3
    model = _untrained(3, vocab_size=vocab_size, attention="additive")
    with torch.no_grad():  # make long outputs win, so the search has work to do
        model.decoder.out.bias[EOS] = -20.0
    gen = torch.Generator().manual_seed(101)
    src = torch.randint(3, vocab_size, (4, 6), generator=gen)
    best = beam_search(model, src, vocab_size**max_len, max_len)
    candidates = [  # every output the decoder can give: only <PAD> after <EOS>
        seq
        for seq in itertools.product(range(vocab_size), repeat=max_len)
        if EOS not in seq or all(x == PAD for x in seq[seq.index(EOS) + 1 :])
    ]
    ids = torch.tensor(candidates)
    for row in range(src.size(0)):
        scores = _sequence_logp(model, src[row].expand(len(ids), -1), ids)
        want = int(scores.argmax())
        got = torch.nn.functional.pad(best.ids[row], (0, max_len - best.ids.size(1)))
        assert tuple(got.tolist()) == candidates[want]
        torch.testing.assert_close(best.logprob[row], scores[want])
    # Greedy misses the best output here, so the search really was needed.
    assert (best.logprob > greedy(model, src, max_len).logprob + 1e-4).any()


def test_decode_dispatches_on_beam_size(trained, held_out_set):
    src = held_out_set.src[:10]
    one = decode(trained.model, src, 12, beam_size=1)
    assert torch.equal(one.ids, greedy(trained.model, src, 12).ids)
    two = decode(trained.model, src, 12, beam_size=2)
    assert torch.equal(two.ids, beam_search(trained.model, src, 2, 12).ids)


# --- step-through -----------------------------------------------------------------


def _src(vocab: Vocabulary, text: str = "24-11-22") -> torch.Tensor:
    return encode_sources([text], vocab)[0]


def test_trace_records_the_greedy_decode(trained, vocab):
    src = _src(vocab)
    steps = step_through(trained.model, src, vocab, max_len=12, top_k=3)
    ids = greedy(trained.model, src[None], 12).ids[0]
    assert [s.chosen for s in steps] == vocab.decode(ids, strip=False)
    assert steps[-1].chosen == "<EOS>" and len(steps) == 10
    assert steps[0].fed == "<GO>"
    assert [s.fed for s in steps[1:]] == [s.chosen for s in steps[:-1]]
    for step in steps:
        probs = [p for _, p in step.top]
        assert len(step.top) == 3
        assert probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6
        assert step.top[0][0] == step.chosen and not step.forced
        assert len(step.query) == 32 and len(step.context) == 32
        assert len(step.weights) == len(step.scores) == 8
        assert sum(step.weights) == pytest.approx(1.0, abs=1e-5)
        soft = torch.softmax(torch.tensor(step.scores), dim=0)
        torch.testing.assert_close(soft, torch.tensor(step.weights))


def test_trace_top_k_is_capped_by_the_vocabulary(trained, vocab):
    steps = step_through(trained.model, _src(vocab), vocab, max_len=12, top_k=100)
    assert all(len(s.top) == len(vocab) for s in steps)
    assert sum(p for _, p in steps[0].top) == pytest.approx(1.0, abs=1e-5)


def test_forcing_a_token_changes_that_step_and_the_ones_after(trained, vocab):
    src = _src(vocab)
    free = step_through(trained.model, src, vocab, max_len=12)
    assert free[0].chosen == "2"
    pushed = step_through(
        trained.model, src, vocab, max_len=12, forced={0: vocab.encode("9")[0]}
    )
    assert pushed[0].chosen == "9" and pushed[0].forced
    assert pushed[0].top == free[0].top  # the model's own view of step 0 is unchanged
    assert pushed[1].fed == "9"
    assert pushed[1].query == free[1].query  # h_0: before the forced token is read
    assert pushed[1].top != free[1].top
    assert pushed[2].query != free[2].query
    assert not any(s.forced for s in pushed[1:])
    # Forcing the token the model would pick anyway is not "forced".
    same = step_through(
        trained.model, src, vocab, max_len=12, forced={0: vocab.encode("2")[0]}
    )
    assert same == free


def test_forcing_eos_ends_the_trace(trained, vocab):
    steps = step_through(trained.model, _src(vocab), vocab, max_len=12, forced={2: EOS})
    assert [s.chosen for s in steps][-1] == "<EOS>" and len(steps) == 3
    assert steps[2].forced


def test_trace_respects_max_len_and_models_without_attention(vocab):
    model = _untrained(0, attention="none")
    steps = step_through(model, _src(vocab), vocab, max_len=4, top_k=2)
    assert len(steps) <= 4
    assert all(
        s.weights is None and s.scores is None and s.context is None for s in steps
    )
    assert all(len(s.query) == 7 for s in steps)
