"""Resolving a task name (``family/scenario``) to a vectorised task through the task registry."""

from __future__ import annotations

from typing import Any

from harness import stopping
from harness.errors import HarnessError, PluginError, plugin_call
from harness.plugins import Registries
from harness.task_api import VecTask


def split_task(name: str) -> tuple[str, str]:
    """``"mpe/simple_spread"`` -> ``("mpe", "simple_spread")``."""
    family, sep, scenario = name.partition("/")
    if not sep or not family or not scenario:
        raise HarnessError(f"task {name!r} must be written family/scenario, e.g. mpe/simple_spread")
    return family, scenario


def make_task(regs: Registries, name: str, n_envs: int, seed: int, options: dict[str, Any],
              stream: int = 0) -> VecTask:
    """Build ``n_envs`` copies of task ``name``; ``stream`` separates training and evaluation seeds."""
    family, scenario = split_task(name)
    entry = regs.tasks.get(family)
    scenarios = entry.extra.get("scenarios")
    if scenarios and not entry.extra.get("open_scenarios") and scenario not in scenarios:
        raise HarnessError(f"unknown task {name!r}; known {family} tasks: "
                           + ", ".join(f"{family}/{s}" for s in scenarios))
    with plugin_call(f"plugin {entry.plugin!r}: task factory for {name!r} raised"), \
            stopping.plugin_work(f"building task {name!r}"):  # a stop takes effect inside a factory that hangs
        task = entry.factory(scenario, n_envs, seed, dict(options), stream=stream)
    if not isinstance(task, VecTask):
        raise PluginError(f"plugin {entry.plugin!r}: task factory for {name!r} returned "
                          f"{type(task).__name__}, expected a harness.task_api.VecTask")
    return task
