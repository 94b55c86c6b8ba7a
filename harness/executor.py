"""The executor contract: where a suite's runs train (this machine's processes, a Ray cluster, ...).

A run is resumable from its directory alone, so an executor only has to run independent jobs (a
picklable function and its arguments) somewhere that sees the shared output tree, report each job
as it ends, and stop on request; faults are absorbed by re-running a job, which resumes from its
last checkpoint. Executors are plugins: ``register_executors(register)`` calls
``register(name, executor_class, description="", options={...})``; ``executor_class(jobs,
options)`` gets the parallelism asked for (None: the executor's default) and the option values,
checked against the declared :class:`harness.options.Option` schema.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError, plugin_call
from harness.options import resolve


@dataclass
class Job:
    """One unit of work: ``fn(*args)`` wanting ``cpus`` CPUs; ``key`` identifies it to the caller."""

    key: Any
    fn: Callable[..., Any]
    args: tuple
    cpus: int = 1


class WorkerDied(Exception):
    """A job's worker process died without reporting (killed by a signal, e.g. SIGKILL by the kernel's
    out-of-memory killer): only that job failed; its run resumes from its last checkpoint when re-run."""

    def __init__(self, pid: int, exitcode: int | None, host: str = "") -> None:
        self.pid, self.exitcode, self.host = pid, exitcode, host or socket.gethostname()
        super().__init__(f"worker {self.cause} (process {pid} on {self.host})")

    @property
    def cause(self) -> str:
        """``killed by SIGKILL`` for a worker a signal killed, ``exited with code N`` for one that exited."""
        import signal
        if self.exitcode is not None and self.exitcode < 0:
            try:
                return f"killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"killed by signal {-self.exitcode}"
        return f"exited with code {self.exitcode}" if self.exitcode is not None else "died"

    def __reduce__(self) -> tuple:
        return (WorkerDied, (self.pid, self.exitcode, self.host))


class Executor(ABC):
    """Runs :class:`Job` objects and reports each one's result or exception as it ends."""

    #: Name shown in messages and recorded in each run's config.json.
    name: str = "executor"

    def resources(self) -> str:
        """One line describing where jobs will run (printed when a suite starts)."""
        return self.name

    def check_output(self, out: Path) -> None:
        """Raise a one-line HarnessError if a place where jobs run cannot write to ``out``."""

    @abstractmethod
    def submit(self, jobs: list[Job]) -> None:
        """Start (or queue) the jobs."""

    @abstractmethod
    def wait(self, timeout: float) -> list[tuple[Job, Any, BaseException | None]]:
        """Jobs that ended within ``timeout`` seconds as ``(job, result, exception)``; a job cancelled
        before it started is reported with a ``concurrent.futures.CancelledError``, one whose worker
        process died with a :class:`WorkerDied` (the other jobs go on)."""

    @abstractmethod
    def pending(self) -> int:
        """Jobs submitted and not yet reported by :meth:`wait`."""

    @abstractmethod
    def stop(self) -> None:
        """Cancel queued jobs and ask running ones to checkpoint and stop; all are still reported."""

    def kill(self) -> None:
        """Stop running jobs at once (their last checkpoints stay)."""

    def close(self) -> None:
        """Release the executor's processes or connections (waits for running jobs to end)."""


def executor_options(regs: Any, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of registered executor ``name``: ``options`` checked against the ones it declares
    and converted to their types, the rest at their defaults (one-line errors for bad ones)."""
    entry = regs.executors.get(name)
    return resolve(entry.extra.get("options") or {}, options, lambda k: f"executor option {k}",
                   lambda k, known: f"executor {name!r} has no option {k!r}; its options: {', '.join(known) or '(none)'}")


def make_executor(regs: Any, name: str, jobs: int | None, options: dict[str, Any]) -> Executor:
    """The registered executor ``name`` with its options checked (one-line errors for bad ones)."""
    entry = regs.executors.get(name)
    opts = executor_options(regs, name, options)
    with plugin_call(f"plugin {entry.plugin!r}: executor {name!r} could not start:"):
        runner = entry.factory(jobs, opts)
    if not isinstance(runner, Executor):
        raise HarnessError(f"plugin {entry.plugin!r}: executor {name!r} is a {type(runner).__name__}, "
                           "expected a harness.executor.Executor")
    return runner


def placement() -> dict[str, str]:
    """Where this process runs, as the executor that started it described it (for config.json)."""
    host = socket.gethostname()
    return {"executor": os.environ.get(EXECUTOR_ENV, "none"), "node_id": os.environ.get(NODE_ENV, host),
            "host": host}


def call_job(fn: Callable[..., Any], args: tuple, executor: str, node_id: str) -> Any:
    """Run a job's function in an executor's process, telling the run where it runs and marking the
    work so that an orphaned worker stops after it (see :func:`harness.stopping.working`)."""
    from harness import stopping

    os.environ[EXECUTOR_ENV] = executor
    os.environ[NODE_ENV] = node_id
    with stopping.working():
        return fn(*args)


EXECUTOR_ENV = "HARNESS_EXECUTOR"
NODE_ENV = "HARNESS_NODE_ID"
