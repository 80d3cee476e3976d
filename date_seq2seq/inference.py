"""Greedy decoding for throughput: the decoder step rearranged, same numbers.

Converting thousands of dates is bound by many small element-wise ops per
step, and on a CPU a reduction over a short last dimension (8 source
positions, 27 tokens) is several times slower than one over a long dimension.
So this path keeps the BATCH as the last dimension – every reduction runs
along contiguous rows of the batch – packs the weights once, and folds what
only needs doing once:

- layer 0's input gates for every token, `Embedding @ W_ih + b`, become a
  table: one matmul with a one-hot column per row replaces embedding + matmul;
- the output layer's context half is applied to the encoder outputs once,
  `W_c c_t = sum_j a_tj (W_c o_j)`, so no context vector is built per step
  (its bias rides along: the weights of a step sum to 1);
- an LSTM's gates are reordered i, f, o, g: one sigmoid, one tanh.

Inference only (no dropout, no autograd, eval mode). `Decoder.step` stays
the reference; tests check that both give the same tokens, log-probabilities
and attention for every cell, attention and depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import Seq2Seq


@dataclass(frozen=True)
class _Layer:
    w_in: torch.Tensor  # (gates, in): the input weights; layer 0 uses the table
    w_hh: torch.Tensor  # (gates, hidden)
    b_in: torch.Tensor  # (gates, 1): input bias (LSTM: both biases)
    b_hh: torch.Tensor  # (gates, 1): GRU's hidden bias (it sits inside r * (.))


def _lstm_order(w: torch.Tensor, hidden: int) -> torch.Tensor:
    i, f, g, o = w.split(hidden)
    return torch.cat([i, f, o, g])


class PackedDecoder:
    """A model's decoder packed for batch-last greedy decoding."""

    @torch.no_grad()
    def __init__(self, model: Seq2Seq) -> None:
        if model.training:
            raise ValueError("the packed decoder is for inference: call model.eval()")
        dec = model.decoder
        self.lstm = dec.cell_kind == "lstm"
        self.hidden = model.cfg.decoder_hidden
        self.layers: list[_Layer] = []
        for cell in dec.cells:
            w_ih, w_hh, b_ih, b_hh = (
                cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
            )  # fmt: skip
            if self.lstm:
                w_ih, w_hh = (_lstm_order(w, self.hidden) for w in (w_ih, w_hh))
                b_in = _lstm_order(b_ih + b_hh, self.hidden)
                b_hh = torch.zeros_like(b_in)
            else:
                b_in = b_ih
            self.layers.append(_Layer(w_ih, w_hh, b_in[:, None], b_hh[:, None]))
        first = self.layers[0]
        # Input gates of every token: (gates, vocab), picked by a one-hot product.
        self.table = torch.addmm(first.b_in, first.w_in, dec.embedding.weight.T)
        vocab = model.cfg.vocab_size
        self.tokens = torch.arange(vocab)[:, None]  # (vocab, 1)
        self.attention = dec.attention
        out_w = dec.out.weight  # (vocab, [enc_hidden +] dec_hidden)
        self.w_out_h = out_w[:, -self.hidden :]
        self.w_out_c = out_w[:, : -self.hidden] if self.attention else None
        self.b_out = dec.out.bias[:, None]
        if self.attention is not None and hasattr(self.attention, "query_proj"):
            self.w_query = self.attention.query_proj.weight  # (attn, dec_hidden)
            self.v = self.attention.v.weight[0][:, None]  # (attn, 1)
        else:
            self.w_query = self.v = None

    def _cell(self, layer: _Layer, x_gates: torch.Tensor, h, c):  # noqa: ANN001
        """One cell, batch last: x_gates (gates, B), h and c (hidden, B)."""
        n = self.hidden
        if self.lstm:
            gates = x_gates.addmm_(layer.w_hh, h)  # x_gates is ours to overwrite
            s = gates[: 3 * n].sigmoid()
            c = torch.addcmul(s[n : 2 * n] * c, s[:n], gates[3 * n :].tanh())
            return s[2 * n :] * c.tanh(), c
        gh = torch.addmm(layer.b_hh, layer.w_hh, h)
        rz = (x_gates[: 2 * n] + gh[: 2 * n]).sigmoid()
        new = torch.addcmul(x_gates[2 * n :], rz[:n], gh[2 * n :]).tanh()
        return torch.addcmul(new, rz[n:], h - new), None

    def _scores(self, prepared: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Raw scores (src_len, B) for prepared keys (src_len, dim, B)."""
        if self.w_query is None:  # dot / general: prepared . query
            return (prepared * query).sum(1)
        q = self.w_query @ query  # additive: v . tanh(W_q q + W_k o)
        return (torch.tanh(prepared + q) * self.v).sum(1)

    @torch.no_grad()
    def greedy(
        self,
        model: Seq2Seq,
        src: torch.Tensor,
        max_len: int,
        src_lengths: torch.Tensor | None = None,
        ids: tuple[int, int, int] = (0, 1, 2),
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Decode greedily: ids and logp (B, steps), attention (B, steps, S).

        `ids` are the <PAD>, <GO> and <EOS> ids. A row that has emitted <EOS>
        is fed <PAD> and emits <PAD> from then on (its log-probabilities are
        for the caller to drop); decoding ends when every row has ended.
        """
        pad_id, bos_id, eos_id = ids
        memory, (h0, c0) = model.encode(src, src_lengths)
        batch = src.size(0)
        h = list(h0.transpose(1, 2).contiguous())  # per layer (hidden, B)
        c = list(c0.transpose(1, 2).contiguous()) if c0 is not None else None
        if self.attention is not None:
            keys = memory.keys  # (B, S, enc_hidden)
            prepared = memory.prepared.permute(1, 2, 0).contiguous()  # (S, dim, B)
            # W_c o_j + b for every source position: (S, vocab, B).
            values = torch.einsum("bsk,vk->svb", keys, self.w_out_c) + self.b_out
            blocked = ~memory.mask.T  # (S, B)
            blocked = blocked if bool(blocked.any()) else None
        prev = torch.full((1, batch), bos_id, dtype=torch.long)
        out, weights, steps = [], [], []
        done = torch.zeros(batch, dtype=torch.bool)
        for _ in range(max_len):
            if self.attention is not None:
                scores = self._scores(prepared, h[-1])  # queried by h_{t-1}
                if blocked is not None:
                    scores = scores.masked_fill(blocked, float("-inf"))
                weight = torch.softmax(scores, dim=0)  # (S, B)
                weights.append(weight)
            x = self.table @ (prev == self.tokens).float()  # (gates, B)
            for i, layer in enumerate(self.layers):
                if i > 0:
                    x = torch.addmm(layer.b_in, layer.w_in, h[i - 1])
                h[i], c_i = self._cell(layer, x, h[i], c[i] if c else None)
                if c is not None:
                    c[i] = c_i
            if self.attention is not None:
                logits = (values * weight[:, None]).sum(0)  # W_c c_t + b: (vocab, B)
                logits.addmm_(self.w_out_h, h[-1])
            else:
                logits = torch.addmm(self.b_out, self.w_out_h, h[-1])
            steps.append(logits)
            _, token = logits.max(0)  # the first of equal maxima, as argmax
            prev = token.masked_fill(done, pad_id)[None]  # (1, B)
            out.append(prev[0])
            done |= prev[0] == eos_id
            if bool(done.all()):
                break
        logits = torch.stack(steps)  # (steps, vocab, B)
        chosen = logits.gather(1, torch.stack(out)[:, None])  # (steps, 1, B)
        logp = (chosen[:, 0] - logits.logsumexp(1)).T  # (B, steps)
        attention = None
        if weights:
            attention = torch.stack(weights).permute(2, 0, 1)  # (B, steps, S)
        return torch.stack(out, 1), attention, logp
