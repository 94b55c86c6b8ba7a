"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""


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
