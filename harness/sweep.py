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
re-queued with the same parameters (:mod:`harness.study`). The objective is
:mod:`harness.objective`'s; the outputs are written by :mod:`harness.sweep_outputs`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from harness.config import MAX_TRIALS, check_count
from harness.dispatch import dispatch, failed
from harness.errors import HarnessError
from harness.devices import resolve_device
from harness.executor import Job, WorkerDied, make_executor
from harness.executor import executor_options as checked_options
from harness.objective import make_objective
from harness.plugins import load_plugins
from harness.results import check_writable
from harness.study import (check_storage, fail_trials_of, finished_trials, mask_url, open_study, requeue_interrupted, study_trials,
                           trial_counts)
from harness.sweep_file import Dimension, Sweep, load_sweep, parse_dimension, sweep_from_data
from harness.sweep_outputs import write_outputs

__all__ = ["Dimension", "Sweep", "load_sweep", "parse_dimension", "run_sweep", "sweep_from_data", "worker"]

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
        c = trial_counts(study)
        if c["complete"] + c["pruned"] >= total or c["fail"] >= max_failures:
            study.stop()
        if progress:
            _print_trial(study, trial, c, total)

    if finished_trials(study) >= total:
        return
    study.optimize(objective, callbacks=[stop_when_done], catch=(Exception,), gc_after_trial=True)


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

    def on_end(job: Job, _: Any, exc: BaseException | None) -> None:
        if isinstance(exc, WorkerDied):  # its trial says why it failed, and is retried
            fail_trials_of(shared, storage, f"{exc.host}:{exc.pid}", str(exc))
        if failed(exc):
            failures.append(f"worker {job.key}: {exc}")
    dispatch(runner, [Job(k, worker, (shared, storage, total, k, progress)) for k in range(jobs)], shared.out, on_end)
    if failures:
        raise HarnessError(f"{len(failures)} sweep worker(s) failed ({failures[0]}); re-run with --resume to continue")


def check_local_devices(sweep: Sweep) -> None:
    """Refuse, before any trial, a device that the trials' configs name and this machine lacks (the
    local executor runs them here)."""
    for device in sweep.devices:
        try:
            resolve_device(device)
        except HarnessError as exc:
            raise HarnessError(f"{sweep.path}: {exc} (the local executor runs every trial on this machine)") from None


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
    check_count(total, f"--trials {total}", MAX_TRIALS)
    check_count(jobs, f"--jobs {jobs}")
    options = dict(executor_options or {})
    checked_options(load_plugins(sweep.plugins), executor, options)  # also where one worker runs in this process
    if executor == "local":
        check_local_devices(sweep)
    check_writable(sweep.out)
    check_storage(sweep.storage_url(storage))
    study = open_study(sweep, storage, resume)
    retried = requeue_interrupted(study)
    if progress:
        print(f"sweep {sweep.name}: study in {mask_url(sweep.storage_url(storage))}, "
              f"{finished_trials(study)}/{total} trials finished, {jobs} worker(s)"
              + (f"; retrying interrupted trial(s) {retried} from their checkpoints" if retried else ""),
              file=sys.stderr)
    if jobs == 1 and executor == "local" and not options:
        worker(sweep, storage, total, 0, progress)
    else:  # executor options are honoured at one worker too: it runs as the executor's job
        _run_workers(sweep, storage, total, jobs, progress, executor, options)
    return write_outputs(sweep, storage)
