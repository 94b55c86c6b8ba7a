"""Task plugin ``pettingzoo``: any PettingZoo parallel environment, named by import path.

Task names: ``pettingzoo/<module>:<factory>`` (for example
``pettingzoo/pettingzoo.sisl.pursuit_v5:parallel_env``), or ``pettingzoo/<module>`` with the factory
``parallel_env``, where a module that does not import as given is looked up under ``pettingzoo.``
(``pettingzoo/sisl.pursuit_v5``). Options: ``max_cycles`` (passed to the factory when > 0),
``kwargs`` (a JSON object of further factory arguments), ``team_reward`` (``sum`` of the agents'
rewards, or ``shared``: the first agent's, for envs that give every agent the team reward) and
``workers``. The critic's global state is the env's ``state()`` where it has one, otherwise the
concatenation of the agents' observations.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import Any

from harness import hookimpl
from harness.envs import Option, PettingZooVecTask, VecTask, make_vec_task, resolve_options
from harness.errors import HarnessError

OPTIONS = {
    "max_cycles": Option(int, 0, "episode length passed to the factory as max_cycles (0: the env's default)",
                         high=100_000),
    "kwargs": Option(str, "{}", "further factory arguments as a JSON object, e.g. '{\"n_evaders\": 4}'"),
    "team_reward": Option(str, "sum", "sum: the sum of the agents' rewards; shared: every agent gets the team reward"),
    "workers": Option(int, 0, "worker processes for the copies (0: step them in this process)", high=1024),
}


def resolve_factory(scenario: str) -> Any:
    """The factory a scenario names, or a one-line error saying what was tried."""
    module_name, _, factory_name = scenario.partition(":")
    factory_name = factory_name or "parallel_env"
    tried = [module_name] if module_name.startswith("pettingzoo.") else [module_name, f"pettingzoo.{module_name}"]
    errors = []
    for name in tried:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise HarnessError(f"task pettingzoo/{scenario}: module {name!r} has no factory {factory_name!r}")
        return factory
    raise HarnessError(f"task pettingzoo/{scenario}: cannot import {' or '.join(repr(t) for t in tried)} "
                       f"({'; '.join(errors)})")


def _make_env(factory: Any, kwargs: dict[str, Any]) -> Any:
    return factory(**kwargs)


def _build(factory: Any, kwargs: dict[str, Any], team_reward: str, limit: int, state_from_obs: bool,
           seed: int, stream: int, n_envs: int, copy_offset: int) -> VecTask:
    return PettingZooVecTask(functools.partial(_make_env, factory, kwargs), n_envs, seed, team_reward=team_reward,
                             episode_limit=limit, stream=stream, copy_offset=copy_offset,
                             state_from_obs=state_from_obs)


def make_task(scenario: str, n_envs: int, seed: int, options: dict[str, Any], stream: int = 0) -> VecTask:
    opts = resolve_options("pettingzoo", options, OPTIONS)
    try:
        kwargs = json.loads(opts["kwargs"])
    except json.JSONDecodeError as exc:
        raise HarnessError(f"env.kwargs={opts['kwargs']!r} is not a JSON object ({exc})") from None
    if not isinstance(kwargs, dict):
        raise HarnessError(f"env.kwargs={opts['kwargs']!r} is not a JSON object")
    if opts["team_reward"] not in ("sum", "shared"):
        raise HarnessError(f"env.team_reward={opts['team_reward']!r} is not one of: sum, shared")
    if opts["max_cycles"] > 0:
        kwargs["max_cycles"] = opts["max_cycles"]
    factory = resolve_factory(scenario)
    try:
        probe = factory(**kwargs)
    except TypeError as exc:
        raise HarnessError(f"task pettingzoo/{scenario}: the factory rejected its arguments {kwargs}: {exc}") from None
    if not hasattr(probe, "possible_agents") or not hasattr(probe, "observation_space"):
        raise HarnessError(f"task pettingzoo/{scenario}: the factory did not return a PettingZoo parallel env")
    probe.reset(seed=0)
    try:
        probe.state()
        state_from_obs = False
    except (NotImplementedError, AttributeError):
        state_from_obs = True
    limit = opts["max_cycles"] or int(getattr(probe.unwrapped, "max_cycles", 0) or 0)
    probe.close()
    build = functools.partial(_build, factory, kwargs, opts["team_reward"], limit, state_from_obs, seed, stream)
    return make_vec_task(build, n_envs, opts["workers"])


@hookimpl
def register_tasks(register):
    register("pettingzoo", make_task, scenarios=("sisl.pursuit_v5",), open_scenarios=True, options=OPTIONS,
             smoke=("sisl.pursuit_v5", {"max_cycles": 20, "kwargs": '{"n_evaders": 4, "n_pursuers": 2}'}),
             description="any PettingZoo parallel env by import path: pettingzoo/<module>[:<factory>]")
