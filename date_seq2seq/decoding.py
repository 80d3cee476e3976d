"""Autoregressive decoding: greedy, beam search and a step-by-step trace.

Free functions that take the model, as in JoeyNMT's `search.py`: the model
only knows how to encode and take one step. Every decoder stops a sequence at
its <EOS> (the tutorials ran a fixed 11 steps) and pads the finished rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .config import check_beam_size
from .inference import PackedDecoder
from .model import Seq2Seq, State
from .vocab import Vocabulary


@dataclass(frozen=True)
class Decoded:
    ids: torch.Tensor  # (batch, steps): output ids, <EOS> included, <PAD> after it
    attention: torch.Tensor | None  # (batch, steps, src_len) softmax weights
    scores: torch.Tensor  # (batch,) total log-probability of each output


def _select_state(state: State, index: torch.Tensor) -> State:
    h, c = state
    return h[:, index], (c[:, index] if c is not None else None)


@torch.no_grad()
def greedy(
    model: Seq2Seq,
    src: torch.Tensor,
    max_len: int,
    src_lengths: torch.Tensor | None = None,
) -> Decoded:
    """Decode a batch greedily. src (batch, src_len) -> Decoded.

    Runs the packed batch-last step (inference.py) on a Seq2Seq in eval mode,
    the reference `decode_step` otherwise; both give the same.
    """
    pad_id, bos_id, eos_id = Vocabulary.pad_id, Vocabulary.bos_id, Vocabulary.eos_id
    if not isinstance(model, Seq2Seq) or model.training:
        ids, attention, logp = _greedy_stepwise(model, src, max_len, src_lengths)
    else:
        ids, attention, logp = PackedDecoder(model).greedy(
            model, src, max_len, src_lengths, (pad_id, bos_id, eos_id)
        )
    is_eos = ids == eos_id
    after = (torch.cumsum(is_eos, dim=1) - is_eos.long()) > 0  # past the first <EOS>
    return Decoded(
        ids.masked_fill(after, pad_id),
        attention,
        logp.masked_fill(after, 0.0).sum(dim=1),
    )


def _greedy_stepwise(
    model: Seq2Seq,
    src: torch.Tensor,
    max_len: int,
    src_lengths: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Greedy with Decoder.step: ids, attention and per-step log-probabilities."""
    memory, state = model.encode(src, src_lengths)
    prev = torch.full((src.size(0),), Vocabulary.bos_id, dtype=torch.long)
    done = torch.zeros(src.size(0), dtype=torch.bool)
    ids, weights, logps = [], [], []
    for _ in range(max_len):
        out = model.decode_step(prev, state, memory)
        best, prev = torch.log_softmax(out.logits, dim=-1).max(dim=-1)
        prev = prev.masked_fill(done, Vocabulary.pad_id)  # ended rows feed <PAD>
        ids.append(prev)
        logps.append(best)
        if out.attended is not None:
            weights.append(out.attended.weights[:, 0])
        state = out.state
        done |= prev == Vocabulary.eos_id
        if bool(done.all()):
            break
    attention = torch.stack(weights, dim=1) if weights else None
    return torch.stack(ids, dim=1), attention, torch.stack(logps, dim=1)


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
    model: Seq2Seq, src: torch.Tensor, max_len: int, chunk_size: int = 4096
) -> Decoded:
    """Greedy decoding of many sources of equal length, fast; equals `greedy`.

    Each distinct source is decoded once (a file of dates repeats many), in
    chunks of chunk_size: large enough that torch spreads each op over its
    threads, small enough that a step's tensors stay in cache.
    """
    first, inverse = distinct_rows(src, model.cfg.vocab_size)
    unique = src[first]
    parts = [
        greedy(model, unique[i : i + chunk_size], max_len)
        for i in range(0, len(unique), chunk_size)
    ]
    steps = max((p.ids.size(1) for p in parts), default=0)
    ids = torch.full((len(unique), steps), Vocabulary.pad_id, dtype=torch.long)
    attention = None
    if parts and parts[0].attention is not None:
        attention = torch.zeros(len(unique), steps, src.size(1))
    row = 0
    for part in parts:
        rows, length = part.ids.shape
        ids[row : row + rows, :length] = part.ids
        if attention is not None:
            attention[row : row + rows, :length] = part.attention
        row += rows
    scores = torch.cat([p.scores for p in parts]) if parts else torch.zeros(0)
    return Decoded(
        ids[inverse],
        attention[inverse] if attention is not None else None,
        scores[inverse],
    )


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,
    beam_size: int,
    max_len: int,
    src_lengths: torch.Tensor | None = None,
) -> Decoded:
    """Decode a batch keeping the beam_size best prefixes; 1 is greedy.

    Scores are summed log-probabilities. A finished hypothesis carries its score
    on unchanged, emitting <PAD>; decoding ends when every kept one has ended.
    """
    pad_id, bos_id, eos_id = Vocabulary.pad_id, Vocabulary.bos_id, Vocabulary.eos_id
    k = beam_size
    memory, state = model.encode(src, src_lengths)
    batch = src.size(0)
    rows = torch.arange(batch).repeat_interleave(k)  # (batch * k,)
    memory = type(memory)(*(t[rows] for t in memory))
    state = _select_state(state, rows)
    vocab = model.cfg.vocab_size
    scores = torch.full((batch, k), float("-inf"))
    scores[:, 0] = 0.0  # all beams start as the same empty prefix: keep one
    prev = torch.full((batch * k,), bos_id, dtype=torch.long)
    finished = torch.zeros(batch * k, dtype=torch.bool)
    tokens = torch.empty((batch * k, 0), dtype=torch.long)
    weights: torch.Tensor | None = None
    for _ in range(max_len):
        out = model.decode_step(prev, state, memory)
        logp = torch.log_softmax(out.logits, dim=-1)  # (batch * k, vocab)
        ended = torch.full_like(logp, float("-inf"))
        ended[:, pad_id] = 0.0
        logp = torch.where(finished[:, None], ended, logp)
        candidates = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        scores, flat_index = candidates.topk(k, dim=-1)  # (batch, k)
        origin = (torch.arange(batch)[:, None] * k + flat_index // vocab).reshape(-1)
        token = (flat_index % vocab).reshape(-1)  # (batch * k,)
        tokens = torch.cat([tokens[origin], token[:, None]], dim=1)
        if out.attended is not None:
            step_w = out.attended.weights[origin]  # (batch * k, 1, src_len)
            weights = (
                step_w
                if weights is None
                else torch.cat([weights[origin], step_w], dim=1)
            )
        finished = finished[origin] | (token == eos_id)
        state = _select_state(out.state, origin)
        prev = token
        if bool(finished.all()):
            break
    best = scores.argmax(dim=-1)  # (batch,)
    pick = torch.arange(batch) * k + best
    return Decoded(
        tokens[pick],
        weights[pick] if weights is not None else None,
        scores[torch.arange(batch), best],
    )


def decode(
    model: Seq2Seq,
    src: torch.Tensor,
    max_len: int,
    beam_size: int = 1,
    src_lengths: torch.Tensor | None = None,
) -> Decoded:
    """Greedy for beam_size 1 (each distinct source once), beam search otherwise."""
    check_beam_size(beam_size)
    if beam_size == 1:
        if src_lengths is None:
            return greedy_many(model, src, max_len)
        return greedy(model, src, max_len, src_lengths)
    return beam_search(model, src, beam_size, max_len, src_lengths)


@dataclass(frozen=True)
class TraceStep:
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
def trace(
    model: Seq2Seq,
    src: torch.Tensor,
    vocab: Vocabulary,
    max_len: int,
    top_k: int = 3,
    force: Mapping[int, int] | None = None,
) -> list[TraceStep]:
    """Decode ONE source (src_len,) greedily, recording every step.

    `force` maps a step number to a token id emitted there instead of the
    argmax, so a learner can push the decoder off course and watch it recover.
    The loop keeps tensors; they become Python lists in one go at the end.
    """
    force = dict(force or {})
    memory, state = model.encode(src[None])
    fed, chosen, best = [vocab.bos_id], [], []
    logits, queries, attended = [], [], []
    prev = torch.tensor([vocab.bos_id])
    for t in range(max_len):
        out = model.decode_step(prev, state, memory)
        best.append(int(out.logits[0].argmax()))
        chosen.append(force.get(t, best[-1]))
        logits.append(out.logits[0])
        queries.append(out.query[0])
        attended.append(out.attended)
        if chosen[-1] == vocab.eos_id:
            break
        fed.append(chosen[-1])
        prev, state = torch.tensor([chosen[-1]]), out.state
    top_p, top_i = torch.softmax(torch.stack(logits), dim=-1).topk(
        min(top_k, len(vocab))
    )
    top = [
        [(vocab.tokens[i], p) for p, i in zip(ps, is_, strict=True)]
        for ps, is_ in zip(top_p.tolist(), top_i.tolist(), strict=True)
    ]
    query = torch.stack(queries).tolist()
    n = len(chosen)
    if attended[0] is not None:
        scores, weights, context = (
            torch.stack([getattr(a, name)[0, 0] for a in attended]).tolist()
            for name in ("scores", "weights", "context")
        )
    else:
        scores = weights = context = [None] * n
    return [
        TraceStep(
            fed=vocab.tokens[fed[t]],
            chosen=vocab.tokens[chosen[t]],
            forced=chosen[t] != best[t],
            top=top[t],
            query=query[t],
            scores=scores[t],
            weights=weights[t],
            context=context[t],
        )
        for t in range(n)
    ]
