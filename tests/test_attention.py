"""Attention: scores by formula, softmax rows summing to 1, padding weighted 0."""

from __future__ import annotations

import pytest
import torch

from date_seq2seq.attention import (
    AdditiveAttention,
    Attention,
    DotAttention,
    GeneralAttention,
    Memory,
    make_attention,
)

BATCH, TGT_LEN, SRC_LEN, KEY_DIM, QUERY_DIM = 2, 4, 6, 5, 7
VALID = [SRC_LEN, 4]  # row 1 has two padded source positions


def _memory(attention: Attention, key_dim: int = KEY_DIM) -> Memory:
    keys = torch.randn(BATCH, SRC_LEN, key_dim)
    mask = torch.arange(SRC_LEN)[None, :] < torch.tensor(VALID)[:, None]
    return Memory(keys, attention.prepare(keys), mask)


def _attention(kind: str) -> tuple[Attention, int]:
    """The module and its query size (dot attention needs it equal to KEY_DIM)."""
    query_dim = KEY_DIM if kind == "dot" else QUERY_DIM
    attention = make_attention(kind, KEY_DIM, query_dim)
    assert attention is not None
    return attention, query_dim


KINDS = ["dot", "general", "additive"]


@pytest.mark.parametrize("kind", KINDS)
def test_rows_sum_to_one_and_padding_gets_zero_weight(kind):
    attention, query_dim = _attention(kind)
    memory = _memory(attention)
    out = attention(torch.randn(BATCH, TGT_LEN, query_dim), memory)
    assert out.weights.shape == (BATCH, TGT_LEN, SRC_LEN)
    assert out.scores.shape == (BATCH, TGT_LEN, SRC_LEN)
    assert out.context.shape == (BATCH, TGT_LEN, KEY_DIM)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(BATCH, TGT_LEN))
    assert (out.weights[1, :, VALID[1] :] == 0).all()
    assert (out.weights[:, :, : VALID[1]] > 0).all()
    torch.testing.assert_close(out.context, out.weights @ memory.keys)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_are_the_softmax_of_the_unmasked_scores(kind):
    attention, query_dim = _attention(kind)
    memory = _memory(attention)
    out = attention(torch.randn(BATCH, TGT_LEN, query_dim), memory)
    torch.testing.assert_close(out.weights[0], torch.softmax(out.scores[0], dim=-1))
    n = VALID[1]
    torch.testing.assert_close(
        out.weights[1, :, :n], torch.softmax(out.scores[1, :, :n], dim=-1)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_padded_keys_cannot_change_the_result(kind):
    attention, query_dim = _attention(kind)
    memory = _memory(attention)
    query = torch.randn(BATCH, TGT_LEN, query_dim)
    keys = memory.keys.clone()
    keys[1, VALID[1] :] = 1e3 * torch.randn(SRC_LEN - VALID[1], KEY_DIM)
    changed = Memory(keys, attention.prepare(keys), memory.mask)
    a, b = attention(query, memory), attention(query, changed)
    torch.testing.assert_close(a.weights, b.weights)
    torch.testing.assert_close(a.context, b.context)


def test_dot_scores():
    attention = DotAttention()
    memory = _memory(attention)
    query = torch.randn(BATCH, TGT_LEN, KEY_DIM)
    out = attention(query, memory)
    want = torch.einsum("btd,bsd->bts", query, memory.keys)
    torch.testing.assert_close(out.scores, want)


def test_general_scores_project_the_keys_once():
    attention = GeneralAttention(KEY_DIM, QUERY_DIM)
    memory = _memory(attention)
    w = attention.key_proj.weight  # (query_dim, key_dim)
    assert w.shape == (QUERY_DIM, KEY_DIM)
    torch.testing.assert_close(memory.prepared, memory.keys @ w.T)
    query = torch.randn(BATCH, TGT_LEN, QUERY_DIM)
    calls = []
    attention.key_proj.register_forward_hook(lambda *_: calls.append(1))
    out = attention(query, memory)
    assert calls == []  # scoring reuses the prepared keys
    want = torch.einsum("btq,bsk,qk->bts", query, memory.keys, w)
    torch.testing.assert_close(out.scores, want)


def test_additive_scores():
    attn_dim = 3
    attention = AdditiveAttention(KEY_DIM, QUERY_DIM, attn_dim)
    memory = _memory(attention)
    query = torch.randn(BATCH, TGT_LEN, QUERY_DIM)
    out = attention(query, memory)
    wq, wk = attention.query_proj.weight, attention.key_proj.weight
    v = attention.v.weight[0]
    want = torch.empty(BATCH, TGT_LEN, SRC_LEN)
    for b in range(BATCH):
        for t in range(TGT_LEN):
            for j in range(SRC_LEN):
                hidden = torch.tanh(wq @ query[b, t] + wk @ memory.keys[b, j])
                want[b, t, j] = v @ hidden
    torch.testing.assert_close(out.scores, want)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_query_equals_the_matching_row_of_all_steps(kind):
    attention, query_dim = _attention(kind)
    memory = _memory(attention)
    query = torch.randn(BATCH, TGT_LEN, query_dim)
    full = attention(query, memory)
    for t in range(TGT_LEN):
        one = attention(query[:, t : t + 1], memory)
        torch.testing.assert_close(one.weights[:, 0], full.weights[:, t])
        torch.testing.assert_close(one.context[:, 0], full.context[:, t])


def test_make_attention():
    assert make_attention("none", KEY_DIM, QUERY_DIM) is None
    assert isinstance(make_attention("dot", KEY_DIM, KEY_DIM), DotAttention)
    assert isinstance(make_attention("general", KEY_DIM, QUERY_DIM), GeneralAttention)
    additive = make_attention("additive", KEY_DIM, QUERY_DIM)
    assert isinstance(additive, AdditiveAttention)
    assert additive.key_proj.weight.shape == (QUERY_DIM, KEY_DIM)
    assert additive.query_proj.weight.shape == (QUERY_DIM, QUERY_DIM)
    with pytest.raises(ValueError, match="equal"):
        make_attention("dot", KEY_DIM, QUERY_DIM)
    with pytest.raises(ValueError, match="unknown"):
        make_attention("luong", KEY_DIM, QUERY_DIM)


def test_base_class_has_no_score():
    attention = Attention()
    keys = torch.randn(BATCH, SRC_LEN, KEY_DIM)
    assert attention.prepare(keys) is keys
    with pytest.raises(NotImplementedError):
        attention(torch.randn(BATCH, 1, KEY_DIM), _memory(attention))
