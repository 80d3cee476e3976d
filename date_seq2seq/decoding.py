"""Autoregressive decoding: greedy, beam search, and the step-through.

Free functions that take the model, as in JoeyNMT's `search.py`. Greedy
decoding and the step-through are the model's one loop (`model.unroll`) fed
its own output or imposed tokens; beam search keeps several prefixes per
source, so it steps the decoder itself. Every decoder stops a sequence at its
<EOS> (the tutorials ran a fixed 11 steps) and pads the finished rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .config import LENGTH_ALPHA, check_beam_size
from .fastpaths import PackedGreedy
from .model import (
    FreeRunning,
    Imposed,
    Seq2Seq,
    State,
    TeacherForcing,
    source_lengths,
    unroll,
)
from .vocab import EOS_ID, GO_ID, PAD_ID, Vocabulary


@dataclass(frozen=True)
class Decoded:
    ids: torch.Tensor  # (batch, steps): output ids, <EOS> included, <PAD> after it
    attention: torch.Tensor | None  # (batch, steps, src_len) softmax weights
    logprob: torch.Tensor  # (batch,) total log-probability of each output


def _total_logprob(ids: torch.Tensor, step_logprob: torch.Tensor) -> torch.Tensor:
    """Sum each row's step log-probabilities (batch, steps) up to its <EOS>."""
    is_eos = ids == EOS_ID
    after = (torch.cumsum(is_eos, dim=1) - is_eos.long()) > 0  # past the first <EOS>
    return step_logprob.masked_fill(after, 0.0).sum(dim=1)


@torch.no_grad()
def greedy(
    model: Seq2Seq,
    src: torch.Tensor,
    max_len: int,
    src_lengths: torch.Tensor | None = None,
) -> Decoded:
    """Decode a batch greedily: the loop fed its own argmax. src (batch, src_len).

    `greedy_many` gives the same, much faster, for a model in eval mode.
    """
    run = unroll(model, src, FreeRunning(max_len), src_lengths)
    step_logprob = torch.log_softmax(run.logits, dim=-1)
    step_logprob = step_logprob.gather(-1, run.tokens[..., None])[..., 0]
    weights = run.attended.weights if run.attended is not None else None
    return Decoded(run.tokens, weights, _total_logprob(run.tokens, step_logprob))


def distinct_rows(
    src: torch.Tensor, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (first, inverse): src[first] are the distinct rows (each index a
    row's first occurrence) and src[first][inverse] == src.

    Rows of few ids pack into one integer key each, which sorts far faster than
    rows (torch.unique over dim 0); longer rows fall back to that.
    """
    n, length = src.shape
    if vocab_size**length < 2**62:
        key = (src * vocab_size ** torch.arange(length)).sum(dim=1)
        _, inverse = torch.unique(key, return_inverse=True)
    else:
        _, inverse = torch.unique(src, dim=0, return_inverse=True)
    slots = int(inverse.max()) + 1 if n else 0
    first = torch.full((slots,), n).scatter_reduce(0, inverse, torch.arange(n), "amin")
    return first, inverse


@torch.no_grad()
def greedy_many(
    model: Seq2Seq,
    src: torch.Tensor,
    max_len: int,
    src_lengths: torch.Tensor | None = None,
    chunk_size: int = 4096,
) -> Decoded:
    """Greedy decoding of many sources, fast; equals `greedy`. Needs eval mode.

    An optimization (tests hold it equal to `greedy`): each distinct source is
    decoded once – a file of dates repeats many – by the packed batch-last
    decoder (fastpaths.PackedGreedy), in chunks of chunk_size, shortest
    sources first: large enough that torch spreads each op over its threads,
    small enough that a step's tensors stay in cache.
    """
    if not PackedGreedy.can_decode(model):
        return greedy(model, src, max_len, src_lengths)
    first, inverse = distinct_rows(src, model.cfg.vocab_size)
    lengths = src_lengths if src_lengths is not None else source_lengths(src)
    # Shortest first, so that a chunk of the human task's inputs, which vary in
    # length, is padded only to its own longest.
    order = torch.argsort(lengths[first], stable=True)
    by_length = first[order]
    place = torch.empty_like(first)  # where each distinct row went
    place[order] = torch.arange(len(first))
    packed = PackedGreedy(model)
    parts = []
    for i in range(0, len(by_length), chunk_size):
        rows = by_length[i : i + chunk_size]
        chunk_lengths = lengths[rows]
        # Unmasked, attention sees the padding: it must stay as given.
        longest = int(chunk_lengths.max()) if model.cfg.mask_attention else src.size(1)
        ids, attention, step_logprob = packed.decode(
            src[rows, :longest], max_len, chunk_lengths
        )
        parts.append(Decoded(ids, attention, _total_logprob(ids, step_logprob)))
    decoded = _concatenate(parts, src.size(1))
    rows = place[inverse]
    return Decoded(
        decoded.ids[rows],
        decoded.attention[rows] if decoded.attention is not None else None,
        decoded.logprob[rows],
    )


def _concatenate(parts: list[Decoded], src_len: int) -> Decoded:
    """Join decoded chunks row-wise; rows that ended sooner are padded."""
    steps = max((p.ids.size(1) for p in parts), default=0)
    rows = sum(p.ids.size(0) for p in parts)
    ids = torch.full((rows, steps), PAD_ID, dtype=torch.long)
    attention = None
    if parts and parts[0].attention is not None:
        attention = torch.zeros(rows, steps, src_len)
    row = 0
    for part in parts:
        count, length = part.ids.shape
        ids[row : row + count, :length] = part.ids
        if attention is not None:  # a chunk may have fewer (padding) columns
            columns = part.attention.size(-1)
            attention[row : row + count, :length, :columns] = part.attention
        row += count
    logprob = torch.cat([p.logprob for p in parts]) if parts else torch.zeros(0)
    return Decoded(ids, attention, logprob)


def _select_state(state: State, index: torch.Tensor) -> State:
    h, c = state
    return h[:, index], (c[:, index] if c is not None else None)


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's length penalty, ((5 + |Y|) / 6) ** alpha (Wu et al., 2016).

    A summed log-probability only falls as a hypothesis grows, so ranking by it
    favours stopping early: a wrong short answer can beat the right long one.
    Dividing by this penalty (1 for alpha 0, growing with the length) undoes
    that; alpha sets how much.
    """
    return ((5.0 + lengths.to(torch.float32)) / 6.0) ** alpha


@dataclass(frozen=True)
class Beam:
    """Each source's beam_size hypotheses, best first."""

    ids: torch.Tensor  # (batch, k, steps): <EOS> included, <PAD> after it
    attention: torch.Tensor | None  # (batch, k, steps, src_len)
    logprob: torch.Tensor  # (batch, k): summed log-probability
    score: torch.Tensor  # (batch, k): logprob / length_penalty(length, alpha)

    def best(self) -> Decoded:
        """The winners: each source's top-scored hypothesis."""
        attention = self.attention[:, 0] if self.attention is not None else None
        return Decoded(self.ids[:, 0], attention, self.logprob[:, 0])


@torch.no_grad()
def beam_hypotheses(
    model: Seq2Seq,
    src: torch.Tensor,
    beam_size: int,
    max_len: int,
    src_lengths: torch.Tensor | None = None,
    alpha: float = LENGTH_ALPHA,
) -> Beam:
    """Decode a batch keeping the beam_size best-scored prefixes of each source.

    A hypothesis is scored by its summed log-probability divided by the
    length penalty. A finished one carries its score on unchanged, emitting
    <PAD>, so it competes with the longer ones still going; decoding ends when
    every kept one has ended.
    """
    k = beam_size
    memory, state = model.encode(src, src_lengths)
    batch = src.size(0)
    rows = torch.arange(batch).repeat_interleave(k)  # (batch * k,)
    memory = type(memory)(*(t[rows] for t in memory))
    state = _select_state(state, rows)
    vocab = model.cfg.vocab_size
    logprob = torch.full((batch * k,), float("-inf"))
    logprob[::k] = 0.0  # all beams start as the same empty prefix: keep one
    length = torch.zeros(batch * k, dtype=torch.long)  # tokens emitted, <EOS> too
    score = logprob.view(batch, k)
    fed = torch.full((batch * k,), GO_ID, dtype=torch.long)
    finished = torch.zeros(batch * k, dtype=torch.bool)
    tokens = torch.empty((batch * k, 0), dtype=torch.long)
    weights: torch.Tensor | None = None
    for _ in range(max_len):
        out = model.decode_step(fed, state, memory)
        step = torch.log_softmax(out.logits, dim=-1)  # (batch * k, vocab)
        ended = torch.full_like(step, float("-inf"))
        ended[:, PAD_ID] = 0.0
        step = torch.where(finished[:, None], ended, step)
        candidate_logprob = logprob[:, None] + step  # (batch * k, vocab)
        candidate_length = (length + ~finished)[:, None]
        candidate_score = candidate_logprob / length_penalty(candidate_length, alpha)
        score, flat = candidate_score.reshape(batch, k * vocab).topk(k, dim=-1)
        origin = (torch.arange(batch)[:, None] * k + flat // vocab).reshape(-1)
        token = (flat % vocab).reshape(-1)  # (batch * k,)
        logprob = candidate_logprob[origin, token]
        length = candidate_length[origin, 0]
        tokens = torch.cat([tokens[origin], token[:, None]], dim=1)
        if out.attended is not None:
            step_w = out.attended.weights[origin]  # (batch * k, 1, src_len)
            weights = (
                step_w
                if weights is None
                else torch.cat([weights[origin], step_w], dim=1)
            )
        finished = finished[origin] | (token == EOS_ID)
        state = _select_state(out.state, origin)
        fed = token
        if bool(finished.all()):
            break
    steps = tokens.size(1)
    return Beam(
        tokens.view(batch, k, steps),
        weights.view(batch, k, steps, -1) if weights is not None else None,
        logprob.view(batch, k),
        score,
    )


def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,
    beam_size: int,
    max_len: int,
    src_lengths: torch.Tensor | None = None,
    alpha: float = LENGTH_ALPHA,
) -> Decoded:
    """Each source's best hypothesis of a beam search (see beam_hypotheses)."""
    return beam_hypotheses(model, src, beam_size, max_len, src_lengths, alpha).best()


@torch.no_grad()
def token_logprobs(
    model: Seq2Seq, src: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """The log-probability the model gives each token of `ids` (n, steps), fed
    the tokens before it: one source (1, src_len) scoring n outputs at once."""
    run = unroll(model, src.expand(ids.size(0), -1), TeacherForcing(ids))
    return torch.log_softmax(run.logits, dim=-1).gather(-1, ids[..., None])[..., 0]


BEAM_ROWS = 4096  # hypotheses searched at once: memory bounded whatever the input


def decode(
    model: Seq2Seq,
    src: torch.Tensor,
    max_len: int,
    beam_size: int = 1,
    src_lengths: torch.Tensor | None = None,
    alpha: float = LENGTH_ALPHA,
) -> Decoded:
    """Greedy for beam_size 1 (the fast path), beam search otherwise.

    Beam search keeps beam_size hypotheses per source, so it goes in chunks of
    BEAM_ROWS // beam_size sources: its memory does not grow with the input.
    """
    check_beam_size(beam_size)
    if beam_size == 1:
        return greedy_many(model, src, max_len, src_lengths)
    chunk = max(1, BEAM_ROWS // beam_size)
    parts = [
        beam_search(
            model,
            src[i : i + chunk],
            beam_size,
            max_len,
            None if src_lengths is None else src_lengths[i : i + chunk],
            alpha,
        )
        for i in range(0, src.size(0), chunk)
    ]
    return _concatenate(parts, src.size(1))


# --- the step-through ---------------------------------------------------------


@dataclass(frozen=True)
class DecoderStep:
    """What the decoder did at one step, for one input."""

    fed: str  # the token fed in (the previous output, or <GO>)
    chosen: str  # the token emitted
    forced: bool  # the chosen token was imposed, not the model's argmax
    top: list[tuple[str, float]]  # top-k candidates with probabilities
    query: list[float]  # h_{t-1}, (dec_hidden,)
    scores: list[float] | None  # raw attention scores, (src_len,)
    weights: list[float] | None  # softmax attention weights, (src_len,)
    context: list[float] | None  # weighted sum of encoder outputs, (enc_hidden,)


@torch.inference_mode()
def step_through(
    model: Seq2Seq,
    src: torch.Tensor,
    vocab: Vocabulary,
    max_len: int,
    top_k: int = 3,
    forced: Mapping[int, int] | None = None,
) -> list[DecoderStep]:
    """Decode ONE source (src_len,) greedily, recording every step.

    `forced` maps a step number to a token id emitted there instead of the
    argmax, so a learner can push the decoder off course and watch it recover.
    Steps end at the emitted <EOS>.
    """
    run = unroll(model, src[None], Imposed(forced or {}, max_len))
    tokens = run.tokens[0].tolist()
    if EOS_ID in tokens:
        tokens = tokens[: tokens.index(EOS_ID) + 1]
    n = len(tokens)
    logits = run.logits[0, :n]  # (n, vocab)
    best = logits.argmax(dim=-1).tolist()
    top_p, top_i = torch.softmax(logits, dim=-1).topk(min(top_k, len(vocab)))
    top = [
        [(vocab.tokens[i], p) for p, i in zip(ps, is_, strict=True)]
        for ps, is_ in zip(top_p.tolist(), top_i.tolist(), strict=True)
    ]
    query = run.queries[0, :n].tolist()
    if run.attended is not None:
        scores, weights, context = (
            getattr(run.attended, name)[0, :n].tolist()
            for name in ("scores", "weights", "context")
        )
    else:
        scores = weights = context = [None] * n
    fed = [GO_ID, *tokens[:-1]]
    return [
        DecoderStep(
            fed=vocab.tokens[fed[t]],
            chosen=vocab.tokens[tokens[t]],
            forced=tokens[t] != best[t],
            top=top[t],
            query=query[t],
            scores=scores[t],
            weights=weights[t],
            context=context[t],
        )
        for t in range(n)
    ]
