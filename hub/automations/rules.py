"""A rule as staff define it, and the check of what it means before it is saved.

A rule has a trigger (what happened, with filters; or a daily time, ``schedule``),
conditions (about the guest, their consent, the time, counters) and actions (a command
to a device of the room or a named device, a greeting, a notification to the guest, an
alert to staff, an offer), whose parameters are templates over the facts:
``{guest.name}``, ``{prefs.room_temperature_c}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.automations.templates import fields_of
from hub.automations.vocabulary import (
    ACTIONS,
    CONDITIONS,
    COUNTERS,
    HEALTH_COUNTERS,
    NUMERIC_FIELDS,
    PERSONAL_HEADS,
    PURPOSES,
    READINGS,
    SELF,
    TEMPLATE_FIELDS,
    TRIGGERS,
    ActionKind,
    Purpose,
    TriggerKind,
)


@dataclass(frozen=True)
class Action:
    """What to do; ``target`` is a device id, ``room:<kind>`` for the guest's room's device,
    or ``self`` for the device the event came from."""

    kind: ActionKind
    target: str | None = None
    name: str | None = None  # the command's name
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One automation, as staff define it (stored, imported and exported as YAML)."""

    id: str
    name: str
    purpose: Purpose
    trigger: TriggerKind
    filters: Mapping[str, Any] = field(default_factory=dict)
    conditions: Sequence[Mapping[str, Any]] = ()
    actions: Sequence[Action] = ()
    enabled: bool = True


class RuleError(ValueError):
    """A rule that cannot be saved, with every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)



def validate(rule: Rule, *, known_devices: Iterable[str]) -> None:
    """Raise RuleError naming every unknown trigger, condition, device, field or template."""
    problems: list[str] = []
    devices = set(known_devices)
    if rule.trigger not in TRIGGERS:
        problems.append(f"unknown trigger {rule.trigger!r}")
    if rule.purpose not in PURPOSES:
        problems.append(f"unknown purpose {rule.purpose!r}")
    for key in rule.filters:
        if key.partition(".")[0] not in {"zone", "device", "event", "reading", "guest"}:
            problems.append(f"unknown filter field {key!r}")
    if rule.trigger == "schedule":
        at = rule.filters.get("event.schedule")
        if not isinstance(at, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
            problems.append("a schedule rule needs the filter event.schedule: 'HH:MM' "
                            "(venue time, quoted)")
    for condition in rule.conditions:
        if condition.get("kind") not in CONDITIONS:
            problems.append(f"unknown condition {condition.get('kind')!r}")
        elif condition["kind"] in ("counter_at_least", "counter_is") and \
                condition.get("counter") not in COUNTERS:
            problems.append(f"unknown counter {condition['counter']!r}"
                            if "counter" in condition else f"{condition['kind']} needs a counter")
        elif condition["kind"] == "reading_above" and condition.get("field") not in READINGS:
            problems.append(f"unknown reading {condition['field']!r}"
                            if "field" in condition else "reading_above needs a field")
        elif condition["kind"] == "reading_above" and not _numeric(condition.get("limit")):
            problems.append("reading_above needs a limit: a number or one template of a "
                            f"number ({', '.join(sorted(NUMERIC_FIELDS))})")
        for value in _strings(condition):
            for name in fields_of(value):
                if name not in TEMPLATE_FIELDS:
                    problems.append(f"unknown template variable {{{name}}}")
    if rule.purpose == "service":
        problems += _personal_in_service(rule)
    if not rule.actions:
        problems.append("a rule needs at least one action")
    for action in rule.actions:
        if action.kind not in ACTIONS:
            problems.append(f"unknown action {action.kind!r}")
        if action.kind == "command" and not action.name:
            problems.append("a command action needs a name")
        target = action.target
        if target and target != SELF and not target.startswith("room:") \
                and target not in devices:
            problems.append(f"unknown device {target!r}")
        for value in _strings(action.params):
            for name in fields_of(value):
                if name not in TEMPLATE_FIELDS:
                    problems.append(f"unknown template variable {{{name}}}")
    if problems:
        raise RuleError(problems)


def _numeric(limit: Any) -> bool:
    if isinstance(limit, bool):
        return False
    if isinstance(limit, int | float):
        return True
    # An unknown template variable is reported as such, not twice.
    return isinstance(limit, str) and len(names := fields_of(limit)) == 1 and \
        limit == "{" + names[0] + "}" and (names[0] in NUMERIC_FIELDS
                                           or names[0] not in TEMPLATE_FIELDS)


def _personal_in_service(rule: Rule) -> list[str]:
    """A service rule runs without consent: it may not use what needs consent."""
    problems = []
    for condition in rule.conditions:
        if condition.get("kind") in ("preference_set", "reading_above"):
            problems.append(f"a service rule may not use {condition['kind']}: it needs the "
                            "guest's consent (give the rule that purpose)")
    values = [*_strings(rule.filters), *(v for c in rule.conditions for v in _strings(c)),
              *(v for a in rule.actions for v in _strings(a.params))]
    keys = list(rule.filters)
    for name in sorted({n for v in values for n in fields_of(v)} | set(keys)):
        if name.partition(".")[0] in PERSONAL_HEADS or name in HEALTH_COUNTERS:
            problems.append(f"a service rule may not use {name}: it needs the guest's "
                            "consent (give the rule that purpose)")
    return problems


def _strings(params: Mapping[str, Any]) -> list[str]:
    return [v for v in params.values() if isinstance(v, str)]

