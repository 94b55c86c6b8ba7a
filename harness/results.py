"""A run directory: ``config.json`` (resolved config + provenance), ``metrics.csv`` (append-only,
one row per iteration) and ``checkpoint.pt`` (written atomically)."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError

METRIC_COLUMNS = [
    "iteration", "env_steps", "train_return", "eval_return", "eval_return_std", "policy_loss",
    "value_loss", "entropy", "ratio", "clip_frac", "factor_mean", "actor_grad_norm",
    "critic_grad_norm", "lr_fraction", "steps_per_s", "collect_s", "update_s", "wall_s", "order",
]

PACKAGES = ["happo-harness", "torch", "numpy", "pluggy", "pettingzoo", "mpe2", "mujoco",
            "gymnasium", "gymnasium-robotics", "optuna", "seaborn"]


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The harness's git commit, when it runs from a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees the old or the new content, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunDir:
    """Reads and writes one run's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.json"
        self.metrics_file = self.path / "metrics.csv"
        self.checkpoint_file = self.path / "checkpoint.pt"
        self.done_file = self.path / "DONE"

    def prepare(self) -> None:
        """Create the directory and check that it is writable before any training starts."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise HarnessError(f"cannot write to output directory {str(self.path)!r}: {exc.strerror or exc}") from None

    def read_config(self) -> dict[str, Any] | None:
        if not self.config_file.exists():
            return None
        return json.loads(self.config_file.read_text())

    def write_config(self, record: dict[str, Any]) -> None:
        atomic_write_bytes(self.config_file, json.dumps(record, indent=2, sort_keys=True).encode())

    def rows(self) -> list[dict[str, str]]:
        """Complete metric rows (a partial last line left by a killed process is ignored)."""
        if not self.metrics_file.exists():
            return []
        text = self.metrics_file.read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        return list(csv.DictReader(io.StringIO(text)))

    def keep_rows_up_to(self, iteration: int) -> None:
        """Drop rows after ``iteration`` (and any partial line) before a resumed run appends."""
        rows = [r for r in self.rows() if int(r["iteration"]) <= iteration]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.metrics_file, buf.getvalue().encode())

    def append_row(self, row: dict[str, Any]) -> None:
        new = not self.metrics_file.exists()
        with open(self.metrics_file, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
            fh.flush()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_file, buf.getvalue())

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_file.exists():
            return None
        try:
            return torch.load(self.checkpoint_file, weights_only=False)
        except Exception as exc:
            raise HarnessError(f"checkpoint {str(self.checkpoint_file)!r} is unreadable ({type(exc).__name__}); "
                               "delete it to start the run again") from None

    def mark_done(self) -> None:
        atomic_write_bytes(self.done_file, time.strftime("%Y-%m-%dT%H:%M:%S").encode())

    @property
    def done(self) -> bool:
        return self.done_file.exists()


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
