"""Checkpoints: one file with weights, configs, vocabulary and training history.

Saved atomically (a temporary file renamed into place, so a crash never leaves
half a file) and loaded with `torch.load(weights_only=True)`, which unpickles
tensors and plain containers only: a checkpoint can never run code. Everything
in it is then validated, and a bad file is refused with a CheckpointError that
says why.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .config import DataConfig, ModelConfig, TrainConfig, from_dict
from .data import split, task_vocabulary
from .model import Seq2Seq
from .vocab import Vocabulary

FORMAT = "date_seq2seq"
VERSION = 1
MAX_BYTES = 20 * 1024 * 1024  # the default model is ~100 KB; refuse anything huge


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


@dataclass
class Checkpoint:
    model: Seq2Seq
    vocab: Vocabulary
    data_config: DataConfig
    train_config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the plain dict that is saved: only tensors, str, numbers, lists."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_config": asdict(self.model.cfg),
            "data_config": asdict(self.data_config),
            "train_config": asdict(self.train_config),
            "vocab": self.vocab.to_list(),
            "history": [dict(h) for h in self.history],
            "state_dict": {
                k: v.detach().clone() for k, v in self.model.state_dict().items()
            },
        }

    def to_bytes(self) -> bytes:
        """Serialise to bytes, e.g. for a download button."""
        buffer = io.BytesIO()
        torch.save(self.to_dict(), buffer)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write atomically: to a temporary file beside path, then rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def save(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write a checkpoint atomically; return the path (see Checkpoint.save)."""
    return checkpoint.save(path)


def load(source: str | Path | bytes | BinaryIO) -> Checkpoint:
    """Load and validate a checkpoint from a path, bytes or a binary file."""
    raw = _read(source)
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "unusable"
        reason = (
            str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        )
        if "weights_only" in str(e):  # torch's advice to load unsafely: not ours
            reason = (
                "the safe loader refused it (not a torch file, or it holds "
                "objects other than tensors and plain data)"
            )
        raise CheckpointError(
            "not a readable checkpoint (truncated, corrupt or not a torch file): "
            + reason
        ) from None
    return _validate(obj)


def _read(source: str | Path | bytes | BinaryIO) -> bytes:
    if isinstance(source, bytes):
        raw = source
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"no checkpoint at {path}")
        if not path.is_file():
            raise CheckpointError(f"{path} is not a file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CheckpointError(
                f"{path} is {size} bytes; a checkpoint is at most {MAX_BYTES}"
            )
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    else:
        raw = source.read(MAX_BYTES + 1)
    if not raw:
        raise CheckpointError("the checkpoint is empty (0 bytes)")
    if len(raw) > MAX_BYTES:
        raise CheckpointError(f"the checkpoint is over {MAX_BYTES} bytes")
    return raw


def _validate(obj: object) -> Checkpoint:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError("not a date_seq2seq checkpoint (no 'format' marker)")
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint version {obj.get('version')!r} is not supported "
            f"(this is version {VERSION})"
        )
    missing = [k for k in ("model_config", "data_config", "train_config", "vocab",
                           "state_dict", "history") if k not in obj]  # fmt: skip
    if missing:
        raise CheckpointError(f"the checkpoint lacks: {', '.join(missing)}")
    try:
        model_cfg = from_dict(ModelConfig, obj["model_config"])
        data_cfg = from_dict(DataConfig, obj["data_config"])
        train_cfg = from_dict(TrainConfig, obj["train_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"bad configuration in checkpoint: {e}") from None
    try:
        vocab = Vocabulary(obj["vocab"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"bad vocabulary in checkpoint: {e}") from None
    lacking = [t for t in task_vocabulary().tokens if t not in vocab]
    if lacking:
        raise CheckpointError(f"the vocabulary lacks tokens dates need: {lacking[:5]}")
    if len(vocab) != model_cfg.vocab_size:
        raise CheckpointError(
            f"vocabulary has {len(vocab)} tokens, the model {model_cfg.vocab_size}"
        )
    history = obj["history"]
    if not isinstance(history, list) or not all(map(_is_record, history)):
        raise CheckpointError(
            "bad training history in checkpoint: each epoch must map names to numbers"
        )
    try:
        split(data_cfg)  # the window and its train/held-out draw, as used later
    except ValueError as e:
        raise CheckpointError(f"bad data configuration in checkpoint: {e}") from None
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError("the weights are not a state dict")
    # A small file declaring a huge model is refused before memory is spent
    # building it (the exact shapes are checked once it is built).
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    least = _least_weights(model_cfg)
    if least > held:
        raise CheckpointError(
            f"the configuration declares a model of at least {least:,} weights; "
            f"the file holds {held:,}"
        )
    try:
        # Its own generator: the initial weights are replaced by the file's, and
        # loading must not disturb anyone's random state.
        model = Seq2Seq(model_cfg, generator=torch.Generator())
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the model cannot be built: {e}") from None
    _check_weights(model.state_dict(), state)
    model.load_state_dict(state)
    model.eval()
    return Checkpoint(model, vocab, data_cfg, train_cfg, history)


def _least_weights(cfg: ModelConfig) -> int:
    """A lower bound on a model's weight count: its recurrent matrices alone."""
    gates = 4 if cfg.cell == "lstm" else 3
    return gates * cfg.num_layers * (cfg.encoder_hidden**2 + cfg.decoder_hidden**2)


def _is_record(record: object) -> bool:
    """One epoch of history: names to numbers, e.g. {"loss": 0.01}."""
    return isinstance(record, dict) and all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in record.items()
    )


def _check_weights(expected: dict[str, torch.Tensor], state: dict) -> None:
    """Check names, shapes, dtypes and values of `state` against `expected`'s."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            "the weights do not match the model configuration "
            f"(missing: {missing[:3]}, unexpected: {extra[:3]})"
        )
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = (
                tuple(got.shape)
                if isinstance(got, torch.Tensor)
                else type(got).__name__
            )
            raise CheckpointError(
                f"weight {name} has shape {shape}, the model needs {tuple(want.shape)}"
            )
        if got.dtype != want.dtype:
            raise CheckpointError(
                f"weight {name} is {got.dtype}, expected {want.dtype}"
            )
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"weight {name} contains NaN or infinity")
