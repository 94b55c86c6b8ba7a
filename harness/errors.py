"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""


class HarnessError(Exception):
    """A problem with the user's input or with a plugin, reported as a single line."""


class PluginError(HarnessError):
    """A plugin failed to load, registered a bad name or broke its contract."""
