"""Measure beam search against greedy, to choose the length penalty's alpha.

Exact match over every date of the window (22,280), greedy against beam width
5 at several alphas, on the default model and on weak ones (the app's "1
epoch of 200 dates", "3 epochs of 500" and 1 epoch of 1,000, seeds 0-2): beam
search with the default alpha must never be worse than greedy. Not a test: run
it by hand,

    python bench/beam.py            # about two minutes

Prints a table of wrong dates (of 22,280) and, last, one JSON line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from date_seq2seq import Converter, DataConfig, TrainConfig, train  # noqa: E402
from date_seq2seq.config import LENGTH_ALPHA  # noqa: E402

ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)
BEAM = 5


def models() -> dict[str, Converter]:
    """The default model and the weak ones a learner trains to see mistakes."""
    found = {"default": Converter.default()}
    for dates, epochs in ((200, 1), (500, 3), (1000, 1)):
        for seed in (0, 1, 2):
            data = DataConfig(train_size=dates, seed=seed)
            checkpoint, _ = train(data, None, TrainConfig(epochs=epochs, seed=seed))
            found[f"{epochs} ep x {dates}, seed {seed}"] = Converter(checkpoint)
    return found


def wrong(converter: Converter, beam: int, alpha: float) -> int:
    converter.decode_config = replace(converter.decode_config, length_alpha=alpha)
    days = converter.window.dates()
    metrics = converter.evaluate(days, beam)
    return round(metrics["count"] * (1 - metrics["exact_match"]))


def main() -> None:
    rows = {}
    for name, converter in models().items():
        rows[name] = {"greedy": wrong(converter, 1, LENGTH_ALPHA)}
        for alpha in ALPHAS:
            rows[name][f"beam {BEAM}, alpha {alpha:g}"] = wrong(converter, BEAM, alpha)
        for alpha in (0.0, LENGTH_ALPHA):
            rows[name][f"beam 8, alpha {alpha:g}"] = wrong(converter, 8, alpha)
    columns = list(next(iter(rows.values())))
    print(f"wrong of 22,280 dates; default alpha {LENGTH_ALPHA:g}")
    print("| model | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:,}" for c in columns) + " |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
