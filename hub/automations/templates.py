"""Templates in a rule's parameters: ``{guest.name}`` filled from the facts."""

from __future__ import annotations

import re
from typing import Any

from hub.automations.facts import Facts
from hub.automations.menu import breakfast_for

_FIELD = re.compile(r"\{([a-z_]+\.[a-z_]+)\}")


def fields_of(template: str) -> list[str]:
    """The fields a template names, in order."""
    return _FIELD.findall(template)


def _lookup(facts: Facts, dotted: str) -> Any:
    head, _, tail = dotted.partition(".")
    if head == "room" and tail == "number":
        zone_id = str(facts.zone.get("id", ""))
        return zone_id.removeprefix("room-")
    if head == "suggestion" and tail == "breakfast":
        return breakfast_for(facts.prefs.get("dietary") or ())
    source = getattr(facts, head)
    return source.get(tail)


def render(value: Any, facts: Facts) -> Any:
    """Fill a parameter's templates; a whole-value template keeps its type (a number)."""
    if not isinstance(value, str):
        return value
    names = fields_of(value)
    if not names:
        return value
    if len(names) == 1 and value == "{" + names[0] + "}":
        return _lookup(facts, names[0])
    return _FIELD.sub(lambda m: str(_lookup(facts, m.group(1)) or ""), value)

