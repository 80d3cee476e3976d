"""Command line: `python -m date_seq2seq train | convert | evaluate`.

Results go to stdout (plain or JSON lines), progress and errors to stderr.
Exit status: 0 success; 1 some input was refused (the rest still converted) or
training diverged; 2 a checkpoint cannot be used or written, or the arguments
are wrong; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TextIO

from .checkpoint import CheckpointError, target_problem
from .config import (
    ATTENTION_KINDS,
    CELL_KINDS,
    LENGTH_ALPHA,
    MAX_BEAM,
    MAX_LENGTH_ALPHA,
    OUTPUTS,
    TASKS,
    DecodeConfig,
    check_beam_size,
    check_length_alpha,
)
from .converter import Conversion, Converter, default_checkpoint_path
from .data import DateDataset, Window, printable, target_tokens
from .forms import count_by_form
from .metrics import summarize
from .training import Progress, default_configs, evaluate_held_out, train

EXIT_OK, EXIT_REFUSED, EXIT_UNUSABLE = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    for stream in (sys.stdout, sys.stderr):  # e.g. PYTHONIOENCODING=ascii
        if isinstance(stream, io.TextIOWrapper):
            # What the encoding cannot hold is written as \\u2026 escapes, so
            # every line is still answered.
            stream.reconfigure(errors="backslashreplace")
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.run(args)
    except CheckpointError as e:
        # One line, whatever the file or its name held (newlines, escapes).
        print(f"error: unusable checkpoint: {printable(str(e))}", file=sys.stderr)
        return EXIT_UNUSABLE
    except ValueError as e:  # a configuration the model cannot be built with
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return EXIT_UNUSABLE
    except BrokenPipeError:  # e.g. `... | head`: the reader has gone, not an error
        sys.stderr.close()
        return EXIT_OK
    except OSError as e:  # a file or directory we cannot read or write
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {printable(f'{e.strerror or e}{where}')}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m date_seq2seq",
        description="Convert dates yy-mm-dd -> dd/Mon/yyyy with a seq2seq model.",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train a model from scratch",
        description="Train a model from scratch. An option left out takes the "
        "task's default (see `default_configs`).",
    )
    _add_task(train, "what the inputs look like (default yymmdd)")
    train.add_argument("--attention", choices=ATTENTION_KINDS)
    train.add_argument("--cell", choices=CELL_KINDS)
    train.add_argument("--embedding-dim", type=int)
    train.add_argument("--hidden", type=int, help="encoder and decoder hidden size")
    train.add_argument(
        "--decoder-hidden", type=int, help="decoder hidden size if different (bridged)"
    )
    train.add_argument("--layers", type=int)
    train.add_argument(
        "--bidirectional", action=argparse.BooleanOptionalAction,
        help="read the input both ways: outputs 2 × hidden wide",
    )  # fmt: skip
    train.add_argument(
        "--output", choices=OUTPUTS,
        help="what the output layer reads: context = [c ; h] (default), hidden = "
        "h alone, input = h of a cell fed the context (input feeding)",
    )  # fmt: skip
    train.add_argument(
        "--attention-mask", action=argparse.BooleanOptionalAction,
        help="no attention on <PAD> (default); --no-attention-mask: the exercise",
    )  # fmt: skip
    train.add_argument(
        "--loss-mask", action=argparse.BooleanOptionalAction,
        help="score target tokens only, not <PAD> (default)",
    )  # fmt: skip
    train.add_argument("--dropout", type=float)
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument(
        "--sampling-prob",
        type=float,
        help="scheduled sampling: p of feeding own prediction",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--train-size", type=int)
    train.add_argument("--held-out-size", type=int)
    train.add_argument(
        "--target-accuracy",
        type=float,
        help="stop once held-out exact match reaches this",
    )
    train.add_argument(
        "--patience", type=int, help="epochs to go on after reaching the target"
    )
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        help="checkpoint to write (default: default model)",
    )
    train.add_argument("--json", action="store_true", help="end with a JSON summary")
    train.set_defaults(run=_train)

    convert = sub.add_parser("convert", help="convert dates (arguments or stdin)")
    convert.add_argument("dates", nargs="*", metavar="DATE")
    convert.add_argument("--checkpoint", type=Path, default=None)
    _add_task(convert, "without --checkpoint: whose default model (default yymmdd)")
    convert.add_argument("--beam", type=_beam, default=1, help="beam width (1: greedy)")
    _add_alpha(convert)
    convert.add_argument("--json", action="store_true", help="one JSON object a line")
    convert.set_defaults(run=_convert)

    evaluate = sub.add_parser("evaluate", help="metrics on held-out or all dates")
    evaluate.add_argument("--checkpoint", type=Path, default=None)
    _add_task(evaluate, "without --checkpoint: whose default model (default yymmdd)")
    evaluate.add_argument(
        "--all-dates",
        action="store_true",
        help="every date of the window, not held-out",
    )
    evaluate.add_argument(
        "--beam", type=_beam, default=1, help="beam width (1: greedy)"
    )
    _add_alpha(evaluate)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=_evaluate)
    return parser


def _add_task(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--task", choices=TASKS, default=None,
        help=f"yymmdd: 24-11-22 only; human: twelve forms people write. {what}",
    )  # fmt: skip


def _add_alpha(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--alpha", type=_alpha, default=LENGTH_ALPHA,
        help="beam search's length penalty: scores are divided by ((5 + length) "
        f"/ 6) ** ALPHA; 0 sums log-probabilities (default {LENGTH_ALPHA:g})",
    )  # fmt: skip


def _checked(
    parse: Callable[[str], object], check: Callable[[object], None], wanted: str
) -> Callable[[str], object]:
    """An argparse type: parse the text, then check it as the configs do."""

    def argument(text: str) -> object:
        try:
            value = parse(text)
            check(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {wanted}, not {text!r}"
            ) from None
        return value

    return argument


_beam = _checked(int, check_beam_size, f"a whole number from 1 to {MAX_BEAM}")
_alpha = _checked(float, check_length_alpha, f"a number from 0 to {MAX_LENGTH_ALPHA:g}")


# --- train ------------------------------------------------------------------


class _StopOnInterrupt:
    """First Ctrl-C asks training to stop at the next step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> _StopOnInterrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)


def _progress_printer(stream: TextIO) -> Callable[[Progress], None]:
    tty = stream.isatty()

    def show(event: Progress) -> None:
        if event.kind == "step":
            if tty and event.step % 10 == 0:
                done = event.step / max(event.total_steps, 1)
                stream.write(
                    f"\r  step {event.step}  loss {event.loss:.4f}  ({done:.0%} of max)"
                )
                stream.flush()
            return
        m = event.metrics or {}
        line = f"epoch {event.epoch:3d}  loss/token {event.loss:.4f}"
        if "held_out_exact_match" in m:
            line += (
                f"  held-out exact {m['held_out_exact_match']:7.2%}"
                f"  tokens {m['held_out_token_accuracy']:7.2%}"
                f" (teacher-forced {m['held_out_teacher_forced_token_accuracy']:7.2%})"
            )
        stream.write(("\r" if tty else "") + f"{line}  {event.seconds:6.2f}s\n")
        stream.flush()

    return show


def _train(args: argparse.Namespace) -> int:
    task = args.task or "yymmdd"
    data_cfg, model_cfg, train_cfg = default_configs(task)
    hidden, decoder_hidden = args.hidden, args.decoder_hidden
    model_cfg = replace(model_cfg, **_given(
        cell=args.cell, attention=args.attention, embedding_dim=args.embedding_dim,
        encoder_hidden=hidden,
        decoder_hidden=hidden if decoder_hidden is None else decoder_hidden,
        num_layers=args.layers, dropout=args.dropout, bidirectional=args.bidirectional,
        mask_attention=args.attention_mask, output=args.output,
    ))  # fmt: skip
    data_cfg = replace(data_cfg, **_given(
        train_size=args.train_size, held_out_size=args.held_out_size, seed=args.seed
    ))  # fmt: skip
    train_cfg = replace(train_cfg, **_given(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        sampling_prob=args.sampling_prob, target_accuracy=args.target_accuracy,
        patience=args.patience, seed=args.seed, mask_loss=args.loss_mask,
    ))  # fmt: skip
    out = args.out or default_checkpoint_path(task)
    problem = _unwritable(out)
    if problem:  # found before training, not after
        print(
            f"error: cannot write the checkpoint to {out}: {problem}", file=sys.stderr
        )
        return EXIT_UNUSABLE
    started = time.perf_counter()
    with _StopOnInterrupt() as stop:
        checkpoint, result = train(
            data_cfg, model_cfg, train_cfg, _progress_printer(sys.stderr), stop
        )
    try:
        checkpoint.save(out)
    except OSError as e:  # e.g. the disk filled up while training: keep the model
        rescue = Path(tempfile.gettempdir()) / f"date_seq2seq-{os.getpid()}.pt"
        checkpoint.save(rescue)
        print(
            f"error: cannot write {out} ({e.strerror or e}); the model was saved "
            f"to {rescue} instead",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    final = dict(result.final)
    if final and "held_out_exact_match" not in final and data_cfg.held_out_size:
        # Stopped mid-epoch (Ctrl-C): the run ended before checking; check now.
        held_out = DateDataset.split_config(data_cfg)[1]
        max_len = DecodeConfig().max_len
        final.update(evaluate_held_out(checkpoint.model, held_out, max_len) or {})
    if result.message:
        print(result.message, file=sys.stderr)
    print(f"saved {out}", file=sys.stderr)
    summary = {
        "epochs": len(result.history),
        "steps": int(final.get("step", 0)),
        "train_seconds": round(result.seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "held_out_exact_match": final.get("held_out_exact_match"),
        "held_out_token_accuracy": final.get("held_out_token_accuracy"),
        "held_out_teacher_forced_token_accuracy": final.get(
            "held_out_teacher_forced_token_accuracy"
        ),
        "loss": final.get("loss"),
        "stop_reason": result.stop_reason,
        "checkpoint": str(out),
        "fingerprint": checkpoint.fingerprint,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        exact = final.get("held_out_exact_match")
        measured = (
            f"held-out exact match {exact:.2%}"
            if exact is not None
            else "no held-out dates"
        )
        print(
            f"{summary['epochs']} epochs in {summary['train_seconds']:.2f}s, "
            f"{measured}; weights {summary['fingerprint']}; saved {out}"
        )
    return EXIT_REFUSED if result.stop_reason == "diverged" else EXIT_OK


def _given(**options: object) -> dict[str, object]:
    """The options given on the command line (the rest keep the task's defaults)."""
    return {name: value for name, value in options.items() if value is not None}


def _unwritable(path: Path) -> str | None:
    """Why a checkpoint cannot be written at path, or None if it can."""
    if problem := target_problem(path):  # a directory, a device, a pipe
        return problem
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create its directory ({e.strerror or e})"
    if not os.access(path.parent, os.W_OK):
        return "its directory is not writable"
    return None


# --- convert and evaluate -----------------------------------------------------


def _converter(args: argparse.Namespace) -> Converter:
    """The model to convert with, searching as the arguments say."""
    if args.checkpoint is not None:
        converter = Converter.from_path(args.checkpoint)
        if args.task is not None and args.task != converter.task:
            raise CheckpointError(
                f"it is a model of the {converter.task} task, not {args.task}"
            )
    else:
        task = args.task or "yymmdd"
        path = default_checkpoint_path(task)
        if not path.exists():
            print(f"no default model yet: training one ({path})", file=sys.stderr)
        converter = Converter.default(_progress_printer(sys.stderr), task)
    converter.decode_config = replace(converter.decode_config, length_alpha=args.alpha)
    return converter


CHUNK = 65536  # lines decoded together: a file's repeats are decoded once a chunk
MAX_LINE_BYTES = 4096  # an input line is cut here (it is refused as too long anyway)


class _TooLong(str):
    """The start of an input line that went on past MAX_LINE_BYTES."""


def _line(raw: bytes) -> str:
    """One input line as text: undecodable bytes become U+FFFD (then refused).

    A line over MAX_LINE_BYTES is cut there and marked as _TooLong: it is
    refused as too long, whatever the part kept would say.
    """
    text = raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace").rstrip("\r")
    return _TooLong(text) if len(raw) > MAX_LINE_BYTES else text


def _too_long(line: str) -> Conversion:
    return Conversion(
        line.strip()[:40] + "…",
        error=f"the line is longer than {MAX_LINE_BYTES} bytes; a date is 8 "
        "characters, yy-mm-dd",
        kind="malformed",
    )


def _chunks(stream: BinaryIO, most: int = CHUNK) -> Iterator[list[str]]:
    """Lines read from stream, in chunks of up to `most`, as soon as they can be.

    A chunk ends early when no more input is waiting, so a slow pipe or a
    person typing gets each answer at once, while a file still goes in big
    chunks. Only b"\\n" ends a line (a stray \\r does not split one), a UTF-8
    byte-order mark at the start is dropped, and an endless line is cut at
    MAX_LINE_BYTES instead of filling memory.
    """
    lines: list[str] = []
    pending = b""
    bom = b"\xef\xbb\xbf"
    start: bytes | None = b""  # the first bytes, until clear whether they're a BOM
    while data := stream.read1(1 << 16):  # what is there, waiting only for some
        if start is not None:
            start += data
            if len(start) < len(bom) and bom.startswith(start):
                continue  # a BOM may be arriving a byte at a time: wait for more
            data, start = start.removeprefix(bom), None
        *complete, pending = (pending + data).split(b"\n")
        pending = pending[: MAX_LINE_BYTES + 1]
        lines += map(_line, complete)
        while len(lines) >= most:
            yield lines[:most]
            lines = lines[most:]
        if lines and not _waiting(stream):
            yield lines
            lines = []
    if start:  # the input ended within what could have been a BOM
        pending += start.removeprefix(bom)
    if pending:
        lines.append(_line(pending))
    if lines:
        yield lines


def _waiting(stream: BinaryIO) -> bool:
    """Whether more input can be read from stream without blocking."""
    try:
        return bool(select.select([stream.fileno()], [], [], 0)[0])
    except (OSError, ValueError):  # no file descriptor: read on, in big chunks
        return True


def _convert(args: argparse.Namespace) -> int:
    converter = _converter(args)
    if args.dates:
        chunks: Iterator[list[str]] = iter([args.dates])
    else:
        chunks = _chunks(sys.stdin.buffer)
    refused = False
    out = sys.stdout
    for chunk in chunks:
        results = converter.convert_many(
            chunk, args.beam, len(chunk), with_attention=args.json
        )
        for line, result in zip(chunk, results, strict=True):
            if isinstance(line, _TooLong):
                result = _too_long(line)
            refused |= result.error is not None or result.warning is not None
            out.write(_format(result, args.json) + "\n")
        out.flush()
    return EXIT_REFUSED if refused else EXIT_OK


def _format(result: Conversion, as_json: bool) -> str:
    # A date outside the trained window is refused here: its century is a guess.
    problem = result.error or result.warning
    if as_json:
        if problem:
            return json.dumps({"input": result.input, "error": problem})
        attention = (
            [[round(w, 6) for w in row] for row in result.attention]
            if result.attention is not None
            else None
        )
        return json.dumps(
            {
                "input": result.input,
                "output": result.output,
                "expected": result.expected,
                "correct": result.correct,
                "tokens": list(result.tokens),
                "attention": attention,
            },
            ensure_ascii=False,
        )
    # One tab-separated line: a tab, \r or escape in the input shows as U+FFFD.
    shown = printable(result.input)
    return f"{shown}\t{'error: ' + printable(problem) if problem else result.output}"


def _evaluate(args: argparse.Namespace) -> int:
    converter = _converter(args)
    if args.all_dates:
        pairs, split_name = converter.pairs(converter.window.dates()), "all dates"
    else:
        pairs, split_name = converter.held_out_pairs(), "held-out"
    if not pairs:
        print("error: the checkpoint's held-out split is empty", file=sys.stderr)
        return EXIT_UNUSABLE
    started = time.perf_counter()
    preds = converter.predict([text for text, _ in pairs], args.beam)
    refs = [target_tokens(day) for _, day in pairs]
    metrics: dict[str, object] = dict(summarize(preds, refs))
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    wrong = [text for (text, _), p, r in zip(pairs, preds, refs, strict=True) if p != r]
    metrics["wrong"] = len(wrong)
    if converter.task == "human":  # where the mistakes are: per input form
        metrics["wrong_by_form"] = count_by_form(wrong)
    if args.json:
        print(json.dumps({"split": split_name, **metrics}))
        return EXIT_OK
    window: Window = converter.window
    unit = "(date, form) pairs" if converter.task == "human" else "dates"
    print(f"{split_name}: {metrics['count']:,} {unit} ({window.describe()})")
    for name, value in metrics.items():
        if name not in ("count", "seconds", "wrong", "wrong_by_form"):
            print(
                f"  {name:<16} {value:.4%}"
                if name != "bleu"
                else f"  {name:<16} {value:.4f}"
            )
    print(f"  wrong            {metrics['wrong']}")
    for form, count in metrics.get("wrong_by_form", {}).items():
        print(f"    {form:<24} {count}")
    return EXIT_OK
