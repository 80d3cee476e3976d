"""Benchmark: time to accuracy, batch throughput, single-date latency, peak memory.

Ours against a faithful re-implementation of the classic tutorial's loop
(bench/tutorial_baseline.py), in ONE run on the same machine. Prints a table
and, last, one JSON line. Not a test: run it by hand,

    python bench/bench.py            # about a minute, most of it the baseline

Our training runs three times (the median is reported), the baseline once.

Each phase whose peak memory is reported runs in a fresh subprocess, so its
peak resident set is its own.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

from date_seq2seq.config import DataConfig  # noqa: E402
from date_seq2seq.converter import Converter  # noqa: E402
from date_seq2seq.data import DateDataset, Window, encode_sources, source_text, split  # noqa: E402
from date_seq2seq.decoding import greedy_many  # noqa: E402
from date_seq2seq.training import Progress, Trainer  # noqa: E402

TARGET = 0.999
EVAL_EVERY = 10  # steps of 32 between held-out checks, for ours and the baseline
N_CONVERT = 100_000
TUTORIAL_BATCH = 32  # the tutorial trains, and converts, in batches of 32
NAIVE_CHUNK = 4096  # the tutorial's model in big chunks: a naive chunked loop
OUR_RUNS = 3  # training runs of ours, each in a fresh process; the median counts


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def many_sources(vocab, n: int = N_CONVERT) -> torch.Tensor:
    """n dates cycling through the window: each of the 22,280 comes 4-5 times."""
    days = Window.from_config(DataConfig()).dates()
    return encode_sources([source_text(days[i % len(days)]) for i in range(n)], vocab)


def distinct_sources(vocab) -> torch.Tensor:
    """Every date of the window once: nothing to gain from repeats."""
    days = Window.from_config(DataConfig()).dates()
    return encode_sources([source_text(d) for d in days], vocab)


def rate(convert, src: torch.Tensor, repeats: int = 3) -> float:
    """Dates per second, the best of a few runs after a warm-up."""
    convert(src[:NAIVE_CHUNK])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        convert(src)
        best = min(best, time.perf_counter() - started)
    return len(src) / best


class TrainingClock:
    """Training seconds with the held-out evaluations taken out, from the events.

    A "step" event is timed before any evaluation that follows it; an "eval"
    or "epoch" event after it. Evaluating does not change training (it draws
    nothing from the run's random state), so checking often costs only time,
    and that time is not counted, as for the baseline.
    """

    def __init__(self) -> None:
        self.evaluating = 0.0  # seconds spent in held-out evaluations so far
        self.last_event = 0.0
        self.training = 0.0  # training seconds at the last step
        self.reached: tuple[int, float] | None = None  # (step, seconds) at TARGET

    def __call__(self, event: Progress) -> None:
        if event.kind == "step":
            self.training = event.seconds - self.evaluating
        else:
            self.evaluating += event.seconds - self.last_event
            if self.reached is None and event.metrics["held_out_exact_match"] >= TARGET:
                self.reached = (event.step, self.training)
        self.last_event = event.seconds


def phase_ours(checkpoint_path: str) -> dict:
    """Train the default model to its end, checking held-out every EVAL_EVERY steps."""
    trainer = Trainer()
    clock = TrainingClock()
    result = trainer.run(on_progress=clock, eval_every=EVAL_EVERY)
    trainer.checkpoint().save(checkpoint_path)
    steps, seconds = clock.reached or (None, None)
    per_epoch = math.ceil(len(trainer.train_set) / trainer.train_config.batch_size)
    return {
        "train_seconds_to_target": seconds,
        "steps_to_target": steps,
        "epochs_to_target": steps / per_epoch if steps else None,
        "train_seconds_total": clock.training,
        "epochs_total": len(result.history),
        "held_out_exact_match": result.final["held_out_exact_match"],
        "train_peak_mb": peak_mb(),
    }


def phase_convert(checkpoint_path: str) -> dict:
    converter = Converter.from_path(checkpoint_path)
    model = converter.model
    with torch.inference_mode():
        convert = lambda src: greedy_many(model, src, 12).ids  # noqa: E731
        per_second = rate(convert, many_sources(converter.vocab))
        distinct_per_second = rate(convert, distinct_sources(converter.vocab))
    timings = []
    torch.set_num_threads(1)  # as the app runs (OMP_NUM_THREADS=1)
    for _ in range(300):
        t = time.perf_counter()
        converter.step_through("24-11-22", top_k=3)  # what the app does per date
        timings.append(time.perf_counter() - t)
    all_dates = converter.evaluate(converter.window.dates())
    return {
        "dates_per_second": per_second,
        "distinct_dates_per_second": distinct_per_second,
        "single_ms_median": statistics.median(timings) * 1000,
        "all_dates_wrong": round(all_dates["count"] * (1 - all_dates["exact_match"])),
        "convert_peak_mb": peak_mb(),
    }


def phase_baseline() -> dict:
    from tutorial_baseline import exact_match, train_to_accuracy

    from date_seq2seq.data import task_vocabulary

    vocab = task_vocabulary()
    train_days, held_days = split(DataConfig())
    train, held = DateDataset(train_days, vocab), DateDataset(held_days, vocab)
    result = train_to_accuracy(
        train, held, len(vocab), TARGET, eval_every=EVAL_EVERY, max_seconds=400
    )
    model = result.pop("model").eval()

    def chunked(size: int):  # noqa: ANN202
        def convert(src: torch.Tensor) -> None:
            for first in range(0, len(src), size):
                model.inference(src[first : first + size], vocab.go_id)

        return convert

    tutorial, naive = chunked(TUTORIAL_BATCH), chunked(NAIVE_CHUNK)
    with torch.inference_mode():
        result["dates_per_second"] = rate(tutorial, many_sources(vocab))
        result["distinct_dates_per_second"] = rate(tutorial, distinct_sources(vocab))
        result["naive_chunked_dates_per_second"] = rate(naive, many_sources(vocab))
    result["held_out_exact_match"] = exact_match(model, held, vocab.go_id, vocab.eos_id)
    result["peak_mb"] = peak_mb()
    return result


def time_convert_command(checkpoint_path: str, tmp: Path) -> float:
    """Wall seconds of `python -m date_seq2seq convert` on a 100,000-line file."""
    days = Window.from_config(DataConfig()).dates()
    lines = tmp / "dates.txt"
    lines.write_text("".join(source_text(days[i % len(days)]) + "\n"
                             for i in range(N_CONVERT)))  # fmt: skip
    with lines.open() as stdin:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "date_seq2seq", "convert", "--checkpoint",
             checkpoint_path],
            stdin=stdin, stdout=subprocess.DEVNULL, check=True, cwd=ROOT,
        )  # fmt: skip
    return time.perf_counter() - started


def run_phase(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", nargs="+")
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        fn = {"ours": phase_ours, "convert": phase_convert, "baseline": phase_baseline}
        print(json.dumps(fn[name](*rest)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / "bench.pt")
        # Our run is short, so machine noise moves it most: the median of
        # three fresh processes (each trains the very same model).
        runs = sorted(
            (run_phase("ours", ckpt) for _ in range(OUR_RUNS)),
            key=lambda r: r["train_seconds_to_target"],
        )
        ours = runs[len(runs) // 2]
        ours["all_runs_seconds_to_target"] = [
            r["train_seconds_to_target"] for r in runs
        ]
        conv = run_phase("convert", ckpt)
        started = time.perf_counter()
        cmd = subprocess.run(
            [sys.executable, "-m", "date_seq2seq", "train", "--out",
             str(Path(tmp) / "cli.pt"), "--json"],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        train_wall = time.perf_counter() - started
        cli_summary = json.loads(cmd.stdout.strip().splitlines()[-1])
        convert_wall = time_convert_command(ckpt, Path(tmp))
    base = run_phase("baseline")

    speedup_train = base["seconds"] / ours["train_seconds_to_target"]
    speedup_convert = conv["dates_per_second"] / base["dates_per_second"]
    speedup_distinct = (
        conv["distinct_dates_per_second"] / base["distinct_dates_per_second"]
    )
    naive = base["naive_chunked_dates_per_second"]
    base_epochs = base["steps"] * TUTORIAL_BATCH / DataConfig().train_size
    rows = [
        ("train to >= 99.9% held-out (s)", f"{ours['train_seconds_to_target']:.2f}",
         f"{base['seconds']:.1f}", f"{speedup_train:.0f}x"),
        ("  steps of 32 (epochs)",
         f"{ours['steps_to_target']} ({ours['epochs_to_target']:.1f})",
         f"{base['steps']} ({base_epochs:.1f})", ""),
        ("whole `train` command, wall (s)", f"{train_wall:.2f}", "", ""),
        ("convert 100,000 dates, 22,280 distinct (dates/s)",
         f"{conv['dates_per_second']:,.0f}",
         f"{base['dates_per_second']:,.0f}", f"{speedup_convert:.1f}x"),
        ("convert the 22,280 distinct dates once each (dates/s)",
         f"{conv['distinct_dates_per_second']:,.0f}",
         f"{base['distinct_dates_per_second']:,.0f}", f"{speedup_distinct:.1f}x"),
        (f"  the same, the tutorial's model in chunks of {NAIVE_CHUNK:,}",
         f"{conv['distinct_dates_per_second']:,.0f}", f"{naive:,.0f}",
         f"{conv['distinct_dates_per_second'] / naive:.1f}x"),
        ("whole `convert` command, 100,000-line file, wall (s)",
         f"{convert_wall:.2f}", "", ""),
        ("one date + attention + top-3 steps (ms, median, 1 thread)",
         f"{conv['single_ms_median']:.2f}", "", ""),
        ("peak memory, training (MB)", f"{ours['train_peak_mb']:.0f}",
         f"{base['peak_mb']:.0f}", ""),
        ("peak memory, converting (MB)", f"{conv['convert_peak_mb']:.0f}", "", ""),
        ("wrong of all 22,280 dates", f"{conv['all_dates_wrong']}", "", ""),
    ]  # fmt: skip
    threads = torch.get_num_threads()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {threads} torch threads, torch {torch.__version__}")
    print(f"| {'measure':<58} | {'ours':>12} | {'tutorial':>12} | {'ratio':>6} |")
    print(f"|{'-' * 60}|{'-' * 14}|{'-' * 14}|{'-' * 8}|")
    for name, a, b, r in rows:
        print(f"| {name:<58} | {a:>12} | {b:>12} | {r:>6} |")
    print(json.dumps({"ours": ours, "convert": conv, "train_command_wall": train_wall,
                      "convert_command_wall": convert_wall,
                      "train_command": cli_summary, "baseline": base,
                      "speedup_train": speedup_train,
                      "speedup_convert": speedup_convert,
                      "speedup_distinct": speedup_distinct}))  # fmt: skip


if __name__ == "__main__":
    main()
