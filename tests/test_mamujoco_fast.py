"""MaMuJoCo's fast path (batched stepping, gathered observations) against gymnasium-robotics itself."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.tasks import make_task


def same_episodes(regs, task, fast_opts, expect):
    opts = {"episode_limit": 40}
    try:
        fast = make_task(regs, task, 3, 4, {**opts, "fast": True, **fast_opts})
    except HarnessError as exc:
        pytest.fail(f"fast path refused {task}: {exc}")
    assert type(fast).__name__ == expect
    package_opts = {k: v for k, v in fast_opts.items() if k not in ("fast", "threads")}
    ref = make_task(regs, task, 3, 4, {**opts, **package_opts, "fast": False})
    assert type(ref).__name__ == "PettingZooVecTask"
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
        assert sorted(f.final_obs) == sorted(r.final_obs)
        for c in r.final_obs:
            for a, b in zip(r.final_obs[c], f.final_obs[c]):
                np.testing.assert_allclose(b, a, atol=1e-6)
        np.testing.assert_allclose(f.episode_returns, r.episode_returns, atol=1e-5)
        assert f.episode_lengths == r.episode_lengths
        ended += len(r.episode_returns)
    assert ended >= 6
    assert fast.episode_counters() == ref.episode_counters()
    ref.close()
    fast.close()


TASKS = ["mamujoco/HalfCheetah-2x3", "mamujoco/Hopper-3x1", "mamujoco/Walker2d-2x3", "mamujoco/Ant-4x2",
         "mamujoco/HalfCheetah-6x1", "mamujoco/Walker2d-6x1", "mamujoco/Humanoid-9|8", "mamujoco/Humanoid-17x1",
         "mamujoco/Swimmer-2x1", "mamujoco/Ant-8x1"]


@pytest.mark.parametrize("task", TASKS)
def test_fast_path_equals_the_package_over_whole_episodes(regs, task, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT to the working directory
    same_episodes(regs, task, {}, "BatchedMaMuJoCoTask")


@pytest.mark.parametrize("task", ["mamujoco/Hopper-3x1", "mamujoco/HalfCheetah-6x1", "mamujoco/Humanoid-17x1"])
def test_global_observations_on_the_fast_path_equal_the_package(regs, task, monkeypatch, tmp_path):
    """HARL's observations (state + one-hot id) gathered for all copies at once, against the
    package's local-observation env wrapped by GlobalObsEnv."""
    monkeypatch.chdir(tmp_path)
    same_episodes(regs, task, {"obs_mode": "global"}, "BatchedMaMuJoCoTask")


def test_the_fast_path_is_the_default(regs, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for opts in ({}, {"obs_mode": "global"}):
        task = make_task(regs, "mamujoco/HalfCheetah-2x3", 2, 0, opts)
        assert type(task).__name__ == "BatchedMaMuJoCoTask"
        task.close()
    task = make_task(regs, "mamujoco/HalfCheetah-2x3", 2, 0, {"fast": False})
    assert type(task).__name__ == "PettingZooVecTask"
    task.close()


@pytest.mark.parametrize("task", ["mamujoco/Hopper-3x1", "mamujoco/Ant-4x2"])
def test_threads_simulating_the_copies_change_nothing(regs, task, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    same_episodes(regs, task, {"threads": 2}, "BatchedMaMuJoCoTask")


def test_a_robot_step_the_batch_gets_wrong_is_caught_and_stepped_copy_by_copy(regs, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    from harness_plugins import mamujoco_batched as batched
    key = "gymnasium.envs.mujoco.hopper_v5.HopperEnv"
    monkeypatch.setitem(batched._ROBOTS, key, (lambda robot: robot.data.qpos[1], True))  # the wrong coordinate
    same_episodes(regs, "mamujoco/Hopper-3x1", {}, "PettingZooVecTask")
    monkeypatch.delitem(batched._ROBOTS, key)  # an unknown robot: stepped copy by copy too
    same_episodes(regs, "mamujoco/Hopper-3x1", {}, "PettingZooVecTask")


def test_threads_need_the_fast_path(regs):
    with pytest.raises(HarnessError, match="env.threads=2 is not accepted"):
        make_task(regs, "mamujoco/HalfCheetah-2x3", 2, 0, {"threads": 2, "fast": False})


@pytest.mark.parametrize("obs", [{}, {"obs_mode": "global"}])
def test_training_on_the_fast_path_with_threads_equals_training_on_the_package(regs, tmp_path, monkeypatch, obs):
    """Whole HAPPO runs (rollouts through terminations and resets, updates, evaluations) give the
    same metrics row for row, with local and with HARL's global observations: the batched path
    changes the speed, not the run."""
    monkeypatch.chdir(tmp_path)
    from conftest import TINY
    from harness.config import build_config
    from harness.results import RunDir
    from harness.trainer import Trainer

    rows = []
    for name, env in (("package", {"fast": False}), ("fast", {"threads": 2})):
        cfg = build_config({**TINY, "task": "mamujoco/Hopper-3x1", "steps": 600, "n_envs": 3,
                            "rollout_length": 50, "env": {"episode_limit": 30, **obs, **env}})
        Trainer(cfg, regs, tmp_path / name, progress=False).run_training()
        rows.append([{k: v for k, v in r.items() if k not in ("steps_per_s", "collect_s", "update_s", "wall_s")}
                     for r in RunDir(tmp_path / name).rows()])
    assert len(rows[0]) == 5 and rows[0] == rows[1]
