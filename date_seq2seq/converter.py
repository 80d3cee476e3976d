"""The facade the CLI and the app use: get a model, check input, convert dates.

Nothing outside this module needs to touch tensors: a `Conversion` carries the
output, the correct answer, the tokens and the attention as plain Python.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import DecodeConfig, check_beam_size, check_length_alpha
from .data import (
    InputError,
    Pair,
    Window,
    as_read,
    encode_sources,
    read_input,
    split_pairs,
    target_text,
    target_tokens,
    task_sources,
)
from .decoding import (
    Decoded,
    DecoderStep,
    beam_hypotheses,
    decode,
    length_penalty,
    step_through,
    token_logprobs,
)
from .metrics import summarize
from .training import Progress, default_configs, train
from .vocab import EOS, EOS_ID, GO, PAD, PAD_ID, Vocabulary

log = logging.getLogger(__name__)


def default_checkpoint_path(task: str = "yymmdd") -> Path:
    """Where a task's default model lives: $DATE_SEQ2SEQ_HOME or the user's cache."""
    name = "default.pt" if task == "yymmdd" else f"default-{task}.pt"
    home = os.environ.get("DATE_SEQ2SEQ_HOME")
    if home:
        return Path(home) / name
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "date_seq2seq" / name


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


def _emitted(ids: list[int]) -> int:
    """How many tokens an output emitted: up to its <EOS>, or all but padding."""
    if EOS_ID in ids:
        return ids.index(EOS_ID) + 1
    return sum(i != PAD_ID for i in ids)


def _guess(error: InputError, source: str, tokens: list[str]) -> str:
    """The warning for a year outside the window: what the model did with it."""
    written = "".join(tokens)
    year = "".join(tokens[-4:])
    yy = source[:2]  # yy-mm-dd
    if not (len(tokens) >= 4 and year.isdigit()):
        did = f"it wrote {written!r}, not even a year"
    elif year.endswith(yy):
        did = f"it wrote {written}: the last two digits right, the century a guess"
    else:
        did = (
            f"it wrote {written}: the year {year}, not one ending in {yy} – the "
            "decade is lost too, not just the century"
        )
    return f"{error.message}. Here {did}."


def forceable_tokens(vocab: Vocabulary) -> list[str]:
    """Tokens a learner may force in a step-through: anything the decoder emits."""
    return [t for t in vocab.tokens if t not in (PAD, GO)]


@dataclass(frozen=True)
class StepThrough:
    """One conversion decoded step by step, some tokens perhaps forced."""

    conversion: Conversion  # the output as read from the steps, or the error
    steps: tuple[DecoderStep, ...] = ()
    expected: tuple[str, ...] | None = None  # right tokens then <EOS>, if known

    def verdicts(self) -> list[str]:
        """Per step: "forced", "right", "wrong", or "unknown" with no right answer."""
        out = []
        for t, step in enumerate(self.steps):
            if step.forced:
                out.append("forced")
            elif self.expected is None:
                out.append("unknown")
            else:
                right = t < len(self.expected) and step.chosen == self.expected[t]
                out.append("right" if right else "wrong")
        return out

    def after_forcing(self) -> Recovery | None:
        """How the model did after the first forced token; None if nothing was
        forced or there is no right answer to judge by.

        Position by position against the right answer (<EOS> included): the
        tokens it chose itself, those right, and how far the output ended
        short of the answer or ran past it.
        """
        verdicts = self.verdicts()
        if "forced" not in verdicts or self.expected is None:
            return None
        first = verdicts.index("forced")
        after = [v for v in verdicts[first + 1 :] if v != "forced"]
        return Recovery(
            forced_at=first,
            chose=len(after),
            right=after.count("right"),
            missing=max(0, len(self.expected) - len(self.steps)),
            extra=max(0, len(self.steps) - len(self.expected)),
        )


@dataclass(frozen=True)
class Recovery:
    """What followed the first token forced in a step-through."""

    forced_at: int  # its step, from 0
    chose: int  # later tokens the model chose itself
    right: int  # of those, the ones the right answer has at that position
    missing: int  # right-answer tokens never reached: the output ended short
    extra: int  # tokens past the right answer's end

    @property
    def recovered(self) -> bool:
        """Every later choice right, and the output exactly as long as the answer."""
        return self.right == self.chose and self.missing == 0 and self.extra == 0


@dataclass(frozen=True)
class Hypothesis:
    """One output a search considered, with how the model scored it."""

    tokens: tuple[str, ...]  # as emitted, <EOS> included if it ended
    probs: tuple[float, ...]  # the model's probability of each, fed the ones before
    logprob: float  # their summed log-probability
    score: float  # logprob / length penalty: what beam search ranks by

    @property
    def output(self) -> str:
        return "".join(t for t in self.tokens if t != EOS)


@dataclass(frozen=True)
class BeamView:
    """A beam search made visible: every hypothesis kept, and greedy's answer."""

    conversion: Conversion  # the winner, read as `convert` reads it
    hypotheses: tuple[Hypothesis, ...] = ()  # best score first: [0] won
    greedy: Hypothesis | None = None
    alpha: float = 0.0

    @property
    def greedy_rank(self) -> int | None:
        """Where greedy's answer is among the hypotheses (0: it won), or None."""
        found = [h.tokens for h in self.hypotheses]
        return found.index(self.greedy.tokens) if self.greedy.tokens in found else None

    def why(self) -> str:
        """Why the winner is what it is, against greedy, from this search's numbers."""
        won, greedy = self.hypotheses[0], self.greedy
        if won.tokens == greedy.tokens:
            return (
                f"Beam search agrees with greedy: {won.output or '(nothing)'} has the "
                f"best score ({won.score:.3f}) of the {len(self.hypotheses)} kept."
            )
        step = 0  # the first step where they differ
        while step < min(len(won.tokens), len(greedy.tokens)) and (
            won.tokens[step] == greedy.tokens[step]
        ):
            step += 1
        said = (
            f"They part at step {step + 1}: greedy took "
            f"{_token_at(greedy, step)}, the likelier token there; the beam also "
            f"kept {_token_at(won, step)}, and the answer it leads to scores "
            f"better as a whole: log-probability {won.logprob:.3f} against "
            f"{greedy.logprob:.3f}"
        )
        if self.alpha:
            said += (
                f", and divided by the length penalty (alpha {self.alpha:g}) "
                f"{won.score:.3f} against {greedy.score:.3f}"
            )
        if self.greedy_rank is None:
            said += "; greedy's own answer fell out of the beam"
        return said + "."


def _token_at(hypothesis: Hypothesis, step: int) -> str:
    if step >= len(hypothesis.tokens):
        return "nothing more (it had ended)"
    return f"{hypothesis.tokens[step]!r} (p {hypothesis.probs[step]:.2f})"


Checked = tuple[str, dt.date | None, InputError | None]  # shown text, date, problem


class Converter:
    """Convert dates with one trained model: `yy-mm-dd`, or as people write
    them for a model of the human task."""

    def __init__(
        self, checkpoint: ckpt.Checkpoint, decode_config: DecodeConfig | None = None
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.vocab = checkpoint.vocab
        self.window = Window.from_config(checkpoint.data_config)
        self.task = checkpoint.data_config.task
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
        cls,
        on_progress: Callable[[Progress], None] | None = None,
        task: str = "yymmdd",
    ) -> Converter:
        """Load a task's default model, training and saving it first if there is none.

        If it cannot be saved (a read-only home), the model just trained is
        used as it is, with a warning: converting does not depend on caching.
        """
        path = default_checkpoint_path(task)
        if not path.exists():
            log.info("no default model at %s: training one", path)
            checkpoint, _ = train(*default_configs(task), on_progress=on_progress)
            try:
                checkpoint.save(path)
            except OSError as e:
                log.warning(
                    "the default model could not be saved at %s (%s): it is used "
                    "now and trained again next time",
                    path,
                    e.strerror or e,
                )
                return cls(checkpoint)
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
        """What the model reads of an input, its date, or what is wrong with it."""
        if not isinstance(text, str):
            return repr(text), None, InputError("malformed", "the input must be text")
        try:
            source, day = read_input(self.task, text, self.window)
        except InputError as e:  # an outside year is still read: shown as read
            return as_read(self.task, text), None, e
        return source, day, None

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
            out = self._decode(src, beam_size)
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
            # One column per input character: a batch's padding columns dropped.
            attention=tuple(tuple(r[: len(shown)]) for r in attention)
            if attention
            else None,
            warning=self._guess(error, shown, tokens) if error else None,
            kind=error.kind if error else "ok",
        )

    def _guess(self, error: InputError, source: str, tokens: list[str]) -> str:
        if self.task == "yymmdd":
            return _guess(error, source, tokens)
        return f"{error.message}. Here it wrote {''.join(tokens)!r}."

    def step_through(
        self,
        text: str,
        forced: Mapping[int, str] | None = None,
        top_k: int | None = None,
    ) -> StepThrough:
        """Convert one input greedily, step by step, emitting forced[t] at step t.

        One decode gives the Conversion (as `convert` gives it when nothing is
        forced), its attention and every step. An input that cannot be
        converted gives its error and no steps. Raises ValueError for a forced
        token the decoder cannot emit or a step past max_len.
        """
        max_len = self.decode_config.max_len
        allowed = forceable_tokens(self.vocab)
        forced_ids = {}
        for step, token in (forced or {}).items():
            if not 0 <= step < max_len:
                raise ValueError(f"step {step} is not in 0..{max_len - 1}")
            if token not in allowed:
                raise ValueError(
                    f"{token!r} cannot be emitted; choose one of {allowed}"
                )
            forced_ids[step] = self.vocab.encode([token])[0]
        checked = self._check(text)
        shown, day, error = checked
        if error is not None and error.kind != "outside_window":
            return StepThrough(Conversion(shown, error=error.message, kind=error.kind))
        src = encode_sources([shown], self.vocab)[0]
        k = top_k or self.decode_config.top_k
        steps = step_through(self.model, src, self.vocab, max_len, k, forced_ids)
        # The same reading of the output as `convert`: up to <EOS>, specials dropped.
        tokens = self.vocab.decode(self.vocab.encode(s.chosen for s in steps))
        attention = None
        if steps and steps[0].weights is not None:
            attention = [s.weights for s in steps[: len(tokens)]]
        expected = (*target_tokens(day), EOS) if day is not None else None
        conversion = self._conversion(checked, tokens, attention)
        return StepThrough(conversion, tuple(steps), expected)

    def beam(self, text: str, beam_size: int, alpha: float | None = None) -> BeamView:
        """Beam search one input, keeping every hypothesis and greedy's answer.

        alpha is the length penalty (the decode config's by default).
        """
        check_beam_size(beam_size)
        alpha = self.decode_config.length_alpha if alpha is None else alpha
        check_length_alpha(alpha)
        checked = self._check(text)
        shown, _, error = checked
        if error is not None and error.kind != "outside_window":
            return BeamView(Conversion(shown, error=error.message, kind=error.kind))
        src = encode_sources([shown], self.vocab)
        max_len = self.decode_config.max_len
        beam = beam_hypotheses(self.model, src, beam_size, max_len, alpha=alpha)
        kept = [i for i in range(beam_size) if bool(beam.logprob[0, i].isfinite())]
        greedy_ids = decode(self.model, src, max_len).ids  # (1, steps)
        steps = max(beam.ids.size(-1), greedy_ids.size(-1))
        ids = torch.full((len(kept) + 1, steps), PAD_ID, dtype=torch.long)
        ids[: len(kept), : beam.ids.size(-1)] = beam.ids[0, kept]
        ids[-1, : greedy_ids.size(-1)] = greedy_ids[0]
        logprobs = token_logprobs(self.model, src, ids)
        found = []
        for row, token_ids in enumerate(ids.tolist()):
            length = _emitted(token_ids)
            step_logprob = logprobs[row, :length]
            logprob = float(step_logprob.sum())
            found.append(
                Hypothesis(
                    tokens=tuple(self.vocab.tokens[i] for i in token_ids[:length]),
                    probs=tuple(step_logprob.exp().tolist()),
                    logprob=logprob,
                    score=logprob / float(length_penalty(torch.tensor(length), alpha)),
                )
            )
        winner = self.vocab.decode(ids[0].tolist())
        attention = None
        if beam.attention is not None:
            attention = beam.attention[0, 0, : len(winner)].tolist()
        conversion = self._conversion(checked, winner, attention)
        return BeamView(conversion, tuple(found[:-1]), found[-1], alpha)

    def evaluate(
        self, days: Iterable[dt.date], beam_size: int = 1, chunk_size: int = 8192
    ) -> dict[str, float]:
        """Return metrics for converting the given dates, each in every form its
        task writes (one for yymmdd, twelve for human; see metrics.summarize)."""
        return self.evaluate_pairs(self.pairs(days), beam_size, chunk_size)

    def evaluate_pairs(
        self, pairs: Sequence[Pair], beam_size: int = 1, chunk_size: int = 8192
    ) -> dict[str, float]:
        """Return metrics for converting (input, date) pairs."""
        preds = self.predict([text for text, _ in pairs], beam_size, chunk_size)
        return summarize(preds, [target_tokens(day) for _, day in pairs])

    def pairs(self, days: Iterable[dt.date]) -> list[Pair]:
        """Every (input, date) pair the task writes for these dates."""
        return [(text, day) for day in days for text in task_sources(self.task, day)]

    def predict_days(
        self, days: Iterable[dt.date], beam_size: int = 1, chunk_size: int = 8192
    ) -> list[list[str]]:
        """Return the model's output tokens for each date's input(s), in order."""
        return self.predict([t for t, _ in self.pairs(days)], beam_size, chunk_size)

    def predict(
        self, sources: Iterable[str], beam_size: int = 1, chunk_size: int = 8192
    ) -> list[list[str]]:
        """Return the model's output tokens for valid inputs, <EOS> and padding cut."""
        preds = []
        it = iter(sources)
        while chunk := list(islice(it, chunk_size)):
            out = self._decode(encode_sources(chunk, self.vocab), beam_size)
            preds += [self.vocab.decode(r) for r in out.ids.tolist()]
        return preds

    def _decode(self, src: torch.Tensor, beam_size: int) -> Decoded:
        cfg = self.decode_config
        return decode(self.model, src, cfg.max_len, beam_size, alpha=cfg.length_alpha)

    def held_out_days(self) -> list[dt.date]:
        """Return the held-out dates this model's data config draws."""
        return [day for _, day in self.held_out_pairs()]

    def held_out_pairs(self) -> list[Pair]:
        """Return the held-out (input, date) pairs this model's data config draws."""
        return split_pairs(self.checkpoint.data_config)[1]
