"""Declared options and their one resolver: task options (``env.NAME``), a scheme's own options
(``scheme.NAME``) and executor options all go through :func:`resolve`.

A plugin declares each option as an :class:`Option` (type, default, help); what a user gives (often a
string from the command line) is converted with :func:`coerce`, and an unknown name or a wrong type
is a one-line error naming the value and what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import HarnessError


@dataclass(frozen=True)
class Option:
    """A declared option: its type, default and help text."""

    type: type
    default: Any
    help: str


def resolve(schema: dict[str, Option], given: dict[str, Any], label: Callable[[str], str],
            unknown: Callable[[str, list[str]], str]) -> dict[str, Any]:
    """Every declared option's value: its default, or what ``given`` says converted to its type.

    ``label(name)`` is how a value is named in a type error (``env.x``), ``unknown(name, known)`` the
    message for a name the schema lacks (``known``: the declared names, sorted)."""
    for key in given:
        if key not in schema:
            raise HarnessError(unknown(key, sorted(schema)))
    out = {k: o.default for k, o in schema.items()}
    out.update({k: coerce(label(k), v, schema[k].type) for k, v in given.items()})
    return out


def resolve_options(family: str, given: dict[str, Any], schema: dict[str, Option]) -> dict[str, Any]:
    """Check user-given task options against a task family's schema (a task plugin calls this)."""
    return resolve(schema, given, lambda k: f"env.{k}",
                   lambda k, known: f"unknown option env.{k} for task family {family!r}; "
                                    f"known: {', '.join(known) or '(none)'}")


def coerce(name: str, value: Any, typ: type) -> Any:
    """Convert ``value`` (often a string from the command line) to ``typ`` or raise a one-line error."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise HarnessError(f"{name}={value!r} is not a boolean (use true or false)")
    if typ is int:
        if isinstance(value, bool):
            raise HarnessError(f"{name}={value!r} is not an integer")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip().replace("_", ""))
        except (TypeError, ValueError):
            raise HarnessError(f"{name}={value!r} is not an integer") from None
    if typ is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise HarnessError(f"{name}={value!r} is not a number") from None
    if typ is str:
        return str(value)
    raise HarnessError(f"{name}: unsupported option type {typ.__name__}")


