"""MaMuJoCo's fast observation path against gymnasium-robotics' own observations."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.tasks import make_task


@pytest.mark.parametrize("task", ["mamujoco/HalfCheetah-2x3", "mamujoco/Hopper-3x1", "mamujoco/Walker2d-2x3",
                                  "mamujoco/Ant-4x2", "mamujoco/HalfCheetah-6x1", "mamujoco/Walker2d-6x1",
                                  "mamujoco/Humanoid-9|8", "mamujoco/Humanoid-17x1", "mamujoco/Swimmer-2x1"])
def test_fast_observations_equal_the_package_over_whole_episodes(regs, task, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT to the working directory
    opts = {"episode_limit": 40}
    try:
        fast = make_task(regs, task, 3, 4, {**opts, "fast": True})
    except HarnessError as exc:
        pytest.fail(f"fast path refused {task}: {exc}")
    ref = make_task(regs, task, 3, 4, opts)
    o_ref, s_ref = ref.reset()
    o_fast, s_fast = fast.reset()
    for a, b in zip(o_ref, o_fast):
        np.testing.assert_allclose(b, a, atol=1e-6)
    rng = np.random.default_rng(0)
    ended = 0
    for t in range(100):  # at least two whole episodes (40 steps, or fewer where a robot falls)
        actions = [rng.uniform(s.low, s.high, size=(3, s.n)).astype(np.float32) for s in ref.action_spaces]
        r, f = ref.step(actions), fast.step(actions)
        for a, b in zip(r.obs, f.obs):
            np.testing.assert_allclose(b, a, atol=1e-6, err_msg=f"obs at step {t}")
        np.testing.assert_allclose(f.state, r.state, atol=1e-6)
        np.testing.assert_allclose(f.final_state, r.final_state, atol=1e-6)
        np.testing.assert_allclose(f.reward, r.reward, atol=1e-6)
        np.testing.assert_array_equal(f.terminated, r.terminated)
        np.testing.assert_array_equal(f.truncated, r.truncated)
        for c in r.final_obs:
            for a, b in zip(r.final_obs[c], f.final_obs[c]):
                np.testing.assert_allclose(b, a, atol=1e-6)
        ended += len(r.episode_returns)
    assert ended >= 6
    ref.close()
    fast.close()
