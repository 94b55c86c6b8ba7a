"""Tuned comparisons: tune every scheme of a suite with the same budget, then compare the tuned
configurations on seeds the tuning never saw.

A suite asks for it with a ``[tune]`` table (for every scheme) and/or, per scheme, ``tune = {...}``
(merged over ``[tune]``) or ``sweep = "file.toml"`` (an existing sweep file for that scheme) in
``[schemes.<name>]``::

    [tune]
    trials = 12             # finished trials per scheme
    steps = 100_000         # env steps per tuning run
    seeds = 2               # tuning seeds: a count (the seeds after the suite's last seed) or a list
    # optional, as in a sweep file: evaluations, eval_episodes, objective_window, sampler, seed,
    # pruner, pruner_startup_trials, pruner_warmup_evals, exclude, space = {...}, storage = "URL"

Each tuned scheme gets an Optuna study over its declared search space on the suite's tasks, with
every task's own settings (tuned values, ``[config]``, ``[tasks.T]``, ``[schemes.S]``), stored in
``<out>/.tuning/<scheme>/`` (``study.db``, the trials' runs, ``trials.csv``, ``best.toml``; the
leading dot keeps them out of the comparison's results). ``harness bench`` runs the studies first
(resuming them), then trains the comparison with each scheme's best parameters applied last, and
records the tuning in every run's ``config.json`` (``tuning``: study, storage, trial, objective,
parameters, seeds, and the environment steps the study trained, pruned trials included). Tuning and
evaluation seeds must not overlap. Every scheme of the suite is tuned, with the same trials, steps,
seeds, evaluations and pruner, unless the suite says ``unequal_tuning = true`` (recorded, and said by
the plots).
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import need, seed_list
from harness.errors import HarnessError
from harness.safe_files import UnsafeFile, read_text
from harness.plugins import Registries

TUNE_KEYS = {"trials", "steps", "seeds", "evaluations", "eval_episodes", "objective_window", "sampler", "seed",
             "pruner", "pruner_startup_trials", "pruner_warmup_evals", "exclude", "space", "storage"}
TUNING_DIR = ".tuning"


@dataclass
class Tuning:
    """One arm's tuning study, as a suite asks for it."""

    arm: str  # the arm tuned (harness.arms; a plain scheme's arm is the scheme)
    sweep: Any  # harness.sweep_file.Sweep (its ``scheme`` is the arm's scheme)
    storage: str | None
    unequal: bool = False  # the suite allowed schemes different tuning budgets (unequal_tuning = true)

    def study_record(self) -> dict[str, Any] | None:
        """The best trial of a study that has reached its trial count, as recorded in run provenance;
        None while the study is short of trials."""
        from harness.study import existing_study, finished_trials, mask_url
        study = existing_study(self.sweep, self.storage)
        if study is None:
            return None
        if finished_trials(study) < self.sweep.trials or not any(t.value is not None for t in study.best_trials):
            return None
        best = study.best_trial
        return {"study": self.sweep.name, "storage": mask_url(self.sweep.storage_url(self.storage)),
                "trial": best.number, "objective": best.value,
                # the searched values of the best trial, and the space's fixed values (part of every trial)
                "params": {**{d.name: d.value for d in self.sweep.space if d.kind == "fixed"}, **best.params},
                "trials": self.sweep.trials, "steps": self.sweep.steps, "seeds": list(self.sweep.seeds),
                "tasks": list(self.sweep.tasks), "env_steps": trained_steps(self.sweep.out / "trials"),
                **({"unequal_tuning": True} if self.unequal else {})}

    def progress(self) -> str:
        """``k/N trials`` of the study (0 when it does not exist yet)."""
        from harness.study import study_trials
        from optuna.trial import TrialState
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   for t in study_trials(self.sweep, self.storage))
        return f"{done}/{self.sweep.trials} trials"


def take_specs(data: dict[str, Any], path: Path, arms: list[Any]) -> dict[str, tuple[str, Any]]:
    """Remove the tuning requests from a suite's tables: ``{arm: ("tune", table) | ("sweep", file)}``.

    ``arms`` are the suite's :class:`harness.arms.Arm` objects: a plain scheme's arm takes its
    ``tune``/``sweep`` from ``[schemes.S]``, a declared arm from its own ``[arms.X]`` table; ``[tune]``
    applies to every arm."""
    common = data.pop("tune", None)
    need(common is None or isinstance(common, dict), path, "[tune] must be a table, e.g. trials = 12, steps = 100_000")
    plain = {a.name for a in arms if not a.declared}
    for scheme, table in data.get("schemes", {}).items():
        need(scheme in plain or not ({"tune", "sweep"} & set(table)), path,
             f"[schemes.{scheme}] tune/sweep tunes the arm {scheme!r}, which this suite does not have; give each "
             f"[arms.X] of {scheme} its own tune or sweep, or use [tune]")
    specs: dict[str, tuple[str, Any]] = {}
    for arm in arms:
        table, where = arm.table, arm.where
        own, sweep_file = table.pop("tune", None), table.pop("sweep", None)
        need(own is None or isinstance(own, dict), path, f"{where} tune={own!r} must be a table")
        need(sweep_file is None or isinstance(sweep_file, str), path,
             f"{where} sweep={sweep_file!r} must be a sweep file name")
        need(not (own and sweep_file), path, f"{where} has both tune and sweep; keep one")
        if sweep_file is not None:
            specs[arm.name] = ("sweep", sweep_file)
        elif common is not None or own is not None:
            specs[arm.name] = ("tune", {**(common or {}), **(own or {})})
    return specs


# Keys of a comparison run's overrides that a tuning study sets itself (its budget and evaluations).
_BUDGET_KEYS = {"threads", "steps", "eval_interval", "eval_episodes"}


#: What every tuned scheme of a suite must share, unless the suite says ``unequal_tuning = true``.
EQUAL = {"trials": "trials", "steps": "steps", "seeds": "seeds", "evaluations": "evaluations",
         "eval_episodes": "eval_episodes", "window": "objective_window", "pruner": "pruner",
         "startup": "pruner_startup_trials", "warmup": "pruner_warmup_evals"}


def check_equal(tunings: dict[str, Tuning], schemes: list[str], path: Path) -> None:
    """A tuned comparison tunes every scheme, each with the same budget: else a one-line error."""
    if not tunings:
        return
    untuned = [s for s in schemes if s not in tunings]
    how = "; or set unequal_tuning = true in [suite] (the plots then say so)"
    need(not untuned, path, f"unequal tuning: {', '.join(tunings)} tuned and {', '.join(untuned)} not; tune every "
                            f"scheme (a [tune] table gives them all the same budget){how}")
    first, *rest = tunings.values()
    for other in rest:
        for attr, key in EQUAL.items():
            a, b = getattr(first.sweep, attr), getattr(other.sweep, attr)
            need(a == b, path, f"unequal tuning: {key} is {a} for {first.arm} and {b} for {other.arm}; "
                               f"give every scheme the same tuning budget{how}")


def build_tunings(specs: dict[str, tuple[str, Any]], path: Path, suite_name: str, tasks: list[str],
                  seeds: list[int], eval_episodes: int | None, out: Path, regs: Registries,
                  overrides: dict[tuple[str, str], list[tuple[str, Any]]], plugins: list[str] = (),
                  arms: dict[str, str] | None = None, unequal: bool = False) -> dict[str, Tuning]:
    """Every requested arm's :class:`Tuning`. ``arms`` maps each arm of the suite to its scheme;
    ``overrides[(task, arm)]`` are the settings the comparison's runs of that pair get; the tuning runs
    get them too, budget keys aside. Every arm must be tuned with the same budget
    (:func:`check_equal`) unless ``unequal``."""
    from harness.sweep import load_sweep, sweep_from_data

    arms = arms or {}
    result: dict[str, Tuning] = {}
    for arm, (kind, spec) in specs.items():
        scheme = arms.get(arm, arm)
        where = out / TUNING_DIR / arm
        storage = None
        if kind == "sweep":
            try:
                sweep = load_sweep(path.parent / spec, where, regs, plugins)
            except HarnessError as exc:
                raise HarnessError(f"{path}: sweep of {arm}: {exc}") from None
            need(sweep.scheme == scheme, path, f"sweep of {arm}: {spec!r} tunes {sweep.scheme!r}, not {scheme!r}")
        else:
            spec = dict(spec)
            unknown = set(spec) - TUNE_KEYS
            need(not unknown, path, f"tune of {arm}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TUNE_KEYS)}")
            for key in ("trials", "steps"):
                need(key in spec, path, f"tune of {arm} needs {key!r} (e.g. trials = 12, steps = 100_000)")
            storage = spec.pop("storage", None)
            need(storage is None or isinstance(storage, str), path, f"tune of {arm}: storage={storage!r} must be a URL")
            space = spec.pop("space", {})
            # a count: the seeds after the suite's last one (bounded before the list is made)
            tune_seeds = seed_list(spec.pop("seeds", 2), path, f"tune of {arm}:", first=max(seeds) + 1)
            own_tasks = [t for t in tasks if (t, arm) in overrides]  # an arm may run on some tasks only
            sw = {"name": f"{suite_name}_{arm}", "scheme": scheme, "tasks": own_tasks, "seeds": tune_seeds,
                  "eval_episodes": eval_episodes or 10, **spec}
            per_task = {t: [(k, v) for k, v in overrides[(t, arm)] if k not in _BUDGET_KEYS] for t in own_tasks}
            try:
                sweep = sweep_from_data({"sweep": sw, "space": space}, path, where, regs, per_task, plugins)
            except HarnessError as exc:
                raise HarnessError(f"{path}: tune of {arm}: {exc}") from None
        shared = sorted(set(sweep.seeds) & set(seeds))
        need(not shared, path, f"tune of {arm}: tuning seeds {sweep.seeds} overlap the comparison's seeds "
                               f"{seeds} (shared: {shared}); tune on other seeds")
        result[arm] = Tuning(arm, sweep, storage, unequal)
    if not unequal:
        check_equal(result, list(arms) or list(result), path)
    return result


def run_tuning(tunings: dict[str, Tuning], jobs: int | None, executor: str, options: dict[str, Any],
               progress: bool) -> dict[str, dict[str, Any]]:
    """Run (or resume) every scheme's study to its trial count; return each one's best-trial record."""
    from harness.sweep import run_sweep
    records = {}
    for scheme, t in tunings.items():
        if t.unequal:  # the plots say so
            t.sweep.out.mkdir(parents=True, exist_ok=True)
            (t.sweep.out / "UNEQUAL").write_text("this suite set unequal_tuning = true\n")
        record = t.study_record()
        if record is None:
            print(f"tuning {scheme}: {t.sweep.trials} trials x {len(t.sweep.tasks)} task(s) x "
                  f"{len(t.sweep.seeds)} seed(s) x {t.sweep.steps} steps in {t.sweep.out}", file=sys.stderr)
            run_sweep(t.sweep, t.storage, jobs=jobs or 1, progress=progress, executor=executor,
                      executor_options=options)
            record = t.study_record()
            if record is None:
                raise HarnessError(f"tuning {scheme}: the study {t.sweep.name!r} finished without a complete trial; "
                                   f"see {t.sweep.out / 'trials.csv'}")
        records[scheme] = record
    return records


def trained_steps(trials_dir: Path) -> int:
    """The environment steps every run of a study trained, pruned and failed trials included (each run's
    last ``env_steps`` in its ``metrics.csv``)."""
    import csv
    total = 0
    for metrics in sorted(Path(trials_dir).rglob("metrics.csv")):
        try:
            text = read_text(metrics, "text")
        except UnsafeFile as exc:
            print(f"harness: warning: {exc}; its steps are not counted", file=sys.stderr)
            continue
        steps = [int(r["env_steps"]) for r in csv.DictReader(io.StringIO(text)) if r.get("env_steps", "").isdigit()]
        total += steps[-1] if steps else 0
    return total


def best_so_far(trials_csv: Path) -> list[tuple[int, float]]:
    """``(trial number, best objective up to it)`` over the complete trials of a study's ``trials.csv``."""
    import pandas as pd
    try:
        df = pd.read_csv(io.StringIO(read_text(trials_csv, "text")))
    except UnsafeFile as exc:
        print(f"harness: warning: {exc}; its tuning curve is not drawn", file=sys.stderr)
        return []
    if "state" not in df or "value" not in df:
        return []
    df = df[df["state"] == "COMPLETE"].sort_values("number")
    out, best = [], float("-inf")
    for number, value in zip(df["number"], df["value"]):
        best = max(best, float(value))
        out.append((int(number), best))
    return out
