"""The human task's default model, seed by seed: time to train, pairs wrong per form.

Trains `default_configs("human")` with seeds 0-2 (or those given) and checks
every (date, form) pair of the window, 22,280 × 12 = 267,360: held-out
accuracy is no stopping rule here, the whole set is the test. Not a test: run
it by hand,

    python bench/human.py [SEED ...]          # about a minute a seed
    python bench/human.py --form [SEED ...]   # the Train form's human start

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from date_seq2seq.converter import Converter  # noqa: E402
from date_seq2seq.data import target_tokens  # noqa: E402
from date_seq2seq.forms import count_by_form  # noqa: E402
from date_seq2seq.train_setup import TASK_SETUPS  # noqa: E402
from date_seq2seq.training import Trainer, default_configs  # noqa: E402


def run(seed: int, form: bool = False) -> dict[str, object]:
    """Train a seed's model (the Train form's start if `form`); check every pair."""
    data, model, train = (
        TASK_SETUPS["human"].configs() if form else default_configs("human")
    )
    trainer = Trainer(replace(data, seed=seed), model, replace(train, seed=seed))
    result = trainer.run()
    converter = Converter(trainer.checkpoint())
    pairs = converter.pairs(converter.window.dates())
    started = time.perf_counter()
    preds = converter.predict([text for text, _ in pairs])
    checked = time.perf_counter() - started
    wrong = count_by_form(
        text
        for (text, day), pred in zip(pairs, preds, strict=True)
        if pred != target_tokens(day)
    )
    return {
        "seed": seed,
        "train_seconds": round(result.seconds, 1),
        "steps": len(result.step_losses),
        "check_seconds": round(checked, 1),
        "wrong": sum(wrong.values()),
        "wrong_by_form": wrong,
    }


def main() -> None:
    form = "--form" in sys.argv
    seeds = [int(s) for s in sys.argv[1:] if s != "--form"] or [0, 1, 2]
    rows = [run(seed, form) for seed in seeds]
    print("| seed | train (s) | steps | wrong of 267,360 | wrong by form |")
    print("|---|---|---|---|---|")
    for row in rows:
        forms = ", ".join(f"{k} {v}" for k, v in row["wrong_by_form"].items() if v)
        print(f"| {row['seed']} | {row['train_seconds']} | {row['steps']:,} | "
              f"{row['wrong']} | {forms or '-'} |")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
