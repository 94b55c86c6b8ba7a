"""The plugin manager: loads built-in, installed and inline plugins and fills the registries.

Built-in plugins are declared in the ``happo_harness`` entry-point group of this distribution,
exactly as a third-party distribution declares its own; ``--plugin module_or_file.py`` adds a
plugin that is not installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pluggy

from harness import hookspecs, stopping
from harness.blame import PLUGIN_MODULES
from harness.errors import PluginError, describe, plugin_call
from harness.registry import Entry, Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT


@dataclass
class Registries:
    """Everything the plugins registered."""

    tasks: Registry
    networks: Registry
    schemes: Registry
    manager: pluggy.PluginManager
    executors: Registry = field(default_factory=lambda: Registry("executor"))
    loggers: Registry = field(default_factory=lambda: Registry("logger"))
    # One record per loaded plugin (see :func:`plugin_record`), in load order.
    plugins: list[dict[str, Any]] = field(default_factory=list)
    #: Installed plugins that failed to import (name -> why), and the distributions they came from
    #: (distribution -> plugin names), for commands that name a plugin (``check-plugin``).
    failed: dict[str, str] = field(default_factory=dict)
    failed_distributions: dict[str, list[str]] = field(default_factory=dict)

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Call every plugin's implementation of event hook ``hook`` (a plugin that raises is named)."""
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            with plugin_call(f"plugin {impl.plugin_name!r} raised in hook {hook}:", keep=()):
                impl.function(**kwargs)

    def emit_metrics(self, record: dict[str, Any], run_dir: Path | None) -> None:
        """Send one metrics record to every plugin's ``on_metrics`` hook."""
        self.emit("on_metrics", record=record, run_dir=run_dir)


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def module_file(module: Any) -> str | None:
    """The source file of a module object (None for built-in or namespace modules)."""
    path = getattr(module, "__file__", None)
    return str(Path(path).resolve()) if path else None


def plugin_record(name: str, module: Any, **source: Any) -> dict[str, Any]:
    """What identifies one loaded plugin: its name, where it came from, its file and that file's hash."""
    path = module_file(module)
    return {"name": name, **source, "file": path, "sha256": file_sha256(path) if path else None}


def _import_plugin(spec: str) -> Any:
    """Import a plugin given as a dotted module name or a path to a ``.py`` file (a stop request
    takes effect inside an import that hangs: :func:`harness.stopping.plugin_work`)."""
    with stopping.plugin_work(f"importing plugin {spec!r}"):
        return _import(spec)


def _import(spec: str) -> Any:
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise PluginError(f"plugin file {spec!r} does not exist")
            name = f"harness_inline_{path.stem}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except PluginError:
        raise
    except ModuleNotFoundError as exc:
        raise PluginError(f"plugin {spec!r} failed to import: {exc}") from exc
    except Exception as exc:  # a broken plugin must name itself, whatever it raised
        raise PluginError(f"plugin {spec!r} failed to import: {describe(exc)}") from exc


def _register(pm: pluggy.PluginManager, module: Any, name: str) -> None:
    PLUGIN_MODULES[getattr(module, "__name__", "")] = name  # so an exception from its code names it
    try:
        pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} has an invalid hook implementation: {exc}") from exc


def _call_registration(pm: pluggy.PluginManager, hook_name: str, registry: Registry) -> None:
    """Call each implementation of a registration hook separately, so entries know their plugin."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        plugin_name = impl.plugin_name

        def register(name: str, factory: Any, description: str = "", **extra: Any) -> None:
            registry.add(Entry(name, factory, plugin_name, description, extra))

        with plugin_call(f"plugin {plugin_name!r} raised in hook {hook_name}:", keep=(PluginError,)):
            returned = impl.function(register=register)
        if returned is not None:
            raise PluginError(f"plugin {plugin_name!r}: hook {hook_name} returned {type(returned).__name__}; "
                              "it must call register(name, factory, ...) and return None")


#: Entry-point plugins not to load, comma-separated (``harness --disable-plugin NAME`` adds to it).
DISABLE_ENV = "HARNESS_DISABLE_PLUGINS"
#: The pid of the ``harness`` command's own process: only it warns about plugins that failed to import
#: (its worker processes load the same plugins and would repeat the warning).
MAIN_PID_ENV = "HARNESS_MAIN_PID"


#: Installed plugins whose failure to import this process has warned about: each is said once, however
#: many times the plugins are loaded (``bench`` loads them for the suite and again for its runs).
_WARNED: set[str] = set()


def _warn_failed(name: str, why: str) -> None:
    """The one-line warning that installed plugin ``name`` was skipped, once per process, and only in
    the ``harness`` command's own process (its workers load the same plugins)."""
    if name in _WARNED or os.environ.get(MAIN_PID_ENV, str(os.getpid())) != str(os.getpid()):
        return
    _WARNED.add(name)
    print(f"harness: warning: plugin {name!r} skipped: {why} (disable it with --disable-plugin {name})",
          file=sys.stderr)


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def load_plugins(extra: Iterable[str] = (), entry_points: bool = True) -> Registries:
    """Create the plugin manager, load every plugin and return the filled registries.

    An installed (entry-point) plugin that fails to import is skipped with a one-line warning: the
    commands that do not use it work, and asking for a name it would have registered is a one-line
    error quoting the failure. Plugins named in ``HARNESS_DISABLE_PLUGINS`` are not loaded. A plugin
    given explicitly (``--plugin``) that fails to import is an error."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    records: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    failed_dists: dict[str, list[str]] = {}
    disabled = disabled_plugins()
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled:
                continue
            try:
                with stopping.plugin_work(f"importing plugin {ep.name!r}"):
                    module = ep.load()
            except Exception as exc:
                failed[ep.name] = f"entry point {ep.value} failed to import: {describe(exc)}"
                if ep.dist is not None and ep.dist.name != ep.name:
                    failed_dists.setdefault(ep.dist.name, []).append(ep.name)
                _warn_failed(ep.name, failed[ep.name])
                continue
            if pm.is_registered(module):
                continue
            _register(pm, module, ep.name)
            dist = ep.dist
            records.append(plugin_record(ep.name, module, source="entry point", entry_point=ep.value,
                                         distribution=dist.name if dist else None,
                                         version=dist.version if dist else None))
    for spec in extra:
        module = _import_plugin(spec)
        if pm.is_registered(module):
            continue
        name = Path(spec).stem if spec.endswith(".py") else spec
        if pm.get_plugin(name) is not None:
            raise PluginError(f"plugin {spec!r}: a plugin named {name!r} is already loaded")
        _register(pm, module, name)
        kind = "file" if spec.endswith(".py") or Path(spec).is_file() else "module"
        records.append(plugin_record(name, module, source=f"--plugin {kind}", spec=spec))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        known = ", ".join(sorted(n for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "happo_harness_spec", None)))
        raise PluginError(f"plugin {name!r} implements an unknown hook ({exc}); known hooks: {known}") from exc
    regs = Registries(Registry("task family"), Registry("network"), Registry("scheme"), pm, plugins=records,
                      failed=failed, failed_distributions=failed_dists)
    for registry in (regs.tasks, regs.networks, regs.schemes, regs.executors, regs.loggers):
        registry.failed = failed
    _call_registration(pm, "register_tasks", regs.tasks)
    _call_registration(pm, "register_networks", regs.networks)
    _call_registration(pm, "register_schemes", regs.schemes)
    _call_registration(pm, "register_executors", regs.executors)
    _call_registration(pm, "register_loggers", regs.loggers)
    return regs
