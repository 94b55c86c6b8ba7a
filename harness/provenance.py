"""Which plugin code made a run: every loaded plugin, and hashes of the modules behind its parts.

Each run's ``config.json`` records, under ``plugins``, every plugin that was loaded (name, and the
distribution and version of an entry point, or the file and its SHA-256 of a ``--plugin`` file or
module), and under ``code`` the SHA-256 of the source files of the modules that gave the run's
scheme, task and network, with one ``code_digest`` over them. ``harness plot`` refuses to average
runs whose ``code_digest`` differs, so a plugin edited between runs of one suite is noticed.

What a run records is never an instruction: ``harness eval`` loads only the plugins the user names
(``--plugin``) or has installed, and says which recorded plugin is not loaded or differs by its
hash (:func:`plugin_gaps`, :func:`missing_parts`).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from harness.plugins import file_sha256, module_file

#: config.json value for runs written before code digests were recorded.
UNKNOWN = "-"


def code_record(regs: Any, cfg: Any) -> dict[str, Any]:
    """For the run's scheme, task family and network: the registering plugin and the SHA-256 of the
    source of the module(s) behind it (the module defining the factory, and the plugin module)."""
    family = cfg.task.partition("/")[0]
    parts: dict[str, Any] = {}
    for kind, registry, name in (("scheme", regs.schemes, cfg.scheme), ("task", regs.tasks, family),
                                 ("network", regs.networks, cfg.network)):
        entry = registry.get(name)
        modules = {getattr(entry.factory, "__module__", None): sys.modules.get(getattr(entry.factory, "__module__", ""))}
        plugin = regs.manager.get_plugin(entry.plugin)
        if plugin is not None:
            modules[getattr(plugin, "__name__", entry.plugin)] = plugin
        hashes = {str(mod_name): file_sha256(module_file(mod)) if module_file(mod) else None
                  for mod_name, mod in sorted(modules.items(), key=lambda kv: str(kv[0])) if mod is not None}
        parts[kind] = {"name": name, "plugin": entry.plugin, "modules": hashes}
    return parts


def code_digest(code: dict[str, Any]) -> str:
    """A short hash of :func:`code_record`'s module hashes: equal for runs made by the same plugin code."""
    text = "\n".join(f"{kind}:{mod}:{sha}" for kind in sorted(code)
                     for mod, sha in sorted(code[kind]["modules"].items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _short(value: Any, limit: int = 80) -> str:
    """A recorded value as it is echoed: repr'd (no newline or control character gets through), cut."""
    text = repr(str(value))
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _recorded_name(entry: dict[str, Any]) -> str:
    spec = str(entry.get("spec") or "")
    return str(entry.get("name") or (Path(spec).stem if spec.endswith(".py") else spec))


def recorded_plugins(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The plugins a run's ``config.json`` records (name -> entry); anything malformed is left out."""
    entries = record.get("plugins") if isinstance(record.get("plugins"), list) else []
    return {_recorded_name(p): p for p in entries if isinstance(p, dict) and _recorded_name(p)}


def plugin_gaps(record: dict[str, Any], regs: Any) -> list[str]:
    """How the plugins a run records differ from those loaded now: each one that is not loaded, and
    each whose file's SHA-256 differs. A recorded plugin is provenance only: it is never imported."""
    loaded = {p["name"]: p for p in regs.plugins}
    gaps = []
    for name, entry in recorded_plugins(record).items():
        where = _short(entry.get("spec") or entry.get("entry_point") or entry.get("file") or "?")
        if name not in loaded:
            gaps.append(f"{_short(name)} ({_short(entry.get('source', '?'))} {where}) is not loaded")
        elif entry.get("sha256") != loaded[name].get("sha256"):
            gaps.append(f"{_short(name)} differs (sha256 {_short(entry.get('sha256'), 20)} recorded, "
                        f"{str(loaded[name].get('sha256'))[:12]}... loaded)")
    return gaps


def missing_parts(record: dict[str, Any], regs: Any, cfg: Any) -> str | None:
    """A one-line reason when the run's scheme, task family or network is not registered by the loaded
    plugins (naming the recorded plugin that gave it), else None."""
    family = cfg.task.partition("/")[0]
    code = record.get("code") if isinstance(record.get("code"), dict) else {}
    recorded = recorded_plugins(record)
    for kind, registry, name in (("scheme", regs.schemes, cfg.scheme), ("task family", regs.tasks, family),
                                 ("network", regs.networks, cfg.network)):
        if name in registry or name in registry.failed:
            continue  # a broken installed plugin's own error says more (Registry.get)
        part = code.get(kind.split()[0]) if isinstance(code.get(kind.split()[0]), dict) else {}
        plugin = str(part.get("plugin") or "")
        entry = recorded.get(plugin)
        source = (f" of plugin {_short(plugin)} ({_short(entry.get('source', '?'))} "
                  f"{_short(entry.get('spec') or entry.get('file') or '?', 240)})" if entry else
                  f" of plugin {_short(plugin)}" if plugin else "")
        return (f"the run's {kind} {_short(name)}{source} is not registered by the loaded plugins, and a plugin "
                "a run records is never imported: pass it with --plugin if you trust its code, or install it")
    return None
