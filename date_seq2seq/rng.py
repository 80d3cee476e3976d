"""Torch's global random generator, shared by every thread, kept out of a run's way.

A run draws from its own `torch.Generator`, so that two runs at once end
exactly as each would alone. Two parts of torch draw from the global generator
instead, with no way to pass one: module constructors (their default
initialisation, which ours then replaces) and dropout (nn.Dropout, and the
RNNs' dropout between layers). Both go through this lock, so they take turns
with each other across threads and never see each other's state.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

GLOBAL_RNG_LOCK = threading.Lock()


@contextlib.contextmanager
def global_rng_untouched() -> Iterator[None]:
    """Run a block that may draw from the global generator, leaving it as it was."""
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        yield


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Run a block whose global draws (dropout masks) come from `generator`."""
    seed = int(torch.randint(2**62, (), generator=generator))
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
