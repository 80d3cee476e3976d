"""Optimization: a model's parameters and gradients laid out in one flat buffer each.

On a model this small a training step is bound by the number of ops, not by
arithmetic: Adam, gradient clipping and the NaN guard's weight snapshot each
cost a few ops per parameter tensor, a dozen or more. Over one flat buffer
they cost a few ops for the whole model – `torch.optim.Adam`'s fused update
and `clip_grad_norm_` work on it unchanged. tests/test_flat_parameters.py
holds training this way equal to training parameter by parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def flat_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Lay the model's parameters and their gradients out in two flat buffers.

    Yields one parameter over the whole buffer whose .grad is the whole
    gradient buffer: the model's parameters are views into it, and backward
    accumulates into views of the gradient. Zero the gradient in place
    (`optimizer.zero_grad(set_to_none=False)`): setting a .grad to None would
    detach it from the buffer. On exit each parameter gets its own storage again.
    """
    params = list(model.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        size = p.numel()
        p.data = flat.data[offset : offset + size].view_as(p)
        p.grad = flat.grad[offset : offset + size].view_as(p)
        offset += size
    try:
        yield flat
    finally:
        for p in params:
            p.data = p.data.clone()
            p.grad = None
