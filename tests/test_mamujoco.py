"""Tests of the ``mamujoco`` task plugin on real gymnasium-robotics environments."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from harness.config import build_config
from harness.envs import resolve_options
from harness.errors import HarnessError
from harness.plugins import load_plugins
from harness.tasks import make_task
from harness_plugins import mamujoco


@pytest.fixture(scope="module")
def regs():
    return load_plugins()


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    # MuJoCo appends its compiler warnings to MUJOCO_LOG.TXT in the working directory.
    monkeypatch.chdir(tmp_path)


def _task(regs, name: str, n_envs: int = 2, seed: int = 0, **options):
    return make_task(regs, f"mamujoco/{name}", n_envs=n_envs, seed=seed, options=options)


def _random_actions(task, rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    return [rng.uniform(-scale, scale, (task.n_envs, a.n)).astype(np.float32) for a in task.action_spaces]


def test_halfcheetah_2x3_spaces(regs):
    task = _task(regs, "HalfCheetah-2x3", agent_obsk=1)
    try:
        assert task.agents == ["agent_0", "agent_1"]
        assert [a.kind for a in task.action_spaces] == ["box", "box"]
        assert [a.n for a in task.action_spaces] == [3, 3]
        assert task.action_spaces[0].low == (-1.0,) * 3 and task.action_spaces[0].high == (1.0,) * 3
        # own 3 joints (qpos, qvel) + 1 neighbouring joint's qpos + root z, y (qpos, qvel) = 12
        assert task.obs_dims == [12, 12]
        assert task.state_dim == 17  # HalfCheetah-v5 observation (root x excluded)
        obs, state = task.reset()
        assert [o.shape for o in obs] == [(2, 12), (2, 12)] and state.shape == (2, 17)
        res = task.step(_random_actions(task, np.random.default_rng(0)))
        assert [o.shape for o in res.obs] == [(2, 12), (2, 12)]
        assert res.state.shape == (2, 17) and res.reward.shape == (2,)
        assert np.all(np.isfinite(res.reward))
    finally:
        task.close()


def test_seeding(regs):
    first = []
    for seed in (0, 0, 1):
        task = _task(regs, "HalfCheetah-2x3", seed=seed)
        obs, state = task.reset()
        first.append((obs, state))
        task.close()
    (obs_a, state_a), (obs_b, state_b), (obs_c, state_c) = first
    for a, b in zip(obs_a, obs_b):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state_a, state_b)
    assert not np.array_equal(state_a, state_c)
    assert not np.array_equal(state_a[0], state_a[1])  # copies start differently


def test_time_limit_is_truncation(regs):
    task = _task(regs, "HalfCheetah-2x3", episode_limit=5)
    try:
        _, state0 = task.reset()
        rng = np.random.default_rng(0)
        for t in range(1, 6):
            res = task.step(_random_actions(task, rng))
            if t < 5:
                assert not res.truncated.any() and not res.terminated.any()
        assert res.truncated.all() and not res.terminated.any()
        assert res.episode_lengths == [5, 5]
        assert not np.allclose(res.final_state, state0)
        # the copies were reset: the returned state is a fresh start, not the final one
        assert not np.allclose(res.state, res.final_state)
    finally:
        task.close()


def test_fallen_hopper_is_termination(regs):
    task = _task(regs, "Hopper-3x1", episode_limit=1000)
    try:
        task.reset()
        rng = np.random.default_rng(0)
        ended = None
        for t in range(1, 301):
            # extreme actions (beyond the box, clipped by the task) topple the hopper quickly
            res = task.step(_random_actions(task, rng, scale=3.0))
            if res.terminated.any() or res.truncated.any():
                ended = (t, res)
                break
        assert ended is not None, "Hopper did not fall within 300 steps of random extreme actions"
        t, res = ended
        assert t < 1000
        assert res.terminated.any() and not res.truncated.any()
    finally:
        task.close()


def test_global_obs_mode(regs):
    task = _task(regs, "HalfCheetah-2x3", obs_mode="global")
    try:
        n = len(task.agents)
        assert task.obs_dims == [task.state_dim + n] * n
        obs, state = task.reset()
        for i, o in enumerate(obs):
            np.testing.assert_allclose(o[:, :task.state_dim], state, rtol=1e-6)
            np.testing.assert_array_equal(o[:, task.state_dim:], np.tile(np.eye(n)[i], (task.n_envs, 1)))
        res = task.step(_random_actions(task, np.random.default_rng(0)))
        np.testing.assert_allclose(res.obs[1][:, :task.state_dim], res.state, rtol=1e-6)
    finally:
        task.close()


def test_one_joint_per_agent_factorisations(regs):
    # Walker2d-6x1 is built by the plugin (gymnasium-robotics lacks it); every joint acts once.
    task = _task(regs, "Walker2d-6x1", n_envs=1)
    try:
        assert len(task.agents) == 6 and [a.n for a in task.action_spaces] == [1] * 6
        res = task.step(_random_actions(task, np.random.default_rng(0)))
        assert res.state.shape == (1, 17)
    finally:
        task.close()
    # Ant-8x1 likewise (HARL's order: hip and ankle of each leg in turn); agent k drives joint k.
    task = _task(regs, "Ant-8x1", n_envs=1)
    try:
        assert len(task.agents) == 8 and [a.n for a in task.action_spaces] == [1] * 8
        env = mamujoco._make_env("Ant", "8x1", 1, 1000, "local")
        labels = [[node.label for node in part] for part in env.agent_action_partitions]
        assert labels == [["hip1"], ["ankle1"], ["hip2"], ["ankle2"], ["hip3"], ["ankle3"], ["hip4"], ["ankle4"]]
        env.close()
    finally:
        task.close()


@pytest.mark.parametrize("name", ["Foo-2x3", "HalfCheetah-5x5", "HalfCheetah"])
def test_unknown_task(regs, name):
    with pytest.raises(HarnessError) as err:
        _task(regs, name)
    msg = str(err.value)
    assert name in msg and "mamujoco/HalfCheetah-2x3" in msg and "\n" not in msg


@pytest.mark.parametrize("options, bad", [
    ({"obs_mode": "pixels"}, "pixels"),
    ({"episode_limit": 0}, "episode_limit"),
    ({"agent_obsk": -1}, "agent_obsk"),
    ({"agent_obsk": "two"}, "two"),
    ({"max_cycles": 5}, "max_cycles"),
])
def test_bad_options(regs, options, bad):
    with pytest.raises(HarnessError, match=bad):
        _task(regs, "HalfCheetah-2x3", **options)


def test_tuned_overrides():
    tuned = mamujoco.tuned_overrides("mamujoco/HalfCheetah-2x3")
    assert tuned["clip"] == 0.05 and tuned["ppo_epochs"] == 15 and tuned["entropy_coef"] == 0.01
    assert mamujoco.tuned_overrides("HalfCheetah-2x3") == tuned
    assert mamujoco.tuned_overrides("mamujoco/Foo-2x3") == {}
    assert mamujoco.tuned_overrides("mamujoco/Walker2d-2x3")["lr"] == 1e-3
    for task in ("HalfCheetah-2x3", "HalfCheetah-6x1", "Hopper-3x1", "Walker2d-2x3", "Walker2d-6x1", "Ant-4x2",
                 "Ant-8x1", "Humanoid-17x1"):
        overrides = mamujoco.tuned_overrides(task)
        assert overrides, task
        per_scheme = overrides.pop("schemes", {})
        assert set(per_scheme) == ({"mappo", "hatrpo"} if task == "Humanoid-17x1" else {"hatrpo"} if task == "Hopper-3x1" else {"hatrpo", "hasac"})
        if task == "Humanoid-17x1":
            assert per_scheme["mappo"] == {"rollout_length": 100}
        # HARL's HATRPO configs: the critic's own settings and a per-task KL threshold
        hatrpo = per_scheme["hatrpo"]
        assert (hatrpo["clip"], hatrpo["critic_epochs"], hatrpo["critic_minibatches"], hatrpo["lr_decay"]) == \
            (0.2, 5, 1, False)
        assert hatrpo["scheme_options"]["kl_threshold"] == {"Hopper-3x1": 0.001, "Walker2d-6x1": 0.005,
                                                            "Ant-4x2": 0.005, "Ant-8x1": 0.005}.get(task, 0.01)
        cfg = build_config({"task": f"mamujoco/{task}", **overrides})
        assert cfg.hidden_sizes == [128, 128, 128] and cfg.env == {"episode_limit": 1000}
        resolve_options("mamujoco", cfg.env, mamujoco.OPTIONS)


@pytest.mark.slow
def test_tiny_training_run(tmp_path):
    from harness.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--scheme", "happo", "--task", "mamujoco/HalfCheetah-2x3", "--steps", "400",
               "--set", "n_envs=2", "--set", "rollout_length=100", "--set", "eval_episodes=2",
               "--set", "eval_envs=2", "--set", "env.episode_limit=50", "--out", str(out), "--quiet"])
    assert rc == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and rows[-1]["eval_return"] not in ("", None)
    assert np.isfinite(float(rows[-1]["eval_return"]))
