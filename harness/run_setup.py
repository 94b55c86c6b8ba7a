"""Opening a trainer's run directory: the one-writer lock, the checks that the directory holds this
run, and either a resume from its last checkpoint or a fresh ``config.json`` with the run's provenance.

Called once per run by :meth:`harness.trainer.Trainer.prepare_run`.
"""

from __future__ import annotations

import time
from typing import Any

from harness import __version__
from harness.checkpoint import resume_from
from harness.config import config_diff, config_digest
from harness.continuation import accepted_digests, extension, load_init
from harness.errors import HarnessError
from harness.executor import placement
from harness.provenance import code_digest, code_record
from harness.results import git_commit, versions
from harness.run_lock import RunLock


def open_run(trainer: Any) -> bool:
    """Open ``trainer``'s run directory (taking its lock, which ``trainer.close()`` releases) and check,
    resume or start it; False when the run is already finished. Without a run directory only an
    ``init_from`` policy is loaded."""
    if trainer.run is None:
        if trainer.cfg.init_from:
            load_init(trainer.cfg.init_from, trainer.scheme)
            trainer.weights_changed()
        return True
    trainer.lock = RunLock(trainer.run.path)
    trainer.lock.acquire()  # before anything is read or written
    return open_run_dir(trainer)


def open_run_dir(trainer: Any) -> bool:
    """Refuse a directory holding another run, then resume ``trainer`` from the last checkpoint or write
    ``config.json``; False when the run is already finished. The caller holds the directory's lock."""
    run, cfg = trainer.run, trainer.cfg
    old = run.read_config()
    # --extend: checked here and written only once the checkpoint it continues from has been applied.
    extended = extension(run.path, cfg, trainer.accept_new_schedule) if trainer.extend else None
    if extended is not None:
        old = extended
    if old is not None and config_digest(old.get("config")) != old.get("config_digest"):
        raise HarnessError(f"{run.config_file}: damaged: its config does not match its config_digest; restore "
                           "it or move the run directory aside")
    if old is not None and old.get("config_digest") != cfg.digest():
        raise HarnessError(f"{str(run.path)!r} holds a run with a different config ("
                           f"{config_diff(old.get('config') or {}, cfg.to_dict())}); use another --out")
    if run.done and extended is None:
        return False
    if old is None and (run.checkpoint_file.exists() or run.previous_checkpoint_file.exists()):
        raise HarnessError(f"{str(run.path)!r} has checkpoints but no config.json, so it cannot be checked "
                           "that they belong to this run; restore config.json or use another --out")
    ckpt = resume_from(run, accepted_digests(old, cfg.digest()), trainer.task.spec(), trainer.restore)
    if extended is not None and ckpt is None:
        raise HarnessError(f"--extend: {str(run.path)!r} has no checkpoint to continue from")
    if ckpt is not None:
        run.keep_rows_up_to(trainer.iteration)  # the last check (rows missing before the checkpoint)
        if extended is not None:
            # Before config.json: a process stopped in between leaves the old run, unfinished, to resume.
            run.done_file.unlink(missing_ok=True)
            trainer.log(f"extending {run.path} to {cfg.steps} steps")
        # Where each resumed part of the run trained (the first part is config.json's placement).
        old["resumes"] = [*old.get("resumes", []), {"iteration": trainer.iteration, "device": str(trainer.device),
                                                      "thread_pools": trainer.thread_pools,
                                                      **placement(),
                                                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
        run.write_config(old)
        trainer.log(f"resuming {run.path} from iteration {trainer.iteration} ({trainer.env_steps} steps)")
    else:
        run.keep_rows_up_to(-1) if run.metrics_file.exists() else None
        init = {"init_from": load_init(cfg.init_from, trainer.scheme)} if cfg.init_from else {}
        trainer.weights_changed()
        code = code_record(trainer.regs, cfg)
        layout = getattr(trainer.scheme, "actor_layout", None)
        run.write_config({
            "config": cfg.to_dict(), "config_digest": cfg.digest(), "seed": cfg.seed,
            "versions": versions(), "harness_version": __version__, "git_commit": git_commit(),
            "task_spec": trainer.task.spec(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "plugins": trainer.regs.plugins, "code": code, "code_digest": code_digest(code),
            "actors": layout() if layout is not None else None, "device": str(trainer.device),
            "thread_pools": trainer.thread_pools, **placement(),
            **({"scheme_fixed": trainer.scheme_fixed} if trainer.scheme_fixed else {}),
            **init, **trainer.record,
        })
    return True

