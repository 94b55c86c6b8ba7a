"""Building what a run trains from its config, with every check that can fail done before work starts.

:func:`assemble` resolves the scheme's options and fixed keys, checks the trackers, the device, an
``init_from`` file and the memory the config needs, limits the process's thread pools to ``threads`` (learned from one copy of the task before many are
built), then builds the task, its output checker, the network builder and the scheme, naming the
plugin when one of them raises or a scheme lacks part of its contract.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.config import TrainConfig
from harness.continuation import init_source
from harness.devices import move_scheme, resolve_device
from harness.errors import HarnessError, PluginError, plugin_call
from harness.memory import check_memory, check_replay
from harness.plugins import Registries
from harness.replay import is_off_policy
from harness.results import RunDir
from harness.scheme import core_advantages
from harness.scheme_config import resolve_scheme_config
from harness.sequences import check_chunking, hidden_size, is_recurrent
from harness.task_api import TRAIN_STREAM, VecTask
from harness.task_check import TaskChecker
from harness.tasks import make_task, split_task
from harness.threads import check_threads, limit_threads
from harness.tracking import check_loggers

#: What the core calls on every scheme (and ``values`` on a scheme whose advantages the core computes).
SCHEME_METHODS = ("actors", "update", "state_dict", "load_state_dict", "set_lr_fraction")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Parts:
    """A run's task (training copies), its checker, the network builder and the scheme."""

    task: VecTask
    checker: TaskChecker
    builder: Any
    scheme: Any
    scheme_plugin: str
    device: torch.device
    scheme_fixed: dict[str, dict[str, Any]]  # the fixed keys whose asked value differed (for config.json)
    thread_pools: list[dict[str, Any]]       # the native thread pools and their limits (for config.json)


def assemble(cfg: TrainConfig, regs: Registries, run: RunDir | None) -> Parts:
    """Check ``cfg`` and build its parts; ``run`` (when given) is created and its free space checked, and
    removed again when it was made here and a check refuses the run before anything is written."""
    scheme_entry = regs.schemes.get(cfg.scheme)
    # The scheme's options filled in and the keys it fixes set: the config says what runs.
    scheme_fixed = resolve_scheme_config(cfg, regs)
    network_entry = regs.networks.get(cfg.network)
    check_loggers(regs, cfg.loggers)
    device = resolve_device(cfg.device)
    check_threads(cfg.threads)
    if cfg.init_from:
        init_source(cfg.init_from)  # a missing file or a damaged source run: an error before the run directory is made
    limit_threads(cfg.threads)
    seed_everything(cfg.seed)
    # A huge n_envs or eval_envs is refused before its copies exhaust the machine (and before the run
    # directory is made).
    many = max(cfg.n_envs, cfg.eval_envs) > 64
    if many:
        sizes = make_task(regs, cfg.task, 1, cfg.seed, cfg.env, stream=TRAIN_STREAM)
        try:
            check_memory(cfg, sizes)
        finally:
            sizes.close()
    made = run is not None and not run.path.exists()
    if run is not None:
        run.prepare()
    task = None
    try:
        task = make_task(regs, cfg.task, cfg.n_envs, cfg.seed, cfg.env, stream=TRAIN_STREAM)
        checker = TaskChecker(regs.tasks.get(split_task(cfg.task)[0]).plugin, cfg.task)
        if not many:
            check_memory(cfg, task)
        with plugin_call(f"plugin {network_entry.plugin!r}: network builder {cfg.network!r} raised", keep=()):
            builder = network_entry.factory()
        with plugin_call(f"plugin {scheme_entry.plugin!r}: scheme {cfg.scheme!r} (with network {cfg.network!r} "
                         f"of plugin {network_entry.plugin!r}) raised while building:"):
            scheme = scheme_entry.factory(task, builder, cfg)
        if device.type != "cpu":
            move_scheme(scheme, device)
        needed = SCHEME_METHODS + (("values",) if core_advantages(scheme) else ())
        missing = [attr for attr in needed if not hasattr(scheme, attr)]
        if missing:
            raise PluginError(f"plugin {scheme_entry.plugin!r}: scheme {cfg.scheme!r} lacks {missing[0]!r}")
        if is_recurrent(scheme.actors):
            if is_off_policy(scheme):
                raise HarnessError(f"network {cfg.network!r} builds recurrent actors; off-policy scheme {cfg.scheme!r} "
                                   "learns from single transitions and cannot train them (use a feed-forward network)")
            check_chunking(scheme.actors, cfg.rollout_length, cfg.network)
            check_memory(cfg, task, hidden=sum(hidden_size(a) for a in scheme.actors))  # their stored states too
        replay = 0
        if is_off_policy(scheme):
            replay = check_replay(int(scheme.replay_capacity), cfg, task)
            replay = 2 * replay if getattr(scheme, "save_replay", False) else 0  # checkpoint + previous
        if run is not None:
            n_params = sum(p.numel() for m in [*scheme.actors, getattr(scheme, "critic", None)]
                           if m is not None for p in m.parameters())
            # checkpoint + previous + best, each params and two Adam moments; metrics rows; headroom
            run.check_space(9 * 4 * n_params + 600 * cfg.iterations + replay + (1 << 20))
        thread_pools = limit_threads(cfg.threads)  # again: the task plugin may have loaded libraries of its own
    except BaseException:
        if task is not None:
            task.close()
        if made:
            run.discard_if_empty()  # a refusal (a scheme's, a task's) leaves no empty run directory behind
        raise
    return Parts(task, checker, builder, scheme, scheme_entry.plugin, device, scheme_fixed, thread_pools)
