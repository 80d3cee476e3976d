"""Attention: score every source position for a query, softmax, weighted sum.

Shapes: query (batch, tgt_len, query_dim), keys (batch, src_len, key_dim).
The step-by-step decoder passes tgt_len = 1; the teacher-forced path passes all
target steps at once, so one code path serves both and they cannot drift apart.

Anything that depends only on the keys (the `W o_j` projection) is computed once
per source sentence in `prepare`, not at every decoder step as the tutorial did.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Memory(NamedTuple):
    """The encoder's outputs as the decoder reads them."""

    keys: torch.Tensor  # (batch, src_len, key_dim): encoder outputs, the values too
    prepared: torch.Tensor  # (batch, src_len, *): keys transformed once for scoring
    mask: torch.Tensor  # (batch, src_len) True where a real source token is


class Attended(NamedTuple):
    context: torch.Tensor  # (batch, tgt_len, key_dim)
    weights: torch.Tensor  # (batch, tgt_len, src_len), rows sum to 1
    scores: torch.Tensor  # (batch, tgt_len, src_len), before the softmax


class Attention(nn.Module):
    """Base class: subclasses define `prepare` (keys only) and `score`."""

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        """Transform the keys once per source sentence, not once per step."""
        return keys

    def score(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        """Return raw scores (batch, tgt_len, src_len)."""
        raise NotImplementedError

    def forward(self, query: torch.Tensor, memory: Memory) -> Attended:
        """Attend. query (batch, tgt_len, query_dim) -> context, weights, scores."""
        scores = self.score(query, memory.prepared)  # (batch, tgt_len, src_len)
        masked = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        weights = torch.softmax(masked, dim=-1)
        context = weights @ memory.keys  # (batch, tgt_len, key_dim)
        return Attended(context, weights, scores)


class DotAttention(Attention):
    """e_tj = o_j . h_{t-1}; needs key_dim == query_dim."""

    def score(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        return query @ prepared.transpose(1, 2)


class GeneralAttention(Attention):
    """Bilinear ("general", Luong): e_tj = (W o_j) . h_{t-1}."""

    def __init__(self, key_dim: int, query_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key_proj(keys)  # (batch, src_len, query_dim)

    def score(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        return query @ prepared.transpose(1, 2)


class AdditiveAttention(Attention):
    """Additive (Bahdanau): e_tj = v . tanh(W_q h_{t-1} + W_k o_j)."""

    def __init__(self, key_dim: int, query_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=False)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key_proj(keys)  # (batch, src_len, attn_dim)

    def score(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        q = self.query_proj(query)  # (batch, tgt_len, attn_dim)
        hidden = torch.tanh(q[:, :, None, :] + prepared[:, None, :, :])
        return self.v(hidden).squeeze(-1)  # (batch, tgt_len, src_len)


def make_attention(kind: str, key_dim: int, query_dim: int) -> Attention | None:
    """Build the attention a ModelConfig names; None for "none"."""
    if kind == "none":
        return None
    if kind == "dot":
        if key_dim != query_dim:
            raise ValueError("dot attention needs equal key and query sizes")
        return DotAttention()
    if kind == "general":
        return GeneralAttention(key_dim, query_dim)
    if kind == "additive":
        return AdditiveAttention(key_dim, query_dim, attn_dim=query_dim)
    raise ValueError(f"unknown attention {kind!r}")
