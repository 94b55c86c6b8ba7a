"""Per-task normalisation references, which depend only on the task, never on the runs compared.

* The **floor** is a uniform-random policy's mean return on the task's evaluation start states: for
  every seed the task's runs use, the ``eval_episodes`` episodes of the evaluation stream of that seed
  (the episodes the runs are scored on), with actions drawn uniformly (each discrete choice, or each
  box dimension between its bounds) by a generator seeded from the run seed. Measured by the harness.
* The **ceiling** is a published return the task plugin declares with its source
  (``register(..., references={scenario: {"return": x, "source": "...", "options": {...}}})``; it
  applies only to runs whose task options match ``options``, e.g. the papers' 1000-step episodes);
  None where none is known.

:func:`tree_references` measures the floors of a results tree once and keeps them in
``<root>/references.json``, keyed by everything a floor depends on (task, task options, evaluation
protocol, seeds), so plotting again reuses them and a changed protocol measures afresh.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import TrainConfig, build_config
from harness.errors import HarnessError, PluginError, describe
from harness.evaluation import play_fixed_episodes
from harness.options import resolve_options
from harness.plugins import Registries, load_plugins
from harness.results import atomic_write_bytes
from harness.safe_files import read_text
from harness.task_api import EVAL_STREAM, VecTask
from harness.task_check import TaskChecker
from harness.tasks import make_task, split_task

CACHE = "references.json"
#: Where the random policy's actions come from: ``numpy.random.default_rng([seed, ACTION_SEED])``.
ACTION_SEED = 9


def _uniform(task: VecTask, rng: np.random.Generator) -> Any:
    """A uniform-random policy's ``act(obs, starts)`` for ``task`` (one action array per agent)."""
    def act(obs: list[np.ndarray], starts: np.ndarray) -> list[np.ndarray]:
        E = task.n_envs
        return [rng.integers(s.n, size=E) if s.kind == "discrete"
                else rng.uniform(np.asarray(s.low, np.float32), np.asarray(s.high, np.float32),
                                 size=(E, s.n)).astype(np.float32)
                for s in task.action_spaces]
    return act


def random_returns(regs: Registries, cfg: TrainConfig, seeds: list[int]) -> list[float]:
    """A uniform-random policy's returns on the evaluation start states of each of ``seeds``."""
    family = split_task(cfg.task)[0]
    out: list[float] = []
    for seed in seeds:
        task = make_task(regs, cfg.task, cfg.eval_envs, seed, cfg.env, stream=EVAL_STREAM)
        try:
            rng = np.random.default_rng([seed, ACTION_SEED])
            out += play_fixed_episodes(task, _uniform(task, rng), cfg.eval_episodes,
                                       TaskChecker(regs.tasks.get(family).plugin, cfg.task))
        finally:
            task.close()
    return out


def declared_ceiling(regs: Registries, task: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The reference return the task plugin declares for ``task`` under ``options`` (resolved task
    options), or None; a malformed declaration is the plugin's one-line error."""
    family, scenario = split_task(task)
    entry = regs.tasks.get(family)
    ref = (entry.extra.get("references") or {}).get(scenario)
    if ref is None:
        return None
    try:
        value, source, needs = float(ref["return"]), str(ref.get("source", "")), dict(ref.get("options") or {})
        if not np.isfinite(value):
            raise ValueError(f"return {value} is not finite")
    except (TypeError, KeyError, ValueError) as exc:
        raise PluginError(f"plugin {entry.plugin!r}: references[{scenario!r}]={ref!r} is not "
                          f"{{'return': number, 'source': text, 'options': {{...}}}} ({describe(exc)})") from None
    if any(options.get(k) != v for k, v in needs.items()):
        return None
    return {"ceiling": value, "ceiling_note": source}


def _protocol(cfg: TrainConfig, seeds: list[int]) -> dict[str, Any]:
    return {"task": cfg.task, "env": cfg.env, "eval_episodes": cfg.eval_episodes, "eval_envs": cfg.eval_envs,
            "seeds": seeds, "action_seed": ACTION_SEED}


def floor(regs: Registries, cfg: TrainConfig, seeds: list[int]) -> dict[str, Any]:
    """The floor of ``cfg``'s task under ``cfg``'s evaluation protocol, measured."""
    returns = random_returns(regs, cfg, seeds)
    return {"floor": float(np.mean(returns)), "floor_episodes": len(returns),
            "floor_note": (f"uniform-random policy, {len(returns)} episodes: {cfg.eval_episodes} of the evaluation "
                           f"stream of each seed {', '.join(map(str, seeds))} (actions from "
                           f"default_rng([seed, {ACTION_SEED}]))"),
            "protocol": _protocol(cfg, seeds)}


def ceiling(regs: Registries, cfg: TrainConfig) -> dict[str, Any]:
    """The ceiling the task plugin declares for ``cfg``'s task and options (None where none applies)."""
    family = split_task(cfg.task)[0]
    options = resolve_options(family, dict(cfg.env), regs.tasks.get(family).extra.get("options") or {})
    return declared_ceiling(regs, cfg.task, options) or {"ceiling": None, "ceiling_note": None}


def tree_references(root: str | Path, runs: Any, regs: Registries | None = None) -> dict[str, dict[str, Any]]:
    """The reference of every task of a results tree (``runs``: :func:`harness.report.load_runs`'s
    table, or anything with ``task``, ``seed`` and ``run_dir`` columns). The protocol is the first run's
    of each task (``plot`` refuses trees whose schemes differ in it); a task whose plugin is not
    installed, or that cannot be built, has no reference (a one-line warning)."""
    root = Path(root)
    cache_file = root / CACHE
    try:
        cache = json.loads(read_text(cache_file)) if cache_file.exists() else {}
    except (OSError, ValueError, HarnessError):  # an unusable cache is measured afresh (and replaced)
        cache = {}
    out: dict[str, dict[str, Any]] = {}
    fresh = False
    for task, group in runs.groupby("task", sort=True):
        seeds = sorted({int(s) for s in group["seed"]})
        first = Path(sorted(group["run_dir"])[0])
        try:
            record = json.loads(read_text(first / "config.json"))
            cfg = build_config(list({**record["config"], "task": task}.items()))
        except (OSError, ValueError, KeyError, HarnessError) as exc:
            print(f"harness: warning: no reference for {task}: its config cannot be read ({exc})", file=sys.stderr)
            continue
        key = hashlib.sha256(json.dumps(_protocol(cfg, seeds), sort_keys=True).encode()).hexdigest()[:16]
        try:
            regs = regs or load_plugins()
            if not isinstance(cache.get(key), dict):
                cache[key], fresh = floor(regs, cfg, seeds), True
            out[task] = {**cache[key], **ceiling(regs, cfg)}
        except Exception as exc:  # a task that cannot be built or played: no reference, said so
            print(f"harness: warning: no reference for {task}: {describe(exc)}", file=sys.stderr)
    if fresh:
        try:
            atomic_write_bytes(cache_file, (json.dumps(cache, indent=2, sort_keys=True) + "\n").encode())
        except OSError:
            pass  # a read-only tree: measured again next time
    return out
