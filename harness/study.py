"""Optuna storage and studies, as sweeps and suite tunings use them.

Storage is an SQLite file (a sweep's ``<out>/study.db``), a journal file (``journal:///path.log``,
on a shared filesystem, no database server needed) or any SQLAlchemy URL; URLs are shown with their
passwords masked (:func:`mask_url`). Over a database, workers send heartbeats, and a trial whose worker
stopped beating for the sweep's ``grace`` seconds is marked failed and re-queued with the same
parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``). Several processes may create a new database
at once (a sweep's workers, or sweeps on several machines): the ones that lose the race open it again.
This module opens or creates a sweep's study (with its sampler and pruner, checked against the sweep
file that made it), re-queues the trials a signal interrupted, and counts a study's trials.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, mask_secrets
from harness.results import check_writable
from harness.sweep_file import Sweep


def make_storage(sweep: Sweep, storage: str | None):
    """The Optuna storage of ``storage`` (a URL; None: the sweep's ``study.db``), one-line errors."""
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
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeats are marked experimental
                    return RDBStorage(
                        url, heartbeat_interval=sweep.heartbeat, grace_period=sweep.grace,
                        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=sweep.max_retry),
                        engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                    )
            except Exception as exc:  # noqa: BLE001 - re-raised below unless another process was creating it
                if attempt + 1 == _CREATE_ATTEMPTS or not created_concurrently(exc):
                    raise
                time.sleep(0.2 * (attempt + 1))
    except (ImportError, ModuleNotFoundError) as exc:
        raise HarnessError(f"storage {mask_url(url)!r} needs a database driver that is not installed ({exc})") from None
    except Exception as exc:  # sqlalchemy.exc.* : connection refused, bad URL, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"cannot open storage {mask_url(url)!r}: {first}") from None
    finally:
        # Failed trials are reported by the harness in one line each, without Optuna's traceback.
        optuna.logging.set_verbosity(optuna.logging.ERROR)


_CREATE_ATTEMPTS = 6


def created_concurrently(exc: BaseException) -> bool:
    """Whether ``exc`` is what opening a new database raises while another process is creating its
    tables (SQLite: "table ... already exists", "UNIQUE constraint failed: alembic_version...";
    PostgreSQL: "duplicate key value ..."): then opening again finds the tables made."""
    text = str(exc)
    return any(sign in text for sign in ("already exists", "UNIQUE constraint failed: alembic_version",
                                         "duplicate key value"))


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:///abs/path.log`` (or ``journal:rel/path.log``) storage, else None."""
    if not url.startswith("journal:"):
        return None
    rest = url[len("journal:"):]
    path = Path(rest[2:] if rest.startswith("//") else rest)  # journal:///abs -> /abs
    if str(path) in ("", ".", "/"):
        raise HarnessError(f"storage {url!r} names no file; write journal:///path/to/study.log")
    return path


def check_storage(url: str) -> None:
    """A one-line error when the SQLite or journal file of ``url`` (or its directory) cannot be written."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" or journal_path(url) is not None:
        db = journal_path(url) or Path(url[len("sqlite:///"):])
        kind = "journal" if journal_path(url) is not None else "SQLite study"
        check_writable(db.parent, f"the {kind}'s directory")
        if db.exists() and not os.access(db, os.W_OK):
            raise HarnessError(f"cannot write to the {kind} {str(db)!r}: the file is read-only")


def mask_url(url: str) -> str:
    """The URL without its password (in ``user:password@``, with or without ``://``, or in a
    ``password=`` query parameter): :func:`harness.errors.mask_secrets`."""
    return mask_secrets(url)


def make_sampler(sweep: Sweep, offset: int):
    """The sweep's sampler, seeded with its seed plus ``offset``."""
    import optuna
    seed = sweep.seed + offset
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, sweep.trials // 3)))


def make_pruner(sweep: Sweep):
    """The sweep's pruner (``none``: Optuna's NopPruner)."""
    import optuna
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=sweep.startup, n_warmup_steps=sweep.warmup)
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, sweep.warmup), max_resource=sweep.evaluations)
    return optuna.pruners.NopPruner()


def open_study(sweep: Sweep, storage: str | None, resume: bool, offset: int = 0):
    """Open (or create, unless ``resume``) the sweep's study; it must have been made by the same sweep file."""
    import optuna
    st = make_storage(sweep, storage)
    if resume and not _holds(st, sweep.name):
        raise HarnessError(f"--resume: no study {sweep.name!r} in {mask_url(sweep.storage_url(storage))}")
    study = optuna.create_study(study_name=sweep.name, storage=st, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(sweep, offset), pruner=make_pruner(sweep))
    old = study.user_attrs.get("sweep_digest")
    if old is None:
        study.set_user_attr("sweep_digest", sweep.digest)
        study.set_user_attr("sweep_file", sweep.path.read_text())
    elif old != sweep.digest:
        raise HarnessError(f"study {sweep.name!r} in {mask_url(sweep.storage_url(storage))} was made by a different "
                           f"sweep file (digest {old} vs {sweep.digest}); use another name or storage")
    return study


def _holds(storage: Any, name: str) -> bool:
    import optuna
    return name in [s.study_name for s in optuna.get_all_study_summaries(storage)]


def requeue_interrupted(study) -> list[int]:
    """Queue a retry (same parameters, same run directories) of every trial a signal interrupted
    that has no retry yet; return the numbers of the trials retried."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    done = {}
    for t in trials:
        done.setdefault(retry_origin(t), []).append(t)
    retried = []
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") \
                and not any(o.number > t.number for o in done[retry_origin(t)]):
            study.enqueue_trial(t.params, user_attrs={"retry_of": retry_origin(t)}, skip_if_exists=False)
            retried.append(t.number)
    return retried


def fail_trials_of(sweep: Sweep, storage: str | None, worker: str, reason: str) -> list[int]:
    """Mark the running trials of ``worker`` (``host:pid``, a process that died without reporting)
    failed, with ``reason`` as their ``fail_reason``, and re-queue each as its heartbeat would have;
    return their numbers."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState
    study = existing_study(sweep, storage)
    if study is None:
        return []
    st = study._storage
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == worker:
            st.set_trial_user_attr(t._trial_id, "fail_reason", mask_secrets(reason))
            if st.set_trial_state_values(t._trial_id, TrialState.FAIL):
                RetryHeartbeatStaleTrialCallback(max_retry=sweep.max_retry)(study, st.get_trial(t._trial_id))
            numbers.append(t.number)
    # A retry is queued with the attributes of the trial it retries: it has not failed (nor run) yet.
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.system_attrs.get("retry_history", [None])[-1] in numbers:
            for key in ("fail_reason", "worker"):
                if t.user_attrs.get(key):
                    st.set_trial_user_attr(t._trial_id, key, "")
    return numbers


def retry_origin(trial: Any) -> int:
    """The number of the trial that ``trial`` (a frozen trial) retries, through any chain of retries
    (its own number when it is no retry); a retry keeps that trial's run directories."""
    history = trial.system_attrs.get("retry_history", [])
    return history[0] if history else trial.user_attrs.get("retry_of", trial.number)


def trial_counts(study) -> dict[str, int]:
    """The number of the study's trials in each state (``complete``, ``pruned``, ``fail``, ...)."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    return {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}


def finished_trials(study) -> int:
    """Complete and pruned trials: those that count towards a sweep's trial count."""
    c = trial_counts(study)
    return c["complete"] + c["pruned"]


def existing_study(sweep: Sweep, storage: str | None):
    """The sweep's study in ``storage``, or None when there is none yet."""
    import optuna
    st = make_storage(sweep, storage)
    if not _holds(st, sweep.name):
        return None
    return optuna.load_study(study_name=sweep.name, storage=st)


def study_trials(sweep: Sweep, storage: str | None) -> list:
    """The trials of the sweep's study (none when the study does not exist yet)."""
    study = existing_study(sweep, storage)
    return [] if study is None else study.get_trials(deepcopy=False)
