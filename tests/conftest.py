"""Shared fixtures: an isolated model home, seeded RNG, tiny models, one trained model.

The trained model is built ONCE per session (a couple of seconds) and saved to a
file; tests get a fresh `Checkpoint` loaded from that file, so no test can
change what another one sees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from date_seq2seq import checkpoint as ckpt
from date_seq2seq.config import DataConfig, ModelConfig, TrainConfig
from date_seq2seq.converter import Converter, train
from date_seq2seq.data import DateDataset, source_text, split, task_vocabulary
from date_seq2seq.model import Seq2Seq
from date_seq2seq.training import TrainResult
from date_seq2seq.vocab import Vocabulary

# Tiny models gain nothing from a second thread, and on a shared 2-core machine
# OpenMP's spinning threads slow these steps down up to tenfold.
torch.set_num_threads(1)

# The session model: the default architecture on a smaller data set. It reaches
# ~100% held-out exact match in a few epochs, far cheaper than the default run.
SMALL_DATA = DataConfig(train_size=1500, held_out_size=200, seed=0)
SMALL_TRAIN = TrainConfig(epochs=6, seed=0)

# Distinct tiny sizes, so a swapped dimension is a shape error, not a silent pass.
TINY = {"embedding_dim": 3, "encoder_hidden": 5, "decoder_hidden": 7}


@pytest.fixture(autouse=True)
def model_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Point the default model (and any cache) at a fresh directory per test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DATE_SEQ2SEQ_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))
    return home


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def vocab() -> Vocabulary:
    return task_vocabulary()


@pytest.fixture(scope="session")
def small_data() -> DataConfig:
    """The data config the session model was trained with."""
    return SMALL_DATA


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult]:
    """Train the small session model once; return its checkpoint file and result."""
    checkpoint, result = train(SMALL_DATA, ModelConfig(), SMALL_TRAIN)
    path = tmp_path_factory.mktemp("trained") / "small.pt"
    checkpoint.save(path)
    return path, result


@pytest.fixture(scope="session")
def trained_path(trained_run: tuple[Path, TrainResult]) -> Path:
    return trained_run[0]


@pytest.fixture
def trained(trained_path: Path) -> ckpt.Checkpoint:
    """A fresh copy of the session model (tests may change it freely)."""
    return ckpt.load(trained_path)


@pytest.fixture
def converter(trained: ckpt.Checkpoint) -> Converter:
    return Converter(trained)


@pytest.fixture(scope="session")
def held_out_set(vocab: Vocabulary) -> DateDataset:
    """The session model's held-out dates, encoded."""
    return DateDataset(split(SMALL_DATA)[1], vocab)


@pytest.fixture(scope="session")
def held_out_texts() -> list[str]:
    return [source_text(d) for d in split(SMALL_DATA)[1]]


@pytest.fixture
def make_model() -> Callable[..., Seq2Seq]:
    """Build a seeded, untrained model in eval mode from TINY sizes plus overrides."""

    def make(seed: int = 0, **overrides: object) -> Seq2Seq:
        cfg = ModelConfig(**{"attention": "general", **TINY, **overrides})
        torch.manual_seed(seed)
        return Seq2Seq(cfg).eval()

    return make
