"""The package as users install it: a wheel holding the package only, a public API."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import date_seq2seq

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_is_there_and_documented():
    assert len(set(date_seq2seq.__all__)) == len(date_seq2seq.__all__)
    for name in date_seq2seq.__all__:
        value = getattr(date_seq2seq, name)
        if name != "__version__":
            assert value.__doc__, f"{name} has no docstring"
    for must in ("DateDataset", "Seq2Seq", "ModelConfig", "TrainConfig", "fit",
                 "train", "greedy", "beam_search", "Converter", "save", "load",
                 "exact_match", "bleu"):  # fmt: skip
        assert must in date_seq2seq.__all__


def test_the_version_is_the_projects():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'version = { attr = "date_seq2seq.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", date_seq2seq.__version__)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel as `pip wheel .` does, without fetching build tools, from
    a copy of the project (a build writes into the tree it builds)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "date_seq2seq", source / "date_seq2seq",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(source)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (built,) = out.glob("date_seq2seq-*.whl")
    return built


def test_the_wheel_holds_the_package_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    version = date_seq2seq.__version__
    assert top == {"date_seq2seq", f"date_seq2seq-{version}.dist-info"}
    modules = {Path(n).name for n in names if n.startswith("date_seq2seq/")}
    want = {p.name for p in (ROOT / "date_seq2seq").glob("*.py")}
    assert modules == want
    metadata = (
        zipfile.ZipFile(wheel)
        .read(f"date_seq2seq-{version}.dist-info/METADATA")
        .decode()
    )
    assert "Requires-Dist: torch==2.13.0" in metadata  # pinned: no CUDA build


def test_the_installed_wheel_imports_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c",
         "import date_seq2seq as ds; print(ds.__file__); print(len(ds.__all__))"],
        check=True, capture_output=True, text=True, cwd=elsewhere, env=env,
    )  # fmt: skip
    where, count = out.stdout.split()
    assert Path(where).is_relative_to(target)
    assert int(count) == len(date_seq2seq.__all__)
