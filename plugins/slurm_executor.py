"""Executor plugin ``slurm``: each run as a Slurm batch job, submitted with submitit from a login node.

One job per run, asking for ``cpus_per_run`` CPUs (0: the run's ``threads``), ``time_min`` minutes
and ``mem_gb`` (0: the partition's default) in ``partition`` (and ``account``); ``sbatch`` passes
further ``key=value`` sbatch settings, separated by ``;``. The output tree must be on the cluster's
shared filesystem (a probe job writes there before any run starts), and submitit keeps its job files
in ``<out>/.slurm``. A job that ends without finishing its run (cancelled, preempted with SIGTERM,
its node lost) is submitted again, up to ``max_retries`` times, and the run resumes from its last
checkpoint; SIGTERM makes a running run checkpoint first. Job states come from ``squeue`` (clusters
without accounting have no ``sacct``). Needs ``pip install -e ".[slurm]"``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from harness import hookimpl, stopping
from harness.errors import HarnessError
from harness.executor import Executor, Job, call_job
from harness.options import Option

OPTIONS = {
    "partition": Option(str, "", "Slurm partition (empty: the cluster's default)"),
    "account": Option(str, "", "Slurm account to charge"),
    "time_min": Option(int, 60, "time limit of each run's job, in minutes", high=525_600),
    "cpus_per_run": Option(int, 0, "CPUs per run's job (0: the run's threads)", high=4096),
    "mem_gb": Option(float, 0.0, "memory per run's job in GB (0: the partition's default)", high=1_000_000),
    "sbatch": Option(str, "", "more sbatch settings as key=value;key=value (e.g. qos=high;constraint=avx2)"),
    "max_retries": Option(int, 3, "times a run whose job ended without finishing is submitted again", high=1000),
}
STOPPED = "harness: stopped by a signal"


def _job(fn: Any, args: tuple) -> Any:
    """A run in a Slurm job: SIGTERM (scancel, preemption) or SIGUSR1 (a warning sent before the time
    limit, ``sbatch=signal=USR1@120``) checkpoints it; the driver then submits it again or not."""
    import signal
    stopping.install((signal.SIGINT, signal.SIGTERM, signal.SIGUSR1))
    node = f"{os.environ.get('SLURM_JOB_ID', '?')}@{socket.gethostname()}"
    try:
        return call_job(fn, args, "slurm", node)
    except stopping.Interrupted:
        return STOPPED


def _probe(out: str) -> str:
    path = Path(out) / f".probe-{os.environ.get('SLURM_JOB_ID', os.getpid())}"
    path.write_text("probe")
    path.unlink()
    return socket.gethostname()


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, jobs: int | None, options: dict[str, Any]) -> None:
        try:
            import submitit
        except ImportError:
            raise HarnessError("the slurm executor needs submitit: pip install -e \".[slurm]\"") from None
        if subprocess.run(["which", "sbatch"], capture_output=True).returncode:
            raise HarnessError("the slurm executor needs Slurm's sbatch on this machine (a login node)")
        for key in ("time_min", "cpus_per_run", "max_retries"):
            if options[key] < 0:
                raise HarnessError(f"executor option {key}={options[key]} must be >= 0")
        logging.getLogger("submitit").setLevel(logging.ERROR)  # no sacct without accounting: fine
        self.submitit = submitit
        self.options = options
        self.folder: Path | None = None
        self._jobs: dict[str, tuple[Job, Any, int]] = {}  # slurm job id -> (job, submitit job, tries)
        self._stopping = False

    def _executor(self, cpus: int) -> Any:
        o = self.options
        extra = dict(kv.split("=", 1) for kv in o["sbatch"].split(";") if "=" in kv)
        params: dict[str, Any] = {"time": o["time_min"], "cpus_per_task": cpus, "additional_parameters": extra}
        if o["partition"]:
            params["partition"] = o["partition"]
        if o["account"]:
            params["account"] = o["account"]
        if o["mem_gb"]:
            params["mem"] = f"{int(o['mem_gb'] * 1024)}M"
        ex = self.submitit.SlurmExecutor(folder=str(self.folder or Path(".slurm").resolve()))
        ex.update_parameters(**params)
        return ex

    def resources(self) -> str:
        info = subprocess.run(["sinfo", "-h", "-o", "%P %D %C"], capture_output=True, text=True).stdout.split()
        return f"slurm: partition/nodes/CPUs (allocated/idle/other/total) {' '.join(info) or 'unknown'}"

    def check_output(self, out: Path) -> None:
        self.folder = out.resolve() / ".slurm"
        self.folder.mkdir(parents=True, exist_ok=True)
        probe = self._executor(1).submit(_probe, str(out.resolve()))
        try:
            probe.result()
        except Exception as exc:
            raise HarnessError(f"a Slurm job (id {probe.job_id}) cannot write to {str(out.resolve())!r}: "
                               f"{str(exc).strip().splitlines()[-1][:200]}; the output tree must be on the "
                               "cluster's shared filesystem") from None

    def _submit(self, job: Job, tries: int) -> None:
        handle = self._executor(self.options["cpus_per_run"] or job.cpus).submit(_job, job.fn, job.args)
        self._jobs[handle.job_id] = (job, handle, tries)

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._submit(job, 0)

    def _active(self) -> set[str]:
        ids = ",".join(self._jobs)
        out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ids], capture_output=True, text=True).stdout
        return set(out.split())

    def wait(self, timeout: float) -> list[tuple[Job, Any, BaseException | None]]:
        import time
        deadline, out = time.monotonic() + timeout, []
        while not out and self._jobs:
            active = self._active()
            for job_id in [j for j in self._jobs if j not in active]:
                job, handle, tries = self._jobs.pop(job_id)
                try:
                    result, exc = handle.result(), None
                except self.submitit.core.utils.FailedJobError as error:  # the run raised: report it
                    result, exc = None, RuntimeError(str(error).strip().splitlines()[-1][:500])
                except Exception:  # ended without a result: cancelled, node lost
                    result, exc = STOPPED, None
                if result == STOPPED:
                    if not self._stopping and tries < self.options["max_retries"]:
                        self._submit(job, tries + 1)  # resumes from its last checkpoint
                        continue
                    result, exc = None, (KeyboardInterrupt() if self._stopping else
                                         RuntimeError(f"its Slurm job ended {tries + 1} times without finishing"))
                out.append((job, result, exc))
            if out or time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return out

    def pending(self) -> int:
        return len(self._jobs)

    def stop(self) -> None:
        self._stopping = True
        if self._jobs:  # queued jobs go at once; running ones get SIGTERM and checkpoint
            subprocess.run(["scancel", "--signal=TERM", "--full", *self._jobs], capture_output=True)
            subprocess.run(["scancel", "--state=PENDING", *self._jobs], capture_output=True)

    def kill(self) -> None:
        if self._jobs:
            subprocess.run(["scancel", *self._jobs], capture_output=True)


@hookimpl
def register_executors(register):
    register("slurm", SlurmExecutor, options=OPTIONS,
             description="Slurm batch jobs through submitit, from a login node (pip install -e \".[slurm]\")")
