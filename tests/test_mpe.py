"""The MPE task plugin on the real mpe2 environments."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.tasks import make_task


def random_actions(task, rng):
    out = []
    for s in task.action_spaces:
        if s.kind == "discrete":
            out.append(rng.integers(0, s.n, size=task.n_envs))
        else:
            out.append(rng.uniform(0, 1, size=(task.n_envs, s.n)).astype(np.float32))
    return out


def test_speaker_listener_is_heterogeneous(regs):
    task = make_task(regs, "mpe/simple_speaker_listener", 2, 0, {})
    assert task.agents == ["speaker_0", "listener_0"]
    assert task.obs_dims == [3, 11]
    assert [s.n for s in task.action_spaces] == [3, 5]
    assert task.state_dim == 14
    task.close()


def test_spread_episodes_truncate_at_25_steps_and_state_matches_env(regs):
    task = make_task(regs, "mpe/simple_spread", 3, 7, {})
    assert task.obs_dims == [18, 18, 18] and task.state_dim == 54
    rng = np.random.default_rng(0)
    for t in range(1, 26):
        res = task.step(random_actions(task, rng))
        for c, env in enumerate(task.envs):
            if t < 25:
                np.testing.assert_allclose(res.state[c], env.state(), atol=1e-6)  # state built from obs == env.state()
        if t < 25:
            assert not res.truncated.any() and not res.terminated.any()
    assert res.truncated.all() and not res.terminated.any()
    assert len(res.episode_returns) == 3
    assert not np.allclose(res.final_state, res.state)  # final state is the pre-reset state


def test_team_reward_is_the_sum_of_agent_rewards(regs):
    task = make_task(regs, "mpe/simple_reference", 1, 3, {})
    env = task.envs[0]
    rng = np.random.default_rng(1)
    acts = random_actions(task, rng)
    # step a twin env by hand to read the per-agent rewards
    import mpe2.simple_reference_v3 as m
    twin = m.parallel_env(max_cycles=25, continuous_actions=False)
    from harness.envs import episode_seed
    twin.reset(seed=episode_seed(3, 0, 0, 0))
    _, rew, *_ = twin.step({a: int(acts[i][0]) for i, a in enumerate(twin.possible_agents)})
    res = task.step(acts)
    assert rew["agent_0"] != rew["agent_1"]
    assert abs(res.reward[0] - (rew["agent_0"] + rew["agent_1"])) < 1e-5
    assert env is task.envs[0]


def test_same_seed_same_episodes_and_split_over_workers_changes_nothing(regs):
    a = make_task(regs, "mpe/simple_spread", 4, 11, {})
    b = make_task(regs, "mpe/simple_spread", 4, 11, {"workers": 2})
    c = make_task(regs, "mpe/simple_spread", 4, 12, {})
    oa, sa = a.reset()
    ob, sb = b.reset()
    oc, _ = c.reset()
    np.testing.assert_array_equal(sa, sb)
    assert not np.allclose(oa[0], oc[0])
    rng = np.random.default_rng(0)
    for _ in range(30):
        acts = random_actions(a, rng)
        ra, rb = a.step(acts), b.step(acts)
        np.testing.assert_array_equal(ra.state, rb.state)
        np.testing.assert_array_equal(ra.reward, rb.reward)
        np.testing.assert_array_equal(ra.truncated, rb.truncated)
    assert a.episode_counters() == b.episode_counters() == [1, 1, 1, 1]
    for t in (a, b, c):
        t.close()


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("scenario", ["simple_spread", "simple_speaker_listener", "simple_reference"])
def test_direct_driving_equals_the_parallel_api_bit_for_bit(regs, scenario, continuous):
    opts = {"continuous": continuous}
    direct = make_task(regs, f"mpe/{scenario}", 3, 4, opts)
    wrapped = make_task(regs, f"mpe/{scenario}", 3, 4, {**opts, "parallel_api": True})
    assert type(direct.envs[0]).__name__ == "DirectMPE"
    assert type(wrapped.envs[0]).__name__ == "aec_to_parallel_wrapper"
    assert (direct.obs_dims, direct.action_spaces) == (wrapped.obs_dims, wrapped.action_spaces)
    for a, b in zip(direct.reset([0, 5, 2])[0], wrapped.reset([0, 5, 2])[0]):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(2)
    for t in range(2 * 25 + 3):  # two whole episodes and the start of a third, through the resets
        acts = random_actions(direct, rng)
        d, w = direct.step(acts), wrapped.step(acts)
        for a, b in zip(d.obs, w.obs):
            np.testing.assert_array_equal(a, b, err_msg=f"obs at step {t}")
        for name in ("state", "final_state", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(d, name), getattr(w, name), err_msg=f"{name} at step {t}")
        assert d.episode_returns == w.episode_returns and sorted(d.final_obs) == sorted(w.final_obs)
        for c in d.final_obs:
            for a, b in zip(d.final_obs[c], w.final_obs[c]):
                np.testing.assert_array_equal(a, b)
    assert direct.episode_counters() == wrapped.episode_counters() == [2, 7, 4]
    direct.close()
    wrapped.close()


def test_continuous_option_gives_box_actions(regs):
    task = make_task(regs, "mpe/simple_spread", 1, 0, {"continuous": "true"})
    assert task.action_spaces[0].kind == "box" and task.action_spaces[0].n == 5
    task.close()


@pytest.mark.parametrize("name,options,match", [
    ("mpe/simple_tag", {}, "unknown task 'mpe/simple_tag'"),
    ("nope/simple_spread", {}, "unknown task family 'nope'"),
    ("mpe/simple_spread", {"colour": 1}, "unknown option env.colour"),
    ("mpe/simple_spread", {"max_cycles": "ten"}, "env.max_cycles='ten' is not an integer"),
    ("mpe/simple_spread", {"fast": True, "parallel_api": True}, "env.parallel_api=true cannot be combined with env.fast"),
])
def test_bad_task_names_and_options(regs, name, options, match):
    with pytest.raises(HarnessError, match=match):
        make_task(regs, name, 1, 0, options)
