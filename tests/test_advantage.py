"""GAE against a brute-force sum, with terminations and truncations mixed."""

from __future__ import annotations

import torch

from harness.advantage import gae


def brute_force(rewards, values, next_values, term, trunc, gamma, lam):
    """A_t = sum_l (gamma*lam)^l delta_{t+l}, summed until the episode containing t ends."""
    T, E = rewards.shape
    adv = torch.zeros(T, E, dtype=torch.float64)
    for e in range(E):
        for t in range(T):
            total, coef = 0.0, 1.0
            for k in range(t, T):
                boot = 0.0 if term[k, e] else gamma * next_values[k, e]
                delta = rewards[k, e] + boot - values[k, e]
                total += coef * delta
                if term[k, e] or trunc[k, e]:
                    break
                coef *= gamma * lam
            adv[t, e] = total
    return adv


def test_gae_matches_brute_force_with_mixed_episode_ends():
    g = torch.Generator().manual_seed(0)
    T, E = 37, 5
    rewards = torch.randn(T, E, generator=g, dtype=torch.float64)
    values = torch.randn(T, E, generator=g, dtype=torch.float64)
    next_values = torch.randn(T, E, generator=g, dtype=torch.float64)
    ends = torch.rand(T, E, generator=g)
    term = ends < 0.1
    trunc = (ends >= 0.1) & (ends < 0.2)
    assert term.any() and trunc.any()
    adv, ret = gae(rewards, values, next_values, term, trunc, 0.97, 0.9)
    expected = brute_force(rewards, values, next_values, term, trunc, 0.97, 0.9)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_truncation_bootstraps_and_termination_does_not():
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.5], [0.5]])
    next_values = torch.tensor([[2.0], [3.0]])
    # step 0 truncated: delta = 1 + 0.9*2 - 0.5; step 1 terminated: delta = 1 - 0.5
    adv, _ = gae(rewards, values, next_values, torch.tensor([[False], [True]]), torch.tensor([[True], [False]]), 0.9, 0.95)
    assert torch.allclose(adv[:, 0], torch.tensor([1 + 0.9 * 2 - 0.5, 0.5]))


def test_lambda_one_gives_discounted_returns_minus_value():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.zeros(3, 1)
    next_values = torch.tensor([[0.0], [0.0], [10.0]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    adv, ret = gae(rewards, values, next_values, no, no, 0.5, 1.0)
    # R_0 = 1 + 0.5*2 + 0.25*3 + 0.125*10
    assert abs(ret[0, 0].item() - (1 + 1 + 0.75 + 1.25)) < 1e-6
