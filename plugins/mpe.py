"""Task plugin ``mpe``: the multi-agent particle environments of the ``mpe2`` package.

Team reward = sum of the agents' rewards (HARL's convention). The critic's global state is the
env's ``state()`` (mpe2 defines it as the concatenation of the agents' observations, which the
task builds from the observations it already has). Episodes end by truncation after ``max_cycles`` steps.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from harness.envs import Option, PettingZooVecTask, VecTask, make_vec_task, resolve_options
from harness.hookspecs import hookimpl

SCENARIOS = {
    "simple_spread": "simple_spread_v3",
    "simple_speaker_listener": "simple_speaker_listener_v4",
    "simple_reference": "simple_reference_v3",
}

OPTIONS = {
    "continuous": Option(bool, False, "continuous (Box) actions instead of discrete ones"),
    "max_cycles": Option(int, 25, "episode length in steps (episodes end by truncation)"),
    "workers": Option(int, 0, "worker processes for the copies (0: step them in this process)"),
    "fast": Option(bool, False, "step all copies with the batched NumPy implementation (equal to mpe2, much faster)"),
}


def _make_env(module: str, continuous: bool, max_cycles: int) -> Any:
    mod = importlib.import_module(f"mpe2.{module}")
    return mod.parallel_env(max_cycles=max_cycles, continuous_actions=continuous)


def _build(module: str, opts: dict[str, Any], seed: int, stream: int, n_envs: int, copy_offset: int) -> VecTask:
    make = functools.partial(_make_env, module, opts["continuous"], opts["max_cycles"])
    return PettingZooVecTask(make, n_envs, seed, team_reward="sum", episode_limit=opts["max_cycles"],
                             stream=stream, copy_offset=copy_offset, state_from_obs=True)


def make_task(scenario: str, n_envs: int, seed: int, options: dict[str, Any], stream: int = 0) -> VecTask:
    """Build ``n_envs`` copies of an MPE scenario."""
    opts = resolve_options("mpe", options, OPTIONS)
    if opts["max_cycles"] < 1:
        from harness.errors import HarnessError
        raise HarnessError(f"env.max_cycles must be >= 1, got {opts['max_cycles']}")
    if opts["fast"]:
        from harness.errors import HarnessError
        from harness_plugins.mpe_fast import FastMPETask
        if opts["workers"]:
            raise HarnessError("env.fast=true steps every copy in this process; it cannot be combined with env.workers")
        return FastMPETask(scenario, n_envs, seed, opts["continuous"], opts["max_cycles"], stream=stream)
    build = functools.partial(_build, SCENARIOS[scenario], opts, seed, stream)
    return make_vec_task(build, n_envs, opts["workers"])


@hookimpl
def register_tasks(register):
    register("mpe", make_task, scenarios=tuple(SCENARIOS), options=OPTIONS,
             smoke=("simple_speaker_listener", {}),
             description="MPE particle tasks from mpe2 (team reward = sum of agent rewards)")
