"""A scheme's own settings: the options it declares and the core keys it fixes.

A scheme registers ``options={"kl_threshold": Option(float, 0.01, "help"), ...}`` (set by users as
``scheme.kl_threshold=0.02``, in a suite's ``[config]`` or searched by a sweep) and ``fixed={"ppo_epochs":
1}`` for core keys it does not use as configured. :func:`resolve_scheme_config` turns a config into
what runs: the options filled with their defaults and type-checked (and range-checked by the
scheme class's ``check_options(options)`` when it has one), the fixed keys set, and the task
options given (``env.NAME``) converted to the types the task family declares (``"true"``, ``True`` and
``1`` for a boolean option are one value), so the config (and its digest, and ``config.json``) says
what ran and equal settings hash equal. It is idempotent, and every place that compares
a run with what a suite asks resolves first.

A network registers ``options={...}`` the same way (set as ``network.layer_norm=false``, read by its builder
from ``config.network_options``); :func:`resolve_network_options` (called by
:func:`resolve_scheme_config`) fills and checks them against the run's network. A network that had
no options before may register ``legacy={...}``: the option values that compute what it computed
then; the config records them under ``network_legacy`` and its digest leaves options at those values
out, so runs made before the network declared options keep their digests.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from harness.config import FIELDS, TrainConfig, apply_override
from harness.options import Option, coerce, resolve
from harness.replay import is_off_policy
from harness.sequences import check_chunking, hidden_size
from harness.task_api import ActionSpace
from harness.tasks import split_task
from harness.errors import HarnessError, PluginError


def declared(entry: Any) -> tuple[dict[str, Option], dict[str, Any]]:
    """The options and fixed keys a scheme's registry entry declares (checked: a plugin's mistake is
    named as the plugin's)."""
    options = entry.extra.get("options") or {}
    fixed = entry.extra.get("fixed") or {}
    where = f"plugin {entry.plugin!r}: scheme {entry.name!r}"
    if not isinstance(options, dict) or not all(isinstance(o, Option) for o in options.values()):
        raise PluginError(f"{where} registered options={options!r}; expected a dict of harness.options.Option")
    if not isinstance(fixed, dict):
        raise PluginError(f"{where} registered fixed={fixed!r}; expected a dict of config keys and values")
    clash = sorted(set(options) & set(FIELDS))
    if clash:
        raise PluginError(f"{where} declares option {clash[0]!r}, which is a core config key; choose another name")
    unknown = sorted(set(fixed) - set(FIELDS))
    if unknown:
        raise PluginError(f"{where} fixes {unknown[0]!r}, which is not a config key")
    return options, fixed


def declared_network(entry: Any) -> tuple[dict[str, Option], dict[str, Any]]:
    """The options a network's registry entry declares and its ``legacy`` values (checked: a plugin's
    mistake is named as the plugin's)."""
    options = entry.extra.get("options") or {}
    legacy = entry.extra.get("legacy") or {}
    where = f"plugin {entry.plugin!r}: network {entry.name!r}"
    if not isinstance(options, dict) or not all(isinstance(k, str) and k and "." not in k and isinstance(o, Option)
                                                for k, o in options.items()):
        raise PluginError(f"{where} registered options={options!r}; expected a dict of harness.options.Option "
                          "by option name")
    if not isinstance(legacy, dict) or set(legacy) - set(options):
        raise PluginError(f"{where} registered legacy={legacy!r}; expected a dict of values of its declared options "
                          f"({', '.join(sorted(options)) or 'none'})")
    try:
        checked = {k: options[k].check(f"network.{k}", coerce(f"network.{k}", v, options[k].type))
                   for k, v in legacy.items()}
    except HarnessError as exc:
        raise PluginError(f"{where} registered legacy={legacy!r}: {exc}") from None
    return options, checked


def resolve_network_options(cfg: TrainConfig, regs: Any) -> None:
    """Fill ``cfg.network_options`` with the network's defaults, each value given converted to its
    declared type and range-checked: an unknown name (or any option of a network that declares none),
    a wrong type or a value out of range is a one-line error naming ``network.NAME=value`` and what
    the network accepts. Sets ``cfg.network_legacy`` from the network's registration."""
    entry = regs.networks.get(cfg.network)
    options, legacy = declared_network(entry)
    given = dict(cfg.network_options)

    def unknown(key: str, known: list[str]) -> str:
        head = f"network.{key}={given[key]}: "
        if not known:
            return head + f"network {cfg.network!r} declares no options"
        return head + f"unknown option of network {cfg.network!r}; its options: " + ", ".join(f"network.{n}" for n in known)

    full = {**{k: o.default for k, o in options.items()}, **given}  # defaults converted too
    cfg.network_options = resolve(options, full, lambda k: f"network.{k}", unknown)
    cfg.network_legacy = dict(legacy)


def resolve_scheme_config(cfg: TrainConfig, regs: Any) -> dict[str, dict[str, Any]]:
    """Fill ``cfg.scheme_options`` with the scheme's defaults (an unknown name or a wrong type is a
    one-line error naming the scheme and what it accepts) and set the keys it fixes; fill and check
    the network's options (:func:`resolve_network_options`). Returns the fixed keys whose asked value
    differed, ``{key: {"asked": a, "ran": b}}``, for the run's record."""
    cfg.env = typed_task_options(cfg, regs)
    entry = regs.schemes.get(cfg.scheme)
    options, fixed = declared(entry)
    given = {**{k: o.default for k, o in options.items()}, **cfg.scheme_options}  # defaults converted too
    cfg.scheme_options = resolve(options, given, lambda k: f"scheme.{k}",
                                 lambda k, known: f"unknown option scheme.{k} for scheme {cfg.scheme!r}; its options: "
                                                  + (", ".join(f"scheme.{n}" for n in known) or "none"))
    for name, value in cfg.scheme_options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise HarnessError(f"scheme.{name}={value} must be a finite number")
    check = getattr(entry.factory, "check_options", None)
    if callable(check):  # the scheme's own range checks, before any work
        check(dict(cfg.scheme_options))
    changed = {}
    for key, value in fixed.items():
        asked = getattr(cfg, key)
        apply_override(cfg, key, value)
        if getattr(cfg, key) != asked:
            changed[key] = {"asked": asked, "ran": getattr(cfg, key)}
    resolve_network_options(cfg, regs)
    cfg.validate()
    check_recurrence(cfg, regs, entry.factory)
    return changed


#: The action spaces a network is probed with (a network may take only one kind).
PROBES = (ActionSpace(kind="discrete", n=2), ActionSpace(kind="box", n=2, low=[-1.0, -1.0], high=[1.0, 1.0]))


def check_recurrence(cfg: TrainConfig, regs: Any, scheme_class: Any) -> None:
    """Before any work (a suite's ``--dry-run`` too): when the run's network builds recurrent actors
    (probed on a small one), an off-policy scheme is refused, and so is a ``rollout_length`` its
    chunks do not tile. A network that cannot build the probe is left to the run's own build."""
    small = copy.copy(cfg)
    small.hidden_sizes = [8]
    probe = None
    for space in PROBES:
        try:
            probe = regs.networks.get(cfg.network).factory().actor(4, space, small)
            break
        except Exception:  # noqa: BLE001 - the run's own build names the plugin and its error
            continue
    if probe is None or not hidden_size(probe):
        return
    if is_off_policy(scheme_class):
        raise HarnessError(f"network {cfg.network!r} builds recurrent actors; off-policy scheme {cfg.scheme!r} learns "
                           "from single transitions and cannot train them (use a feed-forward network)")
    check_chunking([probe], cfg.rollout_length, cfg.network)


def typed_task_options(cfg: TrainConfig, regs: Any) -> dict[str, Any]:
    """``cfg.env`` with each option its task family declares in the declared type (a value that does
    not convert is a one-line error naming it); names the family does not declare are left for the
    task's own check, and so is a task or family that is not registered."""
    try:
        schema = regs.tasks.get(split_task(cfg.task)[0]).extra.get("options") or {}
    except HarnessError:
        return dict(cfg.env)
    return {k: coerce(f"env.{k}", v, schema[k].type) if isinstance(schema.get(k), Option) else v
            for k, v in cfg.env.items()}


def option_help(regs: Any) -> dict[str, list[str]]:
    """Per scheme, one help line per option and fixed key (for ``train --help`` and ``plugins``)."""
    out = {}
    for entry in regs.schemes:
        try:
            options, fixed = declared(entry)
        except PluginError:
            continue
        lines = [f"scheme.{n}: {o.help} [{o.type.__name__}, default: {o.default}]"
                 + (f" ({o.range_text()})" if o.range_text() else "") for n, o in options.items()]
        lines += [f"{k} is fixed at {v}" for k, v in fixed.items()]
        if lines:
            out[entry.name] = lines
    return out


def network_option_help(regs: Any) -> dict[str, list[str]]:
    """Per network, one help line per declared option (for ``train --help``)."""
    out = {}
    for entry in regs.networks:
        try:
            options, _ = declared_network(entry)
        except PluginError:
            continue
        lines = [f"network.{n}: {o.help} [{o.type.__name__}, default: {o.default}]"
                 + (f" ({o.range_text()})" if o.range_text() else "") for n, o in options.items()]
        if lines:
            out[entry.name] = lines
    return out


def resolved(cfg: TrainConfig, regs: Any) -> TrainConfig:
    """A resolved copy of ``cfg`` (what a run of it records), leaving ``cfg`` as given."""
    out = copy.deepcopy(cfg)
    resolve_scheme_config(out, regs)
    return out
