"""Executor plugin ``ray``: the suite's runs as Ray Core tasks on an existing Ray cluster.

Each run is one task asking for ``cpus_per_run`` CPUs (0: the run's ``threads``). The output tree
must be on a filesystem every node sees; :meth:`RayExecutor.check_output` writes a probe file from
every alive node before any run starts. A node lost mid-run (its raylet or machine gone) makes Ray
re-run the task elsewhere (``max_retries`` times), and the run resumes from its last checkpoint in
the shared tree; the run-directory lock keeps one writer (a re-run task waits up to ``lock_wait``
seconds for the lost one's lock to go). Stopping cancels queued tasks and interrupts running ones
(their last periodic checkpoints stay). Needs ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import concurrent.futures as cf
import socket
import uuid
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.errors import HarnessError
from harness.executor import Executor, Job, call_job
from harness.options import Option

OPTIONS = {
    "address": Option(str, "auto", "Ray cluster address: auto (the cluster this machine belongs to) or HOST:PORT"),
    "node_ip_address": Option(str, "", "this machine's address in the cluster, where Ray cannot find it itself"),
    "cpus_per_run": Option(int, 0, "CPUs each run asks Ray for (0: the run's threads)", high=4096),
    "max_retries": Option(int, 3, "times Ray re-runs a run whose node or worker was lost", high=1000),
    "lock_wait": Option(float, 120.0, "seconds a re-run waits for a lost run's directory lock to be released",
                        high=86_400),
}


def _reachable(address: str) -> None:
    """Fail fast (ray.init retries for minutes) when a HOST:PORT address accepts no connection."""
    if address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot connect to the Ray cluster at {address!r}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None


def _job(fn: Any, args: tuple, lock_wait: float) -> Any:
    import os

    import ray
    os.environ["HARNESS_LOCK_WAIT"] = str(lock_wait)
    return call_job(fn, args, "ray", ray.get_runtime_context().get_node_id())


def _probe(out: str, name: str) -> str:
    """Write and remove a file in ``out`` from this node; return the node id or raise."""
    import ray
    path = Path(out) / name
    path.write_text("probe")
    path.unlink()
    return ray.get_runtime_context().get_node_id()


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, jobs: int | None, options: dict[str, Any]) -> None:
        try:
            import ray
        except ImportError:
            raise HarnessError("the ray executor needs Ray: pip install -e \".[ray]\"") from None
        self.ray = ray
        self.options = options
        if options["cpus_per_run"] < 0 or options["max_retries"] < 0:
            raise HarnessError("executor options cpus_per_run and max_retries must be >= 0")
        _reachable(options["address"])
        extra = {"_node_ip_address": options["node_ip_address"]} if options["node_ip_address"] else {}
        try:
            ray.init(address=options["address"], log_to_driver=False, logging_level="ERROR",
                     ignore_reinit_error=True, **extra)
        except Exception as exc:  # ConnectionError, ValueError from a bad address, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(f"cannot connect to the Ray cluster at {options['address']!r}: {first}") from None
        self._refs: dict[Any, Job] = {}

    def resources(self) -> str:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        return f"ray: {len(nodes)} node(s), {cpus} CPUs at {self.options['address']}"

    def check_output(self, out: Path) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        probe = self.ray.remote(_probe)
        name = f".probe-{uuid.uuid4().hex}"
        for node in (n for n in self.ray.nodes() if n.get("Alive")):
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            try:
                self.ray.get(probe.options(num_cpus=0, scheduling_strategy=strategy).remote(str(out.resolve()), name),
                             timeout=120)
            except self.ray.exceptions.TaskUnschedulableError:
                continue  # the node died since it was listed: no run will go there
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                raise HarnessError(f"node {node['NodeID'][:12]} ({node.get('NodeManagerAddress')}) cannot write to "
                                   f"{str(out.resolve())!r}: {type(cause).__name__}: {cause}; the output tree must be "
                                   "on a filesystem every node sees") from None

    def submit(self, jobs: list[Job]) -> None:
        task = self.ray.remote(_job)
        for job in jobs:
            cpus = self.options["cpus_per_run"] or job.cpus
            ref = task.options(num_cpus=cpus, max_retries=self.options["max_retries"],
                               retry_exceptions=False).remote(job.fn, job.args, self.options["lock_wait"])
            self._refs[ref] = job

    def wait(self, timeout: float) -> list[tuple[Job, Any, BaseException | None]]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        out = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                out.append((job, self.ray.get(ref), None))
            except self.ray.exceptions.TaskCancelledError:
                out.append((job, None, cf.CancelledError()))
            except self.ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                out.append((job, None, cause))
            except Exception as exc:  # a node or worker lost more often than max_retries
                out.append((job, None, exc))
        return out

    def pending(self) -> int:
        return len(self._refs)

    def stop(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=False)

    def kill(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()


@hookimpl
def register_executors(register):
    register("ray", RayExecutor, options=OPTIONS,
             description="Ray Core tasks on an existing cluster (--executor-option address=HOST:PORT; pip install -e \".[ray]\")")
