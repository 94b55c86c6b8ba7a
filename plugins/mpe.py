"""Task plugin ``mpe``: the multi-agent particle environments of the ``mpe2`` package.

Team reward = sum of the agents' rewards (HARL's convention). The critic's global state is the
env's ``state()`` (mpe2 defines it as the concatenation of the agents' observations, which the
task builds from the observations it already has). Episodes end by truncation after ``max_cycles`` steps.

By default each copy is mpe2's own environment object (its world, physics, rewards and
observations) driven directly: the task writes the agents' actions, runs mpe2's world step and reads
mpe2's observations and rewards, skipping PettingZoo's conversion of the turn-based (AEC) environment
to the parallel API, which costs about as much as the simulation itself. The results are identical
to stepping ``parallel_env()`` (tested bit for bit); ``env.parallel_api=true`` steps through it instead.
"""

from __future__ import annotations

import functools
import importlib
import tomllib
from pathlib import Path
from typing import Any

from harness.hookspecs import hookimpl
from harness.options import Option, resolve_options
from harness.task_api import PettingZooVecTask, VecTask, make_vec_task

#: HARL's tuned HASAC settings for the continuous tasks (``tuned = true`` in suites).
TUNED_FILE = Path(__file__).with_name("mpe_tuned.toml")

# Normalisation ceilings (harness.references): MPE's rewards are negative distances (and collision
# penalties), so no team return exceeds 0; the ceiling is that bound.
_BOUND = {"return": 0.0, "source": "upper bound: MPE's rewards are negative distances and penalties"}

SCENARIOS = {
    "simple_spread": "simple_spread_v3",
    "simple_speaker_listener": "simple_speaker_listener_v4",
    "simple_reference": "simple_reference_v3",
}
REFERENCES = {name: _BOUND for name in SCENARIOS}

OPTIONS = {
    "continuous": Option(bool, False, "continuous (Box) actions instead of discrete ones"),
    "max_cycles": Option(int, 25, "episode length in steps (episodes end by truncation)",
                         high=100_000),
    "workers": Option(int, 0, "worker processes for the copies (0: step them in this process)", high=1024),
    "fast": Option(bool, False, "step all copies with the batched NumPy implementation (equal to mpe2, much faster)"),
    "parallel_api": Option(bool, False, "step each copy through PettingZoo's parallel API wrappers instead of "
                                        "driving mpe2's environment directly (identical results, slower)"),
    "render": Option(bool, False, "copies draw RGB frames (harness eval --video); the same episodes"),
}


class DirectMPE:
    """One mpe2 environment with the parallel API's ``reset``/``step``, driven without PettingZoo's
    AEC-to-parallel conversion: ``step`` hands every agent's action to mpe2's environment, runs its
    world step (actions, physics, rewards) and reads its observations, as the conversion does after
    its agent-by-agent turns, minus their per-agent bookkeeping and wrapper lookups."""

    def __init__(self, parallel_env: Any) -> None:
        self._parallel = parallel_env
        self._env = parallel_env.unwrapped  # mpe2's SimpleEnv
        self.possible_agents = list(parallel_env.possible_agents)
        self.agents: list[str] = []
        self.observation_space = parallel_env.observation_space
        self.action_space = parallel_env.action_space
        self._slots = [self._env._index_map[a] for a in self.possible_agents]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        env = self._env
        env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return {a: env.observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        env, agents = self._env, self.agents
        for slot, a in zip(self._slots, self.possible_agents):
            env.current_actions[slot] = actions[a]
        env._execute_world_step()
        env.steps += 1
        truncated = env.steps >= env.max_cycles
        terminated = not truncated and bool(env.scenario.is_terminal(env.world))
        obs = {a: env.observe(a) for a in agents}
        rewards = {a: env.rewards[a] for a in agents}
        if truncated or terminated:
            self.agents = []
        return (obs, rewards, dict.fromkeys(agents, terminated), dict.fromkeys(agents, truncated),
                {a: {} for a in agents})

    def state(self) -> Any:
        return self._env.state()

    def render(self) -> Any:
        return self._env.render()

    def close(self) -> None:
        self._parallel.close()


def _make_env(module: str, continuous: bool, max_cycles: int, parallel_api: bool = True, render: bool = False) -> Any:
    mod = importlib.import_module(f"mpe2.{module}")
    env = mod.parallel_env(max_cycles=max_cycles, continuous_actions=continuous,
                           render_mode="rgb_array" if render else None)
    return env if parallel_api else DirectMPE(env)


def _build(module: str, opts: dict[str, Any], seed: int, stream: int, n_envs: int, copy_offset: int) -> VecTask:
    make = functools.partial(_make_env, module, opts["continuous"], opts["max_cycles"], opts["parallel_api"],
                             opts["render"])
    return PettingZooVecTask(make, n_envs, seed, team_reward="sum", episode_limit=opts["max_cycles"],
                             stream=stream, copy_offset=copy_offset, state_from_obs=True)


def make_task(scenario: str, n_envs: int, seed: int, options: dict[str, Any], stream: int = 0) -> VecTask:
    """Build ``n_envs`` copies of an MPE scenario."""
    opts = resolve_options("mpe", options, OPTIONS)
    if opts["max_cycles"] < 1:
        from harness.errors import HarnessError
        raise HarnessError(f"env.max_cycles must be >= 1, got {opts['max_cycles']}")
    if opts["render"] and (opts["fast"] or opts["workers"]):
        from harness.errors import HarnessError
        raise HarnessError("env.render=true draws mpe2's environments in this process; it cannot be combined with "
                           "env.fast or env.workers")
    if opts["fast"]:
        from harness.errors import HarnessError
        from harness_plugins.mpe_fast import FastMPETask
        if opts["workers"]:
            raise HarnessError("env.fast=true steps every copy in this process; it cannot be combined with env.workers")
        if opts["parallel_api"]:
            raise HarnessError("env.parallel_api=true cannot be combined with env.fast=true: the fast path is its own "
                               "implementation, not mpe2's environments")
        return FastMPETask(scenario, n_envs, seed, opts["continuous"], opts["max_cycles"], stream=stream)
    build = functools.partial(_build, SCENARIOS[scenario], opts, seed, stream)
    return make_vec_task(build, n_envs, opts["workers"])


def tuned_overrides(task: str) -> dict[str, Any]:
    """HARL's tuned config overrides for ``task`` (``mpe/simple_spread``): only HASAC's, under
    ``schemes.hasac`` (HARL's tuned on-policy MPE settings are the harness's defaults)."""
    if "/" not in task:
        task = f"mpe/{task}"
    with TUNED_FILE.open("rb") as f:
        return tomllib.load(f).get(task, {})


@hookimpl
def register_tasks(register):
    register("mpe", make_task, scenarios=tuple(SCENARIOS), options=OPTIONS, tuned=tuned_overrides,
             smoke=("simple_speaker_listener", {}), references=REFERENCES,
             description="MPE particle tasks from mpe2 (team reward = sum of agent rewards)")
