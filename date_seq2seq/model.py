"""The encoder-decoder: an LSTM (or GRU) encoder and a cell-by-cell decoder.

At step t the decoder's previous top hidden state h_{t-1} queries the encoder
outputs, giving the context c_t; the cell then steps on the previous token and
the output layer reads [c_t ; h_t]. The context never feeds the recurrence, so
under teacher forcing the whole decoder runs as ONE fused `nn.LSTM` call with
the cells' own weights, and attention for all steps as batched matmuls: the
same numbers as stepping, far fewer calls. `decode_step` is the other path,
used by autoregressive decoding; tests check that the two agree.

References: Luong et al. 2015 (general/dot attention), Bahdanau et al. 2015
(additive), d2l.ai chapter 10 (seq2seq), the classic Keras date-conversion
tutorial this task comes from.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .attention import Attended, Memory, make_attention
from .config import ModelConfig

# An RNN state: h (layers, batch, hidden) and, for an LSTM, c of the same shape.
State = tuple[torch.Tensor, torch.Tensor | None]

_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}
_CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}


class Encoder(nn.Module):
    """Embed the source characters and run a (stacked) RNN over them."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = _RNNS[cfg.cell](
            cfg.embedding_dim,
            cfg.encoder_hidden,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            batch_first=True,
        )

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Encode. src (batch, src_len) -> outputs (batch, src_len, hidden), state."""
        x = self.dropout(self.embedding(src))  # (batch, src_len, emb)
        ragged = src_lengths is not None and bool((src_lengths != src.size(1)).any())
        if ragged:
            # Packing keeps padding out of the final state; dates never need it.
            packed = pack_padded_sequence(
                x, src_lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            outputs, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(
                outputs, batch_first=True, total_length=src.size(1)
            )
        else:
            outputs, state = self.rnn(x)
        h, c = state if isinstance(state, tuple) else (state, None)
        return outputs, (h, c)


class StepOutput(NamedTuple):
    logits: torch.Tensor  # (batch, vocab)
    state: State
    query: torch.Tensor  # (batch, dec_hidden): h_{t-1}, what attention was asked with
    attended: Attended | None  # each field (batch, 1, ...) ; None without attention


class Decoder(nn.Module):
    """Cell-by-cell decoder with optional attention over the encoder outputs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cell_kind = cfg.cell
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        sizes = [cfg.embedding_dim] + [cfg.decoder_hidden] * (cfg.num_layers - 1)
        self.cells = nn.ModuleList(
            _CELLS[cfg.cell](size, cfg.decoder_hidden) for size in sizes
        )
        # A different encoder size needs a bridge from its state to ours.
        self.bridge_h = self.bridge_c = None
        if cfg.encoder_hidden != cfg.decoder_hidden:
            self.bridge_h = nn.Linear(cfg.encoder_hidden, cfg.decoder_hidden)
            if cfg.cell == "lstm":
                self.bridge_c = nn.Linear(cfg.encoder_hidden, cfg.decoder_hidden)
        self.attention = make_attention(
            cfg.attention, cfg.encoder_hidden, cfg.decoder_hidden
        )
        out_in = cfg.decoder_hidden + (cfg.encoder_hidden if self.attention else 0)
        self.out = nn.Linear(out_in, cfg.vocab_size)
        self.layer_dropout = cfg.dropout if cfg.num_layers > 1 else 0.0

    def init_state(self, encoder_state: State) -> State:
        """Start from the encoder's final state, bridged if the sizes differ."""
        h, c = encoder_state
        if self.bridge_h is not None:
            h = torch.tanh(self.bridge_h(h))
            c = torch.tanh(self.bridge_c(c)) if self.bridge_c is not None else None
        return h, c

    def memory(self, outputs: torch.Tensor, mask: torch.Tensor) -> Memory:
        """Package encoder outputs for attention, projecting the keys once."""
        prepared = self.attention.prepare(outputs) if self.attention else outputs
        return Memory(outputs, prepared, mask)

    def step(self, prev: torch.Tensor, state: State, memory: Memory) -> StepOutput:
        """Decode one token. prev (batch,) ids -> logits (batch, vocab), new state."""
        h, c = state  # (layers, batch, dec_hidden) each
        query = h[-1]  # (batch, dec_hidden): the PREVIOUS top hidden state
        attended = self.attention(query[:, None], memory) if self.attention else None
        x = self.dropout(self.embedding(prev))  # (batch, emb)
        new_h, new_c = [], []
        for layer, cell in enumerate(self.cells):
            if layer > 0:
                x = self.dropout(x)
            if c is None:
                x = cell(x, h[layer])
            else:
                x, c_layer = cell(x, (h[layer], c[layer]))
                new_c.append(c_layer)
            new_h.append(x)
        top = x  # (batch, dec_hidden)
        if attended is not None:
            top = torch.cat([attended.context[:, 0], top], dim=-1)
        logits = self.out(top)  # (batch, vocab)
        state = (torch.stack(new_h), torch.stack(new_c) if c is not None else None)
        return StepOutput(logits, state, query, attended)

    def forward(
        self, tgt_in: torch.Tensor, state: State, memory: Memory
    ) -> tuple[torch.Tensor, Attended | None]:
        """Teacher-forced decode of all steps at once.

        Args:
            tgt_in: (batch, tgt_len) ids, <GO> followed by the target minus its end.
        Returns:
            logits (batch, tgt_len, vocab) and the attention of every step.
        """
        x = self.dropout(self.embedding(tgt_in))  # (batch, tgt_len, emb)
        h0, c0 = state
        # The multi-layer RNN op nn.LSTM / nn.GRU call, run on the cells' own
        # weights: one fused kernel (forward and backward) for all steps.
        weights = [
            getattr(cell, name)
            for cell in self.cells
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        layers, dropout, train = len(self.cells), self.layer_dropout, self.training
        # (weights, has_biases, layers, dropout, train, bidirectional, batch_first)
        rnn_args = (weights, True, layers, dropout, train, False, True)
        if c0 is None:
            hidden, _ = torch.gru(x, h0, *rnn_args)
        else:
            hidden, _, _ = torch.lstm(x, (h0, c0), *rnn_args)
        # hidden: (batch, tgt_len, dec_hidden)
        if self.attention is None:
            return self.out(hidden), None
        # Step t is queried by h_{t-1}: the initial state, then outputs 1..T-1.
        queries = torch.cat([h0[-1][:, None], hidden[:, :-1]], dim=1)
        attended = self.attention(queries, memory)
        logits = self.out(torch.cat([attended.context, hidden], dim=-1))
        return logits, attended


class Seq2Seq(nn.Module):
    """Encoder + decoder. Returns logits; the loss lives in training."""

    def __init__(self, cfg: ModelConfig, pad_id: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier for matrices (d2l's recipe), zero biases, LSTM forget gates at 1."""
        for name, p in self.named_parameters():
            if "embedding" in name:
                nn.init.normal_(p, std=1.0)
            elif p.dim() >= 2:
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)
        if self.cfg.cell == "lstm":
            # Remembering by default helps an LSTM start; gates are i, f, g, o.
            for name, p in self.named_parameters():
                if "bias_ih" in name:
                    hidden = p.numel() // 4
                    p[hidden : 2 * hidden] = 1.0

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
    ) -> tuple[Memory, State]:
        """Encode sources (batch, src_len) into attention memory and decoder state."""
        outputs, enc_state = self.encoder(src, src_lengths)
        mask = src != self.pad_id  # (batch, src_len)
        return self.decoder.memory(outputs, mask), self.decoder.init_state(enc_state)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Attended | None]:
        """Teacher-forced logits (batch, tgt_len, vocab) and attention."""
        memory, state = self.encode(src, src_lengths)
        return self.decoder(tgt_in, state, memory)

    def decode_step(
        self, prev: torch.Tensor, state: State, memory: Memory
    ) -> StepOutput:
        """One autoregressive step; see Decoder.step."""
        return self.decoder.step(prev, state, memory)

    def forward_stepwise(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits computed step by step (the reference path)."""
        memory, state = self.encode(src, src_lengths)
        logits = []
        for t in range(tgt_in.size(1)):
            out = self.decode_step(tgt_in[:, t], state, memory)
            logits.append(out.logits)
            state = out.state
        return torch.stack(logits, dim=1)  # (batch, tgt_len, vocab)
