"""Declared options and their one resolver: task options (``env.NAME``), a scheme's own options
(``scheme.NAME``) and executor options all go through :func:`resolve`.

A plugin declares each option as an :class:`Option` (type, default, help, and for numbers the
range accepted: ``low``/``high``, inclusive); what a user gives (often a string from the command
line) is converted with :func:`coerce`, and an unknown name, a wrong type, a number that is not
finite or one outside its range is a one-line error naming the value and what is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import HarnessError


@dataclass(frozen=True)
class Option:
    """A declared option: its type, default and help text; a number's range ``low`` to ``high``
    (inclusive; None: unbounded on that side)."""

    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None

    def check(self, name: str, value: Any) -> Any:
        """``value`` (already of the option's type) if it lies in the declared range; a float must be
        finite. Else a one-line error naming ``name=value`` and the range."""
        if self.type not in (int, float) or isinstance(value, bool):
            return value
        accepted = self.range_text()
        if isinstance(value, float) and not math.isfinite(value):
            raise HarnessError(f"{name}={value} must be a finite number" + (f" {accepted}" if accepted else ""))
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise HarnessError(f"{name}={value} must be {accepted}")
        return value

    def range_text(self) -> str:
        """The range accepted: ``from 0 to 1``, ``>= 0``, ``<= 10``, or '' when unbounded."""
        if self.low is not None and self.high is not None:
            return f"from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        return f"<= {self.high:g}" if self.high is not None else ""


def resolve(schema: dict[str, Option], given: dict[str, Any], label: Callable[[str], str],
            unknown: Callable[[str, list[str]], str]) -> dict[str, Any]:
    """Every declared option's value: its default, or what ``given`` says converted to its type.

    ``label(name)`` is how a value is named in a type error (``env.x``), ``unknown(name, known)`` the
    message for a name the schema lacks (``known``: the declared names, sorted)."""
    for key in given:
        if key not in schema:
            raise HarnessError(unknown(key, sorted(schema)))
    out = {k: o.default for k, o in schema.items()}
    out.update({k: schema[k].check(label(k), coerce(label(k), v, schema[k].type)) for k, v in given.items()})
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


