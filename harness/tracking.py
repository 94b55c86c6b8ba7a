"""Experiment trackers (``loggers = [...]``): checked before a run starts, fed by the run's events.

A tracker plugin registers a :class:`Tracker` subclass under a name with ``register_loggers``; a run
whose ``loggers`` config key names it gets its own instance (``metrics.csv`` is always written), so
runs training in one process (a sweep trial's seeds) never share one. The tracker's own run id is
kept in ``<run_dir>/trackers.json`` so that a resumed run continues the same tracker run.
``loggers`` does not enter a run's config digest: adding or dropping a tracker never makes a run
"another config". (Plugins that only watch, without a name to choose, use the event hooks
``on_run_start``, ``on_metrics`` and ``on_run_end`` instead.)
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from harness.config import TABLES
from harness.errors import HarnessError, plugin_call
from harness.safe_files import read_text

IDS_FILE = "trackers.json"


def check_loggers(regs: Any, loggers: list[str], where: str = "") -> None:
    """Every named logger is registered and its packages import; else a one-line error."""
    for name in loggers:
        entry = regs.loggers.get(name)  # an unknown name lists the known ones
        missing = [m for m in entry.extra.get("requires", ()) if importlib.util.find_spec(m) is None]
        if missing:
            extra = entry.extra.get("extra")
            how = f'pip install -e ".[{extra}]"' if extra else f"pip install {' '.join(missing)}"
            raise HarnessError(f"{where}logger {name!r} needs the package(s) {', '.join(missing)}: {how}")


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (strings such as ``order`` and per-episode lists left out)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key in ("iteration", "env_steps"):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def flat_config(config: dict[str, Any]) -> dict[str, str]:
    """A config as ``{key: text}`` with task and scheme options as ``env.NAME`` and ``scheme.NAME``
    (trackers' parameter tables)."""
    prefixes = {table: prefix for prefix, table in TABLES.items()}
    out = {}
    for key, value in config.items():
        if key in prefixes and isinstance(value, dict):
            out.update({f"{prefixes[key]}.{k}": json.dumps(v) for k, v in value.items()})
        else:
            out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


class Tracker:
    """One tracker run for one harness run. A logger plugin registers a subclass
    (``register(name, TrackerClass, requires=..., extra=...)``); the harness creates one per run that
    names it, right after the run starts or resumes, feeds it every metrics row and closes it when
    the run ends. Subclasses implement :meth:`open` (given the id saved for this run directory, or
    None; returning the id to save), :meth:`log` and :meth:`close`."""

    name = ""

    def __init__(self, run_dir: Path, config: dict[str, Any], record: dict[str, Any], start_iteration: int) -> None:
        self.run_dir = Path(run_dir)
        ids = _read_ids(self.run_dir)
        run_id = self.open(config, record, start_iteration, ids.get(self.name))
        if run_id is not None and ids.get(self.name) != run_id:
            _write_ids(self.run_dir, {**ids, self.name: run_id})

    def open(self, config: dict[str, Any], record: dict[str, Any], start_iteration: int,
             saved_id: str | None) -> str | None:
        """Start (or, with ``saved_id``, continue) the tracker's run; return the id to keep."""
        raise NotImplementedError

    def log(self, row: dict[str, Any]) -> None:
        """One metrics row (one iteration), keyed by ``row["env_steps"]``."""
        raise NotImplementedError

    def close(self, summary: dict[str, Any], finished: bool) -> None:
        """The run ended: reached its budget (``finished``; ``summary`` holds the last evaluation and
        the absolute metric) or stopped early."""
        raise NotImplementedError


class RunTrackers:
    """The trackers of one run, opened together, fed together and closed once."""

    def __init__(self, regs: Any, names: list[str], run_dir: Path | None, config: dict[str, Any],
                 record: dict[str, Any], start_iteration: int) -> None:
        self.trackers: list[Tracker] = []
        if run_dir is None:
            return
        for name in names:
            entry = regs.loggers.get(name)
            try:
                with plugin_call(f"logger {name!r} (plugin {entry.plugin!r}) failed to start:", keep=()):
                    self.trackers.append(entry.factory(run_dir, config, record, start_iteration))
            except HarnessError:
                self.close({}, False)
                raise

    def log(self, row: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log(row)

    def close(self, summary: dict[str, Any], finished: bool) -> None:
        trackers, self.trackers = self.trackers, []
        for t in trackers:
            t.close(summary, finished)


class RunWatchers:
    """Everything that watches one run: the event hooks ``on_run_start``, ``on_metrics`` and
    ``on_run_end`` of every plugin, and the trackers the run's ``loggers`` name."""

    def __init__(self, regs: Any, config: Any, run_dir: Path | None, record: dict[str, Any]) -> None:
        self.regs, self.config, self.run_dir, self.record = regs, config, run_dir, record
        self.trackers: RunTrackers | None = None

    def start(self, iteration: int) -> None:
        """The run starts or resumes at ``iteration``."""
        self.regs.emit("on_run_start", config=self.config.to_dict(), record=self.record, run_dir=self.run_dir,
                       start_iteration=iteration)
        self.trackers = RunTrackers(self.regs, self.config.loggers, self.run_dir, self.config.to_dict(),
                                    self.record, iteration)

    def row(self, row: dict[str, Any]) -> None:
        """One metrics row, as written to ``metrics.csv``."""
        self.regs.emit_metrics(row, self.run_dir)
        if self.trackers is not None:
            self.trackers.log(row)

    def end(self, summary: dict[str, Any], finished: bool) -> None:
        """The run ends (finished, or stopped early): close its trackers and send ``on_run_end``, once."""
        if self.trackers is None:
            return
        trackers, self.trackers = self.trackers, None
        try:
            trackers.close(summary, finished)
        finally:
            self.regs.emit("on_run_end", config=self.config.to_dict(), run_dir=self.run_dir, summary=summary,
                           finished=finished)


def _read_ids(run_dir: Path) -> dict[str, str]:
    try:
        data = json.loads(read_text(Path(run_dir) / IDS_FILE))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, HarnessError):  # unusable: the trackers start new runs
        return {}


def _write_ids(run_dir: Path, ids: dict[str, str]) -> None:
    from harness.results import atomic_write_bytes
    atomic_write_bytes(Path(run_dir) / IDS_FILE, json.dumps(ids, indent=2).encode())
