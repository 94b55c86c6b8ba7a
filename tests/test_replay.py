"""The replay buffer: n-step returns against a brute-force fold, the ring, and its saved state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.replay import ReplayBuffer, replay_bytes
from harness.rollout import Rollout
from harness.task_api import ActionSpace

BOX = ActionSpace("box", 2, (-1.0, -1.0), (1.0, 1.0))


def rollout(T, E, rng, end_p=0.15):
    """A random rollout of ``T`` steps in ``E`` copies (one agent, box actions), with terminations
    and truncations."""
    states = rng.normal(size=(T + 1, E, 3)).astype(np.float32)
    final = rng.normal(size=(T, E, 3)).astype(np.float32)
    ends = rng.random((T, E)) < end_p
    term = ends & (rng.random((T, E)) < 0.5)
    return Rollout(obs=[rng.normal(size=(T, E, 4)).astype(np.float32)],
                   next_obs=[rng.normal(size=(T, E, 4)).astype(np.float32)],
                   actions=[rng.normal(size=(T, E, 2)).astype(np.float32)], logp=[np.zeros((T, E), np.float32)],
                   states=states, final_states=final, rewards=rng.normal(size=(T, E)).astype(np.float32),
                   terminated=term, truncated=ends & ~term, episode_returns=[])


def brute_force(steps, t, c, n, gamma):
    """Fold step ``t`` of copy ``c`` by walking the copy's own steps (``steps[c]``: a list of
    (reward, terminated, ended, next_state))."""
    total, discount, k = 0.0, 1.0, t
    while True:
        r, term, ended, nxt = steps[c][k]
        total += discount * r
        discount *= gamma
        if ended or k == len(steps[c]) - 1 or k - t + 1 == n:
            return total, discount, term, nxt
        k += 1


@pytest.mark.parametrize("n", [1, 3, 20])
def test_n_step_returns_equal_a_brute_force_fold(n):
    rng = np.random.default_rng(0)
    E, gamma = 3, 0.9
    buf = ReplayBuffer(1000, E, [4], [BOX], 3)
    ros = [rollout(7, E, rng), rollout(5, E, rng)]
    steps = {c: [] for c in range(E)}
    for ro in ros:
        buf.add(ro)
        for t in range(ro.rewards.shape[0]):
            for c in range(E):
                steps[c].append((float(ro.rewards[t, c]), bool(ro.terminated[t, c]),
                                 bool(ro.terminated[t, c] or ro.truncated[t, c]), ro.final_states[t, c]))
    assert len(buf) == 12 * E
    sample = buf.sample(500, n, gamma, np.random.default_rng(1))
    idx = np.random.default_rng(1).integers(0, len(buf), 500)  # the same draws
    for j, slot in enumerate(idx):
        t, c = divmod(int(slot), E)
        total, discount, term, nxt = brute_force(steps, t, c, n, gamma)
        assert sample.rewards[j].item() == pytest.approx(total, rel=1e-5, abs=1e-5)
        assert sample.discounts[j].item() == pytest.approx(discount, rel=1e-6)
        assert sample.terminated[j].item() == float(term)
        np.testing.assert_allclose(sample.next_states[j].numpy(), nxt)
        np.testing.assert_allclose(sample.states[j].numpy(), (ros[0] if t < 7 else ros[1]).states[t % 7 if t < 7 else t - 7, c])


def test_a_hand_computed_three_step_return_stops_at_a_truncation():
    """One copy, rewards 1, 2, 3, 4 with the episode truncated after the second step: from step 0 the
    3-step return is 1 + 0.5 * 2 = 2 (the sum stops at the truncation), discount 0.25, not
    terminated (a truncation bootstraps); from step 2 it is 3 + 0.5 * 4 = 5, stopped by the newest step."""
    ro = Rollout(obs=[np.zeros((4, 1, 1), np.float32)], next_obs=[np.zeros((4, 1, 1), np.float32)],
                 actions=[np.zeros((4, 1, 2), np.float32)], logp=[np.zeros((4, 1), np.float32)],
                 states=np.arange(5, dtype=np.float32).reshape(5, 1, 1), final_states=10 + np.arange(4, dtype=np.float32).reshape(4, 1, 1),
                 rewards=np.array([[1.0], [2.0], [3.0], [4.0]], np.float32),
                 terminated=np.zeros((4, 1), bool), truncated=np.array([[False], [True], [False], [False]]),
                 episode_returns=[])
    buf = ReplayBuffer(10, 1, [1], [BOX], 1)
    buf.add(ro)

    class Fixed:
        def __init__(self, i):
            self.i = i

        def integers(self, low, high, n):
            return np.full(n, self.i)

    s0 = buf.sample(1, 3, 0.5, Fixed(0))
    assert (s0.rewards.item(), s0.discounts.item(), s0.terminated.item(), s0.next_states.item()) == (2.0, 0.25, 0.0, 11.0)
    s2 = buf.sample(1, 3, 0.5, Fixed(2))
    assert (s2.rewards.item(), s2.discounts.item(), s2.next_states.item()) == (5.0, 0.25, 13.0)


def test_the_ring_drops_the_oldest_and_never_folds_across_its_seam():
    rng = np.random.default_rng(2)
    buf = ReplayBuffer(8, 2, [4], [BOX], 3)  # 4 steps of 2 copies
    first, second = rollout(3, 2, rng, end_p=0.0), rollout(3, 2, rng, end_p=0.0)
    buf.add(first)
    buf.add(second)
    assert len(buf) == 8 and buf.head == 4
    # the newest step of each copy (second's last) is where folding stops, even with n = 20
    np.testing.assert_array_equal(buf.states[2:4], second.states[2])
    sample = buf.sample(200, 20, 1.0, np.random.default_rng(3))
    assert (sample.discounts.numpy() <= 1.0).all()
    assert sample.rewards.shape == (200,)


def test_a_saved_buffer_restores_exactly():
    rng = np.random.default_rng(4)
    buf = ReplayBuffer(50, 2, [4], [BOX], 3)
    buf.add(rollout(9, 2, rng))
    saved = buf.state_dict()
    other = ReplayBuffer(50, 2, [4], [BOX], 3)
    other.load_state_dict(saved)
    a, b = buf.sample(64, 5, 0.99, np.random.default_rng(5)), other.sample(64, 5, 0.99, np.random.default_rng(5))
    for x, y in zip([a.states, a.rewards, a.discounts, a.next_obs[0]], [b.states, b.rewards, b.discounts, b.next_obs[0]]):
        assert torch.equal(x, y)


def test_replay_bytes_counts_every_array():
    buf = ReplayBuffer(100, 4, [4, 5], [BOX, ActionSpace("discrete", 3)], 3)
    held = sum(a.nbytes for a in [buf.states, buf.next_states, buf.rewards, buf.terminated, buf.ended,
                                  *buf.obs, *buf.next_obs, *buf.actions])
    # discrete actions are int64 in the buffer, counted as one float32 column by the estimate
    assert abs(replay_bytes(100, [4, 5], [BOX, ActionSpace("discrete", 3)], 3) - held) <= 100 * 4
