"""The classic date-conversion tutorial's model and loop, re-implemented faithfully.

This is the benchmark's baseline, not part of the product: a per-step
`LSTMCell` decoder whose attention projection `W o_j` is recomputed at every
step, batches of 32 drawn at random with replacement, Adam 1e-3, embedding 16,
hidden 32, and inference that always runs 11 steps, ignoring <EOS>. Its bugs
that would change the *result* (local time zone, hash-seeded vocabulary) are
not copied: it trains on exactly the same data and vocabulary as our model,
so only the speed differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from date_seq2seq.data import DateDataset
from date_seq2seq.metrics import id_exact_matches

STEPS_OUT = 11  # the tutorial decodes a fixed 11 steps


class TutorialSeq2Seq(nn.Module):
    def __init__(self, vocab_size: int, emb: int = 16, units: int = 32) -> None:
        super().__init__()
        self.enc_embeddings = nn.Embedding(vocab_size, emb)
        self.encoder = nn.LSTM(emb, units, batch_first=True)
        self.dec_embeddings = nn.Embedding(vocab_size, emb)
        self.attention_w = nn.Linear(units, units, bias=False)  # Luong "general"
        self.decoder_cell = nn.LSTMCell(emb, units)
        self.decoder_dense = nn.Linear(2 * units, vocab_size)

    def encode(self, x: torch.Tensor):
        o, (h, c) = self.encoder(self.enc_embeddings(x))
        return o, (h[0], c[0])

    def step(self, token, o, h, c):
        # As in the tutorial: the key projection is recomputed at every step.
        score = torch.bmm(self.attention_w(o), h[:, :, None]).squeeze(-1)
        alpha = torch.softmax(score, dim=-1)
        context = torch.bmm(alpha[:, None], o).squeeze(1)
        h, c = self.decoder_cell(self.dec_embeddings(token), (h, c))
        return self.decoder_dense(torch.cat([context, h], dim=-1)), h, c

    def train_logits(self, x: torch.Tensor, y_in: torch.Tensor) -> torch.Tensor:
        o, (h, c) = self.encode(x)
        out = []
        for t in range(y_in.size(1)):
            logits, h, c = self.step(y_in[:, t], o, h, c)
            out.append(logits)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def inference(self, x: torch.Tensor, go_id: int) -> torch.Tensor:
        o, (h, c) = self.encode(x)
        token = torch.full((x.size(0),), go_id, dtype=torch.long)
        out = []
        for _ in range(STEPS_OUT):  # never stops at <EOS>
            logits, h, c = self.step(token, o, h, c)
            token = logits.argmax(dim=-1)
            out.append(token)
        return torch.stack(out, dim=1)


def exact_match(
    model: TutorialSeq2Seq, pairs: DateDataset, go_id: int, eos_id: int
) -> float:
    """Held-out exact match, reading the fixed-length output up to its first <EOS>."""
    pred = model.inference(pairs.src, go_id)
    ended = torch.cumsum(pred == eos_id, dim=1) - (pred == eos_id).long() > 0
    pred = pred.masked_fill(ended, 0)  # what comes after <EOS> is ignored
    return float(id_exact_matches(pred, pairs.tgt[:, 1:], 0).float().mean())


def train_to_accuracy(
    train: DateDataset,
    held_out: DateDataset,
    vocab_size: int,
    target: float,
    seed: int = 0,
    eval_every: int = 100,
    max_seconds: float = 300.0,
    go_id: int = 1,
    eos_id: int = 2,
    on_eval: Callable[[int, float, float], None] | None = None,
) -> dict[str, float]:
    """Train the tutorial way until held-out exact match >= target.

    Evaluation time is NOT counted in the training seconds (in the baseline's
    favour). Returns steps, seconds, final held-out exact match.
    """
    torch.manual_seed(seed)
    model = TutorialSeq2Seq(vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    seconds, step, exact = 0.0, 0, 0.0
    while seconds < max_seconds:
        started = time.perf_counter()
        for _ in range(eval_every):
            index = torch.randint(0, len(train), (32,), generator=gen)
            x, y = train.src[index], train.tgt[index]
            logits = model.train_logits(x, y[:, :-1])
            loss = loss_fn(logits.reshape(-1, vocab_size), y[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        seconds += time.perf_counter() - started
        model.eval()
        exact = exact_match(model, held_out, go_id, eos_id)
        model.train()
        if on_eval is not None:
            on_eval(step, seconds, exact)
        if exact >= target:
            break
    return {"steps": step, "seconds": seconds, "held_out_exact_match": exact,
            "reached": exact >= target, "model": model}  # fmt: skip
