"""Limiting every native thread pool a run uses to its ``threads``: torch's own, and through
threadpoolctl the BLAS (OpenBLAS, MKL, BLIS) and OpenMP libraries loaded in the process, so that runs
side by side (``harness bench --jobs 2``, sweep workers, cluster tasks sharing a node) do not
oversubscribe the cores. NumPy's matrix products in the fast acting policy go through OpenBLAS, which
otherwise starts a thread per core whatever torch is told.
"""

from __future__ import annotations

from typing import Any

import torch


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
