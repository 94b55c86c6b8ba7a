"""Hook specifications: what a plugin may implement.

Plugins are modules (or objects) with functions decorated by ``harness.hookimpl``.
Registration hooks receive a ``register`` callable and add named factories to the
core's registries; ``on_run_start``, ``on_metrics`` and ``on_run_end`` are event hooks every
plugin sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pluggy

PROJECT = "happo_harness"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Add task families.

    Call ``register(name, factory, scenarios=(...), description="")``. ``factory(scenario,
    n_envs, seed, options)`` returns a :class:`harness.task_api.VecTask`; a task is then named
    ``<name>/<scenario>`` on the command line. Optional keywords: ``options`` (a dict of
    :class:`harness.options.Option`), ``open_scenarios=True`` (any scenario name is passed to the
    factory), ``tuned`` (``tuned(task_name) -> dict`` of config overrides for ``tuned = true``
    suites; an optional ``schemes`` table in it holds per-scheme overrides, e.g.
    ``{"clip": 0.1, "schemes": {"mappo": {"rollout_length": 100}}}``) and ``smoke=(scenario, options)`` (a small, fast instance the test suite trains on).
    """


@hookspec
def register_networks(register: Callable[..., None]) -> None:
    """Add network builders: ``register(name, builder_class, description="", options={...}, legacy={...})``.

    ``builder_class()`` gives an object with ``actor(obs_dim, action_space, config)`` and
    ``critic(state_dim, config)`` methods. An actor is a torch module with ``act(obs, deterministic)
    -> (actions, log_probs)`` and ``evaluate(obs, actions) -> (log_probs, entropies)``; a critic
    maps states ``[B, state_dim]`` to values ``[B]``. ``options`` (a dict of
    :class:`harness.options.Option`) are the network's own settings, set as ``network.NAME=value``;
    the builder reads them from ``config.network_options["NAME"]`` (every declared one is there,
    defaults filled in and checked before the run starts). ``legacy`` (optional) gives the option
    values that compute what the network computed before it declared options, so runs made then keep
    their config digests. See :mod:`harness.scheme_config`.
    """


@hookspec
def register_schemes(register: Callable[..., None]) -> None:
    """Add update schemes: ``register(name, scheme_class, description="", search_space={...}, options={...},
    fixed={...})``.

    ``scheme_class(task, builder, config)`` (the :class:`harness.task_api.VecTask`, the network plugin's
    builder and the run's :class:`harness.config.TrainConfig`) must expose ``actors`` (one per agent),
    ``update(batch) -> dict[str, float]``, ``state_dict()``, ``load_state_dict()`` and
    ``set_lr_fraction(fraction)``, and ``values(states)`` unless it sets ``state_critic = False``.
    ``search_space`` is the scheme's default sweep space (see ``harness sweep``); ``options`` (a dict of
    :class:`harness.options.Option`) the scheme's own settings, set as ``scheme.NAME=value`` and read from
    ``config.scheme_options``; ``fixed`` the core config keys it sets to one value (recorded as run).
    See :mod:`harness.scheme_config`.
    """


@hookspec
def register_executors(register: Callable[..., None]) -> None:
    """Add executors (where a suite's runs train): ``register(name, executor_class, description="",
    options={...})``. ``executor_class(jobs, options)`` returns a :class:`harness.executor.Executor`;
    ``options`` (a dict of :class:`harness.options.Option`) declares the settings a user may give with
    ``--executor-option key=value`` or a suite's ``[executor.<name>]`` table.
    """


@hookspec
def register_loggers(register: Callable[..., None]) -> None:
    """Add experiment trackers a run can name in its ``loggers`` config key: ``register(name, tracker,
    description="", requires=("package", ...), extra="...")``. ``tracker`` is the object doing the
    work (e.g. a :class:`harness.tracking.Tracker`), usually through the event hooks below, for the
    runs whose ``loggers`` name it; ``requires`` lists the import names it needs and ``extra`` the
    pip extra that installs them (a missing one is a one-line error before the run starts)."""


@hookspec
def on_run_start(config: dict[str, Any], record: dict[str, Any], run_dir: Path | None,
                 start_iteration: int) -> None:
    """Event: a run starts (``start_iteration`` 0) or resumes from a checkpoint at that iteration.
    ``config`` is the resolved config (``TrainConfig.to_dict()``), ``record`` the run's
    ``config.json`` (provenance: versions, plugins, code digests, placement)."""


@hookspec
def on_metrics(record: dict[str, Any], run_dir: Path | None) -> None:
    """Event: one metrics record (one training iteration) was produced. Every plugin sees it."""


@hookspec
def on_run_end(config: dict[str, Any], run_dir: Path | None, summary: dict[str, Any], finished: bool) -> None:
    """Event: a run ends. ``finished`` is True when it reached its budget (``summary`` holds the last
    evaluation and the absolute metric, when there is one), False when it stopped early (a signal, an
    error); a stopped run that resumes starts again with ``on_run_start``."""
