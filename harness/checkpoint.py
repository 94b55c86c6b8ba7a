"""Checkpoints that cannot run code, and the choice of the one a resumed run continues from.

A checkpoint holds only tensors, numbers, strings, lists, tuples and dicts (random states included),
so it is loaded with ``torch.load(weights_only=True)``: loading a checkpoint never executes code,
whatever the file holds. It also records the run's config digest and the task's spec. On resume,
``checkpoint.pt`` is used if it loads, belongs to this run (same config digest, same task spec) and
applies to the run's networks and optimisers; otherwise ``checkpoint.prev.pt`` is tried, with a
one-line warning saying why the newer one was passed over; when every checkpoint present fails, a
one-line error names the files and the reasons.
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from harness.errors import HarnessError
from harness.results import RunDir
from harness.safe_files import UnsafeFile, read_bytes


def capture_rng() -> dict[str, Any]:
    """The global random states of torch, NumPy and Python, as weights-only-loadable values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global random states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def load_file(path: Any) -> dict[str, Any]:
    """Load one checkpoint file without executing anything it holds."""
    state = torch.load(io.BytesIO(read_bytes(path, "checkpoint")), weights_only=True, map_location="cpu")
    if not isinstance(state, dict) or "iteration" not in state:
        raise ValueError("not a harness checkpoint")
    return state


def load_policy(path: Path) -> dict[str, Any]:
    """A ``best.pt`` or ``checkpoint.pt`` (anything holding a scheme state) loaded without running code;
    a file that is not one is a one-line error (never a hint to load it unsafely)."""
    try:
        data = read_bytes(path, "checkpoint")  # a FIFO, a device or a huge file: a one-line error of its own
    except OSError as exc:
        raise HarnessError(f"{path} cannot be read ({exc.strerror or exc})") from None
    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise HarnessError(f"{path} is not a harness checkpoint ({reason(exc)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("scheme"), dict):
        raise HarnessError(f"{path} is not a harness checkpoint (no scheme state in it)")
    return state


def reason(exc: BaseException) -> str:
    """Why a checkpoint could not be used, on one line (a refused unsafe load said as such)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
        text = "it holds objects that only code could rebuild (refused: loading it could run code)"
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def resume_from(run: RunDir, config_digest: str | set[str], task_spec: dict[str, Any],
                apply: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Apply the newest usable checkpoint of ``run`` with ``apply`` and return it (None when the run
    has no checkpoint). A checkpoint is usable when it loads without code, records ``config_digest``
    (or one of a set: a run extended to a larger budget accepts its earlier digests) and
    ``task_spec``, and ``apply`` accepts it."""
    accepted = {config_digest} if isinstance(config_digest, str) else set(config_digest)
    failures: list[str] = []
    for path in (run.checkpoint_file, run.previous_checkpoint_file):
        if not path.exists():
            continue
        try:
            state = load_file(path)
            if state.get("config_digest") not in accepted:
                raise ValueError(f"it belongs to another config (digest {state.get('config_digest')}, "
                                 f"this run {' or '.join(sorted(accepted))})")
            if state.get("task_spec") != task_spec:
                raise ValueError("it was made for another task (its task spec differs from this run's)")
            apply(state)
        except Exception as exc:  # any failure: fall back to the previous checkpoint
            failures.append(f"{path.name} ({exc if isinstance(exc, UnsafeFile) else reason(exc)})")
            continue
        if failures:
            print(f"harness: warning: {run.path}: passed over {failures[0]}; resuming from {path.name} "
                  f"(iteration {state['iteration']})", file=sys.stderr)
        return state
    if failures:
        raise HarnessError(f"every checkpoint in {str(run.path)!r} is unusable: {'; '.join(failures)}; "
                           "delete them to start the run again")
    return None
