"""The sweep file: its keys, the search space's dimensions, and :func:`load_sweep`, which checks a
sweep file whole (names, budget, seeds, every corner of the space against the scheme and its tasks)
before any trial runs. :mod:`harness.sweep` runs what it describes."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import scheme_config
from harness.config import (FIELDS, MAX_COUNT, MAX_SEED, MAX_TRIALS, RUN_ONLY, TABLES, TrainConfig, absolute_specs,
                            build_config, check_count, check_name, need, need_unique, plugin_list, read_spec_file, seed_list)
from harness.errors import HarnessError
from harness.plugins import Registries, load_plugins
from harness.references import ceiling
from harness.scheme_config import resolved
from harness.tasks import make_task
from harness.tracking import check_loggers

SWEEP_KEYS = {"name", "description", "scheme", "tasks", "steps", "seeds", "trials", "evaluations", "eval_episodes",
              "objective_window", "sampler", "seed", "pruner", "pruner_startup_trials", "pruner_warmup_evals",
              "default_space", "exclude", "plugins", "heartbeat", "grace", "max_retry"}
TOP_KEYS = {"sweep", "config", "space"}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")

#: The fields of a searched dimension in a sweep space.
DIMENSION_FIELDS = {"low", "high", "log", "step", "choices"}
#: Config keys that the ``[sweep]`` table decides for every trial, and where to set them instead: in
#: ``[space]`` or ``[config]`` they would be overridden (``task``, ``seed``, ``scheme``), vary the
#: budget or evaluation per trial (``steps``, ``eval_episodes``) or be replaced (``eval_interval``).
SWEEP_DECIDES = {"task": "[sweep] tasks", "seed": "[sweep] seeds", "scheme": "[sweep] scheme",
                 "steps": "[sweep] steps", "eval_episodes": "[sweep] eval_episodes",
                 "eval_interval": "[sweep] evaluations"}


@dataclass
class Dimension:
    """One searched (or fixed) config key."""

    name: str
    kind: str  # float | int | categorical | fixed
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: list = field(default_factory=list)
    value: Any = None

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        return self.value


def parse_dimension(name: str, spec: Any, where: str, int_options: frozenset[str] = frozenset()) -> Dimension:
    """A dimension from its TOML/dict form; a one-line error names the key and what is accepted.
    ``int_options``: option keys (``scheme.NAME``) of integer type, searched as integers."""
    if name.partition(".")[0] not in TABLES and name not in FIELDS:
        raise HarnessError(f"{where}: {name!r} is not a config key; known: {', '.join(FIELDS)}")
    accepted = "{low, high[, log][, step]}, {choices = [...]} or a plain value"
    if not isinstance(spec, dict):
        return Dimension(name, "fixed", value=spec)
    unknown = set(spec) - DIMENSION_FIELDS
    if unknown:
        raise HarnessError(f"{where}: {name} has unknown field(s) {sorted(unknown)}; accepted: {accepted}")
    if "choices" in spec:
        ch = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(ch, list) or not ch:
            raise HarnessError(f"{where}: {name}: choices must be a non-empty list and come alone; accepted: {accepted}")
        if not all(isinstance(c, (str, int, float, bool)) for c in ch):
            raise HarnessError(f"{where}: {name}: choices must be strings or numbers (write lists as '128,128')")
        return Dimension(name, "categorical", choices=list(ch))
    if "low" not in spec or "high" not in spec:
        raise HarnessError(f"{where}: {name} needs low and high (or choices); accepted: {accepted}")
    low, high = spec["low"], spec["high"]
    if not all(_finite_number(v) for v in (low, high)) or not low < high:
        raise HarnessError(f"{where}: {name}: low={low!r} and high={high!r} must be finite numbers with low < high")
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise HarnessError(f"{where}: {name}: log={log!r} needs a boolean and low > 0")
    declared_int = name in int_options or (FIELDS.get(name) is not None and FIELDS[name].type in (int, "int"))
    if declared_int and not (isinstance(low, int) and isinstance(high, int)):
        raise HarnessError(f"{where}: {name} is an integer option: low={low!r} and high={high!r} must be integers "
                           "(it is sampled as an integer)")
    is_int = declared_int
    step = spec.get("step")
    if step is not None:
        if not _finite_number(step) or not step > 0 or (is_int and not isinstance(step, int)):
            raise HarnessError(f"{where}: {name}: step={step!r} must be a positive "
                               f"{'integer' if is_int else 'number'}")
        if log:
            raise HarnessError(f"{where}: {name}: log and step cannot be combined (a log scale has no fixed step)")
        if step > high - low:
            raise HarnessError(f"{where}: {name}: step={step!r} is larger than high - low = {high - low!r}")
    return Dimension(name, "int" if is_int else "float", low=low, high=high, log=log, step=step)


def check_not_decided(keys: list[str], path: Path, table: str) -> None:
    """Refuse in ``[space]`` or ``[config]`` a key that the ``[sweep]`` table decides
    (:data:`SWEEP_DECIDES`), naming where it belongs."""
    for key in keys:
        if key in SWEEP_DECIDES:
            raise HarnessError(f"{path}: [{table}] sets {key!r}, which the sweep decides for every trial; "
                               f"use {SWEEP_DECIDES[key]} instead")


def int_option_keys(regs: Registries, scheme_entry: Any, tasks: list[str], networks: Any = ()) -> frozenset[str]:
    """The ``scheme.NAME``, ``env.NAME`` and ``network.NAME`` keys of the scheme's, the tasks' and the
    ``networks``' options declared as integers: a sweep samples them as integers."""
    keys = {f"scheme.{n}" for n, o in scheme_config.declared(scheme_entry)[0].items() if o.type is int}
    for network in networks:
        if network in regs.networks:
            options = scheme_config.declared_network(regs.networks.get(network))[0]
            keys |= {f"network.{n}" for n, o in options.items() if o.type is int}
    for task in tasks:
        family = task.partition("/")[0]
        if family in regs.tasks:
            options = regs.tasks.get(family).extra.get("options") or {}
            keys |= {f"env.{n}" for n, o in options.items() if getattr(o, "type", None) is int}
    return frozenset(keys)


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class Sweep:
    path: Path
    name: str
    scheme: str
    tasks: list[str]
    steps: int
    seeds: list[int]
    trials: int
    evaluations: int
    eval_episodes: int
    window: float
    sampler: str
    seed: int
    pruner: str
    startup: int
    warmup: int
    heartbeat: int
    grace: int
    max_retry: int
    plugins: list[str]
    fixed: list[tuple[str, Any]]
    space: list[Dimension]
    out: Path
    digest: str
    per_task: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    #: The devices its trials' configs name (``[config]``, the space's corners), checked where they run.
    devices: list[str] = field(default_factory=list)

    def storage_url(self, storage: str | None) -> str:
        return storage or f"sqlite:///{(self.out / 'study.db').resolve()}"


def _posint(sw: dict, key: str, default: int | None, path: Path, minimum: int = 1, maximum: int | None = None) -> int:
    v = sw.get(key, default)
    need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, path,
          f"[sweep] {key}={v!r} must be an integer >= {minimum}")
    if maximum is not None:
        check_count(v, f"{path}: [sweep] {key}={v!r}", maximum, minimum)
    return v


def load_sweep(path: str | Path, out: str | Path | None = None, regs: Registries | None = None,
               extra_plugins: list[str] = (), last: list[tuple[str, Any]] = ()) -> Sweep:
    """Parse and validate a sweep file (every error before any trial runs)."""
    path = Path(path)
    data, _ = read_spec_file(path, "sweep", TOP_KEYS, SWEEP_KEYS, ("scheme", "tasks", "steps"))
    return sweep_from_data(data, path, out, regs, None, extra_plugins, last)


def sweep_from_data(data: dict[str, Any], path: Path, out: str | Path | None = None, regs: Registries | None = None,
                    per_task: dict[str, list[tuple[str, Any]]] | None = None, extra_plugins: list[str] = (),
                    last: list[tuple[str, Any]] = ()) -> Sweep:
    """A validated sweep from a sweep file's tables (``path`` names where they came from in errors).
    ``per_task`` adds config overrides for one task's runs, before the sweep's budget and the
    trial's parameters (a suite's tuning uses it for the task's own settings); ``extra_plugins`` are
    loaded besides the file's (``--plugin``), ``last`` overrides every run (``--loggers``)."""
    sw = data["sweep"]
    per_task = per_task or {}
    scheme = sw["scheme"]
    need(isinstance(scheme, str), path, f"[sweep] scheme={scheme!r} must be a scheme name")
    tasks = sw["tasks"]
    tasks = [tasks] if isinstance(tasks, str) else tasks
    need(isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks), path,
          f"[sweep] tasks={tasks!r} must be a non-empty list of task names")
    seeds = seed_list(sw.get("seeds", 1), path, "[sweep]")
    need_unique(tasks, path, "[sweep] tasks")
    window = sw.get("objective_window", 0.25)
    need(isinstance(window, (int, float)) and 0 < window <= 1, path,
          f"[sweep] objective_window={window!r} must be in (0, 1]")
    sampler = sw.get("sampler", "tpe")
    need(sampler in SAMPLERS, path, f"[sweep] sampler={sampler!r} is not one of: {', '.join(SAMPLERS)}")
    pruner = sw.get("pruner", "median")
    need(pruner in PRUNERS, path, f"[sweep] pruner={pruner!r} is not one of: {', '.join(PRUNERS)}")
    exclude = sw.get("exclude", [])
    need(isinstance(exclude, list) and all(isinstance(x, str) for x in exclude), path,
          f"[sweep] exclude={exclude!r} must be a list of config keys")
    default_space = sw.get("default_space", True)
    need(isinstance(default_space, bool), path, f"[sweep] default_space={default_space!r} must be true or false")
    for tables in ("config", "space"):
        need(isinstance(data.get(tables, {}), dict), path, f"[{tables}] must be a table")

    plugins = list(dict.fromkeys(plugin_list(sw.get("plugins", []), path, "sweep") + absolute_specs(extra_plugins)))
    regs = regs or load_plugins(plugins)
    entry = regs.schemes.get(scheme)
    declared = entry.extra.get("search_space") or {}
    if default_space and not isinstance(declared, dict):
        raise HarnessError(f"plugin {entry.plugin!r}: scheme {scheme!r} registered search_space={declared!r}, "
                           "which is not a dict of dimensions")
    space_specs: dict[str, Any] = dict(declared) if default_space else {}
    for name in exclude:
        need(name in space_specs, path, f"[sweep] exclude names {name!r}, which is not in the search space "
              f"{sorted(space_specs)}")
        del space_specs[name]
    for name, spec in data.get("space", {}).items():
        if name in TABLES and isinstance(spec, dict) and not set(spec) & DIMENSION_FIELDS:
            # TOML's dotted keys: scheme.kl_threshold = { ... } is a table {"scheme": {...}}
            space_specs.update({f"{name}.{k}": v for k, v in spec.items()})
        else:
            space_specs[name] = spec
    check_not_decided(list(space_specs), path, "space")
    check_not_decided(list(data.get("config", {})), path, "config")
    where = f"{path}: search space"
    named = [v for k, v in [*data.get("config", {}).items(), *last, *[kv for o in per_task.values() for kv in o]]
             if k == "network" and isinstance(v, str)]
    int_options = int_option_keys(regs, entry, tasks, named or [TrainConfig.network])
    space = [parse_dimension(n, s, where, int_options) for n, s in space_specs.items()]
    fixed_by_scheme = scheme_config.declared(entry)[1]
    for d in space:
        need(d.name not in fixed_by_scheme or d.kind == "fixed", path,
             f"search space: scheme {scheme!r} fixes {d.name}={fixed_by_scheme.get(d.name)!r}, so it cannot be "
             "searched; remove it from the space")
    need(any(d.kind != "fixed" for d in space), path, "the search space is empty (nothing to tune)")

    fixed = list(data.get("config", {}).items()) + list(last)
    steps = _posint(sw, "steps", None, path)
    evaluations = _posint(sw, "evaluations", 10, path, maximum=MAX_COUNT)
    base = [("threads", 1), ("steps", steps), ("eval_episodes", _posint(sw, "eval_episodes", 10, path))] + fixed
    # Every task must build, and every config a trial could draw must be valid at its corners.
    devices: list[str] = []
    for task in tasks:
        try:
            task_base = base[:1] + per_task.get(task, []) + base[1:]
            cfg = resolved(build_config(task_base + [("task", task), ("scheme", scheme)]), regs)
            check_loggers(regs, cfg.loggers)
            devices.append(cfg.device)
            for corner in (0, 1):
                devices.append(resolved(build_config(task_base + [("task", task), ("scheme", scheme)] +
                                                     [(d.name, _corner(d, corner)) for d in space]), regs).device)
        except HarnessError as exc:
            raise HarnessError(f"{path}: {task}: {exc}") from None
        make_task(regs, task, 1, 0, cfg.env).close()
        # Several tasks: the objective averages normalised returns (harness.objective.task_scales).
        need(len(tasks) == 1 or ceiling(regs, cfg)["ceiling"] is not None, path,
             f"{task} has no reference return (its task plugin declares none for these options), and a sweep over "
             "several tasks scores trials on returns normalised by one; tune one task per sweep")
    name = check_name(sw.get("name", path.stem), path, "sweep")
    out = Path(out) if out is not None else Path("results") / "sweeps" / name
    kept = {t: [(k, v) for k, v in over if k not in RUN_ONLY] for t, over in per_task.items()}
    # A study over several tasks scores normalised returns: its digest says so, so a study made when
    # the objective averaged raw returns is refused rather than continued on another scale.
    objective = {"objective": "normalised returns"} if len(tasks) > 1 else {}
    digest = hashlib.sha256(json.dumps({**data, **({"per_task": kept} if per_task else {}), **objective},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Sweep(
        path=path, name=name, scheme=scheme, tasks=tasks, steps=steps, seeds=seeds,
        trials=_posint(sw, "trials", 20, path, maximum=MAX_TRIALS), evaluations=evaluations,
        eval_episodes=sw.get("eval_episodes", 10), window=float(window), sampler=sampler,
        seed=_posint(sw, "seed", 0, path, minimum=0, maximum=MAX_SEED), pruner=pruner,
        startup=_posint(sw, "pruner_startup_trials", 5, path, minimum=0, maximum=MAX_TRIALS),
        warmup=_posint(sw, "pruner_warmup_evals", 2, path, minimum=0, maximum=MAX_COUNT),
        heartbeat=_posint(sw, "heartbeat", 30, path), grace=_posint(sw, "grace", 120, path),
        max_retry=_posint(sw, "max_retry", 3, path, minimum=0, maximum=MAX_COUNT),
        plugins=plugins, fixed=base, space=space, out=out, digest=digest, per_task=per_task,
        devices=list(dict.fromkeys(devices)))


def _corner(d: Dimension, which: int) -> Any:
    if d.kind in ("float", "int"):
        return d.low if which == 0 else d.high
    if d.kind == "categorical":
        return d.choices[0] if which == 0 else d.choices[-1]
    return d.value


# -- the workers ----------------------------------------------------------------------------------
