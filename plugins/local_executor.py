"""Executor plugin ``local``: the suite's runs in a pool of worker processes on this machine (the default).

``--jobs`` worker processes (default: the number of cores), started with ``spawn``. Stopping cancels
the queued runs and asks the running ones, through an event every worker watches, to checkpoint and
stop; a worker whose parent dies stops by itself (:mod:`harness.stopping`).

A worker that dies without reporting (SIGKILL, the out-of-memory killer) breaks a Python process
pool for every job in it. Each worker therefore says which job it starts; when the pool breaks, the
job whose worker died is reported with a :class:`harness.executor.WorkerDied` naming the signal, and
every other job (the running ones stop at the pool's SIGTERM, checkpointing) goes on in a new pool,
each reported once.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import socket
from typing import Any

from harness import hookimpl, stopping
from harness.executor import Executor, Job, WorkerDied, call_job

#: Pool breaks that no dead worker explains after which the jobs still queued are failed.
MAX_BLIND_BREAKS = 3

_started: Any = None  # in a worker: the queue on which it tells the parent which job it starts


def _worker_init(parent_pid: int, event: Any, started: Any) -> None:
    global _started
    _started = started
    stopping.worker_setup(parent_pid, event)


def _run(token: int, fn: Any, args: tuple, executor: str, node_id: str) -> Any:
    _started.put((token, os.getpid()))
    return call_job(fn, args, executor, node_id)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int | None, options: dict[str, Any]) -> None:
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self._ctx = mp.get_context("spawn")
        self._stop_event = self._ctx.Event()
        self._started = self._ctx.SimpleQueue()
        self._pool = self._new_pool()
        self._futures: dict[cf.Future, tuple[int, Job]] = {}
        self._pids: dict[int, int] = {}  # job token -> the pid of the worker that started it
        self._tokens = 0
        self._stopped = False
        self._blind_breaks = 0

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=self._ctx, initializer=_worker_init,
                                      initargs=(os.getpid(), self._stop_event, self._started))

    def resources(self) -> str:
        return f"local: {self.jobs} worker process(es) on {socket.gethostname()} ({os.cpu_count()} CPUs)"

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._submit(job)

    def _submit(self, job: Job) -> None:
        self._tokens += 1
        fut = self._pool.submit(_run, self._tokens, job.fn, job.args, self.name, socket.gethostname())
        self._futures[fut] = (self._tokens, job)

    def _read_starts(self) -> None:
        while not self._started.empty():
            token, pid = self._started.get()
            self._pids[token] = pid

    def wait(self, timeout: float) -> list[tuple[Job, Any, BaseException | None]]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        if any(isinstance(f.exception(), cf.process.BrokenProcessPool) for f in done if not f.cancelled()):
            return self._recover()
        out = []
        for fut in done:
            _, job = self._futures.pop(fut)
            try:
                out.append((job, fut.result(), None))
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, including cancellation
                out.append((job, None, exc))
        return out

    def _recover(self) -> list[tuple[Job, Any, BaseException | None]]:
        """After a worker died: fail its job, re-submit the others to a new pool (they resume)."""
        procs = dict(getattr(self._pool, "_processes", None) or {})
        self._pool.shutdown(wait=True)  # the pool has stopped its other workers; wait until they are gone
        self._read_starts()
        dead = {pid: p.exitcode for pid, p in procs.items() if p.exitcode not in (0, None)}
        out: list[tuple[Job, Any, BaseException | None]] = []
        again: list[Job] = []
        for fut, (token, job) in list(self._futures.items()):
            exc = None if fut.cancelled() else fut.exception()
            if fut.cancelled() or not isinstance(exc, cf.process.BrokenProcessPool):
                out.append((job, None if fut.cancelled() or exc else fut.result(),
                            cf.CancelledError() if fut.cancelled() else exc))
            elif self._pids.get(token) in dead:
                pid = self._pids[token]
                out.append((job, None, WorkerDied(pid, dead[pid])))
            else:
                again.append(job)
        self._futures.clear()
        explained = any(isinstance(e, WorkerDied) for _, _, e in out)
        self._blind_breaks += not explained
        if self._stopped or self._blind_breaks > MAX_BLIND_BREAKS:
            why = (cf.CancelledError() if self._stopped else
                   cf.process.BrokenProcessPool(f"worker processes keep dying (exit codes {sorted(dead.values())})"))
            return out + [(job, None, why) for job in again]
        self._pool = self._new_pool()
        for job in again:
            self._submit(job)
        return out

    def pending(self) -> int:
        return len(self._futures)

    def stop(self) -> None:
        self._stopped = True
        for fut in self._futures:
            fut.cancel()
        self._stop_event.set()

    def kill(self) -> None:
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            proc.kill()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@hookimpl
def register_executors(register):
    register("local", LocalExecutor, description="worker processes on this machine (--jobs, default: the cores)")
