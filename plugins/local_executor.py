"""Executor plugin ``local``: the suite's runs in a pool of worker processes on this machine (the default).

``--jobs`` worker processes (default: the number of cores), started with ``spawn``. Stopping cancels
the queued runs and asks the running ones, through an event every worker watches, to checkpoint and
stop; a worker whose parent dies stops by itself (:mod:`harness.stopping`).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import socket
from typing import Any

from harness import hookimpl, stopping
from harness.executor import Executor, Job, call_job


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int | None, options: dict[str, Any]) -> None:
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        ctx = mp.get_context("spawn")
        self._stop_event = ctx.Event()
        self._pool = cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=stopping.worker_setup,
                                            initargs=(os.getpid(), self._stop_event))
        self._futures: dict[cf.Future, Job] = {}

    def resources(self) -> str:
        return f"local: {self.jobs} worker process(es) on {socket.gethostname()} ({os.cpu_count()} CPUs)"

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._futures[self._pool.submit(call_job, job.fn, job.args, self.name, socket.gethostname())] = job

    def wait(self, timeout: float) -> list[tuple[Job, Any, BaseException | None]]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            job = self._futures.pop(fut)
            try:
                out.append((job, fut.result(), None))
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, including cancellation
                out.append((job, None, exc))
        return out

    def pending(self) -> int:
        return len(self._futures)

    def stop(self) -> None:
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
