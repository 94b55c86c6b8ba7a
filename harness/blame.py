"""Naming the plugin behind an unexpected exception, from the plugin code its traceback passed through.

The core wraps the calls it expects to fail (a scheme's ``update``, a task factory, a hook) in
one-line errors; anything else a plugin raises while a command runs (a task's ``step``, an actor's
``act``, a tracker's ``log``) reaches :func:`harness.cli.main`, which asks :func:`blame` for the
innermost frame of a loaded plugin's module and reports that plugin, function and line in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import describe

#: Module name -> plugin name, for every plugin module loaded in this process.
PLUGIN_MODULES: dict[str, str] = {}


@dataclass
class Culprit:
    plugin: str
    function: str
    file: str
    line: int

    def message(self, exc: BaseException) -> str:
        return f"plugin {self.plugin!r} raised in {self.function} ({Path(self.file).name}:{self.line}): {describe(exc)}"


def blame(exc: BaseException) -> Culprit | None:
    """The innermost frame of ``exc``'s traceback that runs a loaded plugin's code, or None when no
    plugin code is on it (an error of the core itself)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        plugin = PLUGIN_MODULES.get(tb.tb_frame.f_globals.get("__name__", ""))
        if plugin is not None:
            code = tb.tb_frame.f_code
            found = Culprit(plugin, getattr(code, "co_qualname", code.co_name), code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found
