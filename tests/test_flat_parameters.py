"""The flat parameter layout is an optimization: training through it is the same."""

from __future__ import annotations

import copy

import pytest
import torch

from date_seq2seq.config import ModelConfig
from date_seq2seq.data import DateDataset
from date_seq2seq.flat_parameters import flat_parameters
from date_seq2seq.model import Seq2Seq
from date_seq2seq.training import masked_cross_entropy


def _steps(model: Seq2Seq, data: DateDataset, params, zero) -> list[float]:  # noqa: ANN001
    """Ten Adam steps with clipping on the given parameters; the losses."""
    optimizer = torch.optim.Adam(params, lr=0.03)
    losses = []
    for first in range(0, 160, 16):
        src, tgt = data[list(range(first, first + 16))]
        loss, _ = masked_cross_entropy(model(src, tgt[:, :-1])[0], tgt[:, 1:])
        zero(optimizer)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_on_the_flat_buffer_equals_training_per_parameter(cell):
    data = DateDataset.split(seed=1, train_size=160, held_out_size=0)[0]
    cfg = ModelConfig(cell=cell, attention="additive", num_layers=2, decoder_hidden=24)
    plain = Seq2Seq(cfg, generator=torch.Generator().manual_seed(0)).train()
    flat_model = copy.deepcopy(plain)
    want = _steps(plain, data, list(plain.parameters()), lambda o: o.zero_grad())
    with flat_parameters(flat_model) as flat:
        got = _steps(flat_model, data, [flat], lambda o: o.zero_grad(set_to_none=False))
    assert got == pytest.approx(want, rel=1e-4)
    for a, b in zip(flat_model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_flat_parameters_are_views_that_get_their_own_storage_back():
    torch.manual_seed(0)
    model = torch.nn.GRU(3, 4)
    reference = copy.deepcopy(model)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    x = torch.randn(5, 2, 3)
    with flat_parameters(model) as flat:
        assert flat.numel() == sum(p.numel() for p in params)
        # Backward accumulates into the flat gradient, as it would per parameter.
        model(x)[0].pow(2).sum().backward()
        reference(x)[0].pow(2).sum().backward()
        offset = 0
        for p, want in zip(params, reference.parameters(), strict=True):
            got = flat.grad[offset : offset + p.numel()].view_as(p)
            torch.testing.assert_close(got, want.grad)
            offset += p.numel()
        with torch.no_grad():
            flat.add_(1.0)  # one op moves every parameter
        for p, old in zip(params, before, strict=True):
            torch.testing.assert_close(p.detach(), old + 1.0)
    for p, old in zip(params, before, strict=True):
        torch.testing.assert_close(p.detach(), old + 1.0)
        assert p.grad is None
    storages = {p.untyped_storage().data_ptr() for p in params}
    assert len(storages) == len(params)  # each its own again


def test_flat_parameters_give_storage_back_when_the_run_is_interrupted():
    model = torch.nn.Linear(3, 2)
    params = list(model.parameters())
    with pytest.raises(KeyboardInterrupt), flat_parameters(model) as flat:
        with torch.no_grad():
            flat.zero_()
        raise KeyboardInterrupt
    assert all(p.grad is None and not p.detach().any() for p in params)
    assert len({p.untyped_storage().data_ptr() for p in params}) == len(params)
