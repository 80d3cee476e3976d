"""Checkpoints: one file with weights, configs, vocabulary and training history.

Saved atomically (a temporary file renamed into place, so a crash never leaves
half a file) and loaded with `torch.load(weights_only=True)`, which unpickles
tensors and plain containers only: a checkpoint can never run code. Everything
in it is then validated, and a bad file is refused with a CheckpointError that
says why.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import math
import os
import re
import tempfile
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .config import DataConfig, ModelConfig, TrainConfig, from_dict
from .data import split_pairs, task_vocabulary
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

    @property
    def fingerprint(self) -> str:
        """12 hex digits of a hash of the weights: two runs with the same
        settings and seed end with the same fingerprint, alone or side by side."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]

    def to_bytes(self) -> bytes:
        """Serialise to bytes, e.g. for a download button."""
        buffer = io.BytesIO()
        torch.save(self.to_dict(), buffer)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write atomically: to a temporary file beside path, then rename.

        Refuses to replace anything but a regular file (a device such as
        /dev/null would become a file). The temporary name is short, whatever
        the target's length, and temporaries of earlier saves to the same
        target that a kill left behind are removed once they are an hour old.
        """
        path = Path(path)
        problem = target_problem(path)
        if problem:
            raise OSError(errno.EINVAL, problem, str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = _temporary_prefix(path)
        _remove_stale(path.parent, prefix)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
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


STALE_SECONDS = 3600  # a save takes well under a second: older is a killed one


def target_problem(path: Path) -> str | None:
    """Why a checkpoint may not be written at path, or None if it may."""
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device?)"
        return f"it exists and is {kind}: give the name of a file to write"
    return None


def _temporary_prefix(path: Path) -> str:
    """A short prefix naming the target: ".<hash>-", whatever its length."""
    return "." + hashlib.sha256(path.name.encode()).hexdigest()[:12] + "-"


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove this target's temporaries that a killed save left behind."""
    cutoff = time.time() - STALE_SECONDS
    for leftover in folder.glob(f"{glob.escape(prefix)}*.tmp"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def save(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write a checkpoint atomically; return the path (see Checkpoint.save)."""
    return checkpoint.save(path)


def load(source: str | Path | bytes | BinaryIO) -> Checkpoint:
    """Load and validate a checkpoint from a path, bytes or a binary file."""
    raw = _read(source)
    _check_archive(raw)
    try:
        with warnings.catch_warnings():  # protocol 3 works; torch warns of it
            warnings.simplefilter("ignore", UserWarning)
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


# What torch.save puts in its zip archive, under one folder of any name.
_MEMBERS = re.compile(
    r"[^/]+/(data\.pkl|version|\.format_version|\.storage_alignment|byteorder"
    r"|data/[0-9]+|\.data/serialization_id|\.data/version)"
)
MAX_PICKLE_BYTES = 1024 * 1024  # the configs, vocabulary and history: a few KB
PICKLE_PROTOCOLS = (2, 3)  # torch.save's default, and the one after it


def _check_archive(raw: bytes) -> None:
    """Refuse, cheaply and before unpickling, what torch.save does not write.

    torch.save writes an uncompressed zip: a compressed member could unpack to
    gigabytes (a zip bomb), so what each member declares it unpacks to is
    checked against the limits, and compression is refused outright.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, ValueError):
        raise CheckpointError(
            "not a readable checkpoint (truncated, corrupt or not a torch file): "
            "it is not the zip archive torch.save writes"
        ) from None
    with archive:
        _check_members(archive)


def _check_members(archive: zipfile.ZipFile) -> None:
    members = archive.infolist()
    unpacked = 0
    for member in members:
        if not _MEMBERS.fullmatch(member.filename):
            raise CheckpointError(
                f"the archive holds {member.filename[:60]!r}, which torch.save "
                "never writes"
            )
        if member.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"the archive's member {member.filename[:60]!r} is compressed; "
                "torch.save never compresses (a compressed checkpoint could "
                "unpack to far more than its size)"
            )
        unpacked += member.file_size
    if unpacked > MAX_BYTES:
        raise CheckpointError(
            f"the archive unpacks to {unpacked:,} bytes; a checkpoint is at most "
            f"{MAX_BYTES:,}"
        )
    pickles = [m for m in members if m.filename.endswith("/data.pkl")]
    if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"the archive must hold one data.pkl of at most {MAX_PICKLE_BYTES:,} bytes"
        )
    head = archive.open(pickles[0]).read(2)
    # Protocols 2 and later start with a marker and the number; 0 and 1 do not.
    protocol = str(head[1]) if head[:1] == b"\x80" else "0 or 1"
    if protocol not in map(str, PICKLE_PROTOCOLS):
        raise CheckpointError(
            f"the checkpoint was pickled with protocol {protocol}; this reads "
            f"the protocols torch.save writes ({', '.join(map(str, PICKLE_PROTOCOLS))})"
        )


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
    task_vocab = task_vocabulary(data_cfg.task)
    if vocab != task_vocab:  # same tokens, same order: nothing else decodes
        raise CheckpointError(
            f"the vocabulary is not this task's ({data_cfg.task}): it must be exactly "
            f"{len(task_vocab)} tokens in the task's order (ids mean tokens)"
        )
    if len(vocab) != model_cfg.vocab_size:
        raise CheckpointError(
            f"vocabulary has {len(vocab)} tokens, the model {model_cfg.vocab_size}"
        )
    history = obj["history"]
    if not isinstance(history, list) or len(history) > MAX_HISTORY:
        raise CheckpointError(
            f"bad training history in checkpoint: a list of at most {MAX_HISTORY} "
            "epochs"
        )
    for record in history:
        problem = _record_problem(record)
        if problem:
            raise CheckpointError(f"bad training history in checkpoint: {problem}")
    try:
        split_pairs(data_cfg)  # the window and its train/held-out draw, as used later
    except ValueError as e:
        raise CheckpointError(f"bad data configuration in checkpoint: {e}") from None
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError("the weights are not a state dict (names to tensors)")
    # Each tensor must hold its own numbers: a tensor "expanded" from one element
    # (stride 0) declares a million times more than the file holds.
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and not _holds_its_data(tensor):
            raise CheckpointError(
                f"weight {str(name)[:60]!r} declares {tensor.numel():,} numbers but "
                "the file holds fewer (a strided or expanded view)"
            )
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


def _holds_its_data(tensor: torch.Tensor) -> bool:
    """Whether a tensor is dense and its storage is exactly its numbers."""
    size = tensor.numel() * tensor.element_size()
    return (
        tensor.is_contiguous()
        and tensor.storage_offset() == 0
        and tensor.untyped_storage().nbytes() == size
    )


def _least_weights(cfg: ModelConfig) -> int:
    """A lower bound on a model's weight count: its recurrent matrices alone."""
    gates = 4 if cfg.cell == "lstm" else 3
    return gates * cfg.num_layers * (cfg.encoder_hidden**2 + cfg.decoder_hidden**2)


MAX_HISTORY = 10_000  # epochs: far above any run's
# The range each known figure of a history record takes; others: any finite number.
_RANGES = {"epoch": (0, 1e9), "step": (0, 1e12), "loss": (0, 1e30), "lr": (0, 1e6),
           "seconds": (0, 1e9), "held_out_loss": (0, 1e30)}  # fmt: skip
_SHARES = ("held_out_exact_match", "held_out_token_accuracy",
           "held_out_teacher_forced_token_accuracy")  # fmt: skip


def _record_problem(record: object) -> str | None:
    """Why one epoch's record is unusable, or None: names to finite numbers in
    their range (a share from 0 to 1), e.g. {"loss": 0.01}."""
    if not isinstance(record, dict) or len(record) > 50:
        return "each epoch must map at most 50 names to numbers"
    for name, value in record.items():
        if not isinstance(name, str) or len(name) > 64:
            return "each figure needs a short name"
        low, high = (0, 1) if name in _SHARES else _RANGES.get(name, (-1e30, 1e30))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high  # 10**400 too: compared as an int
            or not math.isfinite(value)
        ):
            return f"{name[:64]!r} must be a number from {low:g} to {high:g}"
    return None


def _check_weights(expected: dict[str, torch.Tensor], state: dict) -> None:
    """Check names, shapes, dtypes and values of `state` against `expected`'s."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            "the weights do not match the model configuration "
            f"(missing: {missing[:3]}, unexpected: {[n[:60] for n in extra[:3]]})"
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
