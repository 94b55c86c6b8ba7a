"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback; and
:func:`plugin_call`, the one wrapper that turns an exception from a plugin's code into such a line."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class HarnessError(Exception):
    """A problem with the user's input or with a plugin, reported as a single line."""


class PluginError(HarnessError):
    """A plugin failed to load, registered a bad name or broke its contract."""


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception on one line: the message's first line, cut at ``limit``
    characters (torch puts whole tensors in its messages)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit or len(lines) > 1:
        text = text[:limit].rstrip() + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def plugin_call(what: str, keep: tuple[type[BaseException], ...] = (HarnessError,)) -> Iterator[None]:
    """Run a call into a plugin: an exception it raises becomes the :class:`PluginError` ``"<what>
    <Type>: <message>"``, where ``what`` names the plugin and the call (``"plugin 'x': task factory for
    'mpe/a' raised"``). Exceptions of the ``keep`` types pass unchanged: by default a
    :class:`HarnessError`, which is already a one-line message about the user's input (a task's
    option out of range); ``keep=()`` names the plugin on those too."""
    try:
        yield
    except keep:
        raise
    except Exception as exc:
        raise PluginError(f"{what} {describe(exc)}") from exc
