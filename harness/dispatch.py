"""Following an executor's jobs to their end: the loop that a suite's runs and a sweep's workers share.

:func:`dispatch` checks that the executor's processes can write the output tree, submits the jobs,
reports each one to a callback as it ends, and closes the executor. A first stop request (a signal,
see :mod:`harness.stopping`) stops the executor gracefully: queued jobs are cancelled, running ones
checkpoint and stop, and all are still reported; a second signal kills the running jobs (their last
checkpoints stay). Once the executor is closed, a stop request raises
:class:`harness.stopping.Interrupted`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager

from harness import stopping
from harness.executor import Executor, Job

#: How a job ended: ``on_end(job, result, exception)``, the exception None when it succeeded.
OnEnd = Callable[[Job, Any, BaseException | None], None]


def failed(exc: BaseException | None) -> bool:
    """Whether a job that ended with ``exc`` failed: neither succeeded, nor was cancelled before it
    started, nor stopped by a stop request."""
    return exc is not None and not isinstance(exc, (KeyboardInterrupt, cf.CancelledError))


def dispatch(runner: Executor, jobs: list[Job], out: Path, on_end: OnEnd,
             follow: Callable[[], ContextManager[Callable[[], None] | None]] | None = None,
             poll: float = 0.5) -> None:
    """Run ``jobs`` on ``runner`` to their end (or to a stop request), then close ``runner``.

    ``out`` is the output tree the jobs write (:meth:`Executor.check_output`). ``on_end`` hears of
    every job as it ends. ``follow``, when given, is entered once the output tree is checked and left
    when the jobs have ended (or were killed): it may yield a function, called after every ``poll``
    seconds of waiting (a progress display)."""
    at_once: list[str] = []  # why jobs stopped where they were (a task that hung), not at a checkpoint
    try:
        runner.check_output(out)
        with follow() if follow is not None else contextlib.nullcontext() as tick:
            try:
                runner.submit(jobs)
                stopped = False
                while runner.pending():
                    if stopping.requested() is not None and not stopped:
                        runner.stop()  # queued jobs are cancelled; running ones checkpoint and stop
                        stopped = True
                    for job, result, exc in runner.wait(poll):
                        if isinstance(exc, stopping.Interrupted) and exc.at_once:
                            at_once.append(f"{getattr(job.key, 'label', job.key)}: {exc.at_once}")
                        on_end(job, result, exc)
                    if tick is not None:
                        tick()
            except KeyboardInterrupt:  # asked twice: stop the jobs now (their checkpoints stay)
                runner.kill()
                raise
    finally:
        runner.close()
    signum = stopping.requested()
    if signum is not None:
        raise stopping.Interrupted(signum, "; ".join(at_once) or None)
