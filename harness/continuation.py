"""Continuing training beyond one run: extending a finished run to a larger budget, and starting a
new run from another run's policy.

* :func:`extension` (``harness train ... --steps N --extend``): the run directory's config must equal
  the asked one but for ``steps`` (larger). Its ``config.json`` takes the new config and digest and
  lists the extension under ``extended`` (old steps and digest, time); ``DONE`` goes; the run then
  resumes from its last checkpoint, whose recorded digest is accepted because it is an earlier
  digest of the same run. :func:`extension` only checks and returns the record to write: the
  trainer writes it once every check has passed (its device, its checkpoints), so a refused
  extension leaves the run directory as it was. With ``lr_decay`` the schedule spans the whole budget, so an extension
  would make the learning rate jump back up: refused unless the user accepts the new schedule
  (``--accept-new-schedule``: from the resumed iteration, the fraction ``1 - iteration / iterations``
  of the new budget).
* :func:`load_init` (``--set init_from=RUN_DIR`` or ``RUN_DIR/best.pt`` / ``checkpoint.pt``): a new run
  starts from another run's scheme state (actors, critic, value normaliser, optimiser moments),
  loaded without executing code; ``init_from`` is part of the config (two runs from different
  starts are different runs) and ``config.json`` records the file, its SHA-256 and the source run's
  config digest and iteration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.checkpoint import load_policy, reason
from harness.config import TrainConfig, comparable, config_diff, config_digest
from harness.errors import HarnessError
from harness.plugins import file_sha256
from harness.results import RunDir
from harness.scheme import load_policy_state


def extension(run_dir: str | Path, cfg: TrainConfig, accept_new_schedule: bool = False) -> dict[str, Any] | None:
    """The ``config.json`` record of ``run_dir`` extended to ``cfg.steps``, or None when it already
    holds that budget; a one-line error when it cannot be extended. Nothing is written."""
    run = RunDir(run_dir)
    record = run.require_config("--extend: ")
    if config_digest(record["config"]) != record.get("config_digest"):
        raise HarnessError(f"--extend: {run.config_file}: damaged: its config does not match its config_digest; "
                           "restore it or move the run directory aside")
    old = record["config"]
    if record.get("config_digest") == cfg.digest():
        return None  # the same budget: an ordinary resume (or nothing, when finished)
    new = cfg.to_dict()
    if comparable(old, drop=("steps",)) != comparable(new, drop=("steps",)):
        raise HarnessError(f"--extend changes only steps; this also changes "
                           f"{config_diff(dict(old, steps=0), dict(new, steps=0))}")
    if not cfg.steps > old["steps"]:
        raise HarnessError(f"--extend: steps={cfg.steps} must be larger than the run's {old['steps']}")
    if cfg.lr_decay and not accept_new_schedule:
        raise HarnessError(f"--extend: the run decays its learning rates to 0 over its {old['steps']} steps "
                           "(lr_decay=true); over a larger budget the rate would jump back up. Pass "
                           "--accept-new-schedule to continue on the new budget's schedule, or train a new run")
    if not run.checkpoint_file.exists() and not run.previous_checkpoint_file.exists():
        raise HarnessError(f"--extend: {str(run.path)!r} has no checkpoint to continue from")
    record["extended"] = [*record.get("extended", []), {"from_steps": old["steps"], "to_steps": cfg.steps,
                                                        "from_digest": record["config_digest"],
                                                        "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    record["config"], record["config_digest"] = new, cfg.digest()
    return record


def accepted_digests(record: dict[str, Any] | None, digest: str) -> set[str]:
    """The config digests a run's checkpoints may carry: its own, and those before its extensions."""
    return {digest, *[e.get("from_digest") for e in (record or {}).get("extended", [])]} - {None}


def init_file(spec: str) -> Path:
    """The file ``init_from`` names: a run directory's ``best.pt`` (else its ``checkpoint.pt``), or a file."""
    path = Path(spec)
    if path.is_dir():
        for name in ("best.pt", "checkpoint.pt"):
            if (path / name).exists():
                return path / name
        raise HarnessError(f"init_from={spec!r}: the directory has no best.pt or checkpoint.pt")
    if not path.is_file():
        raise HarnessError(f"init_from={spec!r} does not exist (a run directory, or its best.pt / checkpoint.pt)")
    return path


def init_source(spec: str) -> dict[str, Any]:
    """The ``config.json`` of the run that the ``init_from`` file belongs to ({} when there is none).
    A damaged one is a one-line error that says the problem is in that source run, not in the file."""
    path = init_file(spec)
    source = RunDir(path.parent)
    advice = (f"restore it, or copy {path.name} out of that run and give init_from the copy")
    try:
        return source.read_config(advice) or {}
    except (HarnessError, OSError) as exc:
        detail = str(exc) if isinstance(exc, HarnessError) else f"{source.config_file}: {exc.strerror or exc}"
        raise HarnessError(f"init_from={spec!r}: {path.name} is in run {str(source.path)!r}, whose config.json "
                           f"cannot be read: {detail}") from None


def load_init(spec: str, scheme: Any) -> dict[str, Any]:
    """Load the scheme state ``spec`` names into ``scheme``; return what config.json records of it."""
    path = init_file(spec)
    try:
        state = load_policy(path)
    except HarnessError as exc:
        raise HarnessError(f"init_from={spec!r}: {exc}") from None
    try:
        load_policy_state(scheme, state["scheme"])
    except Exception as exc:
        raise HarnessError(f"init_from={spec!r}: {path.name} does not fit this run's networks ({reason(exc)}); "
                           "start from a run of the same task, scheme and network sizes") from None
    source = init_source(spec)
    best = state.get("best")
    return {"file": str(path.resolve()), "sha256": file_sha256(str(path)),
            "source_config_digest": source.get("config_digest"),
            "source_iteration": best[1] if isinstance(best, (list, tuple)) else state.get("iteration")}
