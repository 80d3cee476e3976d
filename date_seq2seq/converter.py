"""The facade the CLI and the app use: get a model, check input, convert dates.

Nothing outside this module needs to touch tensors: a `Conversion` carries the
output, the correct answer, the tokens and the attention as plain Python.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import DataConfig, DecodeConfig, ModelConfig, TrainConfig
from .data import (
    InputError,
    Pairs,
    Window,
    check_source,
    encode_sources,
    source_text,
    split,
    target_text,
    target_tokens,
    task_vocabulary,
)
from .decoding import TraceStep, decode, trace
from .metrics import summarize
from .model import Seq2Seq
from .training import Progress, TrainResult, fit

log = logging.getLogger(__name__)


def default_checkpoint_path() -> Path:
    """Where the default model lives: $DATE_SEQ2SEQ_HOME or the user's cache."""
    home = os.environ.get("DATE_SEQ2SEQ_HOME")
    if home:
        return Path(home) / "default.pt"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "date_seq2seq" / "default.pt"


@dataclass(frozen=True)
class Conversion:
    """The answer for one input; exactly one of output and error is set."""

    input: str
    output: str | None = None
    expected: str | None = None  # the right answer, when the date is in the window
    tokens: tuple[str, ...] = ()
    expected_tokens: tuple[str, ...] | None = None
    attention: tuple[tuple[float, ...], ...] | None = None  # (tokens, source chars)
    error: str | None = None  # why the input was not converted
    warning: str | None = None  # converted, but the answer cannot be trusted
    kind: str = "ok"  # ok | malformed | impossible | outside_window

    @property
    def correct(self) -> bool | None:
        """Whether the output is right; None when there is no known answer."""
        if self.output is None or self.expected is None:
            return None
        return self.output == self.expected

    def token_correct(self) -> list[bool] | None:
        """Per output token: does it match the expected token at that position?"""
        if self.expected_tokens is None:
            return None
        want = self.expected_tokens
        return [i < len(want) and t == want[i] for i, t in enumerate(self.tokens)]


class Trainer:
    """One training run built from configs, whose model survives an interruption.

    `run` may end by an exception raised in `on_progress` (the app's script is
    interrupted that way): the model keeps the steps it took and `checkpoint()`
    packages it, with the history recorded so far. `observers` see every
    event before `on_progress` does, so what they record (e.g. attention
    snapshots, lab.py) is complete whichever way the run ends.
    """

    def __init__(
        self,
        data_config: DataConfig | None = None,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
    ) -> None:
        self.data_config = data_config or DataConfig()
        self.model_config = model_config or ModelConfig()
        self.train_config = train_config or TrainConfig()
        self.vocab = task_vocabulary()
        if self.model_config.vocab_size != len(self.vocab):
            raise ValueError(f"vocab_size must be {len(self.vocab)} for this task")
        train_days, held_days = split(self.data_config)
        self.train_pairs = Pairs.from_days(train_days, self.vocab)
        self.held_out_pairs = Pairs.from_days(held_days, self.vocab)
        torch.manual_seed(self.train_config.seed)  # initialisation; fit seeds the rest
        self.model = Seq2Seq(self.model_config, pad_id=self.vocab.pad_id)
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
    ) -> TrainResult:
        """Train to the end, a stop request, or divergence."""
        self.done.clear()
        observers = [*self.observers, *([on_progress] if on_progress else [])]

        def notify(event: Progress) -> None:
            for observe in observers:
                observe(event)

        try:
            return fit(
                self.model,
                self.train_pairs,
                self.held_out_pairs,
                self.train_config,
                on_progress=notify if observers else None,
                should_stop=should_stop,
                max_len=DecodeConfig().max_len,
                eval_every=eval_every,
                result=self.result,
            )
        finally:
            self.done.set()

    def checkpoint(self) -> ckpt.Checkpoint:
        """Package the model as it is now, with the history so far."""
        self.model.eval()
        return ckpt.Checkpoint(
            self.model,
            self.vocab,
            self.data_config,
            self.train_config,
            history=list(self.result.history),
        )


def train_new(
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[ckpt.Checkpoint, TrainResult]:
    """Build data and a fresh model from configs, train it, package a checkpoint."""
    trainer = Trainer(data_config, model_config, train_config)
    result = trainer.run(on_progress, should_stop)
    return trainer.checkpoint(), result


Checked = tuple[str, dt.date | None, InputError | None]  # shown text, date, problem


class Converter:
    """Convert `yy-mm-dd` strings with one trained model."""

    def __init__(
        self, checkpoint: ckpt.Checkpoint, decode_config: DecodeConfig | None = None
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.vocab = checkpoint.vocab
        self.window = Window.from_config(checkpoint.data_config)
        self.decode_config = decode_config or DecodeConfig()

    @classmethod
    def from_path(cls, path: str | Path) -> Converter:
        """Load a checkpoint file; raises CheckpointError saying why it is unusable."""
        return cls(ckpt.load(path))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Converter:
        """Load checkpoint bytes (an upload); raises CheckpointError if unusable."""
        return cls(ckpt.load(raw))

    @classmethod
    def default(
        cls, on_progress: Callable[[Progress], None] | None = None
    ) -> Converter:
        """Load the default model, training and saving it first if there is none."""
        path = default_checkpoint_path()
        if not path.exists():
            log.info("no default model at %s: training one", path)
            checkpoint, _ = train_new(on_progress=on_progress)
            checkpoint.save(path)
        return cls.from_path(path)

    def convert(self, text: str, beam_size: int = 1) -> Conversion:
        """Convert one input string."""
        return next(self.convert_many([text], beam_size))

    def convert_many(
        self,
        texts: Iterable[str],
        beam_size: int = 1,
        chunk_size: int = 8192,
        with_attention: bool = True,
    ) -> Iterator[Conversion]:
        """Convert inputs lazily, in order, chunk by chunk (bounded memory).

        Without attention (`with_attention=False`) each Conversion's attention
        is None, and converting a large file is several times faster.
        """
        it = iter(texts)
        while chunk := list(islice(it, chunk_size)):
            yield from self._convert_chunk(chunk, beam_size, with_attention)

    def _check(self, text: str) -> Checked:
        shown = text.strip() if isinstance(text, str) else repr(text)
        try:
            return shown, check_source(text, self.window), None
        except InputError as e:
            return shown, None, e

    def _convert_chunk(
        self, texts: list[str], beam_size: int, with_attention: bool = True
    ) -> list[Conversion]:
        # A file repeats its dates: check and decode each distinct input once;
        # a Conversion is immutable, so the repeats share it.
        keys = [t if isinstance(t, str) else (i, repr(t)) for i, t in enumerate(texts)]
        originals = dict(zip(keys, texts, strict=True))  # one text per distinct key
        distinct: dict[object, Conversion | None] = dict.fromkeys(originals)
        checked = {key: self._check(text) for key, text in originals.items()}
        runnable = [
            key
            for key, (_, _, e) in checked.items()
            if e is None or e.kind == "outside_window"
        ]
        if runnable:
            src = encode_sources([checked[k][0] for k in runnable], self.vocab)
            out = decode(self.model, src, self.decode_config.max_len, beam_size)
            ids = out.ids.tolist()
            attention = None
            if with_attention and out.attention is not None:
                attention = out.attention.tolist()
            for row, key in enumerate(runnable):
                tokens = self.vocab.decode(ids[row])
                weights = attention[row][: len(tokens)] if attention else None
                distinct[key] = self._conversion(checked[key], tokens, weights)
        for key, (shown, _, error) in checked.items():
            if distinct[key] is None:
                assert error is not None, "an unconverted input must have an error"
                distinct[key] = Conversion(shown, error=error.message, kind=error.kind)
        return [distinct[key] for key in keys]  # type: ignore[misc]

    def _conversion(
        self,
        checked: Checked,
        tokens: list[str],
        attention: list[list[float]] | None,
    ) -> Conversion:
        shown, day, error = checked
        return Conversion(
            input=shown,
            output="".join(tokens),
            expected=target_text(day) if day else None,
            tokens=tuple(tokens),
            expected_tokens=tuple(target_tokens(day)) if day else None,
            attention=tuple(tuple(r) for r in attention) if attention else None,
            warning=error.message if error else None,
            kind=error.kind if error else "ok",
        )

    def explain(
        self, text: str, top_k: int | None = None
    ) -> tuple[Conversion, list[TraceStep]]:
        """Convert one input greedily and record every step, with a single decode.

        Returns the Conversion (as `convert` gives it) and the trace steps; for
        an input that cannot be converted, the Conversion's error and no steps.
        """
        checked = self._check(text)
        shown, _, error = checked
        if error is not None and error.kind != "outside_window":
            return Conversion(shown, error=error.message, kind=error.kind), []
        src = encode_sources([shown], self.vocab)[0]
        k = top_k or self.decode_config.top_k
        steps = trace(self.model, src, self.vocab, self.decode_config.max_len, k)
        # The same reading of the output as `convert`: up to <EOS>, specials dropped.
        tokens = self.vocab.decode(self.vocab.encode(s.chosen for s in steps))
        attention = None
        if steps and steps[0].weights is not None:
            attention = [s.weights for s in steps[: len(tokens)]]
        return self._conversion(checked, tokens, attention), steps

    def trace(
        self, text: str, top_k: int | None = None, force: dict[int, int] | None = None
    ) -> list[TraceStep]:
        """Step through one conversion; raises InputError for an unusable input."""
        try:
            check_source(text, self.window)
        except InputError as e:
            if e.kind != "outside_window":
                raise
        src = encode_sources([text.strip()], self.vocab)[0]
        k = top_k or self.decode_config.top_k
        return trace(self.model, src, self.vocab, self.decode_config.max_len, k, force)

    def evaluate(
        self, days: Iterable[dt.date], beam_size: int = 1, chunk_size: int = 8192
    ) -> dict[str, float]:
        """Return metrics for converting the given dates (see metrics.summarize)."""
        days = list(days)
        preds = self.predict_days(days, beam_size, chunk_size)
        return summarize(preds, [target_tokens(d) for d in days])

    def predict_days(
        self, days: Iterable[dt.date], beam_size: int = 1, chunk_size: int = 8192
    ) -> list[list[str]]:
        """Return the model's output tokens for each date, <EOS> and padding cut."""
        preds = []
        it = iter(days)
        while chunk := list(islice(it, chunk_size)):
            src = encode_sources([source_text(d) for d in chunk], self.vocab)
            out = decode(self.model, src, self.decode_config.max_len, beam_size)
            preds += [self.vocab.decode(r) for r in out.ids.tolist()]
        return preds

    def held_out_days(self) -> list[dt.date]:
        """Return the held-out dates this model's data config draws."""
        return split(self.checkpoint.data_config)[1]
