"""Optimizations of the one decoding loop (`model.unroll`): same numbers, fewer ops.

Two fast paths, each tested equal to the loop for every cell, attention and
depth (tests/test_fastpaths.py):

- `teacher_forced`: the loop under `TeacherForcing`, for training. The
  context never feeds the recurrence, so the decoder's hidden states for all
  steps come from ONE fused multi-layer RNN call on the cells' own weights,
  and the attention of all steps from two batched matmuls.
- `PackedGreedy`: the loop under `FreeRunning`, for converting many dates.
  Autoregressive decoding must step, but each step can be cheaper; see the
  class docstring for how.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .attention import Attended
from .vocab import EOS_ID, GO_ID, PAD_ID

if TYPE_CHECKING:
    from .model import Seq2Seq

# --- teacher forcing in one call ---------------------------------------------


def teacher_forced(
    model: Seq2Seq,
    src: torch.Tensor,
    tgt_in: torch.Tensor,
    src_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Attended | None]:
    """Teacher-forced logits (batch, tgt_len, vocab) and the attention of every step.

    tgt_in (batch, tgt_len) is <GO> + target[:-1]. Equals
    `unroll(model, src, TeacherForcing(target[1:]))`.
    """
    memory, (h0, c0) = model.encode(src, src_lengths)
    dec = model.decoder
    x = dec.dropout(dec.embedding(tgt_in))  # (batch, tgt_len, emb)
    # The op behind nn.LSTM / nn.GRU, run on the cells' own weights: one fused
    # kernel, forward and backward, for all steps and layers.
    weights = [
        getattr(cell, name)
        for cell in dec.cells
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    # (weights, has_biases, layers, dropout, train, bidirectional, batch_first)
    rnn_args = (weights, True, len(dec.cells), dec.layer_dropout, dec.training,
                False, True)  # fmt: skip
    if c0 is None:
        hidden, _ = torch.gru(x, h0, *rnn_args)
    else:
        hidden, _, _ = torch.lstm(x, (h0, c0), *rnn_args)
    # hidden: (batch, tgt_len, dec_hidden)
    if dec.attention is None:
        return dec.out(hidden), None
    # Step t is queried by h_{t-1}: the initial state, then outputs 1..T-1.
    queries = torch.cat([h0[-1][:, None], hidden[:, :-1]], dim=1)
    attended = dec.attention(queries, memory)
    top = torch.cat([attended.context, hidden], -1) if dec.context_to_output else hidden
    return dec.out(top), attended


# --- greedy decoding for throughput ------------------------------------------


def _lstm_order(w: torch.Tensor, hidden: int) -> torch.Tensor:
    i, f, g, o = w.split(hidden)
    return torch.cat([i, f, o, g])


def _stacked_weights(
    w_hh: torch.Tensor, w_x: torch.Tensor, b_hh: torch.Tensor, lstm: bool
) -> torch.Tensor:
    """Rows of gates for the input [h ; x]: w_x already holds the input bias
    (as a column of the ones row, or in every one-hot column)."""
    n = w_hh.size(1)
    if lstm:
        return torch.cat([_lstm_order(w_hh, n), _lstm_order(w_x + b_hh[:, None], n)], 1)
    x_cols = w_x.size(1)  # GRU: r and z sum both halves; the candidate keeps them apart
    rz = torch.cat([w_hh[: 2 * n], w_x[: 2 * n] + b_hh[: 2 * n, None]], 1)
    n_h = torch.cat([w_hh[2 * n :], b_hh[2 * n :, None].expand(n, x_cols)], 1)
    n_x = torch.cat([torch.zeros(n, n), w_x[2 * n :]], 1)
    return torch.cat([rz, n_h, n_x])


class PackedGreedy:
    """A model's decoder packed for greedy decoding of many sources at once.

    Converting thousands of dates is bound by many small element-wise ops per
    step, and on a CPU a reduction over a short last dimension (8 source
    positions, 27 tokens) is several times slower than one over a long
    dimension. So this path keeps the BATCH as the last dimension – every
    reduction runs along contiguous rows of the batch – packs the weights
    once, and folds what only needs doing once:

    - each layer's gates come from ONE matmul on a stacked input `[h ; x]`;
      for layer 0, x is the fed token as a one-hot column and the weights hold
      `W_ih Embedding + b` for every token (one-hot columns sum to 1, so the
      bias rides along); deeper layers read the layer below and a row of ones;
    - the output layer's context half is applied to the encoder outputs once,
      `W_c c_t = sum_j a_tj (W_c o_j)`, so no context vector is built per step
      (its bias rides along too: the weights of a step sum to 1);
    - an LSTM's gates are reordered i, f, o, g: one sigmoid, one tanh; a GRU's
      rows are r, z, then the hidden and the input halves of its candidate;
    - the step's tensors live in buffers allocated once, updated in place:
      allocating them afresh each step costs as much as the arithmetic.

    Inference only: no dropout, no autograd, the model in eval mode.
    """

    @staticmethod
    def can_decode(model: Seq2Seq) -> bool:
        """Whether this decoder has `model`'s output layer: it reads [c_t ; h_t]
        (Luong's) only; the loop decodes the others."""
        return model.cfg.output == "context"

    @torch.no_grad()
    def __init__(self, model: Seq2Seq) -> None:
        if model.training:
            raise ValueError("the packed decoder is for inference: call model.eval()")
        if not self.can_decode(model):
            raise ValueError("the packed decoder reads [c_t ; h_t]: use the loop")
        self.model = model
        dec = model.decoder
        self.lstm = dec.cell_kind == "lstm"
        self.hidden = model.cfg.decoder_hidden
        self.vocab = model.cfg.vocab_size
        self.weights = []  # per layer: (gates, hidden + inputs)
        for i, cell in enumerate(dec.cells):
            if i == 0:  # input gates of every token: a column per token
                w_x = torch.addmm(
                    cell.bias_ih[:, None], cell.weight_ih, dec.embedding.weight.T
                )
            else:  # the layer below, then a ones row for the bias
                w_x = torch.cat([cell.weight_ih, cell.bias_ih[:, None]], 1)
            self.weights.append(
                _stacked_weights(cell.weight_hh, w_x, cell.bias_hh, self.lstm)
            )
        self.tokens = torch.arange(self.vocab)[:, None]  # (vocab, 1)
        self.attention = dec.attention
        out_w = dec.out.weight  # (vocab, [enc_hidden +] dec_hidden)
        self.w_out_h = out_w[:, -self.hidden :]
        self.b_out = dec.out.bias[:, None]
        if self.attention is not None:
            # What is computed once per source position: its key, W_k o_j
            # (o_j itself for dot attention), then W_c o_j.
            key_proj = getattr(self.attention, "key_proj", None)
            w_key = key_proj.weight if key_proj else torch.eye(self.hidden)
            self.key_dim = w_key.size(0)
            self.w_keys = torch.cat([w_key, out_w[:, : -self.hidden]])
        self.w_query = self.v = None  # additive attention's query side
        if hasattr(self.attention, "query_proj"):
            self.w_query = self.attention.query_proj.weight  # (attn, dec_hidden)
            self.v = self.attention.v.weight[0][:, None]  # (attn, 1)

    def _cell(self, weights: torch.Tensor, x: torch.Tensor, gates, c) -> None:  # noqa: ANN001
        """One cell, batch last, in place: x = [h ; input] (rows, B) gets the
        new h in its first rows; c (hidden, B) is updated for an LSTM."""
        n = self.hidden
        torch.mm(weights, x, out=gates)
        h = x[:n]
        if self.lstm:
            gates[: 3 * n].sigmoid_()
            i, f, o, g = gates.split(n)
            c.mul_(f).addcmul_(i, g.tanh_())
            torch.mul(o, c.tanh(), out=h)
        else:
            rz = gates[: 2 * n].sigmoid_()
            new = gates[3 * n :].addcmul_(rz[:n], gates[2 * n : 3 * n]).tanh_()
            torch.addcmul(new, rz[n:], h - new, out=h)

    @torch.no_grad()
    def decode(
        self,
        src: torch.Tensor,
        max_len: int,
        src_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Decode greedily: ids and log-probabilities (batch, steps), attention
        (batch, steps, src_len).

        As `unroll(model, src, FreeRunning(max_len))`: a row that has emitted
        <EOS> emits <PAD> from then on (its log-probabilities are for the
        caller to drop); decoding ends when every row has finished.
        """
        model, n, batch = self.model, self.hidden, src.size(0)
        outputs, enc_state = model.encoder(src, src_lengths)  # (B, S, enc_hidden)
        h0, c0 = model.decoder.init_state(enc_state)
        xs = []  # per layer, [h ; input] (rows, B): layer 0's input is one-hot
        for i, weights in enumerate(self.weights):
            x = torch.empty(weights.size(1), batch)
            x[:n] = h0[i].T
            if i > 0:
                x[-1] = 1.0
            xs.append(x)
        cs = [c.T.contiguous() for c in c0] if c0 is not None else None
        gates = torch.empty(self.weights[0].size(0), batch)
        logits = torch.empty(max_len, self.vocab, batch)
        out = torch.empty(max_len, batch, dtype=torch.long)
        best = torch.empty(batch)
        if self.attention is not None:
            # One matmul turns the outputs batch-last as it projects them
            # (cheaper than a transposing copy): (S, key_dim + vocab, B).
            projected = torch.matmul(self.w_keys, outputs.permute(1, 2, 0))
            prepared = projected[:, : self.key_dim]  # (S, key_dim, B)
            values = projected[:, self.key_dim :].add_(self.b_out)  # W_c o_j + b
            scored = torch.empty(prepared.shape)
            weighted = torch.empty(values.shape)
            blocked = (src == PAD_ID).T  # (S, B)
            if not bool(blocked.any()) or not model.cfg.mask_attention:
                blocked = None
            weights = torch.empty(max_len, src.size(1), batch)
        finished = torch.zeros(batch, dtype=torch.bool)
        fed = torch.full((batch,), GO_ID, dtype=torch.long)
        steps = 0
        while steps < max_len:
            t, steps = steps, steps + 1
            query = xs[-1][:n]  # h_{t-1} of the top layer
            if self.attention is not None:
                if self.w_query is None:  # dot / general: prepared . query
                    scores = torch.mul(prepared, query, out=scored).sum(1)
                else:  # additive: v . tanh(W_q q + W_k o)
                    torch.add(prepared, self.w_query @ query, out=scored)
                    scores = scored.tanh_().mul_(self.v).sum(1)
                if blocked is not None:
                    scores.masked_fill_(blocked, float("-inf"))
                weights[t] = torch.softmax(scores, dim=0)  # (S, B)
            xs[0][n:] = fed == self.tokens  # one-hot (vocab, B)
            for i, x in enumerate(xs):
                if i > 0:
                    x[n : 2 * n] = xs[i - 1][:n]
                self._cell(self.weights[i], x, gates, cs[i] if cs else None)
            step = logits[t]
            if self.attention is not None:  # W_c c_t + b, then W_h h_t
                torch.sum(
                    torch.mul(values, weights[t, :, None], out=weighted), 0, out=step
                )
                step.addmm_(self.w_out_h, xs[-1][:n])
            else:
                torch.addmm(self.b_out, self.w_out_h, xs[-1][:n], out=step)
            torch.max(step, 0, out=(best, out[t]))  # the first of equal maxima
            fed = out[t].masked_fill_(finished, PAD_ID)
            finished |= fed == EOS_ID
            if bool(finished.all()):
                break
        logits, out = logits[:steps], out[:steps]
        logp = (logits.gather(1, out[:, None])[:, 0] - logits.logsumexp(1)).T
        attention = None
        if self.attention is not None:
            attention = weights[:steps].permute(2, 0, 1)  # (B, steps, S)
        return out.T, attention, logp
