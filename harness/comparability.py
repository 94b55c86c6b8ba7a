"""Which runs may be compared: within a (task, scheme), runs are averaged only when their env
packages, config and plugin code agree; across the schemes of a task, scores are compared only when
the schemes were evaluated alike and on the same budget.

* :func:`check_versions`: the runs of one (task, scheme) used one set of env package versions
  (:data:`ENV_PACKAGES`), one config (all but the seed) and one version of the plugin code.
* :func:`protocol_differences` and :func:`check_protocol`: the schemes of one task agree on the
  env package versions, the task plugin's code, the evaluation protocol (:data:`PROTOCOL_KEYS`, every
  ``env`` option, the set of seeds) and the budget (``steps``).
* :func:`scheme_differences`: what legitimately differs between the schemes of a task (their own
  hyperparameters, scheme options, tuned values), for the report to list.

Each check raises one line naming the task, the schemes or runs and the differing keys and values,
unless the caller says ``allow_mixed``. Configs are read from each run's ``config.json``.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.config import comparable
from harness.errors import HarnessError
from harness.provenance import UNKNOWN
from harness.results import RunDir

#: Packages whose version must agree within a task before its runs are averaged or compared.
ENV_PACKAGES = ("mpe2", "gymnasium-robotics", "mujoco", "pettingzoo")
#: Config keys of the evaluation protocol and the budget, which the schemes of a task must share
#: (every ``env.NAME`` task option too).
PROTOCOL_KEYS = ("steps", "eval_episodes", "eval_envs", "absolute_factor")
#: What identifies a run in the table of :func:`harness.report.load_runs`.
RUN_COLUMNS = ["task", "scheme", "seed", "run_dir", "env_versions", "config_hash", "code_hash"]
#: Config keys that name the comparison rather than a setting.
_IDENTITY = ("task", "scheme", "seed")

ALLOW_HINT = "pass --allow-mixed (allow_mixed=True) to compare them anyway"


def format_versions(versions: dict[str, str | None]) -> str:
    """The versions of :data:`ENV_PACKAGES` as one comparable string, e.g. ``mpe2=0.0.1; mujoco=3.2.0``."""
    return "; ".join(f"{name}={versions.get(name) or '-'}" for name in ENV_PACKAGES)


def runs_of(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the :data:`RUN_COLUMNS` the table has."""
    return df[[c for c in RUN_COLUMNS if c in df.columns]].drop_duplicates()


def _record(run_dir: str) -> dict[str, Any]:
    return RunDir(run_dir).read_config() or {}


def _value(v: Any) -> str:
    """A config value as the messages and tables show it: ``0.0005``, ``[128, 128]``, ``relu``."""
    if isinstance(v, float):
        return f"{v:g}"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def settings(record: dict[str, Any]) -> dict[str, str]:
    """A run's config as flat ``key -> value text``: ``env.NAME``, ``scheme.NAME`` and ``network.NAME``
    for the task, scheme and network options, without the seed, task, scheme and the keys that only
    say how a run is watched."""
    cfg = record.get("config") or {}
    out: dict[str, str] = {}
    prefixes = {"env": "env", "scheme_options": "scheme", "network_options": "network"}
    for key, value in comparable(cfg).items():
        if key in _IDENTITY:
            continue
        if key in prefixes and isinstance(value, dict):
            prefix = prefixes[key]
            out.update({f"{prefix}.{k}": _value(v) for k, v in sorted(value.items())})
        else:
            out[key] = _value(value)
    return out


def _protocol(record: dict[str, Any], env_versions: str) -> dict[str, str]:
    """What the schemes of a task must share, of one run (the seed apart)."""
    flat = settings(record)
    out = {k: flat.get(k, UNKNOWN) for k in PROTOCOL_KEYS}
    out.update({k: v for k, v in flat.items() if k.startswith("env.")})
    for item in env_versions.split("; ") if env_versions else []:
        name, _, version = item.partition("=")
        out[name] = version
    task_code = ((record.get("code") or {}).get("task") or {}).get("modules") or {}
    out["task plugin code"] = ", ".join(f"{m}={(sha or '?')[:8]}" for m, sha in sorted(task_code.items())) or UNKNOWN
    return out


def _by_scheme(values: dict[str, list[str]]) -> str:
    """``happo 20, mappo 40``: each scheme's value(s) of one key (``|``-joined where its runs differ)."""
    return ", ".join(f"{s} {'|'.join(sorted(set(v), key=_natural))}" for s, v in values.items())


def _natural(text: str) -> tuple[int, float | str]:
    try:
        return 0, float(text)
    except ValueError:
        return 1, text


def _differing(per_scheme: dict[str, list[dict[str, str]]], keys: list[str]) -> list[tuple[str, str]]:
    """``(key, "happo 20, mappo 40")`` for each key whose values are not the same set in every scheme."""
    out = []
    for key in keys:
        values = {s: [r.get(key, UNKNOWN) for r in runs] for s, runs in per_scheme.items()}
        if len({frozenset(v) for v in values.values()}) > 1:
            out.append((key, _by_scheme(values)))
    return out


def _compared(df: pd.DataFrame) -> dict[str, dict[str, list[tuple[int, dict[str, Any], str]]]]:
    """Per task with more than one scheme: ``{scheme: [(seed, config.json record, env_versions)]}``
    in seed order. Tables without ``run_dir`` (hand-made data) have none."""
    if "run_dir" not in df.columns:
        return {}
    out: dict[str, dict[str, list[tuple[int, dict[str, Any], str]]]] = {}
    for task, group in runs_of(df).groupby("task", sort=True):
        if group["scheme"].nunique() > 1:
            per_scheme = out.setdefault(str(task), {})
            for r in group.sort_values(["scheme", "seed"]).itertuples():
                per_scheme.setdefault(r.scheme, []).append((int(r.seed), _record(r.run_dir),
                                                            getattr(r, "env_versions", "")))
    return out


def protocol_differences(df: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """Per task whose schemes differ in evaluation protocol, budget, env package versions, task plugin
    code or set of seeds: ``[(key, "happo 20, mappo 40"), ...]``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for task, per_scheme in _compared(df).items():
        protocols = {s: [_protocol(record, versions) for _, record, versions in runs] for s, runs in per_scheme.items()}
        found = _differing(protocols, sorted({k for runs in protocols.values() for run in runs for k in run}))
        seeds = {s: [seed for seed, _, _ in runs] for s, runs in per_scheme.items()}
        if len({frozenset(v) for v in seeds.values()}) > 1:
            found.append(("seeds", ", ".join(f"{s} {','.join(map(str, v))}" for s, v in seeds.items())))
        if found:
            out[task] = found
    return out


def describe(differences: list[tuple[str, str]]) -> str:
    """``eval_episodes (happo 20, mappo 40); seeds (happo 1,2,3, mappo 1,2)``."""
    return "; ".join(f"{key} ({values})" for key, values in differences)


def check_protocol(df: pd.DataFrame) -> None:
    """Raise HarnessError when the schemes of a task were evaluated differently or on another budget
    (see :func:`protocol_differences`), naming the task, the schemes and the differing keys."""
    for task, found in protocol_differences(df).items():
        schemes = ", ".join(sorted(df[df["task"] == task]["scheme"].unique()))
        raise HarnessError(f"the schemes on {task} ({schemes}) were not run under one evaluation protocol and "
                           f"budget: {describe(found)}; rerun them alike or {ALLOW_HINT}")


def scheme_differences(df: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """Per task with more than one scheme: the settings other than the protocol's in which its schemes
    differ (their hyperparameters, scheme options, tuned values), ``[(key, "happo 0.0005, mappo 0.001")]``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for task, per_scheme in _compared(df).items():
        flat = {s: [settings(record) for _, record, _ in runs] for s, runs in per_scheme.items()}
        keys = sorted({k for runs in flat.values() for run in runs for k in run
                       if k not in PROTOCOL_KEYS and not k.startswith("env.")})
        out[task] = _differing(flat, keys)
    return out


# -- within one (task, scheme) -------------------------------------------------------------------

def check_versions(df: pd.DataFrame) -> None:
    """Raise HarnessError when the runs of one (task, scheme) used different env package versions,
    configs or plugin code.

    The message names the differing packages, keys or modules and the runs on each side. Tables
    without an ``env_versions`` column (hand-made data) are not checked.
    """
    if "env_versions" not in df.columns:
        return
    for (task, scheme), group in runs_of(df).groupby(["task", "scheme"], sort=True):
        if group["env_versions"].nunique() > 1:
            raise HarnessError(f"runs of {scheme} on {task} used different env package versions: "
                               f"{_describe_version_split(group)}; rerun them with one set of versions "
                               "or pass --allow-mixed (allow_mixed=True) to compare them anyway")
        if "config_hash" in group and group["config_hash"].nunique() > 1:
            raise HarnessError(f"runs of {scheme} on {task} used different configs: {_describe_config_split(group)}; "
                               "pass --allow-mixed (allow_mixed=True) to average them anyway")
        if "code_hash" in group and group["code_hash"].nunique() > 1:
            raise HarnessError(f"runs of {scheme} on {task} were made by different plugin code: "
                               f"{_describe_code_split(group)}; rerun them with one version of the plugins "
                               "or pass --allow-mixed (allow_mixed=True) to average them anyway")


def check_comparable(df: pd.DataFrame) -> None:
    """:func:`check_versions` within each (task, scheme), then :func:`check_protocol` across schemes."""
    check_versions(df)
    check_protocol(df)


def _describe_config_split(group: pd.DataFrame) -> str:
    """``lr=0.0005 in [a, b] vs lr=0.001 in [c]``, naming only the config keys that differ."""
    configs = []
    for run_dir in group["run_dir"]:
        cfg = _record(run_dir).get("config", {})
        configs.append({k: json.dumps(v, sort_keys=True) for k, v in cfg.items() if k != "seed"})
    return _describe_split(configs, sorted({k for c in configs for k in c}), group["run_dir"])


def _describe_code_split(group: pd.DataFrame) -> str:
    """``harness_plugins.mappo=1a2b3c4d in [a] vs harness_plugins.mappo=5e6f7a8b in [b]``, naming only
    the modules whose source hashes differ (``-``: a run that recorded none)."""
    hashes = []
    for run_dir in group["run_dir"]:
        code = _record(run_dir).get("code") or {}
        hashes.append({mod: (sha or "?")[:8] for part in code.values() for mod, sha in part.get("modules", {}).items()})
    return _describe_split(hashes, sorted({m for h in hashes for m in h}), group["run_dir"], missing=UNKNOWN)


def _describe_version_split(group: pd.DataFrame) -> str:
    """``mujoco=3.1.0 in [a, b] vs mujoco=3.2.0 in [c]``, naming only the packages that differ."""
    parsed = [dict(item.split("=", 1) for item in v.split("; ")) for v in group["env_versions"]]
    return _describe_split(parsed, list(ENV_PACKAGES), group["run_dir"])


def _describe_split(per_run: list[dict[str, Any]], keys: list[str], run_dirs: Any, missing: Any = None) -> str:
    """``k=v in [a, b] vs k=w in [c]``: the runs grouped by their values of those ``keys`` (in that
    order) on which they differ, ``missing`` standing for a key a run lacks."""
    differing = [k for k in keys if len({d.get(k, missing) for d in per_run}) > 1]
    sides: dict[str, list[str]] = {}
    for d, run_dir in zip(per_run, run_dirs):
        sides.setdefault(", ".join(f"{k}={d.get(k, missing)}" for k in differing), []).append(run_dir)
    return " vs ".join(f"{key} in [{', '.join(dirs)}]" for key, dirs in sides.items())
