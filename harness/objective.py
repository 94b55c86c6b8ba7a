"""A sweep's objective: the runs of one trial and the score Optuna maximises.

A trial runs every (task, seed) of the sweep with the trial's parameters, in lockstep in one
process; after each evaluation it reports the mean of the runs' latest evaluation returns to Optuna
(so the pruner compares trials at the same point of their budgets). Its score is the mean over runs
of the evaluation returns in the last ``objective_window`` of training. A trial re-queued after its
worker died, or after a signal stopped it, resumes the run directories of the trial it retries.
"""

from __future__ import annotations

import io
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

from harness.config import build_config
from harness.errors import HarnessError, mask_secrets
from harness.plugins import Registries
from harness.safe_files import read_text
from harness.study import retry_origin
from harness.sweep_file import Sweep


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


def task_scales(sweep: Sweep, regs: Registries) -> dict[str, tuple[float, float]] | None:
    """``{task: (floor, ceiling)}`` for a sweep over several tasks, whose objective averages normalised
    returns, ``(x - floor) / (ceiling - floor)`` (see :mod:`harness.references`: the floor is measured
    on the tuning seeds' evaluation start states), so no task decides by the size of its returns.
    None for one task: its raw return is the objective."""
    if len(sweep.tasks) == 1:
        return None
    from harness.references import ceiling, floor
    scales: dict[str, tuple[float, float]] = {}
    for task, _, cfg in trial_configs(sweep, {}):
        if task not in scales:
            top = ceiling(regs, cfg)["ceiling"]
            if top is None:
                raise HarnessError(f"sweep over several tasks: {task} has no reference return to normalise by")
            low = floor(regs, cfg, list(sweep.seeds))["floor"]
            if not top > low:
                raise HarnessError(f"sweep over several tasks: {task}'s reference return {top} is not above a "
                                   f"random policy's {low:.4g}, so it cannot normalise")
            scales[task] = (low, top)
    return scales


def make_objective(sweep: Sweep, regs: Registries, progress: bool):
    """The function Optuna calls with each trial of ``sweep`` (``progress``: a line per evaluation)."""
    import optuna

    from harness.trainer import Trainer

    scales = task_scales(sweep, regs)  # measured once per worker

    def score(task: str, value: float) -> float:
        if scales is None:
            return value
        low, high = scales[task]
        return (value - low) / (high - low)

    def objective(trial: optuna.Trial) -> float:
        params = {d.name: d.suggest(trial) for d in sweep.space}
        # A trial re-queued after its worker died keeps the run directories of the trial it retries.
        origin = retry_origin(trial.study._storage.get_trial(trial._trial_id))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if trial.user_attrs.get("fail_reason"):  # a retry starts with the attributes of the trial it retries
            trial.set_user_attr("fail_reason", "")
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
                    value = sum(score(task, e[reported][1]) for e, (task, _, _) in zip(evals, runs)) / len(evals)
                    trial.report(value, step=reported + 1)
                    reported += 1
                    if progress:
                        print(f"trial {trial.number}: evaluation {reported} (of about {sweep.evaluations}) at "
                              f"{evals[0][reported - 1][0]} steps: {value:.3f}", file=sys.stderr, flush=True)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after evaluation {reported}: {value:.3f}")
            if any(not e for e in evals):
                raise HarnessError("a run of this trial produced no evaluation")
            value = sum(score(task, objective_value(e, cfg.steps, sweep.window))
                        for e, (task, _, cfg) in zip(evals, runs)) / len(runs)
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
            trial.set_user_attr("fail_reason", mask_secrets(f"{type(exc).__name__}: {exc}")[:2000])
            if progress:
                print(f"trial {trial.number} failed: {mask_secrets(str(exc))}", file=sys.stderr)
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
    for row in csv.DictReader(io.StringIO(read_text(metrics_file, "text"))):
        if row.get("eval_return") not in (None, "") and int(row["iteration"]) > 0:
            out.append((int(row["env_steps"]), float(row["eval_return"])))
    return out
