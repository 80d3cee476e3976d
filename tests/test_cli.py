"""The command line, end to end in real subprocesses, plus a few in-process checks.

Every subprocess gets its own DATE_SEQ2SEQ_HOME. They are independent, so a
module fixture starts them all at once (three at a time) and each test waits
for the run it checks; the one real default training overlaps the rest.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from date_seq2seq import checkpoint as ckpt
from date_seq2seq import cli
from date_seq2seq import converter as converter_module
from date_seq2seq.config import DataConfig, ModelConfig
from date_seq2seq.converter import Converter

ROOT = Path(__file__).resolve().parents[1]
VALID = ["24-11-22", "74-01-05", "99-12-31", "00-02-29"]
REFUSED = ["24-02-30", "50-01-01", "2024-11-22"]
MIXED = [VALID[0], REFUSED[0], VALID[1], REFUSED[1], VALID[2], REFUSED[2]]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def _cli(args: list[str], home: Path, stdin: bytes = b"") -> Run:
    env = {**os.environ, "DATE_SEQ2SEQ_HOME": str(home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "date_seq2seq", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=600,
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _unusable_files(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir()
    raw = good.read_bytes()
    files = {
        "missing": folder / "absent.pt",
        "corrupt": folder / "corrupt.pt",
        "truncated": folder / "truncated.pt",
        "foreign": folder / "foreign.pt",
    }
    files["corrupt"].write_bytes(random.Random(1).randbytes(2048))
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3}, files["foreign"])
    return files


class Runs:
    """The module's subprocess runs by name, each with its own model home."""

    def __init__(self, futures: dict[str, Future[Run]], homes: dict[str, Path]):
        self.futures, self.homes = futures, homes

    def __getitem__(self, name: str) -> Run:
        return self.futures[name].result()


@pytest.fixture(scope="module")
def runs(
    trained_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("cli")

    def home(name: str) -> Path:
        folder = root / name
        folder.mkdir()
        return folder

    with_default = home("with-default")
    shutil.copy(trained_path, with_default / "default.pt")
    model = ["--checkpoint", str(trained_path)]
    specs: dict[str, tuple[list[str], Path, bytes]] = {
        # The slowest first: the one real training of the default model.
        "first_start": (["convert", "24-11-22", "74-01-05"], home("empty"), b""),
        "train": (
            [
                "train",
                "--epochs",
                "1",
                "--train-size",
                "300",
                "--held-out-size",
                "100",
                "--out",
                str(root / "out" / "small.pt"),
                "--json",
            ],
            home("train"),
            b"",
        ),
        "args": (["convert", *model, *MIXED], home("args"), b""),
        "stdin_json": (
            ["convert", *model, "--json"],
            home("json"),
            "\r\n".join(MIXED).encode(),
        ),
        "bad_utf8": (
            ["convert", *model],
            home("utf8"),
            b"24-11-22\n\xff\xfe-11-22\n74-01-05\n",
        ),
        "beam": (
            ["convert", *model, "--beam", "2", "--json", *VALID],
            home("beam"),
            b"",
        ),
        "evaluate": (["evaluate", *model, "--json"], home("evaluate"), b""),
        "evaluate_all": (
            ["evaluate", *model, "--all-dates", "--json"],
            home("evaluate-all"),
            b"",
        ),
        "default_stdin": (["convert"], with_default, "\n".join(VALID).encode() + b"\n"),
    }
    for name, path in _unusable_files(root / "bad", trained_path).items():
        specs[f"unusable_{name}"] = (
            ["convert", "--checkpoint", str(path), "24-11-22"],
            home(f"bad-{name}"),
            b"",
        )
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_cli, *spec) for name, spec in specs.items()}
        yield Runs(futures, {name: spec[1] for name, spec in specs.items()})


def _assert_clean(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr


def test_train_writes_a_checkpoint_and_a_json_summary(runs):
    run = runs["train"]
    _assert_clean(run)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.lines[-1])
    assert summary["epochs"] == 1
    assert isinstance(summary["train_seconds"], float) and summary["train_seconds"] > 0
    assert 0.0 <= summary["held_out_exact_match"] <= 1.0
    assert summary["steps"] == 10  # ceil(300 / 32)
    path = Path(summary["checkpoint"])
    assert summary["fingerprint"] == ckpt.load(path).fingerprint
    assert path.name == "small.pt" and path.is_file()
    loaded = ckpt.load(path)
    assert loaded.data_config == DataConfig(train_size=300, held_out_size=100)
    assert loaded.model.cfg == ModelConfig()
    assert len(loaded.history) == 1
    assert "epoch   1" in run.stderr and f"saved {path}" in run.stderr
    assert [p.name for p in path.parent.iterdir()] == ["small.pt"]


def test_convert_arguments_plain(runs, converter):
    run = runs["args"]
    _assert_clean(run)
    assert run.returncode == 1  # some inputs were refused
    assert len(run.lines) == len(MIXED)
    for line, text in zip(run.lines, MIXED, strict=True):
        result = converter.convert(text)
        if text in VALID:
            assert line == f"{text}\t{result.output}"
        else:
            assert line == f"{text}\terror: {result.error or result.warning}"
    assert run.lines[0] == "24-11-22\t22/Nov/2024"


def test_convert_stdin_json(runs):
    run = runs["stdin_json"]
    _assert_clean(run)
    assert run.returncode == 1
    rows = [json.loads(line) for line in run.lines]
    assert [r["input"] for r in rows] == MIXED
    for row in rows:
        if row["input"] in REFUSED:
            assert set(row) == {"input", "error"} and row["error"]
            continue
        assert set(row) == {
            "input",
            "output",
            "expected",
            "correct",
            "tokens",
            "attention",
        }
        assert "".join(row["tokens"]) == row["output"]
        assert row["correct"] == (row["output"] == row["expected"])
        assert len(row["attention"]) == len(row["tokens"])  # one row per token
        for weights in row["attention"]:
            assert len(weights) == len(row["input"])  # one column per character
            assert abs(sum(weights) - 1.0) < 1e-4
    assert rows[0]["expected"] == "22/Nov/2024"


def test_invalid_utf8_on_stdin_is_an_error_line(runs):
    run = runs["bad_utf8"]
    _assert_clean(run)
    assert run.returncode == 1
    assert len(run.lines) == 3
    assert run.lines[0] == "24-11-22\t22/Nov/2024"
    assert run.lines[1].startswith("\ufffd\ufffd-11-22\terror: ")
    assert run.lines[2].startswith("74-01-05\t") and "error" not in run.lines[2]


def test_convert_with_a_beam(runs, trained):
    run = runs["beam"]
    _assert_clean(run)
    assert run.returncode == 0
    rows = [json.loads(line) for line in run.lines]
    want = list(Converter(trained).convert_many(VALID, beam_size=2))
    assert [r["output"] for r in rows] == [w.output for w in want]
    assert all(len(r["attention"]) == len(r["tokens"]) for r in rows)


@pytest.mark.parametrize("name", ["missing", "corrupt", "truncated", "foreign"])
def test_an_unusable_checkpoint_exits_2_with_one_line(runs, name):
    run = runs[f"unusable_{name}"]
    _assert_clean(run)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("error: unusable checkpoint: ")


def test_evaluate_held_out_json(runs):
    run = runs["evaluate"]
    _assert_clean(run)
    assert run.returncode == 0
    metrics = json.loads(run.lines[-1])
    assert metrics["split"] == "held-out" and metrics["count"] == 200
    assert metrics["exact_match"] >= 0.95
    assert metrics["wrong"] == round(200 * (1 - metrics["exact_match"]))
    for key in (
        "token_accuracy",
        "day_accuracy",
        "month_accuracy",
        "year_accuracy",
        "bleu",
    ):
        assert 0.9 <= metrics[key] <= 1.0


def test_evaluate_all_dates_json(runs):
    run = runs["evaluate_all"]
    _assert_clean(run)
    assert run.returncode == 0
    metrics = json.loads(run.lines[-1])
    assert metrics["split"] == "all dates" and metrics["count"] == 22_280
    assert metrics["exact_match"] >= 0.9
    assert metrics["wrong"] == round(22_280 * (1 - metrics["exact_match"]))


def test_convert_stdin_plain_with_the_existing_default_model(runs, converter):
    run = runs["default_stdin"]
    _assert_clean(run)
    assert run.returncode == 0  # every input converted
    assert run.lines == [f"{t}\t{converter.convert(t).output}" for t in VALID]
    assert run.lines[0] == "24-11-22\t22/Nov/2024"
    assert "training" not in run.stderr


def test_first_start_trains_the_default_model(runs):
    run = runs["first_start"]
    _assert_clean(run)
    assert run.returncode == 0, run.stderr
    assert "no default model yet: training one" in run.stderr
    assert "epoch   1" in run.stderr and "held-out exact" in run.stderr
    assert run.lines == ["24-11-22\t22/Nov/2024", "74-01-05\t05/Jan/1974"]
    saved = ckpt.load(runs.homes["first_start"] / "default.pt")
    assert saved.data_config == DataConfig() and saved.model.cfg == ModelConfig()
    assert saved.history and saved.history[-1]["held_out_exact_match"] >= 0.99


# --- in-process: cheap argument and error paths -------------------------------------


@pytest.mark.parametrize("command", ["convert", "evaluate"])
@pytest.mark.parametrize("beam", ["0", "-1", "65", "2.5", "wide"])
def test_a_beam_out_of_range_is_a_usage_error(trained_path, capsys, command, beam):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--checkpoint", str(trained_path), "--beam", beam])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "--beam: must be a whole number from 1 to 64" in err


@pytest.mark.parametrize("alpha", ["-0.1", "5.5", "nan", "inf", "x"])
def test_a_length_penalty_out_of_range_is_a_usage_error(trained_path, capsys, alpha):
    with pytest.raises(SystemExit) as info:
        cli.main(["convert", "--checkpoint", str(trained_path), "--alpha", alpha])
    assert info.value.code == 2
    assert "--alpha: must be a number from 0 to 5" in capsys.readouterr().err


def test_the_length_penalty_reaches_the_search(trained_path, monkeypatch, capsys):
    seen = []
    real = converter_module.decode

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(kwargs["alpha"])
        return real(*args, **kwargs)

    monkeypatch.setattr(converter_module, "decode", recording)
    args = ["--checkpoint", str(trained_path), "--beam", "3", "--alpha", "0.3"]
    assert cli.main(["convert", *args, "24-11-22"]) == 0
    assert cli.main(["evaluate", *args]) == 0
    assert seen and set(seen) == {0.3}


@pytest.mark.parametrize("beam", [0, -3, 65, 2.0, True])
def test_the_converter_refuses_a_bad_beam_width(converter, beam):
    with pytest.raises(ValueError, match="beam width"):
        converter.convert("24-11-22", beam_size=beam)
    with pytest.raises(ValueError, match="beam width"):
        converter.evaluate([dt.date(2024, 11, 22)], beam_size=beam)


SMALL_TRAIN = ["train", "--epochs", "1", "--train-size", "64", "--held-out-size", "16"]


def test_train_refuses_an_unwritable_output_before_training(tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert cli.main([*SMALL_TRAIN, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert (
        f"cannot write the checkpoint to {folder}: it exists and is a directory" in err
    )
    assert "epoch" not in err  # refused before training, not after
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main([*SMALL_TRAIN, "--out", str(blocker / "m.pt")]) == 2
    assert "cannot create its directory" in capsys.readouterr().err


def test_a_failed_save_keeps_the_trained_model(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.pt"
    real_save = ckpt.Checkpoint.save

    def disk_full(self, path):
        if Path(path) == out:
            raise OSError(28, "No space left on device")
        return real_save(self, path)

    monkeypatch.setattr(ckpt.Checkpoint, "save", disk_full)
    assert cli.main([*SMALL_TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    rescue = Path(err.split("the model was saved to ")[1].split()[0])
    try:
        assert Converter.from_path(rescue).model.cfg == ModelConfig()
    finally:
        rescue.unlink()


def test_a_zero_decoder_size_is_refused_not_ignored(tmp_path, capsys):
    args = ["--attention", "general", "--decoder-hidden", "0"]
    assert cli.main([*SMALL_TRAIN, *args, "--out", str(tmp_path / "m.pt")]) == 2
    assert "decoder_hidden must be an integer from 1" in capsys.readouterr().err


def test_a_huge_seed_is_refused(tmp_path, capsys):
    assert cli.main([*SMALL_TRAIN, "--seed", str(2**70)]) == 2
    assert "seed must be from 0 to" in capsys.readouterr().err


def test_training_without_held_out_dates_says_so(tmp_path, capsys):
    small = [a if a != "16" else "0" for a in SMALL_TRAIN]
    assert cli.main([*small, "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "no held-out dates" in out and "0.00%" not in out


def test_a_text_file_as_checkpoint_gives_no_unsafe_advice(capsys):
    assert cli.main(["convert", "--checkpoint", str(ROOT / "README.md"), "1"]) == 2
    err = capsys.readouterr().err
    assert "not the zip archive torch.save writes" in err and "weights_only" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_impossible_model_configuration_is_refused(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--attention",
            "dot",
            "--hidden",
            "5",
            "--decoder-hidden",
            "7",
            "--out",
            str(tmp_path / "x.pt"),
        ]
    )
    assert code == 2
    assert "dot attention" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_unknown_commands_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["translate", "24-11-22"])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_an_absurd_learning_rate_is_refused_before_training(tmp_path, capsys):
    # The NaN guard itself is covered in test_training; here the CLI refuses a
    # rate that would only overflow inside Adam.
    out = tmp_path / "never.pt"
    code = cli.main(["train", "--lr", "1e30", "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "lr must be in" in err and "Traceback" not in err
    assert not out.exists()


def test_evaluate_plain_text(trained_path, capsys):
    assert cli.main(["evaluate", "--checkpoint", str(trained_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "held-out: 200 dates (1 Jan 1974 to 31 Dec 2034)"
    names = [line.split()[0] for line in lines[1:]]
    assert names == [
        "exact_match",
        "token_accuracy",
        "day_accuracy",
        "month_accuracy",
        "year_accuracy",
        "bleu",
        "wrong",
    ]
    assert lines[1].endswith("%") and not lines[6].endswith("%")


def test_stdin_lines_are_split_at_newlines_only(trained_path, monkeypatch, capsys):
    raw = b"\xef\xbb\xbf24-11-22\r\n74-01-05\r99-12-31\n24\t11-22\n" + b"9" * 10**6
    stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["convert", "--checkpoint", str(trained_path)]) == 1
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert len(lines) == 4 and all(line.count("\t") == 1 for line in lines)
    assert lines[0] == "24-11-22\t22/Nov/2024"  # the byte-order mark is dropped
    assert lines[1].startswith("74-01-05\ufffd99-12-31\terror: ")  # one input
    assert lines[2].startswith("24\ufffd11-22\terror: ")
    echoed, message = lines[3].split("\t")
    assert echoed == "9" * 40 + "…"  # cut, marked
    assert message.startswith("error: the line is longer than 4096 bytes")


def test_stdin_convert_in_process(trained_path, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(b"24-11-22\n\n24-13-01\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["convert", "--checkpoint", str(trained_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "24-11-22\t22/Nov/2024"
    assert lines[1].startswith("\terror: empty input")
    assert lines[2].startswith("24-13-01\terror: ") and "month 13" in lines[2]


def test_a_float_layer_count_checkpoint_exits_2(trained_path, tmp_path, capsys):
    saved = torch.load(trained_path, weights_only=True)
    saved["model_config"]["num_layers"] = 1.0
    path = tmp_path / "float.pt"
    torch.save(saved, path)
    assert cli.main(["convert", "--checkpoint", str(path), "24-11-22"]) == 2


def test_a_pipe_is_answered_line_by_line_and_ctrl_c_ends_cleanly(trained_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "date_seq2seq", "convert", "--checkpoint",
         str(trained_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A job started in the background ignores Ctrl-C, and so would its
        # children: give this one the terminal's default, as a user's has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        for date, want in [("24-11-22", "22/Nov/2024"), ("99-12-31", "31/Dec/1999")]:
            proc.stdin.write(date.encode() + b"\n")
            proc.stdin.flush()
            # The answer comes while stdin is still open: no waiting for more.
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no answer while the pipe stayed open"
            assert proc.stdout.readline().decode() == f"{date}\t{want}\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()


def test_a_diverging_run_exits_1_and_says_so(tmp_path, capsys):
    args = ["train", "--train-size", "640", "--held-out-size", "16", "--epochs", "2",
            "--lr", "1e6", "--json", "--out", str(tmp_path / "m.pt")]  # fmt: skip
    assert cli.main(args) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "diverged"
    assert "learning rate, 1e+06, is likely too high" in captured.err
    assert Converter.from_path(tmp_path / "m.pt")  # still a usable file


def test_a_run_stopped_mid_epoch_still_reports_its_held_out_figure(
    tmp_path, capsys, monkeypatch
):
    from date_seq2seq import cli as cli_module

    asked = []

    class StopAfterFive(cli_module._StopOnInterrupt):
        def __call__(self) -> bool:  # as if Ctrl-C came at step 5
            asked.append(1)
            return len(asked) > 5

    monkeypatch.setattr(cli_module, "_StopOnInterrupt", StopAfterFive)
    args = ["train", "--epochs", "1", "--train-size", "640", "--held-out-size", "16",
            "--json", "--out", str(tmp_path / "m.pt")]  # fmt: skip
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "requested" and summary["steps"] == 5
    assert 0.0 <= summary["held_out_exact_match"] <= 1.0
