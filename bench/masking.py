"""Masking made visible: the human task trained with and without its masks.

Trains the default human model (seed 0) three ways – as it is, without the
attention mask, without the loss mask – and, form by form over every 7th date
of the window, measures the share of attention on <PAD> and the answers right
when every input is padded to the longest (28 characters, as a batch in
training may be) against padded only to its own length. Not a test: run it by
hand,

    python bench/masking.py            # a few minutes

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from date_seq2seq.converter import Converter  # noqa: E402
from date_seq2seq.padding import padding_effect  # noqa: E402
from date_seq2seq.training import Trainer, default_configs  # noqa: E402


def trained(mask_attention: bool = True, mask_loss: bool = True) -> Trainer:
    data, model, train = default_configs("human")
    trainer = Trainer(
        data,
        replace(model, mask_attention=mask_attention),
        replace(train, mask_loss=mask_loss),
    )
    trainer.run()
    return trainer


def main() -> None:
    runs = {"masked": trained(), "no attention mask": trained(mask_attention=False)}
    no_loss_mask = trained(mask_loss=False)
    fingerprints = {
        "masked": runs["masked"].checkpoint().fingerprint,
        "no loss mask": no_loss_mask.checkpoint().fingerprint,
    }
    rows = {}
    for name, trainer in runs.items():
        converter = Converter(trainer.checkpoint())
        days = converter.window.dates()[::7]
        rows[name] = [asdict(e) for e in padding_effect(converter, days)]
    print(f"{len(days):,} dates a form; padded to {rows['masked'][0]['width']}")
    print("| form | model | attention on <PAD> | right, padded | right, unpadded |")
    print("|---|---|---|---|---|")
    for i, effect in enumerate(rows["masked"]):
        for name in rows:
            e = rows[name][i]
            print(f"| {effect['form']} | {name} | {e['pad_attention']:.1%} | "
                  f"{e['right_padded'] / e['count']:.2%} | "
                  f"{e['right_alone'] / e['count']:.2%} |")  # fmt: skip
    same = fingerprints["masked"] == fingerprints["no loss mask"]
    print(f"loss mask on/off: weights {fingerprints} – identical: {same}")
    print(json.dumps({"effects": rows, "fingerprints": fingerprints}))


if __name__ == "__main__":
    main()
