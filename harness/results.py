"""A run directory: ``config.json`` (resolved config + provenance), ``metrics.csv`` (append-only,
one row per iteration), ``checkpoint.pt`` (written atomically; the one before it is kept as
``checkpoint.prev.pt`` to fall back on), ``best.pt`` (the policy with the best evaluation so far),
``absolute.json`` (that policy re-evaluated at the end) and ``DONE``."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import torch

from harness.errors import HarnessError
from harness.safe_files import check_file, read_text

METRIC_COLUMNS = [
    "iteration", "env_steps", "train_return", "eval_return", "eval_return_std", "policy_loss",
    "value_loss", "entropy", "ratio", "clip_frac", "factor_mean", "actor_grad_norm",
    "critic_grad_norm", "lr_fraction", "steps_per_s", "collect_s", "update_s", "wall_s", "order",
    "eval_returns",
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


def fsync_dir(path: Path) -> None:
    """Make the directory entries of ``path`` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: Path, what: str = "output directory") -> None:
    """Create directory ``path`` and write a probe file in it, or raise a one-line error. The probe's
    name is new to each call (:func:`tempfile.mkstemp`), so processes probing one directory at once
    (the workers of a suite, before any lock is taken) never remove each other's probe."""
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"x" * 4096)
        finally:
            os.unlink(probe)
    except OSError as exc:
        raise HarnessError(f"cannot write to {what} {str(path)!r}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write (a full disk, a lost mount) into a one-line error that says what survives."""
    try:
        yield
    except OSError as exc:
        raise HarnessError(f"cannot write {path}: {exc.strerror or exc}; what was written before is kept (the "
                           "previous checkpoint and the rows up to it): free the space and re-run the same "
                           "command to resume") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees the old or the new content, never a mix, and the new
    content survives a power loss once this returns (file and directory entry fsync'ed)."""
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # give back the space a partial file took
            raise
        os.replace(tmp, path)
        fsync_dir(path.parent)


class RunDir:
    """Reads and writes one run's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.json"
        self.metrics_file = self.path / "metrics.csv"
        self.checkpoint_file = self.path / "checkpoint.pt"
        self.previous_checkpoint_file = self.path / "checkpoint.prev.pt"
        self.best_file = self.path / "best.pt"
        self.absolute_file = self.path / "absolute.json"
        self.done_file = self.path / "DONE"

    def prepare(self) -> None:
        """Create the directory and check that it is writable, before any training starts."""
        check_writable(self.path)

    def discard_if_empty(self) -> None:
        """Remove the directory when nothing was written into it (a run refused while being built)."""
        try:
            self.path.rmdir()  # fails, and keeps it, when it holds anything
        except OSError:
            pass

    def check_space(self, needed_bytes: int) -> None:
        """Refuse to start when the directory's file system has less than ``needed_bytes`` free."""
        free = shutil.disk_usage(self.path).free
        if free < needed_bytes:
            raise HarnessError(f"output directory {str(self.path)!r} has {_size(free)} free; this run needs about "
                               f"{_size(needed_bytes)} for its checkpoints and logs")

    def read_config(self, advice: str = "restore it or move the run directory aside") -> dict[str, Any] | None:
        """The run's config.json, None when there is none; a damaged one is a one-line error ending
        in ``advice``."""
        if not self.config_file.exists():
            return None
        try:
            record = json.loads(read_text(self.config_file, "json"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HarnessError(f"{self.config_file}: not valid JSON ({exc}); {advice}") from None
        except RecursionError:  # the decoder recurses once per level of nesting
            raise HarnessError(f"{self.config_file}: nested too deeply to be a run's config.json; {advice}") from None
        if not isinstance(record, dict):
            raise HarnessError(f"{self.config_file}: holds a {type(record).__name__}, not a JSON object; {advice}")
        return record

    def require_config(self, what: str = "") -> dict[str, Any]:
        """``config.json`` of a run that must exist (for ``eval``, ``--extend``): a dict with a config,
        else a one-line error starting with ``what``."""
        try:
            record = self.read_config()
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{what}{self.config_file} is unreadable ({exc})") from None
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise HarnessError(f"{what}{str(self.path)!r} holds no run (no config.json with a config)")
        return record

    def write_config(self, record: dict[str, Any]) -> None:
        atomic_write_bytes(self.config_file, json.dumps(record, indent=2, sort_keys=True).encode())

    def rows(self) -> list[dict[str, str]]:
        """Complete metric rows (a partial last line left by a killed process is ignored).

        A damaged line elsewhere (wrong number of fields, a non-integer iteration, iterations out of
        order) is an error naming the file and the line: rows are never silently skipped."""
        if not self.metrics_file.exists():
            return []
        try:
            text = read_text(self.metrics_file, "text")
        except UnicodeDecodeError:
            raise HarnessError(f"{self.metrics_file}: not a text file (damaged?)") from None
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        if not text:
            return []
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        if not _valid_header(header):
            raise HarnessError(f"{self.metrics_file}: line 1 is not the metrics header")
        rows, last = [], -1
        for line, fields in enumerate(reader, start=2):
            bad = len(fields) != len(header)
            if not bad:
                row = dict(zip(header, fields))
                try:
                    it = int(row["iteration"])
                    bad = it <= last
                except ValueError:
                    bad = True
            if bad:
                raise HarnessError(f"{self.metrics_file}: line {line} is damaged ({','.join(fields)[:60]!r}); "
                                   f"repair or delete that line (rows after it are then re-run from a checkpoint)")
            rows.append(row)
            last = it
        return rows

    def keep_rows_up_to(self, iteration: int) -> None:
        """Drop rows after ``iteration`` (and any partial line) before a resumed run appends; refuse
        (one line) when rows before it are missing, since the run would finish with a gap."""
        rows = [r for r in self.rows() if int(r["iteration"]) <= iteration]
        missing = sorted(set(range(iteration + 1)) - {int(r["iteration"]) for r in rows})
        if missing:
            raise HarnessError(f"{self.metrics_file}: rows of iterations {_ranges(missing)} are missing before the "
                               f"checkpoint (iteration {iteration}); the run cannot continue without a gap: restore "
                               "the file, or delete the run directory's checkpoints to train it afresh")
        self._rewrite(self.header(), rows)

    def header(self) -> list[str]:
        """The columns of ``metrics.csv``: :data:`METRIC_COLUMNS`, then any other keys a scheme or
        plugin reported, in the order they first appeared (none before the file exists)."""
        if not self.metrics_file.exists():
            return []
        check_file(self.metrics_file, "text")
        with open(self.metrics_file, newline="") as fh:
            return next(csv.reader(fh), [])

    def _rewrite(self, header: list[str], rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=header or METRIC_COLUMNS, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.metrics_file, buf.getvalue().encode())

    def append_row(self, row: dict[str, Any]) -> None:
        """Append one row. A key outside :data:`METRIC_COLUMNS` becomes a column of its own (the
        file is rewritten once with the wider header; earlier rows leave it empty)."""
        header = self.header() or list(METRIC_COLUMNS)
        extra = [k for k in row if k not in header]
        if extra:
            header = header + extra
            self._rewrite(header, self.rows() if self.metrics_file.exists() else [])
        new = not self.metrics_file.exists()
        with writing(self.metrics_file), open(self.metrics_file, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in header})
            fh.flush()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``checkpoint.pt`` atomically, keeping the previous one as ``checkpoint.prev.pt``.

        The metrics rows it follows are fsync'ed first, so after a power loss a checkpoint is never
        ahead of the rows it continues from."""
        buf = io.BytesIO()
        torch.save(state, buf)
        with writing(self.checkpoint_file):
            if self.metrics_file.exists():
                with open(self.metrics_file, "rb") as fh:
                    os.fsync(fh.fileno())
            if self.checkpoint_file.exists():
                os.replace(self.checkpoint_file, self.previous_checkpoint_file)
        atomic_write_bytes(self.checkpoint_file, buf.getvalue())

    def save_best(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.best_file, buf.getvalue())

    def write_absolute(self, record: dict[str, Any]) -> None:
        atomic_write_bytes(self.absolute_file, json.dumps(record, indent=2, sort_keys=True).encode())

    def mark_done(self) -> None:
        atomic_write_bytes(self.done_file, time.strftime("%Y-%m-%dT%H:%M:%S").encode())

    @property
    def done(self) -> bool:
        return self.done_file.exists()


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    parts, start = [], None
    for k, v in enumerate(values):
        if start is None:
            start = v
        if k + 1 == len(values) or values[k + 1] != v + 1:
            parts.append(f"{start}-{v}" if v != start else f"{v}")
            start = None
    return ", ".join(parts)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _valid_header(header: list[str]) -> bool:
    """The metrics header: a prefix of :data:`METRIC_COLUMNS` (older runs), or all of it followed by
    the extra keys a run reported."""
    n = min(len(header), len(METRIC_COLUMNS))
    return "iteration" in header and header[:n] == METRIC_COLUMNS[:n] and (
        len(header) <= len(METRIC_COLUMNS) or header[:len(METRIC_COLUMNS)] == METRIC_COLUMNS)


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
