"""Arms of a suite: named variants of schemes, compared side by side.

An arm is a scheme with its own settings under its own name. ``[suite] schemes = [...]`` makes
each scheme an arm of its own name; ``[arms.<name>]`` tables add variants::

    [suite]
    schemes = ["happo"]
    [arms.mappo_shared]
    scheme = "mappo"
    share_params = "true"
    [arms.mappo_unshared]
    scheme = "mappo"
    share_params = "false"
    [arms.happo_gru]
    scheme = "happo"
    network = "gru"

An arm table holds ``scheme`` (required), any ``harness train --set`` key (``network``,
``env = {...}``, ``scheme_options = {...}``, a quoted ``"network.NAME" = value`` or ``network_options =
{...}`` for the network's options, ...), ``include = "file.toml"``, ``tune``/``sweep`` as
``[schemes.S]`` does, and optionally ``tasks = [...]``, the suite's tasks it runs on (default: all),
for a variant that only differs on some tasks. Its settings apply after ``[schemes.<its scheme>]``. Runs go to
``<out>/<task>/<arm>/seed_<k>/``; the plots, tables, verdicts and exports name the arm, and every
run's ``config.json`` records its arm (``arm``: name, scheme and the arm's own settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import check_name, need

#: What an arm table may hold besides config overrides.
_ARM_KEYS = ("scheme", "tune", "sweep", "include", "tasks")


@dataclass
class Arm:
    """One arm: its name, its scheme, and its own table (overrides, and ``tune``/``sweep``)."""

    name: str
    scheme: str
    table: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # the table that defines it, for messages: [schemes.S] or [arms.X]
    declared: bool = False  # an [arms.X] table (recorded in config.json), not a plain scheme
    tasks: list[str] | None = None  # the tasks it runs on (None: every task of the suite)

    def runs_on(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def record(self, settings: dict[str, Any]) -> dict[str, Any]:
        """What a run's ``config.json`` records of its arm (``settings``: the arm's own overrides)."""
        return {"name": self.name, "scheme": self.scheme, "settings": settings}


def load_arms(data: dict[str, Any], schemes: list[str], path: Path, known_schemes: list[str],
              tasks: list[str]) -> list[Arm]:
    """The suite's arms, in order: each of ``[suite] schemes``, then each ``[arms.X]`` table. Takes the
    ``arms`` tables out of ``data``; checks names (unique, usable as directory names), schemes and
    the tasks an arm is limited to (``tasks``, the suite's)."""
    tables = data.pop("arms", {})
    need(isinstance(tables, dict) and all(isinstance(t, dict) for t in tables.values()), path,
         '[arms] must hold one table per arm, e.g. [arms.mappo_unshared] scheme = "mappo"')
    arms = [Arm(s, s, data.get("schemes", {}).get(s, {}), f"[schemes.{s}]") for s in schemes]
    for name, table in tables.items():
        where = f"[arms.{name}]"
        check_name(name, path, where)
        need(name not in schemes, path, f"{where}: {name!r} is already an arm, as one of [suite] schemes {schemes}; "
                                        "rename the arm")
        scheme = table.get("scheme")
        need(isinstance(scheme, str) and scheme in known_schemes, path,
             f"{where} scheme={scheme!r} must name a scheme: one of {', '.join(known_schemes)}")
        only = table.get("tasks")
        need(only is None or (isinstance(only, list) and only and all(t in tasks for t in only)), path,
             f"{where} tasks={only!r} must be a non-empty list of the suite's tasks ({', '.join(tasks)})")
        arms.append(Arm(name, scheme, {k: v for k, v in table.items() if k not in ("scheme", "tasks")}, where,
                        declared=True, tasks=only))
    need(arms, path, "[suite] needs 'schemes' or at least one [arms.X] table")
    return arms


def own_settings(table: dict[str, Any]) -> dict[str, Any]:
    """An arm's own settings (its table, includes merged, without ``tune``/``sweep``): what it changes.
    A ``scheme`` table (TOML's dotted ``scheme.kl_threshold = 0.02``) holds scheme options: kept."""
    return {k: v for k, v in table.items() if k not in _ARM_KEYS or (k == "scheme" and isinstance(v, dict))}
