"""The encoder-decoder, and the ONE loop that decodes with it.

The encoder reads the source characters. The decoder then emits one token per
step: at step t its previous top hidden state h_{t-1} queries the encoder
outputs (attention), giving the context c_t; the cell steps on the token fed
to it; the output layer reads [c_t ; h_t] and scores every next token.

What the decoder is FED at each step is the whole lesson of seq2seq training
and inference, so it is one argument of one loop, `unroll`:

- `TeacherForcing`: the true previous token (training);
- `FreeRunning`: its own previous argmax (inference: greedy decoding);
- `ScheduledSampling`: a coin per token picks between the two (the classic
  remedy for exposure bias, the gap between the first two);
- `Imposed`: tokens a person forces at chosen steps, its own argmax elsewhere
  (the step-through: push the decoder off course, watch it recover).

`Seq2Seq.forward` (teacher forcing) and the packed greedy decoder are fast
paths of this same loop – fastpaths.py – and tests hold them equal to it.

References: Luong et al. 2015 (general/dot attention), Bahdanau et al. 2015
(additive), Bengio et al. 2015 (scheduled sampling), d2l.ai chapter 10
(seq2seq), the classic Keras date-conversion tutorial this task comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import fastpaths
from .attention import Attended, Memory, make_attention
from .config import ModelConfig
from .rng import global_rng_untouched
from .vocab import EOS_ID, GO_ID, PAD_ID

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
            bidirectional=cfg.bidirectional,
        )

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Encode. src (batch, src_len) -> outputs (batch, src_len, hidden), state."""
        x = self.dropout(self.embedding(src))  # (batch, src_len, emb)
        if src_lengths is None:
            src_lengths = source_lengths(src)
        if bool((src_lengths != src.size(1)).any()):  # some rows padded
            # Packing keeps padding out of the final state.
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
        if self.rnn.bidirectional:  # (layers * 2, B, H) -> (layers, B, 2H)
            h, c = _both_ways(h), (_both_ways(c) if c is not None else None)
        return outputs, (h, c)


def source_lengths(src: torch.Tensor) -> torch.Tensor:
    """Each source's length (batch,): padding comes last, never inside one."""
    return (src != PAD_ID).sum(dim=1)


def _both_ways(state: torch.Tensor) -> torch.Tensor:
    """A bidirectional RNN's final states, each layer's two directions side by side."""
    layers2, batch, hidden = state.shape
    both = state.view(layers2 // 2, 2, batch, hidden)
    return torch.cat([both[:, 0], both[:, 1]], dim=-1)


class StepOutput(NamedTuple):
    logits: torch.Tensor  # (batch, vocab)
    state: State
    query: torch.Tensor  # (batch, dec_hidden): h_{t-1}, what attention was asked with
    attended: Attended | None  # each field (batch, 1, ...); None without attention


class Decoder(nn.Module):
    """Cell-by-cell decoder with optional attention over the encoder outputs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cell_kind = cfg.cell
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        # Bahdanau's input feeding: the context goes into the cell with the token.
        self.feeds_context = cfg.output == "input"
        self.context_to_output = cfg.output == "context" and cfg.attention != "none"
        first = cfg.embedding_dim + (cfg.encoder_output if self.feeds_context else 0)
        sizes = [first] + [cfg.decoder_hidden] * (cfg.num_layers - 1)
        self.cells = nn.ModuleList(
            _CELLS[cfg.cell](size, cfg.decoder_hidden) for size in sizes
        )
        # A different encoder size needs a bridge from its state to ours.
        self.bridge_h = self.bridge_c = None
        if cfg.encoder_output != cfg.decoder_hidden:
            self.bridge_h = nn.Linear(cfg.encoder_output, cfg.decoder_hidden)
            if cfg.cell == "lstm":
                self.bridge_c = nn.Linear(cfg.encoder_output, cfg.decoder_hidden)
        self.attention = make_attention(
            cfg.attention, cfg.encoder_output, cfg.decoder_hidden
        )
        out_in = cfg.decoder_hidden + (
            cfg.encoder_output if self.context_to_output else 0
        )
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

    def step(self, fed: torch.Tensor, state: State, memory: Memory) -> StepOutput:
        """Decode one token. fed (batch,) ids -> logits (batch, vocab), new state."""
        h, c = state  # (layers, batch, dec_hidden) each
        query = h[-1]  # (batch, dec_hidden): the PREVIOUS top hidden state
        attended = self.attention(query[:, None], memory) if self.attention else None
        x = self.dropout(self.embedding(fed))  # (batch, emb)
        if self.feeds_context:  # input feeding: [token ; c_t] into the cell
            x = torch.cat([x, attended.context[:, 0]], dim=-1)
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
        if self.context_to_output:  # Luong's: the output reads [c_t ; h_t]
            top = torch.cat([attended.context[:, 0], top], dim=-1)
        logits = self.out(top)  # (batch, vocab)
        state = (torch.stack(new_h), torch.stack(new_c) if c is not None else None)
        return StepOutput(logits, state, query, attended)


class Seq2Seq(nn.Module):
    """Encoder + decoder. Returns logits; the loss lives in training."""

    def __init__(
        self, cfg: ModelConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        # Constructors initialise from the global generator; ours replaces that.
        with global_rng_untouched():
            self.encoder = Encoder(cfg)
            self.decoder = Decoder(cfg)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier for matrices (d2l's recipe), zero biases, LSTM forget gates at 1.

        Draws from `generator` (torch's global one if None), so a run that
        owns a generator owns its initial weights.
        """
        for name, p in self.named_parameters():
            if "embedding" in name:
                nn.init.normal_(p, std=1.0, generator=generator)
            elif p.dim() >= 2:
                nn.init.xavier_uniform_(p, generator=generator)
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
        mask = src != PAD_ID  # (batch, src_len): True on real input
        if not self.cfg.mask_attention:  # the exercise: padding looked at too
            mask = torch.ones_like(mask)
        return self.decoder.memory(outputs, mask), self.decoder.init_state(enc_state)

    def decode_step(
        self, fed: torch.Tensor, state: State, memory: Memory
    ) -> StepOutput:
        """One decoder step; see Decoder.step."""
        return self.decoder.step(fed, state, memory)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Attended | None]:
        """Teacher-forced logits (batch, tgt_len, vocab) and attention, fast.

        tgt_in is <GO> + target[:-1]. The same numbers as
        `unroll(model, src, TeacherForcing(target[1:]))`, by one fused RNN call
        instead of a step per token (fastpaths.teacher_forced). With input
        feeding a step needs the context of its own query first, so nothing
        can be fused: the loop runs, fed the truth.
        """
        if self.decoder.feeds_context:
            emitted = torch.cat(
                [tgt_in[:, 1:], torch.full_like(tgt_in[:, :1], PAD_ID)], 1
            )
            run = unroll(self, src, TeacherForcing(emitted), src_lengths)
            return run.logits, run.attended
        return fastpaths.teacher_forced(self, src, tgt_in, src_lengths)


# --- what the decoder is fed: the feed policies ------------------------------
# A policy is called after every step with the step's logits and returns the
# token each row EMITS there; that token is what the next step is fed.


class Feed:
    """Base class: `steps` at most, and `__call__` choosing each step's token."""

    steps: int
    # Whether a row ends at the <EOS> it emits (decoding), or runs every step
    # to be scored against the whole target (training, whatever it is fed).
    ends_at_eos: bool = True

    def __call__(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        """Return the tokens (batch,) emitted at step t, given its logits."""
        raise NotImplementedError


class TeacherForcing(Feed):
    """Emit (and so feed on) the true token, whatever the model predicted."""

    ends_at_eos = False

    def __init__(self, tgt_out: torch.Tensor) -> None:
        self.tgt_out = tgt_out  # (batch, tgt_len): the target after <GO>
        self.steps = tgt_out.size(1)

    def __call__(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        return self.tgt_out[:, t]


class FreeRunning(Feed):
    """Emit the model's own argmax: greedy decoding, as at inference time."""

    def __init__(self, max_len: int) -> None:
        self.steps = max_len

    def __call__(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)


class ScheduledSampling(Feed):
    """Per token, a coin: the model's own argmax with probability p, else the truth.

    p = 0 is teacher forcing, p = 1 free-running scored against the truth.
    The coins come from `generator`, so a run draws them from its own seed.
    An <EOS> the model emits early is fed on like any token: every step is
    scored against the target.
    """

    ends_at_eos = False

    def __init__(
        self, tgt_out: torch.Tensor, p: float, generator: torch.Generator
    ) -> None:
        self.tgt_out, self.p, self.generator = tgt_out, p, generator
        self.steps = tgt_out.size(1)

    def __call__(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        truth = self.tgt_out[:, t]
        coin = torch.rand(truth.shape, generator=self.generator) < self.p
        coin &= truth != PAD_ID  # past the target's end there is nothing to feed
        return torch.where(coin, logits.argmax(dim=-1), truth)


class Imposed(Feed):
    """Emit `forced[t]` at the steps it names, the model's own argmax elsewhere."""

    def __init__(self, forced: Mapping[int, int], max_len: int) -> None:
        self.forced = dict(forced)  # step -> token id, the same for every row
        self.steps = max_len

    def __call__(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        own = logits.argmax(dim=-1)
        return torch.full_like(own, self.forced[t]) if t in self.forced else own


class Unrolled(NamedTuple):
    """Every step of one decoding run, stacked along dim 1."""

    tokens: torch.Tensor  # (batch, steps): emitted (and fed on); <PAD> after <EOS>
    logits: torch.Tensor  # (batch, steps, vocab)
    queries: torch.Tensor  # (batch, steps, dec_hidden): h_{t-1} of each step
    attended: Attended | None  # each field (batch, steps, ...); None without


def unroll(
    model: Seq2Seq,
    src: torch.Tensor,
    feed: Feed,
    src_lengths: torch.Tensor | None = None,
) -> Unrolled:
    """Decode src (batch, src_len) step by step, fed as `feed` decides.

    Step 0 is fed <GO>. When decoding (`feed.ends_at_eos`), a row that has
    emitted <EOS> is finished: it emits <PAD> from then on, and the loop ends
    once every row has. It ends after `feed.steps` steps in any case.
    """
    if feed.steps < 1:
        raise ValueError("a decoding run needs at least one step")
    memory, state = model.encode(src, src_lengths)
    fed = torch.full((src.size(0),), GO_ID, dtype=torch.long)
    finished = torch.zeros(src.size(0), dtype=torch.bool)
    tokens, logits, queries, attended = [], [], [], []
    for t in range(feed.steps):
        out = model.decode_step(fed, state, memory)
        emitted = feed(t, out.logits).masked_fill(finished, PAD_ID)
        tokens.append(emitted)
        logits.append(out.logits)
        queries.append(out.query)
        attended.append(out.attended)
        if feed.ends_at_eos:
            finished |= emitted == EOS_ID
        fed, state = emitted, out.state
        if bool(finished.all()):
            break
    stacked = None
    if attended[0] is not None:
        stacked = Attended(
            *(torch.cat([getattr(a, f) for a in attended], dim=1)
              for f in Attended._fields)
        )  # fmt: skip
    return Unrolled(
        torch.stack(tokens, dim=1),
        torch.stack(logits, dim=1),
        torch.stack(queries, dim=1),
        stacked,
    )
