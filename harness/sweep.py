"""Optuna hyperparameter sweeps: ``harness sweep FILE [--storage URL] [--jobs N] [--trials N] [--resume]``.

A sweep file (TOML) names one scheme, one or more tasks, the budget and seeds of a trial, the
objective and a search space::

    [sweep]
    name = "happo_spread"
    scheme = "happo"
    tasks = ["mpe/simple_spread"]
    steps = 100_000          # env steps per run
    seeds = 2                # runs per task in every trial (or a list of seeds)
    trials = 30              # finished trials the study should reach (--trials overrides)
    evaluations = 10         # about this many evaluations per run (every iterations // evaluations); the pruner sees each
    eval_episodes = 10
    objective_window = 0.25  # objective: mean evaluation return over the last 25% of training
    sampler = "tpe"          # tpe | random
    seed = 0                 # sampler seed
    pruner = "median"        # median | hyperband | none
    default_space = true     # start from the scheme's declared search space
    exclude = []             # dimensions of that space to leave out

    [config]                 # fixed overrides for every trial
    [space]                  # dimensions added or replaced: {low, high[, log][, step]}, {choices}, or a value

Every trial runs its (task, seed) runs in lockstep in one process, reports the mean of their latest
evaluation returns to Optuna after each evaluation (so the pruner compares trials at the same point of
their budgets), and scores the trial with the mean over runs of the evaluation returns in the last
``objective_window`` of training. Runs are ordinary run directories under
``<out>/trials/<k>/<task>/seed_<s>/`` and checkpoint as usual: a trial re-queued after its worker died
resumes them.

Storage is an SQLite file ``<out>/study.db`` unless ``--storage`` gives any SQLAlchemy URL; workers
send heartbeats, and a trial whose worker stopped beating for ``grace`` seconds is marked failed and
re-queued with the same parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import math
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import stopping
from harness.config import (FIELDS, RUN_ONLY, TABLES, absolute_specs, build_config, check_name, need, need_unique, plugin_list,
                            read_spec_file, seed_list)
from harness.errors import HarnessError
from harness.executor import Job, make_executor
from harness.plugins import Registries, load_plugins
from harness.results import check_writable
from harness.tasks import make_task
from harness import scheme_config
from harness.scheme_config import resolved
from harness.tracking import check_loggers

SWEEP_KEYS = {"name", "description", "scheme", "tasks", "steps", "seeds", "trials", "evaluations", "eval_episodes",
              "objective_window", "sampler", "seed", "pruner", "pruner_startup_trials", "pruner_warmup_evals",
              "default_space", "exclude", "plugins", "heartbeat", "grace", "max_retry"}
TOP_KEYS = {"sweep", "config", "space"}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")

#: The fields of a searched dimension in a sweep space.
DIMENSION_FIELDS = {"low", "high", "log", "step", "choices"}


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
    is_int = isinstance(low, int) and isinstance(high, int) and (
        name in int_options or (FIELDS.get(name) is not None and FIELDS[name].type in (int, "int")))
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

    def storage_url(self, storage: str | None) -> str:
        return storage or f"sqlite:///{(self.out / 'study.db').resolve()}"


def _posint(sw: dict, key: str, default: int | None, path: Path, minimum: int = 1) -> int:
    v = sw.get(key, default)
    need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, path,
          f"[sweep] {key}={v!r} must be an integer >= {minimum}")
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
    where = f"{path}: search space"
    int_options = frozenset(f"scheme.{n}" for n, o in scheme_config.declared(entry)[0].items()
                            if o.type is int)
    space = [parse_dimension(n, s, where, int_options) for n, s in space_specs.items()]
    fixed_by_scheme = scheme_config.declared(entry)[1]
    for d in space:
        need(d.name not in fixed_by_scheme or d.kind == "fixed", path,
             f"search space: scheme {scheme!r} fixes {d.name}={fixed_by_scheme.get(d.name)!r}, so it cannot be "
             "searched; remove it from the space")
    need(any(d.kind != "fixed" for d in space), path, "the search space is empty (nothing to tune)")

    fixed = list(data.get("config", {}).items()) + list(last)
    steps = _posint(sw, "steps", None, path)
    evaluations = _posint(sw, "evaluations", 10, path)
    base = [("threads", 1), ("steps", steps), ("eval_episodes", _posint(sw, "eval_episodes", 10, path))] + fixed
    # Every task must build, and every config a trial could draw must be valid at its corners.
    for task in tasks:
        try:
            task_base = base[:1] + per_task.get(task, []) + base[1:]
            cfg = resolved(build_config(task_base + [("task", task), ("scheme", scheme)]), regs)
            check_loggers(regs, cfg.loggers)
            for corner in (0, 1):
                resolved(build_config(task_base + [("task", task), ("scheme", scheme)] +
                                      [(d.name, _corner(d, corner)) for d in space]), regs)
        except HarnessError as exc:
            raise HarnessError(f"{path}: {task}: {exc}") from None
        make_task(regs, task, 1, 0, cfg.env).close()
    name = check_name(sw.get("name", path.stem), path, "sweep")
    out = Path(out) if out is not None else Path("results") / "sweeps" / name
    kept = {t: [(k, v) for k, v in over if k not in RUN_ONLY] for t, over in per_task.items()}
    digest = hashlib.sha256(json.dumps({**data, **({"per_task": kept} if per_task else {})}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    return Sweep(
        path=path, name=name, scheme=scheme, tasks=tasks, steps=steps, seeds=seeds,
        trials=_posint(sw, "trials", 20, path), evaluations=evaluations,
        eval_episodes=sw.get("eval_episodes", 10), window=float(window), sampler=sampler,
        seed=_posint(sw, "seed", 0, path, minimum=0), pruner=pruner,
        startup=_posint(sw, "pruner_startup_trials", 5, path, minimum=0),
        warmup=_posint(sw, "pruner_warmup_evals", 2, path, minimum=0),
        heartbeat=_posint(sw, "heartbeat", 30, path), grace=_posint(sw, "grace", 120, path),
        max_retry=_posint(sw, "max_retry", 3, path, minimum=0),
        plugins=plugins, fixed=base, space=space, out=out, digest=digest, per_task=per_task)


def _corner(d: Dimension, which: int) -> Any:
    if d.kind in ("float", "int"):
        return d.low if which == 0 else d.high
    if d.kind == "categorical":
        return d.choices[0] if which == 0 else d.choices[-1]
    return d.value


# -- the objective -------------------------------------------------------------------------------
def trial_configs(sweep: Sweep, params: dict[str, Any]) -> list[tuple[str, int, Any]]:
    """(task, seed, config) of every run of a trial with ``params``."""
    out = []
    for task in sweep.tasks:
        for seed in sweep.seeds:
            # threads first, then the task's own settings, then the sweep's budget, then the parameters
            base = sweep.fixed[:1] + sweep.per_task.get(task, []) + sweep.fixed[1:]
            cfg = build_config(base + list(params.items()) + [("task", task), ("scheme", sweep.scheme),
                                                              ("seed", seed)])
            cfg.eval_interval = max(1, cfg.iterations // sweep.evaluations)
            cfg.checkpoint_interval = min(cfg.checkpoint_interval, cfg.eval_interval)
            cfg.absolute_factor = 0  # the objective is read off the periodic evaluations
            out.append((task, seed, cfg.validate()))
    return out


def objective_value(evals: list[tuple[int, float]], total_steps: int, window: float) -> float:
    """Mean evaluation return over the evaluations made after the first ``1 - window`` of the
    budget (at least the final one). ``evals`` are ``(env_steps, return)`` pairs in order."""
    start = total_steps * (1.0 - window)
    tail = [r for s, r in evals if s > start] or [evals[-1][1]]
    return float(sum(tail) / len(tail))


def make_objective(sweep: Sweep, regs: Registries, progress: bool):
    import optuna

    from harness.trainer import Trainer

    def objective(trial: optuna.Trial) -> float:
        params = {d.name: d.suggest(trial) for d in sweep.space}
        # A trial re-queued after its worker died keeps the run directories of the trial it retries.
        frozen = trial.study._storage.get_trial(trial._trial_id)
        history = frozen.system_attrs.get("retry_history", [])
        origin = history[0] if history else frozen.user_attrs.get("retry_of", trial.number)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("run_dir", str(sweep.out / "trials" / str(origin)))
        runs = trial_configs(sweep, params)
        trainers: list[Trainer] = []
        iters: list[Any] = []
        evals: list[list[tuple[int, float]]] = [[] for _ in runs]
        try:
            for task, seed, cfg in runs:
                trainers.append(Trainer(cfg, regs, sweep.out / "trials" / str(origin) / task / f"seed_{seed}",
                                        progress=False))
            iters = [t.iterate() for t in trainers]
            # A resumed run continues from its last checkpoint (rows after it are dropped): read the
            # rows it keeps so the objective sees the whole run.
            for k, t in enumerate(trainers):
                t.prepare_run()
                if t.run is not None and t.run.metrics_file.exists():
                    evals[k] = _logged_evals(t.run.metrics_file)
            reported = 0
            alive = list(range(len(iters)))
            while alive:
                for k in list(alive):
                    row = next(iters[k], None)
                    if row is None:
                        alive.remove(k)
                        continue
                    if row.get("eval_return") is not None and row["iteration"] > 0:
                        evals[k].append((row["env_steps"], float(row["eval_return"])))
                common = min(len(e) for e in evals)
                while reported < common:
                    value = sum(e[reported][1] for e in evals) / len(evals)
                    trial.report(value, step=reported + 1)
                    reported += 1
                    if progress:
                        print(f"trial {trial.number}: evaluation {reported} (of about {sweep.evaluations}) at "
                              f"{evals[0][reported - 1][0]} steps: {value:.3f}", file=sys.stderr, flush=True)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after evaluation {reported}: {value:.3f}")
            if any(not e for e in evals):
                raise HarnessError("a run of this trial produced no evaluation")
            value = sum(objective_value(e, cfg.steps, sweep.window) for e, (_, _, cfg) in zip(evals, runs)) / len(runs)
            if not math.isfinite(value):
                raise HarnessError(f"objective is not finite ({value})")
            return value
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt as exc:  # stopped by a signal: the runs checkpointed; a re-run retries it
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("fail_reason", f"interrupted ({exc}); re-running the sweep retries it from its "
                                               "runs' checkpoints")
            raise
        except Exception as exc:  # recorded on the trial; the sweep goes on
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
            if progress:
                print(f"trial {trial.number} failed: {exc}", file=sys.stderr)
            raise
        finally:
            for it in iters:
                it.close()
            for t in trainers:  # those whose iteration never started
                t.close()

    return objective


def _logged_evals(metrics_file: Path) -> list[tuple[int, float]]:
    import csv
    out = []
    with open(metrics_file, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("eval_return") not in (None, "") and int(row["iteration"]) > 0:
                out.append((int(row["env_steps"]), float(row["eval_return"])))
    return out


# -- study plumbing ------------------------------------------------------------------------------
def make_storage(sweep: Sweep, storage: str | None):
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = sweep.storage_url(storage)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    journal = journal_path(url)
    if journal is not None:  # a file on a shared filesystem: no database server needed
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
        journal.parent.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats are marked experimental
            return RDBStorage(
                url, heartbeat_interval=sweep.heartbeat, grace_period=sweep.grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=sweep.max_retry),
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
            )
    except (ImportError, ModuleNotFoundError) as exc:
        raise HarnessError(f"storage {_safe_url(url)!r} needs a database driver that is not installed ({exc})") from None
    except Exception as exc:  # sqlalchemy.exc.* : connection refused, bad URL, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"cannot open storage {_safe_url(url)!r}: {first}") from None
    finally:
        # Failed trials are reported by the harness in one line each, without Optuna's traceback.
        optuna.logging.set_verbosity(optuna.logging.ERROR)


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:///abs/path.log`` (or ``journal:rel/path.log``) storage, else None."""
    if not url.startswith("journal:"):
        return None
    rest = url[len("journal:"):]
    path = Path(rest[2:] if rest.startswith("//") else rest)  # journal:///abs -> /abs
    if str(path) in ("", ".", "/"):
        raise HarnessError(f"storage {url!r} names no file; write journal:///path/to/study.log")
    return path


def _safe_url(url: str) -> str:
    """The URL without its password (in ``user:password@`` or in a ``password=`` query parameter)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        url = f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return re.sub(r"(?i)((?:password|passwd|pwd|pass)=)[^&;]*", r"\1***", url)


def make_sampler(sweep: Sweep, offset: int):
    import optuna
    seed = sweep.seed + offset
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, sweep.trials // 3)))


def make_pruner(sweep: Sweep):
    import optuna
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=sweep.startup, n_warmup_steps=sweep.warmup)
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, sweep.warmup), max_resource=sweep.evaluations)
    return optuna.pruners.NopPruner()


def open_study(sweep: Sweep, storage: str | None, resume: bool, offset: int = 0):
    import optuna
    st = make_storage(sweep, storage)
    exists = sweep.name in [s.study_name for s in optuna.get_all_study_summaries(st)]
    if resume and not exists:
        raise HarnessError(f"--resume: no study {sweep.name!r} in {_safe_url(sweep.storage_url(storage))}")
    study = optuna.create_study(study_name=sweep.name, storage=st, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(sweep, offset), pruner=make_pruner(sweep))
    old = study.user_attrs.get("sweep_digest")
    if old is None:
        study.set_user_attr("sweep_digest", sweep.digest)
        study.set_user_attr("sweep_file", sweep.path.read_text())
    elif old != sweep.digest:
        raise HarnessError(f"study {sweep.name!r} in {_safe_url(sweep.storage_url(storage))} was made by a different "
                           f"sweep file (digest {old} vs {sweep.digest}); use another name or storage")
    return study


def requeue_interrupted(study) -> list[int]:
    """Queue a retry (same parameters, same run directories) of every trial a signal interrupted
    that has no retry yet; return the numbers of the trials retried."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    def origin(t):
        history = t.system_attrs.get("retry_history", [])
        return history[0] if history else t.user_attrs.get("retry_of", t.number)
    done = {}
    for t in trials:
        done.setdefault(origin(t), []).append(t)
    retried = []
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") \
                and not any(o.number > t.number for o in done[origin(t)]):
            study.enqueue_trial(t.params, user_attrs={"retry_of": origin(t)}, skip_if_exists=False)
            retried.append(t.number)
    return retried


def _counts(study) -> dict[str, int]:
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    return {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}


def _finished(study) -> int:
    c = _counts(study)
    return c["complete"] + c["pruned"]


def worker(sweep: Sweep, storage: str | None, total: int, offset: int, progress: bool) -> None:
    """One worker: run trials until the study holds ``total`` finished ones (or, as a guard
    against a broken setup, until ``max(10, 2 * total)`` trials have failed)."""
    import optuna
    import torch
    torch.set_num_threads(1)
    regs = load_plugins(sweep.plugins)
    # A different sampler seed per worker and per restart, so restarts do not repeat old suggestions.
    study = open_study(sweep, storage, resume=False, offset=offset * 100_003 + len(study_trials(sweep, storage)))
    objective = make_objective(sweep, regs, progress)
    max_failures = max(10, 2 * total)

    def stop_when_done(study: optuna.Study, trial: Any) -> None:
        c = _counts(study)
        if c["complete"] + c["pruned"] >= total or c["fail"] >= max_failures:
            study.stop()
        if progress:
            _print_trial(study, trial, c, total)

    if _finished(study) >= total:
        return
    study.optimize(objective, callbacks=[stop_when_done], catch=(Exception,), gc_after_trial=True)


def study_trials(sweep: Sweep, storage: str | None) -> list:
    import optuna
    st = make_storage(sweep, storage)
    if sweep.name not in [s.study_name for s in optuna.get_all_study_summaries(st)]:
        return []
    return optuna.load_study(study_name=sweep.name, storage=st).get_trials(deepcopy=False)


def _print_trial(study, trial, counts: dict[str, int], total: int) -> None:
    value = f"{trial.value:.3f}" if trial.value is not None else trial.state.name.lower()
    try:
        best = f"best {study.best_value:.3f} (trial {study.best_trial.number})"
    except ValueError:
        best = "no complete trial yet"
    print(f"trial {trial.number}: {value}; {counts['complete'] + counts['pruned']}/{total} finished "
          f"({counts['pruned']} pruned, {counts['fail']} failed); {best}", file=sys.stderr, flush=True)


def _run_workers(sweep: Sweep, storage: str | None, total: int, jobs: int, progress: bool, executor: str,
                 options: dict[str, Any]) -> None:
    """``jobs`` sweep workers as jobs of ``executor``; each joins the study and runs trials until it is done."""
    runner = make_executor(load_plugins(sweep.plugins), executor, jobs, options)
    shared = dataclasses.replace(sweep, out=sweep.out.resolve())  # workers may run in other directories
    failures: list[str] = []
    if progress:
        print(f"sweep workers: {runner.resources()}", file=sys.stderr)
    try:
        runner.check_output(shared.out)
        runner.submit([Job(k, worker, (shared, storage, total, k, progress)) for k in range(jobs)])
        stopped = False
        while runner.pending():
            if stopping.requested() is not None and not stopped:
                runner.stop()  # each worker's running trial checkpoints its runs and stops
                stopped = True
            for job, _, exc in runner.wait(0.5):
                if exc is not None and not isinstance(exc, (KeyboardInterrupt, cf.CancelledError)):
                    failures.append(f"worker {job.key}: {exc}")
    except KeyboardInterrupt:  # asked twice: stop the workers now (their checkpoints stay)
        runner.kill()
        raise
    finally:
        runner.close()
    stopping.check()
    if failures:
        raise HarnessError(f"{len(failures)} sweep worker(s) failed ({failures[0]}); re-run with --resume to continue")


def run_sweep(sweep: Sweep, storage: str | None = None, trials: int | None = None, jobs: int = 1,
              resume: bool = False, progress: bool = True, executor: str = "local",
              executor_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or join, or continue) the study until it has ``trials`` finished trials; write outputs.

    ``jobs`` workers join the study; more than one (or an executor other than ``local``) run as the
    executor's jobs, e.g. Ray tasks on a cluster whose nodes see the output tree and the storage."""
    total = trials if trials is not None else sweep.trials
    if total < 1:
        raise HarnessError(f"--trials {total} must be >= 1")
    if jobs < 1:
        raise HarnessError(f"--jobs {jobs} must be >= 1")
    check_writable(sweep.out)
    url = sweep.storage_url(storage)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" or journal_path(url) is not None:
        db = journal_path(url) or Path(url[len("sqlite:///"):])
        kind = "journal" if journal_path(url) is not None else "SQLite study"
        check_writable(db.parent, f"the {kind}'s directory")
        if db.exists() and not os.access(db, os.W_OK):
            raise HarnessError(f"cannot write to the {kind} {str(db)!r}: the file is read-only")
    study = open_study(sweep, storage, resume)
    retried = requeue_interrupted(study)
    if progress:
        print(f"sweep {sweep.name}: study in {_safe_url(sweep.storage_url(storage))}, "
              f"{_finished(study)}/{total} trials finished, {jobs} worker(s)"
              + (f"; retrying interrupted trial(s) {retried} from their checkpoints" if retried else ""),
              file=sys.stderr)
    if jobs == 1 and executor == "local":
        worker(sweep, storage, total, 0, progress)
    else:
        _run_workers(sweep, storage, total, jobs, progress, executor, executor_options or {})
    return write_outputs(sweep, storage)


# -- outputs -------------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_outputs(sweep: Sweep, storage: str | None) -> dict[str, Any]:
    """best.toml, trials.csv, study.json and the figures; returns a summary."""
    import optuna

    from harness.results import versions

    study = optuna.load_study(study_name=sweep.name, storage=make_storage(sweep, storage))
    out = sweep.out
    written: list[Path] = []
    trials_csv = out / "trials.csv"
    study.trials_dataframe().to_csv(trials_csv, index=False)
    written.append(trials_csv)
    summary: dict[str, Any] = {"study": sweep.name, "storage": _safe_url(sweep.storage_url(storage)),
                               "counts": _counts(study), "sweep_digest": sweep.digest, "versions": versions()}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary.update(best_value=best.value, best_trial=best.number, best_params=best.params)
        lines = [f"# Best parameters of sweep {sweep.name!r} ({sweep.scheme} on {', '.join(sweep.tasks)}):",
                 f"# trial {best.number}, objective {best.value:.4f} (mean evaluation return over the last "
                 f"{sweep.window:.0%} of training, over seeds {sweep.seeds}).",
                 f"# Use: harness train --config {out / 'best.toml'} ...   or   include = \"...\" in a suite table."]
        # The sweep's fixed settings too (budget, [config]), so the best trial's runs can be made again
        # from this file alone; its parameters override them.
        fixed = {k: v for k, v in sweep.fixed if k not in ("threads",) and k not in RUN_ONLY}
        tables: dict[str, dict[str, Any]] = {}
        for prefix, table in TABLES.items():  # options as [env] / [scheme_options] tables
            opts = dict(fixed.pop(table, {}) or {})
            for source in (fixed, best.params):
                opts.update({k[len(prefix) + 1:]: v for k, v in source.items() if k.startswith(prefix + ".")})
            fixed = {k: v for k, v in fixed.items() if not k.startswith(prefix + ".")}
            tables[table] = opts
        merged = {"scheme": sweep.scheme, **fixed,
                  **{k: v for k, v in best.params.items() if k.partition(".")[0] not in TABLES}}
        lines += [f"{k} = {_toml_value(v)}" for k, v in merged.items()]
        for table, opts in tables.items():
            if opts:
                lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in opts.items()]
        best_file = out / "best.toml"
        best_file.write_text("\n".join(lines) + "\n")
        written.append(best_file)
    summary["figures"] = [str(p) for p in _figures(study, out)]
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=str))
    written.append(out / "study.json")
    summary["files"] = [str(p) for p in written] + summary["figures"]
    return summary


def _figures(study, out: Path) -> list[Path]:
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    files = []
    plots = [("history", ovm.plot_optimization_history, 1), ("intermediate", ovm.plot_intermediate_values, 1),
             ("slices", ovm.plot_slice, 1), ("importances", ovm.plot_param_importances, 2)]
    for name, fn, need in plots:
        if len(complete) < need:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of a constant objective
                print(f"sweep: skipped figure {name}: {exc}", file=sys.stderr)
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        if name != "slices":  # the slice plot places its own colour bar
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.tight_layout()
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=120)
            files.append(path)
        plt.close(fig)
    return files
