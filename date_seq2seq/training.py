"""Training: masked cross-entropy, Adam, gradient clipping, one seeded generator.

`fit` trains a model through a DataLoader. It reports through a callback and
asks `should_stop` at every step boundary, so the CLI and the app render the
same events and either can stop a run and keep the model trained so far. A
non-finite loss ends training with the last good weights restored, not with a
model full of NaNs. `Trainer` builds a run from configs; `train` runs one.

Every random draw of a run – initial weights, shuffling, scheduled
sampling's coins, dropout masks – comes from the run's own
`torch.Generator`, so two runs in one process at once end exactly as each
would alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from .checkpoint import Checkpoint
from .config import DataConfig, DecodeConfig, ModelConfig, TrainConfig
from .data import DateDataset, task_vocabulary
from .decoding import greedy_many
from .flat_parameters import flat_parameters
from .metrics import id_exact_matches
from .model import ScheduledSampling, Seq2Seq, source_lengths, unroll
from .rng import global_rng_from
from .vocab import PAD_ID

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One training event: each step, each held-out check, each epoch's end."""

    kind: str  # "step" | "eval" | "epoch"
    step: int  # optimizer steps so far
    epoch: int  # 1-based epoch this event belongs to
    total_steps: int  # steps if every epoch runs
    loss: float  # per-token loss: of this step, or the epoch's mean
    seconds: float  # training time so far
    metrics: dict[str, float] | None = None  # held-out metrics (eval, epoch)


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


def masked_cross_entropy(
    logits: torch.Tensor, tgt_out: torch.Tensor, pad_id: int | None = PAD_ID
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over real tokens only (every token if pad_id is None).

    Args:
        logits: (batch, tgt_len, vocab); tgt_out: (batch, tgt_len), pad_id past the end.
    Returns:
        the per-token loss and the number of tokens it averages.
    """
    ignored = -100 if pad_id is None else pad_id  # -100: no id, nothing ignored
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        tgt_out.reshape(-1),
        ignore_index=ignored,
        reduction="sum",
    )
    count = int((tgt_out != ignored).sum())
    return total / max(count, 1), count


@torch.no_grad()
def evaluate_held_out(
    model: Seq2Seq,
    held_out: DateDataset,
    max_len: int,
    should_stop: Callable[[], bool] | None = None,
    chunk_size: int = 250,
) -> dict[str, float] | None:
    """Held-out loss, exact match, and token accuracy teacher-forced and free-running.

    Exact match is free-running only: a date is all right teacher-forced
    exactly when it is all right free-running (the same inputs follow), so it
    cannot show exposure bias. Token accuracy can: teacher-forced, every step
    is fed the truth; free-running, a mistake is fed on. Both count the
    target's positions, <EOS> included; a free run that stops early has the
    rest wrong. Draws nothing from any random generator.

    The dates go in chunks, and `should_stop` is asked between them: a stop
    request ends the evaluation early, returning None (on a big model it is
    the longest thing a run does between two checks).
    """
    was_training = model.training
    model.eval()
    loss_sum = tokens = exact = free_right = forced_right = 0.0
    try:
        for first in range(0, len(held_out), chunk_size):
            if should_stop is not None and should_stop():
                return None
            src, tgt = held_out[
                list(range(first, min(first + chunk_size, len(held_out))))
            ]
            tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (n, tgt_len)
            logits, _ = model(src, tgt_in)  # (n, tgt_len, vocab)
            free = greedy_many(model, src, max_len).ids  # (n, steps)
            loss, count = masked_cross_entropy(logits, tgt_out)
            real = tgt_out != PAD_ID
            steps = min(free.size(1), tgt_out.size(1))
            same = (free[:, :steps] == tgt_out[:, :steps]) & real[:, :steps]
            loss_sum += float(loss) * count
            tokens += count
            exact += float(id_exact_matches(free, tgt_out, PAD_ID).sum())
            free_right += float(same.sum())
            forced_right += float(((logits.argmax(-1) == tgt_out) & real).sum())
    finally:
        model.train(was_training)
    tokens = max(tokens, 1)
    return {
        "held_out_loss": loss_sum / tokens,
        "held_out_exact_match": exact / max(len(held_out), 1),
        "held_out_token_accuracy": free_right / tokens,
        "held_out_teacher_forced_token_accuracy": forced_right / tokens,
    }


STOPPED = "stopped on request"
# A run diverges when the mean loss of its last GROWTH_WINDOW steps is more
# than GROWTH_FACTOR times the loss of its first step (or of 1 nat a token, if
# it started lower: a trained model's blips are not divergence). A healthy run
# starts near its highest loss, about ln(vocabulary size), a uniform guess.
GROWTH_WINDOW, GROWTH_FACTOR = 20, 3.0


def _loss_growth(step_losses: list[float]) -> tuple[float, float] | None:
    """(first loss, recent mean) if the loss has grown far past its start."""
    if len(step_losses) < GROWTH_WINDOW:
        return None
    recent = sum(step_losses[-GROWTH_WINDOW:]) / GROWTH_WINDOW
    if recent > GROWTH_FACTOR * max(step_losses[0], 1.0):
        return step_losses[0], recent
    return None


def fit(
    model: Seq2Seq,
    train_set: DateDataset,
    held_out_set: DateDataset,
    cfg: TrainConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    eval_every: int = 0,
    eval_seconds: float = 0.0,
    max_len: int = DecodeConfig.max_len,
    result: TrainResult | None = None,
) -> TrainResult:
    """Train model in place; return the history and why training ended.

    Pass `result` to watch it fill step by step: if a callback raises, it
    still holds what was done. Every random draw (shuffling, sampling,
    dropout) comes from one generator seeded with cfg.seed. With eval_every >
    0, held-out metrics are also reported every that many steps (kind "eval"),
    so a live chart has more than one point per epoch; with eval_seconds > 0,
    whenever that much training time has passed since the last check (as
    often as a chart redraws, whatever a step costs). Checking changes nothing
    in training: it draws no random numbers. `should_stop` is asked
    before every step and during evaluations; after a stop request the
    held-out dates are not evaluated (the run ends at once), so the last
    history record then has no held-out metrics.
    """
    result = result if result is not None else TrainResult()
    generator = torch.Generator().manual_seed(cfg.seed)
    # Shuffled batches, each fetched by ONE indexing of the dataset's tensors
    # (batch_size=None: the sampler yields whole batches), not collated date
    # by date as `DataLoader(train_set, batch_size, shuffle=True)` would:
    # the same batches, and on a model this small a step measurably cheaper.
    sampler = RandomSampler(train_set, generator=generator)
    batches = BatchSampler(sampler, cfg.batch_size, drop_last=False)
    loader = DataLoader(
        train_set, sampler=batches, batch_size=None, generator=generator
    )
    total_steps = len(loader) * cfg.epochs
    step = epoch = 0
    reached_at: int | None = None
    start = time.perf_counter()

    def report(kind: str, loss: float, metrics: dict[str, float] | None) -> None:
        if on_progress is not None:
            seconds = time.perf_counter() - start
            on_progress(
                Progress(kind, step, epoch, total_steps, loss, seconds, metrics)
            )

    # An optimization (flat_parameters.py): all weights in one buffer, so that
    # Adam, clipping and the NaN guard's snapshot are a few ops a step.
    with flat_parameters(model) as flat:
        # Fused: one kernel for the update. Building any torch.optim optimizer
        # imports torch._dynamo once per process: start-up, not training.
        optimizer = torch.optim.Adam([flat], lr=cfg.lr, fused=True)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.lr_decay)
        last_good = flat.detach().clone()  # the weights of the last finite loss
        start = checked = time.perf_counter()  # the optimizer's set-up not counted
        model.train()
        for epoch in range(1, cfg.epochs + 1):
            epoch_loss = epoch_tokens = 0.0
            for src, tgt in loader:
                if should_stop is not None and should_stop():
                    result.stop_reason, result.message = "requested", STOPPED
                    break
                # Padded no further than this batch's longest source (human ones vary).
                src = src[:, : int(source_lengths(src).max())]
                tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # feed <GO>.., score ..<EOS>
                dropout = global_rng_from(generator) if model.cfg.dropout else None
                with dropout or contextlib.nullcontext():
                    if cfg.sampling_prob > 0:
                        feed = ScheduledSampling(tgt_out, cfg.sampling_prob, generator)
                        logits = unroll(model, src, feed).logits
                    else:  # the same as unroll with TeacherForcing, one fused call
                        logits, _ = model(src, tgt_in)
                loss, count = masked_cross_entropy(
                    logits, tgt_out, PAD_ID if cfg.mask_loss else None
                )
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    with torch.no_grad():
                        flat.copy_(last_good)
                    result.stop_reason = "diverged"
                    result.message = (
                        f"the loss became {loss_value} at step {step + 1}; training "
                        "stopped and the last good weights were restored (the "
                        f"learning rate, {cfg.lr:g}, is likely too high)"
                    )
                    log.warning(result.message)
                    break
                last_good.copy_(flat.detach())
                optimizer.zero_grad(set_to_none=False)  # keep the flat buffer
                loss.backward()
                clip_grad_norm_([flat], cfg.clip_norm)
                optimizer.step()
                step += 1
                result.step_losses.append(loss_value)
                epoch_loss += loss_value * count
                epoch_tokens += count
                report("step", loss_value, None)
                if growth := _loss_growth(result.step_losses):
                    result.stop_reason = "diverged"
                    result.message = (
                        f"the loss grew from {growth[0]:.3g} to {growth[1]:.3g} (the "
                        f"mean of the last {GROWTH_WINDOW} steps) by step {step}; "
                        f"training stopped: the learning rate, {cfg.lr:g}, is likely "
                        "too high"
                    )
                    log.warning(result.message)
                    break
                due = (eval_every and step % eval_every == 0) or (
                    eval_seconds and time.perf_counter() - checked >= eval_seconds
                )
                if on_progress and due and held_out_set:
                    metrics = evaluate_held_out(
                        model, held_out_set, max_len, should_stop
                    )
                    if metrics is None:  # a stop request came in meanwhile
                        result.stop_reason, result.message = "requested", STOPPED
                        break
                    report("eval", loss_value, metrics)
                    checked = time.perf_counter()
            if epoch_tokens == 0:  # stopped before this epoch's first step
                break
            schedule.step()
            metrics = {}
            if held_out_set and result.stop_reason != "requested":
                metrics = evaluate_held_out(model, held_out_set, max_len, should_stop)
                if metrics is None:
                    result.stop_reason, result.message = "requested", STOPPED
                    metrics = {}
            result.seconds = time.perf_counter() - start
            checked = time.perf_counter()
            record = {
                "epoch": epoch,
                "step": step,
                "loss": epoch_loss / epoch_tokens,
                "lr": schedule.get_last_lr()[0],
                "seconds": result.seconds,
                **metrics,
            }
            result.history.append(record)
            report("epoch", record["loss"], metrics)
            if result.stop_reason in ("requested", "diverged"):
                break
            if metrics.get("held_out_exact_match", 0.0) >= cfg.target_accuracy:
                reached_at = reached_at or epoch
                if epoch - reached_at >= cfg.patience:
                    result.stop_reason = "target"
                    result.message = (
                        f"held-out exact match reached {cfg.target_accuracy}"
                    )
                    break
            else:
                reached_at = None
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


class Trainer:
    """One training run built from configs, whose model survives an interruption.

    `run` may end by an exception raised in a callback: the model keeps the
    steps it took and `checkpoint()` packages it, with the history recorded so
    far. `observers` see every event before `on_progress` does, so what they
    record (e.g. attention snapshots, forming.py) is complete whichever way
    the run ends.
    """

    def __init__(
        self,
        data_config: DataConfig | None = None,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
    ) -> None:
        self.data_config = data_config or DataConfig()
        self.train_config = train_config or TrainConfig()
        self.train_set, self.held_out_set = DateDataset.split_config(self.data_config)
        self.vocab = self.train_set.vocab
        self.model_config = model_config or ModelConfig(vocab_size=len(self.vocab))
        if self.model_config.vocab_size != len(self.vocab):
            raise ValueError(f"vocab_size must be {len(self.vocab)} for this task")
        init = torch.Generator().manual_seed(self.train_config.seed)
        self.model = Seq2Seq(self.model_config, generator=init)
        # Filled by fit as it goes, so an interrupted run's progress is kept too.
        self.result = TrainResult()
        # Set when `run` has returned or raised: the model is no longer changing.
        self.done = threading.Event()
        self.observers: list[Callable[[Progress], None]] = []

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far."""
        return len(self.result.step_losses)

    def run(
        self,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        eval_every: int = 0,
        eval_seconds: float = 0.0,
    ) -> TrainResult:
        """Train to the end, a stop request, or divergence (see `fit`)."""
        self.done.clear()
        observers = [*self.observers, *([on_progress] if on_progress else [])]

        def notify(event: Progress) -> None:
            for observe in observers:
                observe(event)

        try:
            return fit(
                self.model,
                self.train_set,
                self.held_out_set,
                self.train_config,
                on_progress=notify if observers else None,
                should_stop=should_stop,
                eval_every=eval_every,
                eval_seconds=eval_seconds,
                result=self.result,
            )
        finally:
            self.done.set()

    def checkpoint(self) -> Checkpoint:
        """Package the model as it is now, with the history so far."""
        self.model.eval()
        return Checkpoint(
            self.model,
            self.vocab,
            self.data_config,
            self.train_config,
            history=list(self.result.history),
        )


def default_configs(
    task: str = "yymmdd",
) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """The configs of a task's default model (what `train --task TASK` trains)."""
    vocab_size = len(task_vocabulary(task))
    if task == "human":
        return (
            DataConfig(task=task, train_size=HUMAN_TRAIN_SIZE, held_out_size=2000),
            ModelConfig(vocab_size=vocab_size, encoder_hidden=64, decoder_hidden=64),
            # Two epochs, the rate cut to 0.2× after the first: held-out is right
            # after one, but the whole window needs the second (bench/human.py).
            TrainConfig(batch_size=64, lr=0.02, lr_decay=0.2, epochs=2, patience=2),
        )
    return DataConfig(), ModelConfig(vocab_size=vocab_size), TrainConfig()


HUMAN_TRAIN_SIZE = 100_000  # of the 267,360 (date, form) pairs


def train(
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Checkpoint, TrainResult]:
    """Build data and a fresh model from configs, train it, package a checkpoint."""
    trainer = Trainer(data_config, model_config, train_config)
    result = trainer.run(on_progress, should_stop)
    return trainer.checkpoint(), result
