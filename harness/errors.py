"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback;
:func:`plugin_call`, the one wrapper that turns an exception from a plugin's code into such a line; and
:func:`mask_secrets`, which every such line passes through so that no password or token is echoed."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator


class HarnessError(Exception):
    """A problem with the user's input or with a plugin, reported as a single line."""


class PluginError(HarnessError):
    """A plugin failed to load, registered a bad name or broke its contract."""


#: ``user:password@`` in a URL, well formed or not (``postgresql:/u:pw@host``, ``u:pw@host``).
_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*:/*)?(?P<user>[^\s:/@'\"]*):(?P<pw>(?!/)[^\s'\"]*)@")
#: ``password=...``, ``token: ...``, ``api_key=...`` (query parameters, key-value text).
_KEYVALUE = re.compile(r"(?i)(?<![A-Za-z0-9])((?:password|passwd|pwd|pass|secret|token|access[_-]?token|"
                       r"api[_-]?key|apikey|access[_-]?key|secret[_-]?key|auth)\s*[=:]\s*)[^\s&;,'\"]+")
#: ``Authorization: Bearer ...`` and ``Basic ...`` credentials.
_BEARER = re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9._~+/\-]{8,}=*")
#: Tokens recognisable by their prefix: GitHub, Slack, OpenAI-style, AWS access keys.
_TOKENS = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|"
                     r"sk-[A-Za-z0-9_\-]{20,}|AKIA[0-9A-Z]{16})")


def mask_secrets(text: str) -> str:
    """``text`` with what looks like a credential removed: the password of ``user:password@`` (with or
    without ``://``; ``user@`` is kept), and ``***`` for the value of ``password=``/``token=``/``api_key=`` and the like, a
    ``Bearer``/``Basic`` credential, and tokens known by their prefix. Anything echoed (an error line, a
    storage URL, a tracker's message) passes through it."""
    text = _USERINFO.sub(lambda m: f"{m['pre'] or ''}{m['user']}@", str(text))
    text = _KEYVALUE.sub(r"\1***", text)
    text = _BEARER.sub(r"\1***", text)
    return _TOKENS.sub("***", text)


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception on one line: the message's first line, cut at ``limit``
    characters (torch puts whole tensors in its messages)."""
    lines = mask_secrets(str(exc)).strip().splitlines()
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
