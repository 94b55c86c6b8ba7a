"""Which plugin code made a run: every loaded plugin, and hashes of the modules behind its parts.

Each run's ``config.json`` records, under ``plugins``, every plugin that was loaded (name, and the
distribution and version of an entry point, or the file and its SHA-256 of a ``--plugin`` file or
module), and under ``code`` the SHA-256 of the source files of the modules that gave the run's
scheme, task and network, with one ``code_digest`` over them. ``harness plot`` refuses to average
runs whose ``code_digest`` differs, so a plugin edited between runs of one suite is noticed.
"""

from __future__ import annotations

import hashlib
import sys
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
