"""Automations: rules that turn what happened into actions. Pure: no I/O, the clock passed in.

A rule has a trigger (what happened, with filters), conditions (about the guest, their
consent, the time, counters) and actions (a command to a device of the room or a named
device, a greeting, a notification to the guest, an alert to staff, an offer), whose
parameters are templates over the facts: ``{guest.name}``, ``{prefs.room_temperature_c}``.

No rule whose purpose needs consent fires without that consent: :func:`plan` checks
the purpose before anything else, so withdrawing consent takes effect on the next event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal

TriggerKind = Literal["entry_allowed", "entry_denied", "payment_approved", "telemetry"]
ActionKind = Literal["command", "greet", "notify_guest", "alert_staff", "offer"]
# "service" rules use no personal data of a consent purpose (a stuck guest at a door):
# they always run; every other purpose needs the guest's consent.
Purpose = Literal["personalization", "offers", "health", "analytics", "service"]

TRIGGERS: frozenset[str] = frozenset(TriggerKind.__args__)  # type: ignore[attr-defined]
ACTIONS: frozenset[str] = frozenset(ActionKind.__args__)  # type: ignore[attr-defined]
PURPOSES: frozenset[str] = frozenset(Purpose.__args__)  # type: ignore[attr-defined]
CONDITIONS = frozenset({"first_entry_of_stay", "time_between", "counter_at_least",
                        "preference_set", "reading_above"})
# What templates may name: the facts :func:`plan` is given.
TEMPLATE_FIELDS = frozenset({
    "guest.id", "guest.name", "guest.display_name",
    "prefs.room_temperature_c", "prefs.lighting_scene", "prefs.language", "prefs.dietary",
    "prefs.heart_rate_threshold",
    "zone.id", "zone.kind", "room.number", "device.id", "device.kind",
    "event.reason", "event.merchant_id", "event.amount",
    "reading.value", "counters.visits", "counters.entries",
})


@dataclass(frozen=True)
class Action:
    """What to do; ``target`` is a device id, or ``room:<kind>`` for the room's device."""

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


@dataclass(frozen=True)
class Facts:
    """What happened, with everything a rule may look at."""

    trigger: TriggerKind
    now: datetime
    guest: Mapping[str, Any] = field(default_factory=dict)
    prefs: Mapping[str, Any] = field(default_factory=dict)
    consents: frozenset[str] = frozenset()
    zone: Mapping[str, Any] = field(default_factory=dict)
    device: Mapping[str, Any] = field(default_factory=dict)
    event: Mapping[str, Any] = field(default_factory=dict)
    reading: Mapping[str, Any] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    room_devices: Mapping[str, str] = field(default_factory=dict)  # kind -> device id


@dataclass(frozen=True)
class Planned:
    """An action resolved against the facts: ready for the runner to carry out."""

    rule_id: str
    kind: ActionKind
    device_id: str | None
    name: str | None
    params: Mapping[str, Any]


class RuleError(ValueError):
    """A rule that cannot be saved, with every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# ------------------------------------------------------------------ templates


_FIELD = re.compile(r"\{([a-z_]+\.[a-z_]+)\}")


def _fields_of(template: str) -> list[str]:
    return _FIELD.findall(template)


def _lookup(facts: Facts, dotted: str) -> Any:
    head, _, tail = dotted.partition(".")
    if head == "room" and tail == "number":
        zone_id = str(facts.zone.get("id", ""))
        return zone_id.removeprefix("room-")
    source = getattr(facts, head)
    return source.get(tail)


def render(value: Any, facts: Facts) -> Any:
    """Fill a parameter's templates; a whole-value template keeps its type (a number)."""
    if not isinstance(value, str):
        return value
    names = _fields_of(value)
    if not names:
        return value
    if len(names) == 1 and value == "{" + names[0] + "}":
        return _lookup(facts, names[0])
    return _FIELD.sub(lambda m: str(_lookup(facts, m.group(1)) or ""), value)


# ------------------------------------------------------------------ matching


def _matches(rule: Rule, facts: Facts) -> bool:
    if not rule.enabled or rule.trigger != facts.trigger:
        return False
    for key, wanted in rule.filters.items():
        head, _, tail = key.partition(".")
        source = getattr(facts, head, None)
        if not isinstance(source, Mapping) or source.get(tail) != wanted:
            return False
    return True


def _holds(condition: Mapping[str, Any], facts: Facts) -> bool:
    kind = condition["kind"]
    if kind == "first_entry_of_stay":
        return facts.counters.get("entries", 0) == 1
    if kind == "time_between":
        local = facts.now.timetz().replace(tzinfo=None)
        return time.fromisoformat(condition["start"]) <= local < time.fromisoformat(
            condition["end"])
    if kind == "counter_at_least":
        return facts.counters.get(condition["counter"], 0) >= int(condition["value"])
    if kind == "preference_set":
        return facts.prefs.get(condition["preference"]) not in (None, "", [])
    if kind == "reading_above":
        value, limit = facts.reading.get("value"), render(condition["limit"], facts)
        return value is not None and limit is not None and float(value) > float(limit)
    return False


def plan(rules: Iterable[Rule], facts: Facts) -> list[Planned]:
    """The actions every matching rule asks for, in rule order; consent is checked first."""
    planned: list[Planned] = []
    for rule in rules:
        consented = rule.purpose == "service" or rule.purpose in facts.consents
        if not consented or not _matches(rule, facts):
            continue
        if not all(_holds(c, facts) for c in rule.conditions):
            continue
        for action in rule.actions:
            target = action.target
            device = facts.room_devices.get(target.split(":", 1)[1]) if target and \
                target.startswith("room:") else target
            if target and device is None:
                continue  # the room has no such device: nothing to command
            params = {k: render(v, facts) for k, v in action.params.items()}
            planned.append(Planned(rule.id, action.kind, device, action.name, params))
    return planned


# ----------------------------------------------------------------- validation


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
    for condition in rule.conditions:
        if condition.get("kind") not in CONDITIONS:
            problems.append(f"unknown condition {condition.get('kind')!r}")
    if not rule.actions:
        problems.append("a rule needs at least one action")
    for action in rule.actions:
        if action.kind not in ACTIONS:
            problems.append(f"unknown action {action.kind!r}")
        if action.kind == "command" and not action.name:
            problems.append("a command action needs a name")
        target = action.target
        if target and not target.startswith("room:") and target not in devices:
            problems.append(f"unknown device {target!r}")
        for value in _strings(action.params):
            for name in _fields_of(value):
                if name not in TEMPLATE_FIELDS:
                    problems.append(f"unknown template variable {{{name}}}")
    if problems:
        raise RuleError(problems)


def _strings(params: Mapping[str, Any]) -> list[str]:
    return [v for v in params.values() if isinstance(v, str)]


# ------------------------------------------------------------------- learning


def learned_temperature(preferred: float | None, manual_setpoints: Sequence[float], *,
                        times: int = 3) -> float | None:
    """The new preferred temperature when a guest's last ``times`` manual changes all went
    the same way from it (all warmer, or all cooler); None when nothing is to be learned.

    Like a learning thermostat: automatic, with the guest's hand as the override it learns
    from. The new preference is the mean of those changes, to the half degree.
    """
    recent = list(manual_setpoints)[-times:]
    if len(recent) < times:
        return None
    if preferred is None:
        preferred = recent[0]
    if all(s > preferred for s in recent) or all(s < preferred for s in recent):
        learned = round(sum(recent) / len(recent) * 2) / 2
        return learned if learned != preferred else None
    return None


# -------------------------------------------------------------- the shipped set


def room_welcome() -> Rule:
    """On the first door entry of a stay: the room takes the guest's taste, the display greets."""
    return Rule(
        id="room-welcome", name="Room welcome", purpose="personalization",
        trigger="entry_allowed", filters={"device.kind": "door_lock", "zone.kind": "room"},
        conditions=({"kind": "first_entry_of_stay"},),
        actions=(
            Action("command", "room:thermostat", "set_temperature",
                   {"celsius": "{prefs.room_temperature_c}", "source": "automation"}),
            Action("command", "room:light", "set_scene",
                   {"scene": "{prefs.lighting_scene}", "source": "automation"}),
            Action("command", "room:display", "show",
                   {"text": "Welcome, {guest.display_name}", "kind": "greeting"}),
        ),
    )


def stuck_guest(threshold: int = 2) -> Rule:
    """Two or more denied taps at one door within two minutes: someone should help."""
    return Rule(
        id="stuck-guest", name="Stuck guest", purpose="service",
        trigger="entry_denied", conditions=({"kind": "counter_at_least",
                                             "counter": "recent_denials", "value": threshold},),
        actions=(Action("alert_staff", None, None,
                        {"text": "Guest stuck at {device.id}: {event.reason}",
                         "device_id": "{device.id}", "reason": "{event.reason}"}),),
    )


def shipped() -> list[Rule]:
    """The automations the demo ships with."""
    return [room_welcome(), stuck_guest()]
