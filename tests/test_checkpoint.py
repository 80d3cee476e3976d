"""Checkpoints: exact round trips, atomic saves, and refusal of every bad file."""

from __future__ import annotations

import copy
import io
import os
import pickle
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from date_seq2seq import checkpoint as ckpt
from date_seq2seq.checkpoint import Checkpoint, CheckpointError
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import Converter
from date_seq2seq.data import task_vocabulary
from date_seq2seq.model import Seq2Seq

HISTORY = [{"epoch": 1, "step": 3, "loss": 2.5}, {"epoch": 2, "step": 6, "loss": 1.5}]


def _tiny_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    cfg = ModelConfig(
        embedding_dim=3,
        encoder_hidden=5,
        decoder_hidden=7,
        attention="additive",
        num_layers=2,
    )
    return Checkpoint(
        Seq2Seq(cfg).eval(),
        task_vocabulary(),
        DataConfig(train_size=10, held_out_size=5, seed=4),
        TrainConfig(epochs=2, lr=0.005),
        copy.deepcopy(HISTORY),
    )


def _same_weights(a: Seq2Seq, b: Seq2Seq) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _src() -> torch.Tensor:
    vocab = task_vocabulary()
    return torch.tensor([vocab.encode(t) for t in ("24-11-22", "74-01-05")])


# --- round trips ----------------------------------------------------------------


def test_save_load_round_trip(trained, tmp_path):
    path = trained.save(tmp_path / "copy.pt")
    loaded = ckpt.load(path)
    assert _same_weights(loaded.model, trained.model)
    assert loaded.model.cfg == trained.model.cfg
    assert loaded.vocab == trained.vocab
    assert loaded.data_config == trained.data_config
    assert loaded.train_config == trained.train_config
    assert loaded.history == trained.history and len(loaded.history) >= 1
    assert not loaded.model.training
    src = _src()
    tgt_in = torch.ones(2, 3, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(loaded.model(src, tgt_in)[0], trained.model(src, tgt_in)[0])


def test_round_trip_through_bytes_and_file_objects():
    original = _tiny_checkpoint()
    raw = original.to_bytes()
    for source in (raw, io.BytesIO(raw)):
        loaded = ckpt.load(source)
        assert _same_weights(loaded.model, original.model)
        assert loaded.model.cfg == original.model.cfg
        assert (loaded.data_config, loaded.train_config) == (
            original.data_config,
            original.train_config,
        )
        assert loaded.history == HISTORY


def test_the_saved_dict_is_plain_data():
    saved = torch.load(io.BytesIO(_tiny_checkpoint().to_bytes()), weights_only=True)
    assert set(saved) == {
        "format",
        "version",
        "model_config",
        "data_config",
        "train_config",
        "vocab",
        "history",
        "state_dict",
    }
    assert (saved["format"], saved["version"]) == ("date_seq2seq", 1)
    assert saved["vocab"] == task_vocabulary().tokens
    assert saved["model_config"] == asdict(_tiny_checkpoint().model.cfg)
    assert all(isinstance(v, torch.Tensor) for v in saved["state_dict"].values())


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "nested" / "dir" / "model.pt"
    first = _tiny_checkpoint()
    assert first.save(target) == target
    assert [p.name for p in target.parent.iterdir()] == ["model.pt"]
    torch.manual_seed(9)
    second = Checkpoint(
        Seq2Seq(first.model.cfg), first.vocab, first.data_config, first.train_config
    )
    second.save(target)  # replaces the old file
    assert [p.name for p in target.parent.iterdir()] == ["model.pt"]
    assert _same_weights(ckpt.load(target).model, second.model)
    assert not _same_weights(ckpt.load(target).model, first.model)


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_save_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch, failure):
    target = tmp_path / "model.pt"
    old = _tiny_checkpoint()
    old.save(target)
    before = target.read_bytes()

    def fail(src, dst):
        raise failure

    monkeypatch.setattr(ckpt.os, "replace", fail)
    with pytest.raises(type(failure)):
        _tiny_checkpoint().save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


# --- refusals -----------------------------------------------------------------------


def _write(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _edited(edit: Callable[[dict], None]) -> Callable[[Path], Path]:
    """A case: the tiny checkpoint's dict, edited, saved with torch.save."""

    def make(path: Path) -> Path:
        saved = _tiny_checkpoint().to_dict()
        edit(saved)
        return _write(path, saved)

    return make


def _raw(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


def _truncated(path: Path) -> Path:
    raw = _tiny_checkpoint().to_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _state(name: str, value: object) -> Callable[[dict], None]:
    return lambda d: d["state_dict"].__setitem__(name, value)


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def _update(key: str, **values: object) -> Callable[[dict], None]:
    return lambda d: d[key].update(values)


OUT_W = "decoder.out.weight"  # (27, 12)

REFUSED: dict[str, Callable[[Path], Path]] = {
    "empty file": _raw(b""),
    "truncated": _truncated,
    "random bytes": _raw(random.Random(0).randbytes(4096)),
    "plain text": _raw(b"22/Nov/2024 is a date, not a model\n"),
    "foreign dict": lambda p: _write(p, {"weights": torch.zeros(3), "epoch": 4}),
    "bare tensor": lambda p: _write(p, torch.zeros(3)),
    "a list": lambda p: _write(p, [1, 2, 3]),
    "wrong format": _edited(_set("format", "nanoGPT")),
    "no format": _edited(lambda d: d.pop("format")),
    "version 2": _edited(_set("version", 2)),
    "version as text": _edited(_set("version", "1")),
    "no state dict": _edited(lambda d: d.pop("state_dict")),
    "no vocab": _edited(lambda d: d.pop("vocab")),
    "no history": _edited(lambda d: d.pop("history")),
    "wrong shape": _edited(_state(OUT_W, torch.zeros(27, 11))),
    "transposed": _edited(
        lambda d: d["state_dict"].__setitem__(
            OUT_W, d["state_dict"][OUT_W].T.contiguous()
        )
    ),
    "missing weight": _edited(lambda d: d["state_dict"].pop(OUT_W)),
    "extra weight": _edited(_state("decoder.extra", torch.zeros(1))),
    "nan weight": _edited(
        lambda d: d["state_dict"][OUT_W].__setitem__((0, 0), float("nan"))
    ),
    "inf weight": _edited(
        lambda d: d["state_dict"][OUT_W].__setitem__((3, 4), float("inf"))
    ),
    "float64 weights": _edited(
        lambda d: d["state_dict"].update(
            {k: v.double() for k, v in d["state_dict"].items()}
        )
    ),
    "weight as a list": _edited(_state("decoder.out.bias", [0.0] * 27)),
    "state dict as a list": _edited(_set("state_dict", [1, 2])),
    "weights named by numbers": _edited(
        lambda d: d["state_dict"].update({7: torch.zeros(1), "x": torch.zeros(1)})
    ),
    "model vocab size 28": _edited(_update("model_config", vocab_size=28)),
    "vocab with an extra token": _edited(lambda d: d["vocab"].append("Xyz")),
    "vocab lacking months": _edited(lambda d: d.__setitem__("vocab", d["vocab"][:15])),
    "vocab without specials": _edited(lambda d: d.__setitem__("vocab", d["vocab"][3:])),
    "vocab duplicates": _edited(lambda d: d["vocab"].__setitem__(5, "1")),
    "vocab not a list": _edited(_set("vocab", 27)),
    "unknown model field": _edited(_update("model_config", colour="red")),
    "unknown data field": _edited(_update("data_config", dates=5)),
    "unknown train field": _edited(_update("train_config", momentum=0.9)),
    "bad attention": _edited(_update("model_config", attention="luong")),
    "bad lr type": _edited(_update("train_config", lr="fast")),
    "config not a dict": _edited(_set("model_config", [("cell", "lstm")])),
    "history not a list": _edited(_set("history", {"epoch": 1})),
    "history of numbers": _edited(_set("history", [1.0, 2.0])),
    "history with text": _edited(_set("history", [{"held_out_exact_match": "x"}])),
    "history with None": _edited(_set("history", [{"loss": None}])),
    "more dates than the window": _edited(_update("data_config", train_size=30000)),
    "float data size": _edited(_update("data_config", held_out_size=10.5)),
    "float data seed": _edited(_update("data_config", seed=0.5)),
    "negative data seed": _edited(_update("data_config", seed=-1)),
    "window as a number": _edited(_update("data_config", start=1974)),
}


@pytest.mark.parametrize("case", REFUSED)
def test_bad_files_are_refused_with_a_checkpoint_error(case, tmp_path):
    path = REFUSED[case](tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        ckpt.load(path)
    assert str(info.value).strip()
    if path.stat().st_size:  # the same bytes in memory are refused the same way
        with pytest.raises(CheckpointError):
            ckpt.load(path.read_bytes())
    with pytest.raises(CheckpointError):
        Converter.from_path(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent.pt", "no checkpoint"),
        (lambda p: p, "not a file"),
    ],
)
def test_missing_files_and_directories_are_refused(tmp_path, make, message):
    with pytest.raises(CheckpointError, match=message):
        ckpt.load(make(tmp_path))


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.pt"
    with path.open("wb") as f:
        f.truncate(ckpt.MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(CheckpointError, match="bytes"):
        ckpt.load(path)


def test_refusal_messages_say_why(tmp_path):
    for case, words in [
        ("wrong shape", OUT_W),
        ("nan weight", "NaN"),
        ("version 2", "version 2"),
        ("unknown model field", "colour"),
        ("model vocab size 28", "28"),
        ("empty file", "empty"),
        ("vocab lacking months", "not this task's"),
    ]:
        with pytest.raises(CheckpointError, match=words):
            ckpt.load(REFUSED[case](tmp_path / f"{case}.pt"))


class _RunsCode:
    """Unpickling this runs a shell command: a checkpoint must never do that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Plain:
    def __init__(self) -> None:
        self.value = 3


@pytest.mark.parametrize("how", ["torch.save", "pickle", "inside a checkpoint"])
def test_pickled_code_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(_RunsCode(marker), path)
    elif how == "pickle":
        path.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    else:
        saved = _tiny_checkpoint().to_dict()
        saved["history"] = [{"epoch": 1, "note": _RunsCode(marker)}]
        torch.save(saved, path)
    with pytest.raises(CheckpointError):
        ckpt.load(path)
    assert not marker.exists()
    # Sanity: the payload really does run code when unpickled unsafely.
    if how == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_arbitrary_objects_are_refused(tmp_path):
    saved = _tiny_checkpoint().to_dict()
    saved["history"] = [_Plain()]
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.load(_write(tmp_path / "object.pt", saved))


@pytest.mark.parametrize("num_layers", [2.0, 1.5])
def test_a_float_layer_count_is_refused(tmp_path, num_layers):
    path = _edited(_update("model_config", num_layers=num_layers))(tmp_path / "f.pt")
    with pytest.raises(CheckpointError):
        ckpt.load(path)


@pytest.mark.parametrize(
    "window", [{"start": "nonsense"}, {"start": "2030-01-01", "end": "1980-01-01"}]
)
def test_a_bad_data_window_is_refused(tmp_path, window):
    path = _edited(_update("data_config", **window))(tmp_path / "w.pt")
    with pytest.raises(CheckpointError):
        Converter.from_path(path)


def test_a_huge_declared_model_is_refused_before_it_is_built(tmp_path, monkeypatch):
    huge = {"num_layers": 8, "embedding_dim": 1024, "encoder_hidden": 1024,
            "decoder_hidden": 1024}  # fmt: skip
    path = _edited(_update("model_config", **huge))(tmp_path / "h.pt")
    built = []
    monkeypatch.setattr(Seq2Seq, "__init__", lambda *args, **kw: built.append(1))
    with pytest.raises(CheckpointError, match="declares a model of at least"):
        ckpt.load(path)
    assert built == []  # refused before any of it was built


def test_the_fingerprint_follows_the_weights_and_only_them(trained, tmp_path):
    loaded = ckpt.load(trained.save(tmp_path / "m.pt"))
    assert loaded.fingerprint == trained.fingerprint
    assert len(trained.fingerprint) == 12
    with torch.no_grad():
        next(loaded.model.parameters()).view(-1)[0] += 1e-6
    assert loaded.fingerprint != trained.fingerprint
