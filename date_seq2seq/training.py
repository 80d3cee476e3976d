"""Training: teacher forcing (fused) or scheduled sampling (stepwise), Adam, clipping.

`fit` reports through a callback and asks `should_stop` at every step boundary,
so the CLI and the app render the same events and either can stop a run and
keep the model trained so far. A non-finite loss ends training with the last
good weights restored, not with a model full of NaNs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import Pairs
from .decoding import greedy
from .metrics import id_exact_matches
from .model import Seq2Seq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One training event: each step, each `eval_every` steps, each epoch's end."""

    kind: str  # "step" | "eval" | "epoch"
    step: int  # optimizer steps so far
    epoch: int  # 1-based epoch this event belongs to
    total_steps: int  # steps if every epoch runs
    loss: float  # per-token loss: of this step, or the epoch's mean
    seconds: float  # training time so far
    metrics: dict[str, float] | None = None  # held-out metrics, at epoch ends


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one per epoch
    step_losses: list[float] = field(default_factory=list)
    stop_reason: str = "epochs"  # epochs | target | requested | diverged
    message: str = ""
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction, as torch.optim.Adam computes it.

    Written out because constructing any torch.optim optimizer imports
    torch._dynamo, about 2 s on this kind of machine: longer than training.
    A test checks that the steps equal torch.optim.Adam's.
    """

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = [0] * len(params)  # per parameter, as torch counts them

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient."""
        beta1, beta2 = self.betas
        index = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in index:
            self.steps[i] += 1
        params = [self.params[i] for i in index]
        grads = [self.params[i].grad for i in index]
        m = [self.exp_avg[i] for i in index]
        v = [self.exp_avg_sq[i] for i in index]
        torch._foreach_lerp_(m, grads, 1 - beta1)  # m = b1 m + (1 - b1) g
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)  # v = b2 v + (1 - b2) g^2
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(
            denom, [math.sqrt(1 - beta2 ** self.steps[i]) for i in index]
        )
        torch._foreach_add_(denom, self.eps)
        step_sizes = [-self.lr / (1 - beta1 ** self.steps[i]) for i in index]
        torch._foreach_addcdiv_(params, m, denom, step_sizes)


@torch.no_grad()
def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """Scale all gradients down together so their joint norm is at most max_norm.

    As torch.nn.utils.clip_grad_norm_, in a few list ops instead of some per
    parameter (on CPU it goes parameter by parameter). Returns the norm before.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return float(total)


@contextlib.contextmanager
def flattened(params: list[torch.nn.Parameter]) -> Iterator[torch.nn.Parameter]:
    """Lay the parameters and their gradients out in two flat buffers.

    Yields one parameter over the whole buffer, whose .grad is the whole
    gradient buffer: the model's parameters are views into it, and backward
    accumulates into views of the gradient. Adam, clipping and the weight
    snapshot then take a few ops for the whole model instead of a few per
    parameter – on a model this small that was a third of a training step.
    Zero the gradient with `.grad.zero_()`: setting a .grad to None would
    detach it from the buffer. On exit each parameter gets its own storage again.
    """
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        size = p.numel()
        p.data = flat.data[offset : offset + size].view_as(p)
        p.grad = flat.grad[offset : offset + size].view_as(p)
        offset += size
    try:
        yield flat
    finally:
        for p in params:
            p.data = p.data.clone()
            p.grad = None


def masked_cross_entropy(
    logits: torch.Tensor, tgt_out: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over real tokens only.

    Args:
        logits: (batch, tgt_len, vocab); tgt_out: (batch, tgt_len), pad_id past the end.
    Returns:
        the per-token loss and the number of tokens it averages.
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        tgt_out.reshape(-1),
        ignore_index=pad_id,
        reduction="sum",
    )
    count = int((tgt_out != pad_id).sum())
    return total / max(count, 1), count


def sampled_logits(
    model: Seq2Seq,
    src: torch.Tensor,
    tgt_in: torch.Tensor,
    sampling_prob: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Decode stepwise, feeding the model's own argmax with sampling_prob per token.

    Returns logits (batch, tgt_len, vocab). With sampling_prob 0 this equals the
    fused teacher-forced path, only slower.
    """
    memory, state = model.encode(src)
    prev = tgt_in[:, 0]
    steps = []
    for t in range(tgt_in.size(1)):
        out = model.decode_step(prev, state, memory)
        steps.append(out.logits)
        state = out.state
        if t + 1 < tgt_in.size(1):
            own = out.logits.argmax(dim=-1)
            coin = torch.rand(prev.shape, generator=generator) < sampling_prob
            # Never replace padding: a finished sequence stays finished.
            coin &= tgt_in[:, t + 1] != model.pad_id
            prev = torch.where(coin, own, tgt_in[:, t + 1])
    return torch.stack(steps, dim=1)


@torch.no_grad()
def evaluate_pairs(model: Seq2Seq, pairs: Pairs, max_len: int) -> dict[str, float]:
    """Held-out loss, exact match, and token accuracy teacher-forced and free-running.

    Exact match is free-running only: a date is all right teacher-forced
    exactly when it is all right free-running (the same inputs follow), so it
    cannot show exposure bias. Token accuracy can: teacher-forced, every step
    is fed the truth; free-running, a mistake is fed on. Both count the
    target's positions, <EOS> included; a free run that stops early has the
    rest wrong.
    """
    was_training = model.training
    model.eval()
    try:
        tgt_in, tgt_out = pairs.tgt[:, :-1], pairs.tgt[:, 1:]  # (n, tgt_len)
        logits, _ = model(pairs.src, tgt_in)  # (n, tgt_len, vocab)
        free = greedy(model, pairs.src, max_len).ids  # (n, steps)
    finally:
        model.train(was_training)
    loss, count = masked_cross_entropy(logits, tgt_out, model.pad_id)
    real = tgt_out != model.pad_id
    steps = min(free.size(1), tgt_out.size(1))
    free_right = (free[:, :steps] == tgt_out[:, :steps]) & real[:, :steps]
    count = max(count, 1)
    return {
        "held_out_loss": float(loss),
        "held_out_exact_match": float(
            id_exact_matches(free, tgt_out, model.pad_id).float().mean()
        ),
        "held_out_token_accuracy": float(free_right.sum()) / count,
        "held_out_teacher_forced_token_accuracy": float(
            ((logits.argmax(-1) == tgt_out) & real).sum()
        )
        / count,
    }


def _own_random_state(
    train_fn: Callable[..., TrainResult],
) -> Callable[..., TrainResult]:
    """Run training with the global RNG seeded from cfg.seed inside a fork.

    nn.Dropout draws from the global RNG: seeding it in a fork makes a run
    depend on its seed alone and leaves the caller's random state unchanged.
    """

    @functools.wraps(train_fn)
    def wrapper(model: Seq2Seq, train: Pairs, held_out: Pairs, cfg: TrainConfig,
                *args: Any, **kwargs: Any) -> TrainResult:  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return train_fn(model, train, held_out, cfg, *args, **kwargs)

    return wrapper


@_own_random_state
def fit(
    model: Seq2Seq,
    train: Pairs,
    held_out: Pairs,
    cfg: TrainConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_len: int = 12,
    eval_every: int = 0,
    result: TrainResult | None = None,
) -> TrainResult:
    """Train model in place; return the history and why training ended.

    Pass `result` to watch it fill step by step: if a callback raises (the
    app's script is interrupted that way), it still holds what was done.
    Every random draw (shuffling, sampling, dropout) comes from cfg.seed. With
    eval_every > 0, held-out metrics are also reported every that many steps
    (kind "eval"), so a live chart has more than one point per epoch.
    """
    result = result if result is not None else TrainResult()
    with flattened(list(model.parameters())) as flat:
        _fit(model, train, held_out, cfg, flat, result, on_progress, should_stop,
             max_len, eval_every)  # fmt: skip
    return result


def _fit(
    model: Seq2Seq,
    train: Pairs,
    held_out: Pairs,
    cfg: TrainConfig,
    flat: torch.nn.Parameter,
    result: TrainResult,
    on_progress: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
    max_len: int,
    eval_every: int,
) -> None:
    """fit's loop, on the model's parameters laid out flat (see `flattened`)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    optimizer = Adam([flat], lr=cfg.lr)
    n = len(train)
    per_epoch = math.ceil(n / cfg.batch_size)
    good = flat.detach().clone()  # the weights of the last finite loss
    start = time.perf_counter()
    step = 0
    reached_at: int | None = None
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen)
        epoch_loss = epoch_tokens = 0.0
        for first in range(0, n, cfg.batch_size):
            if should_stop is not None and should_stop():
                result.stop_reason, result.message = "requested", "stopped on request"
                break
            index = order[first : first + cfg.batch_size]
            src, tgt = train.src[index], train.tgt[index]
            tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
            if cfg.sampling_prob > 0:
                logits = sampled_logits(model, src, tgt_in, cfg.sampling_prob, gen)
            else:
                logits, _ = model(src, tgt_in)
            loss, count = masked_cross_entropy(logits, tgt_out, model.pad_id)
            if not torch.isfinite(loss.detach()):
                with torch.no_grad():
                    flat.copy_(good)
                result.stop_reason = "diverged"
                result.message = (
                    f"the loss became {float(loss.detach())} at step {step + 1}; "
                    "training "
                    "stopped and the last good weights were restored (try a lower "
                    "learning rate)"
                )
                log.warning(result.message)
                break
            good.copy_(flat.detach())
            flat.grad.zero_()
            loss.backward()
            clip_grad_norm([flat], cfg.clip_norm)
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            result.step_losses.append(loss_value)
            epoch_loss += loss_value * count
            epoch_tokens += count
            if on_progress is not None:
                on_progress(
                    Progress(
                        "step", step, epoch, per_epoch * cfg.epochs, loss_value,
                        time.perf_counter() - start,
                    )
                )  # fmt: skip
                if eval_every and step % eval_every == 0 and len(held_out):
                    metrics = evaluate_pairs(model, held_out, max_len)
                    on_progress(
                        Progress(
                            "eval", step, epoch, per_epoch * cfg.epochs, loss_value,
                            time.perf_counter() - start, metrics,
                        )
                    )  # fmt: skip
        if epoch_tokens == 0:  # stopped before this epoch's first step
            break
        optimizer.lr *= cfg.lr_decay
        metrics = evaluate_pairs(model, held_out, max_len) if len(held_out) else {}
        result.seconds = time.perf_counter() - start
        record = {
            "epoch": epoch,
            "step": step,
            "loss": epoch_loss / epoch_tokens,
            "lr": optimizer.lr,
            "seconds": result.seconds,
            **metrics,
        }
        result.history.append(record)
        if on_progress is not None:
            on_progress(
                Progress(
                    "epoch", step, epoch, per_epoch * cfg.epochs, record["loss"],
                    result.seconds, metrics,
                )
            )  # fmt: skip
        if result.stop_reason in ("requested", "diverged"):
            break
        if metrics.get("held_out_exact_match", 0.0) >= cfg.target_accuracy:
            reached_at = reached_at or epoch
            if epoch - reached_at >= cfg.patience:
                result.stop_reason = "target"
                result.message = f"held-out exact match reached {cfg.target_accuracy}"
                break
        else:
            reached_at = None
    model.eval()
    result.seconds = time.perf_counter() - start
