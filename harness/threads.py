"""Limiting every native thread pool a run uses to its ``threads``: torch's own, and through
threadpoolctl the BLAS (OpenBLAS, MKL, BLIS) and OpenMP libraries loaded in the process, so that runs
side by side (``harness bench --jobs 2``, sweep workers, cluster tasks sharing a node) do not
oversubscribe the cores. NumPy's matrix products in the fast acting policy go through OpenBLAS, which
otherwise starts a thread per core whatever torch is told. A ``threads`` above twice the cores
the process may use is refused (:func:`check_threads`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from harness.errors import HarnessError

#: How many threads per core a run may ask for: more only oversubscribes the cores (minutes lost to
#: contention at 512 threads on 2 cores; torch crashes outright at 100,000).
THREADS_PER_CORE = 2


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int) -> None:
    """Refuse ``threads`` above :data:`THREADS_PER_CORE` per usable core, in one line, before any work."""
    cores = usable_cores()
    most = THREADS_PER_CORE * cores
    if threads > most:
        raise HarnessError(f"threads={threads} is more than this machine can use: {cores} core(s) here, so at most "
                           f"threads={most}")


def limit_threads(threads: int) -> list[dict[str, Any]]:
    """Limit torch and every thread pool loaded so far to ``threads``; return the pools in force
    (``[{"library": "openblas", "api": "blas", "threads": 1}, ...]``, recorded in ``config.json``).
    Call again after loading libraries (a task plugin's simulator) to limit theirs too."""
    from threadpoolctl import threadpool_info, threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    pools = [{"library": p.get("internal_api"), "api": p.get("user_api"), "threads": p.get("num_threads")}
             for p in threadpool_info()]
    return [{"library": "torch", "api": "torch", "threads": torch.get_num_threads()}] + pools
