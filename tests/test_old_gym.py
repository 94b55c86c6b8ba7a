"""The gym stand-in that lets HARL's MaMuJoCo wrapper run in ``benchmarks/vs_harl.py``: gym's old API
over gymnasium's MuJoCo robots, checked against gymnasium itself."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
old_gym = importlib.import_module("old_gym")


@pytest.fixture
def gym():
    saved = {k: v for k, v in sys.modules.items() if k == "gym" or k.startswith("gym.")}
    yield old_gym.install()
    for k in [k for k in sys.modules if k == "gym" or k.startswith("gym.")]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_old_api_matches_gymnasium(gym):
    env = gym.make("HalfCheetah-v2")
    env.seed(7)
    obs = env.reset()
    ref = gymnasium.make("HalfCheetah-v5").unwrapped
    ref_obs, _ = ref.reset(seed=7)
    np.testing.assert_array_equal(obs, ref_obs)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-1, 1, 6)
        obs, reward, done, info = env.step(a)
        ref_obs, ref_reward, *_ = ref.step(a)
        np.testing.assert_array_equal(obs, ref_obs)
        assert reward == pytest.approx(ref_reward) and done is False
    # the robot's raw data, as mujoco-py's ``sim.data`` gave it
    np.testing.assert_array_equal(env.env.sim.data.qvel, ref.data.qvel)
    np.testing.assert_array_equal(env.env._get_obs(), ref_obs)


def test_time_limit_and_seeding(gym):
    env = gym.make("Hopper-v2")
    env._max_episode_steps = 5  # what HARL's wrapper sets to its episode_limit
    env.seed(3)
    first = env.reset()
    for t in range(5):
        _, _, done, info = env.step(np.zeros(3))
        if done:
            break
    assert t == 4 and done and info["TimeLimit.truncated"] is True
    env.seed(3)
    np.testing.assert_array_equal(env.reset(), first)
    assert not np.array_equal(env.reset(), first)  # an unseeded reset draws a new start


def test_action_wrapper_and_imports(gym):
    class Halve(gym.ActionWrapper):
        def action(self, action):
            return action / 2

    env = Halve(gym.make("HalfCheetah-v2"))
    assert env.action_space.shape == (6,)
    env.seed(1)
    env.reset()
    env.step(np.ones(6))
    np.testing.assert_allclose(env.env.env.sim.data.ctrl, 0.5)
    from gym.envs.mujoco import mujoco_env
    from gym.spaces import Box
    from gym.wrappers import TimeLimit

    assert Box is gymnasium.spaces.Box and TimeLimit is old_gym.TimeLimit

    class Custom(mujoco_env.MujocoEnv):
        pass

    with pytest.raises(gym.error.Error, match="Custom is a mujoco-py robot"):
        Custom()
    with pytest.raises(gym.error.Error, match="cannot build 'Nope-v2'"):
        gym.make("Nope-v2")


def test_harl_mamujoco_runs_on_it(gym):
    pytest.importorskip("harl", reason="HARL is the optional 'peer' extra")
    from harl.envs.mamujoco.multiagent_mujoco.mujoco_multi import MujocoMulti

    env = MujocoMulti(env_args={"scenario": "HalfCheetah-v2", "agent_conf": "2x3", "agent_obsk": 0,
                                "episode_limit": 20})
    env.seed(0)
    obs, state, _ = env.reset()
    assert np.shape(obs) == (2, 19) and np.shape(state) == (2, 17)
    for t in range(20):
        obs, state, rewards, dones, infos, _ = env.step([np.zeros(3), np.zeros(3)])
    assert all(dones) and infos[0]["bad_transition"] is True
