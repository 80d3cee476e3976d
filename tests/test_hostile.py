"""Hostile files, names, streams and settings: each was once a way to break it.

Files are made small: a "bomb" that would unpack to gigabytes must be refused
before anything is unpacked or allocated.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from date_seq2seq import checkpoint as ckpt
from date_seq2seq import cli, decoding
from date_seq2seq import converter as converter_module
from date_seq2seq.checkpoint import CheckpointError
from date_seq2seq.converter import Converter
from date_seq2seq.data import task_vocabulary
from date_seq2seq.train_setup import MAX_STEPS, Setup

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["train", "--epochs", "1", "--train-size", "64", "--held-out-size", "16"]


def _saved(trained: ckpt.Checkpoint, **changes: object) -> bytes:
    """The trained model's checkpoint dict, changed, saved as torch.save does."""
    obj = trained.to_dict()
    obj.update(changes)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _cli(*args: str, home: Path, stdin: bytes = b"", **env: str):  # noqa: ANN202
    return subprocess.run(
        [sys.executable, "-m", "date_seq2seq", *args], input=stdin,
        capture_output=True, cwd=ROOT, timeout=120,
        env={**os.environ, "DATE_SEQ2SEQ_HOME": str(home), **env},
    )  # fmt: skip


# --- 1. data loss ---


def test_train_never_replaces_a_device_or_a_pipe(tmp_path, capsys):
    node = tmp_path / "null"
    if os.geteuid() == 0:  # the very thing: a character device, like /dev/null
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        os.mkfifo(node)
    kind = stat.S_IFMT(node.stat().st_mode)
    assert cli.main([*TINY_TRAIN, "--out", str(node)]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and len(err.strip().splitlines()) == 1
    assert "epoch" not in err  # refused before training
    assert stat.S_IFMT(node.stat().st_mode) == kind  # still what it was
    assert cli.main([*TINY_TRAIN, "--out", "/dev/null"]) == 2
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_the_writer_itself_refuses_a_non_regular_target(trained, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        trained.save(tmp_path / "pipe")


def test_a_long_output_name_saves(trained, tmp_path):
    name = "m" * 245 + ".pt"  # 248 characters: the longest most filesystems take
    assert ckpt.load(trained.save(tmp_path / name)).history == trained.history
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_stale_temporaries_of_killed_saves_are_removed(trained, tmp_path):
    target = tmp_path / "m.pt"
    prefix = ckpt._temporary_prefix(target)
    stale, fresh = tmp_path / f"{prefix}dead.tmp", tmp_path / f"{prefix}live.tmp"
    other = tmp_path / ".someone-else.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"half a file")
    old = time.time() - ckpt.STALE_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    trained.save(target)
    assert not stale.exists()  # a killed save's, long ago
    assert fresh.exists()  # may be another save, going on now
    assert other.exists()  # not ours


# --- 2-4. denial of service ---


def test_a_zip_bomb_is_refused_before_it_is_unpacked(trained):
    raw = trained.to_bytes()
    source = zipfile.ZipFile(io.BytesIO(raw))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as out:
        for member in source.infolist():
            data = source.read(member)
            if member.filename.endswith("data.pkl"):
                info = zipfile.ZipInfo(member.filename)
                info.compress_type = zipfile.ZIP_DEFLATED
                with out.open(info, "w", force_zip64=True) as f:
                    f.write(data)
                    zeros = bytes(1 << 20)
                    for _ in range(200):  # 200 MB of zeros after the real pickle
                        f.write(zeros)
            else:
                out.writestr(member, data)
    small = bomb.getvalue()
    assert len(small) < ckpt.MAX_BYTES < 200 << 20  # small file, huge inside
    with pytest.raises(CheckpointError, match="unpacks to|compressed"):
        ckpt.load(small)


def test_a_compressed_member_is_refused(trained):
    raw = trained.to_bytes()
    source = zipfile.ZipFile(io.BytesIO(raw))
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as out:
        for member in source.infolist():
            out.writestr(member.filename, source.read(member))
    with pytest.raises(CheckpointError, match="compressed"):
        ckpt.load(packed.getvalue())


def test_an_expanded_tensor_is_refused_before_a_model_is_built(trained, monkeypatch):
    state = {k: v.clone() for k, v in trained.model.state_dict().items()}
    state["decoder.out.bias"] = torch.zeros(1).expand(10**6, 10**6)
    built = []
    monkeypatch.setattr(ckpt, "Seq2Seq", lambda *a, **k: built.append(1))
    with pytest.raises(CheckpointError, match="declares .* numbers but the file"):
        ckpt.load(_saved(trained, state_dict=state))
    assert built == []


def test_beam_search_of_many_inputs_goes_in_bounded_chunks(trained, monkeypatch):
    sizes = []
    real = decoding.beam_search

    def recording(model, src, *args, **kwargs):  # noqa: ANN001, ANN202
        sizes.append(src.size(0))
        return real(model, src, *args, **kwargs)

    monkeypatch.setattr(decoding, "beam_search", recording)
    converter = Converter(trained)
    texts = [f"{y:02d}-{m:02d}-{d:02d}" for y in (1, 2, 3) for m in range(1, 13)
             for d in range(1, 29)]  # fmt: skip
    got = list(converter.convert_many(texts, beam_size=64))
    assert max(sizes) * 64 <= decoding.BEAM_ROWS and len(sizes) > 1
    assert [c.output for c in got[:40]] == [
        c.output for c in converter.convert_many(texts[:40], beam_size=64)
    ]


def test_a_link_asking_for_hours_of_training_is_cut_to_a_run():
    link = {"hidden": "512", "layers": "4", "embedding": "256", "epochs": "200",
            "train_size": "20000", "batch": "8", "lr": "0.0003"}  # fmt: skip
    setup, problems = Setup.from_params(link)
    assert setup.hidden <= 256 and setup.layers <= 3 and setup.embedding <= 128
    assert setup.steps <= MAX_STEPS
    assert len(problems) >= 4


# --- 5-9. bad content let through ---


def test_a_huge_number_in_the_history_is_refused(trained):
    for value in (10**400, float("inf"), float("nan"), 1.5):
        history = [{"held_out_exact_match": value, "loss": 0.1}]
        with pytest.raises(CheckpointError, match="held_out_exact_match"):
            ckpt.load(_saved(trained, history=history))
    with pytest.raises(CheckpointError, match="'loss' must be a number"):
        ckpt.load(_saved(trained, history=[{"loss": -1.0}]))


@pytest.mark.parametrize(
    "tokens",
    [
        [*task_vocabulary().tokens, "\n\x1b[31mX\t[a](http://e.vil)"],  # an extra one
        [
            t if t not in ("Nov", "Dec") else {"Nov": "Dec", "Dec": "Nov"}[t]
            for t in task_vocabulary().tokens
        ],  # fmt: skip
    ],
    ids=["extra-token", "nov-dec-swapped"],
)
def test_a_vocabulary_other_than_the_tasks_is_refused(trained, tokens):
    config = {**trained.to_dict()["model_config"], "vocab_size": len(tokens)}
    with pytest.raises(CheckpointError, match="vocabulary is not this task's"):
        ckpt.load(_saved(trained, vocab=tokens, model_config=config))


@pytest.mark.parametrize("protocol", [0, 1, 4, 5])
def test_other_pickle_protocols_are_refused_in_one_line(trained, protocol, tmp_path):
    buffer = io.BytesIO()
    torch.save(trained.to_dict(), buffer, pickle_protocol=protocol)
    path = tmp_path / "m.pt"
    path.write_bytes(buffer.getvalue())
    said = "0 or 1" if protocol < 2 else str(protocol)
    with pytest.raises(CheckpointError, match=f"protocol {said};"):
        ckpt.load(path)


def test_protocol_3_loads_without_a_warning(trained, tmp_path):
    buffer = io.BytesIO()
    torch.save(trained.to_dict(), buffer, pickle_protocol=3)
    path = tmp_path / "m.pt"
    path.write_bytes(buffer.getvalue())
    done = _cli("convert", "--checkpoint", str(path), "24-11-22", home=tmp_path)
    assert done.returncode == 0 and done.stderr == b""


# --- 13-16. streams and homes ---


def test_a_line_too_long_is_called_too_long_not_empty(trained_path, tmp_path):
    stdin = b" " * 5000 + b"24-11-22\n99-12-31\n"
    done = _cli("convert", "--checkpoint", str(trained_path), home=tmp_path,
                stdin=stdin)  # fmt: skip
    lines = done.stdout.decode().splitlines()
    assert "error: the line is longer than 4096 bytes" in lines[0]
    assert lines[1] == "99-12-31\t31/Dec/1999"


class Trickle:
    """A stream that hands out its chunks one read at a time, as a slow pipe."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def read1(self, n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def fileno(self) -> int:
        raise OSError("no descriptor")


def test_a_byte_order_mark_split_across_reads_is_dropped():
    got = [line for chunk in cli._chunks(Trickle(b"\xef", b"\xbb", b"\xbf24-11-22\n"))
           for line in chunk]  # fmt: skip
    assert got == ["24-11-22"]
    not_a_mark = [line for chunk in cli._chunks(Trickle(b"\xef", b"x\n"))
                  for line in chunk]  # fmt: skip
    assert not_a_mark == ["\ufffdx"]  # a stray byte is kept (and refused as input)


def test_an_ascii_terminal_gets_every_line_answered(trained_path, tmp_path):
    stdin = "24-11-22\né-11-22\n99-12-31\n".encode()
    done = _cli("convert", "--checkpoint", str(trained_path), home=tmp_path,
                stdin=stdin, PYTHONIOENCODING="ascii")  # fmt: skip
    lines = done.stdout.decode("ascii").splitlines()
    assert done.returncode == 1 and len(lines) == 3  # the bad one refused, not fatal
    assert lines[0].endswith("22/Nov/2024") and lines[2].endswith("31/Dec/1999")
    assert "\\xe9" in lines[1] and "error:" in lines[1]


def test_an_unwritable_home_still_converts_and_says_so(tmp_path, monkeypatch, caplog):
    home = tmp_path / "read-only"
    home.mkdir()
    monkeypatch.setenv("DATE_SEQ2SEQ_HOME", str(home))
    monkeypatch.setattr(
        converter_module, "train", lambda *configs, on_progress=None: _tiny()
    )

    def no_saving(self, path):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ckpt.Checkpoint, "save", no_saving)
    converter = Converter.default()
    assert converter.convert("24-11-22").output  # the model trained just now
    assert "could not be saved" in caplog.text


def _tiny():  # noqa: ANN202
    from date_seq2seq.config import DataConfig, TrainConfig
    from date_seq2seq.training import train

    return train(DataConfig(train_size=64, held_out_size=16), None,
                 TrainConfig(epochs=1))  # fmt: skip


def test_a_refusal_is_one_line_whatever_the_name_holds(tmp_path, capsys):
    for name in ("two\nlines\x1b[31m.pt", "missing\nx.pt"):
        path = tmp_path / name
        if name.startswith("two"):
            path.write_bytes(b"not a checkpoint")
        assert cli.main(["convert", "--checkpoint", str(path), "24-11-22"]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "\x1b" not in err, err
