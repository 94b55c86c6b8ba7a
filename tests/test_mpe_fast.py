"""The batched MPE implementation against mpe2 itself: same seeds and actions, same episodes."""

from __future__ import annotations

import numpy as np
import pytest

from harness.tasks import make_task


def random_actions(task, rng):
    out = []
    for s in task.action_spaces:
        if s.kind == "discrete":
            out.append(rng.integers(0, s.n, size=task.n_envs))
        else:  # beyond the box on purpose: both implementations must clip the same way
            out.append(rng.uniform(-0.2, 1.2, size=(task.n_envs, s.n)).astype(np.float32))
    return out


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("scenario", ["simple_spread", "simple_speaker_listener", "simple_reference"])
def test_fast_path_equals_mpe2_over_whole_episodes(regs, scenario, continuous):
    opts = {"continuous": continuous}
    ref = make_task(regs, f"mpe/{scenario}", 4, 11, {**opts, "parallel_api": True})  # mpe2 as published
    fast = make_task(regs, f"mpe/{scenario}", 4, 11, {**opts, "fast": True})
    assert type(fast).__name__ == "FastMPETask" and type(ref).__name__ == "PettingZooVecTask"
    assert (fast.agents, fast.obs_dims, fast.state_dim) == (ref.agents, ref.obs_dims, ref.state_dim)
    assert fast.action_spaces == ref.action_spaces
    o_ref, s_ref = ref.reset()
    o_fast, s_fast = fast.reset()
    for a, b in zip(o_ref, o_fast):
        np.testing.assert_allclose(b, a, atol=1e-6)
    np.testing.assert_allclose(s_fast, s_ref, atol=1e-6)
    rng = np.random.default_rng(5)
    ended = 0
    for t in range(3 * 25 + 7):  # three whole episodes and part of a fourth, through the resets
        actions = random_actions(ref, rng)
        r, f = ref.step(actions), fast.step(actions)
        for a, b in zip(r.obs, f.obs):
            np.testing.assert_allclose(b, a, atol=1e-6, err_msg=f"obs at step {t}")
        np.testing.assert_allclose(f.state, r.state, atol=1e-6, err_msg=f"state at step {t}")
        np.testing.assert_allclose(f.final_state, r.final_state, atol=1e-6, err_msg=f"final state at step {t}")
        np.testing.assert_allclose(f.reward, r.reward, atol=1e-6, err_msg=f"reward at step {t}")
        np.testing.assert_array_equal(f.terminated, r.terminated)
        np.testing.assert_array_equal(f.truncated, r.truncated)
        np.testing.assert_allclose(f.episode_returns, r.episode_returns, atol=1e-5)
        assert sorted(f.final_obs) == sorted(r.final_obs)
        for c in r.final_obs:
            for a, b in zip(r.final_obs[c], f.final_obs[c]):
                np.testing.assert_allclose(b, a, atol=1e-6)
        ended += len(r.episode_returns)
    assert ended == 3 * 4
    assert fast.episode_counters() == ref.episode_counters() == [3] * 4
    # Reset to given episode numbers (how a resumed run restarts) gives the same episodes too.
    o_ref, _ = ref.reset([7, 2, 0, 9])
    o_fast, _ = fast.reset([7, 2, 0, 9])
    for a, b in zip(o_ref, o_fast):
        np.testing.assert_allclose(b, a, atol=1e-6)
    ref.close()
    fast.close()


def test_fast_path_cannot_use_workers(regs):
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="cannot be combined with env.workers"):
        make_task(regs, "mpe/simple_spread", 4, 0, {"fast": True, "workers": 2})
