"""Named registries of factories, one per kind of plugin contribution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError, PluginError


@dataclass(frozen=True)
class Entry:
    """One registered factory and who provided it."""

    name: str
    factory: Any
    plugin: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Maps names to entries of one kind (task family, network, update scheme)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        # Installed plugins that failed to import (name -> why): an unknown name may be theirs.
        self.failed: dict[str, str] = {}

    def add(self, entry: Entry) -> None:
        """Add an entry; a name registered twice is an error naming both plugins."""
        if not isinstance(entry.name, str) or not entry.name or "/" in entry.name:
            raise PluginError(
                f"plugin {entry.plugin!r} registered an invalid {self.kind} name {entry.name!r} "
                "(expected a non-empty string without '/')"
            )
        if not callable(entry.factory):
            raise PluginError(
                f"plugin {entry.plugin!r} registered {self.kind} {entry.name!r} with a non-callable "
                f"factory {entry.factory!r}"
            )
        old = self._entries.get(entry.name)
        if old is not None:
            raise PluginError(
                f"plugin {entry.plugin!r} registered {self.kind} {entry.name!r}, "
                f"already registered by plugin {old.plugin!r}"
            )
        self._entries[entry.name] = entry

    def get(self, name: str) -> Entry:
        """Return the entry for ``name`` or raise an error listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            broken = "".join(f"; plugin {p!r} would be missing: {why}" for p, why in sorted(self.failed.items()))
            raise HarnessError(f"unknown {self.kind} {name!r}; known: {known}{broken}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)
