"""The value normaliser against hand-computed debiased running statistics."""

from __future__ import annotations

import torch

from harness.value_norm import ValueNorm


def test_first_update_gives_batch_statistics_and_round_trips():
    vn = ValueNorm()
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    vn.update(x)
    mean, var = vn.mean_var()
    assert abs(mean.item() - 3.0) < 1e-6          # debiasing undoes the (1 - beta) weight
    assert abs(var.item() - (x * x).mean().item() + 9.0) < 1e-4  # E[x^2] - mean^2 = 12.5 - 9
    y = torch.tensor([0.5, -2.0])
    torch.testing.assert_close(vn.denormalize(vn.normalize(y)), y)


def test_two_updates_weight_batches_by_beta():
    beta = 0.9
    vn = ValueNorm(beta=beta)
    vn.update(torch.tensor([0.0]))
    vn.update(torch.tensor([10.0]))
    # running mean = (1-b)*b*0 + (1-b)*10, debias = 1 - b^2
    expected = (1 - beta) * 10 / (1 - beta**2)
    assert abs(vn.mean_var()[0].item() - expected) < 1e-9


def test_variance_floor():
    vn = ValueNorm()
    vn.update(torch.full((8,), 5.0))
    assert abs(vn.mean_var()[1].item() - 1e-2) < 1e-9
