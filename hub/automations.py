"""Automations: rules that turn what happened into actions. Pure: no I/O, the clock passed in.

A rule has a trigger (what happened, with filters; or a daily time, ``schedule``),
conditions (about the guest, their consent, the time, counters) and actions (a command
to a device of the room or a named device, a greeting, a notification to the guest, an
alert to staff, an offer), whose parameters are templates over the facts:
``{guest.name}``, ``{prefs.room_temperature_c}``.

No rule whose purpose needs consent fires without that consent: :func:`plan` checks
the purpose before anything else, so withdrawing consent takes effect on the next event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal

TriggerKind = Literal["entry_allowed", "entry_denied", "payment_approved", "telemetry",
                      "schedule"]
ActionKind = Literal["command", "greet", "notify_guest", "alert_staff", "offer"]
# "service" rules use no personal data of a consent purpose (a stuck guest at a door):
# they always run; every other purpose needs the guest's consent.
Purpose = Literal["personalization", "offers", "health", "analytics", "service"]

TRIGGERS: frozenset[str] = frozenset(TriggerKind.__args__)  # type: ignore[attr-defined]
ACTIONS: frozenset[str] = frozenset(ActionKind.__args__)  # type: ignore[attr-defined]
PURPOSES: frozenset[str] = frozenset(Purpose.__args__)  # type: ignore[attr-defined]
CONDITIONS = frozenset({"first_entry_of_stay", "time_between", "counter_at_least",
                        "counter_is", "preference_set", "reading_above"})
# Counters the hub keeps for rules (see hub.occurrences): entries into the zone since the
# guest's current stay or ticket began (and first_entry, 1 for the first of them), distinct
# days they entered it, rides ever, room stays already over (a returning guest), denials
# at this door in the last two minutes, and the run of a watch's readings above the
# guest's heart-rate threshold (with its level, 1..3, for an escalating vibration).
COUNTERS = frozenset({"entries", "visits", "rides", "earlier_stays", "recent_denials",
                      "heart_rate_high", "heart_rate_level", "first_entry"})
# Readings rules may look at (what the appliances report; see simulators.appliances).
READINGS = frozenset({"heart_rate_bpm", "workout", "workout_kind", "duration_min",
                      "setpoint_c", "temperature_c", "scene", "manual", "source"})
# What templates may name: the facts :func:`plan` is given.
TEMPLATE_FIELDS = frozenset({
    "guest.id", "guest.name", "guest.display_name",
    "prefs.room_temperature_c", "prefs.lighting_scene", "prefs.language", "prefs.dietary",
    "prefs.heart_rate_threshold",
    "zone.id", "zone.kind", "room.number", "device.id", "device.kind",
    "event.reason", "event.merchant_id", "event.amount", "event.currency", "event.schedule",
    "suggestion.breakfast",
    *(f"reading.{r}" for r in READINGS), *(f"counters.{c}" for c in COUNTERS),
})
# The device an event came from, as an action's target (the watch that reported).
SELF = "self"
# Fields whose values are numbers: what a reading_above limit may name.
NUMERIC_FIELDS = frozenset({
    "prefs.room_temperature_c", "prefs.heart_rate_threshold", "event.amount",
    "reading.heart_rate_bpm", "reading.duration_min", "reading.setpoint_c",
    "reading.temperature_c", *(f"counters.{c}" for c in COUNTERS)})
# What only a rule with the guest's consent may use.
PERSONAL_HEADS = frozenset({"prefs", "reading", "suggestion"})
HEALTH_COUNTERS = frozenset({"counters.heart_rate_high", "counters.heart_rate_level"})


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


@dataclass(frozen=True)
class Facts:
    """What happened, with everything a rule may look at.

    ``now`` is in the venue's time zone, so time windows are local. ``data_purposes``
    names what consent the data itself needs whatever the rule (a watch's readings are
    health data). ``event["at"]`` is when the event happened as the device reported it.
    """

    trigger: TriggerKind
    now: datetime
    data_purposes: frozenset[str] = frozenset()
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
    # The consents it was planned under: a command that waits for an offline appliance
    # goes out later only if they still hold.
    purposes: frozenset[str] = frozenset()


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
    if head == "suggestion" and tail == "breakfast":
        return breakfast_for(facts.prefs.get("dietary") or ())
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
        if not isinstance(source, Mapping):
            return False
        value = source.get(tail)
        # A list is any of its values ("zone.kind: [area, room]").
        if value not in wanted if isinstance(wanted, list) else value != wanted:
            return False
    return True


def _holds(condition: Mapping[str, Any], facts: Facts) -> bool:
    """Whether a condition holds; one whose arguments make no sense (a limit that is not a
    number once rendered, say) does not."""
    try:
        return _check(condition, facts)
    except (KeyError, TypeError, ValueError, OverflowError):
        return False


def _check(condition: Mapping[str, Any], facts: Facts) -> bool:
    kind = condition["kind"]
    if kind == "first_entry_of_stay":
        if "first_entry" in facts.counters:
            return facts.counters["first_entry"] == 1
        return facts.counters.get("entries", 0) == 1
    if kind == "time_between":
        at = facts.event.get("at") if condition.get("of") == "event" else facts.now
        if not isinstance(at, datetime):
            return False
        local = at.astimezone(facts.now.tzinfo).time() if at.tzinfo else at.time()
        start, end = time.fromisoformat(condition["start"]), time.fromisoformat(condition["end"])
        if start <= end:
            return start <= local < end
        return local >= start or local < end  # a window across midnight
    if kind == "counter_at_least":
        return facts.counters.get(condition["counter"], 0) >= int(condition["value"])
    if kind == "counter_is":
        return facts.counters.get(condition["counter"], 0) == int(condition["value"])
    if kind == "preference_set":
        return facts.prefs.get(condition["preference"]) not in (None, "", [])
    if kind == "reading_above":
        value = facts.reading.get(str(condition.get("field")))
        limit = render(condition["limit"], facts)
        if isinstance(value, bool) or not isinstance(value, int | float) or limit is None:
            return False
        return float(value) > float(limit)
    return False


def plan(rules: Iterable[Rule], facts: Facts, *,
         on_error: Callable[[Rule, Exception], None] | None = None) -> list[Planned]:
    """The actions every matching rule asks for, in rule order; consent is checked first.

    A rule that cannot be evaluated (a stored rule with a bad argument, say) is skipped
    and handed to ``on_error``: it never stops the other rules.
    """
    planned: list[Planned] = []
    for rule in rules:
        try:
            planned += _plan_one(rule, facts)
        except Exception as exc:  # one bad rule must not silence the others (health alerts)
            if on_error is not None:
                on_error(rule, exc)
    return planned


def _plan_one(rule: Rule, facts: Facts) -> list[Planned]:
    needed = frozenset(({rule.purpose} | facts.data_purposes) - {"service"})
    if not needed <= facts.consents or not _matches(rule, facts):
        return []
    if rule.purpose == "service":
        # A service rule runs without consent, so it sees none of the guest's preferences.
        facts = replace(facts, prefs={})
    if not all(_holds(c, facts) for c in rule.conditions):
        return []
    planned = []
    for action in rule.actions:
        target = action.target
        if target == SELF:
            device = facts.device.get("id")
        elif target and target.startswith("room:"):
            device = facts.room_devices.get(target.split(":", 1)[1])
        else:
            device = target
        if target and device is None:
            continue  # the room has no such device: nothing to command
        params = {k: render(v, facts) for k, v in action.params.items()}
        if action.kind in ("command", "greet") and any(v is None for v in params.values()):
            continue  # e.g. no preferred temperature: nothing to set, rather than null
        planned.append(Planned(rule.id, action.kind, device, action.name, params, needed))
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
            for name in _fields_of(value):
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
            for name in _fields_of(value):
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
    return isinstance(limit, str) and len(names := _fields_of(limit)) == 1 and \
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
    for name in sorted({n for v in values for n in _fields_of(v)} | set(keys)):
        if name.partition(".")[0] in PERSONAL_HEADS or name in HEALTH_COUNTERS:
            problems.append(f"a service rule may not use {name}: it needs the guest's "
                            "consent (give the rule that purpose)")
    return problems


def _strings(params: Mapping[str, Any]) -> list[str]:
    return [v for v in params.values() if isinstance(v, str)]


# ------------------------------------------------------------------- learning


# The room temperatures a guest may prefer (as the profile API allows).
PREFERRED_MIN_C, PREFERRED_MAX_C = 16.0, 28.0
PLAUSIBLE_MIN_C, PLAUSIBLE_MAX_C = -50.0, 100.0  # outside: a broken or lying device


def learned_temperature(preferred: float | None, manual_setpoints: Sequence[float], *,
                        times: int = 3) -> float | None:
    """The new preferred temperature when a guest's last ``times`` manual changes all went
    the same way from it (all warmer, or all cooler); None when nothing is to be learned.

    Like a learning thermostat: automatic, with the guest's hand as the override it learns
    from. The new preference is the mean of those changes, to the half degree, within
    what a guest may prefer (16-28 °C); readings no thermostat could mean (not a number,
    -50 or 100 °C) are ignored.
    """
    recent = [s for s in manual_setpoints if PLAUSIBLE_MIN_C <= s <= PLAUSIBLE_MAX_C][-times:]
    if len(recent) < times:
        return None
    if preferred is None:
        preferred = recent[0]
    if all(s > preferred for s in recent) or all(s < preferred for s in recent):
        learned = min(max(round(sum(recent) / len(recent) * 2) / 2, PREFERRED_MIN_C),
                      PREFERRED_MAX_C)
        return learned if learned != preferred else None
    return None


OVERRIDE_WINDOW = timedelta(minutes=10)
# What an appliance reports for the value a command set: command -> (param, reading).
_SETS = {"set_temperature": ("celsius", "setpoint_c"), "set_scene": ("scene", "scene")}


def is_override(name: str | None, params: Mapping[str, Any], readings: Mapping[str, Any],
                *, sent_at: datetime, now: datetime) -> bool:
    """Whether a manual change (``readings`` with ``manual: true``) undoes a command an
    automation sent at ``sent_at``: the same setting, another value, within ten minutes."""
    if readings.get("manual") is not True or name not in _SETS:
        return False
    if not timedelta(0) <= now - sent_at <= OVERRIDE_WINDOW:
        return False
    param, reading = _SETS[name]
    return reading in readings and readings[reading] != params.get(param)


# ------------------------------------------------------------------ breakfast


# (dish, the dietary needs it meets: hub.schemas.Dietary's words); the first dish that
# meets every need is suggested.
_VEGGIE = frozenset({"vegetarian", "pescatarian"})
BREAKFASTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("scrambled eggs on sourdough with a fruit salad", _VEGGIE | {"nut_allergy"}),
    ("Greek yogurt with berries, honey and granola", _VEGGIE),
    ("a veggie omelette with roast tomatoes",
     _VEGGIE | {"gluten_free", "nut_allergy", "halal", "kosher"}),
    ("smoked salmon and avocado on rye",
     frozenset({"pescatarian", "lactose_free", "nut_allergy"})),
    ("a tofu scramble with spinach and potatoes",
     _VEGGIE | {"vegan", "lactose_free", "gluten_free", "nut_allergy", "halal", "kosher"}),
)
# Meets every diet we know of: what a kitchen can always offer.
PLAIN_BREAKFAST = "a fresh fruit plate"


def breakfast_for(dietary: Iterable[str]) -> str:
    """A breakfast that meets every one of the guest's dietary needs ("gluten-free" and
    "gluten_free" are one need)."""
    needs = {d.strip().lower().replace("-", "_").replace(" ", "_") for d in dietary
             if isinstance(d, str)} - {""}
    for dish, meets in BREAKFASTS:
        if needs <= meets:
            return dish
    return PLAIN_BREAKFAST


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
    """Two denied taps at one door within two minutes: someone should help.

    Once, at the denial that makes it ``threshold``: a door that keeps denying (a queue of
    unknown bands at a gate) must not page staff at every tap, nor write a run for each.
    """
    return Rule(
        id="stuck-guest", name="Stuck guest", purpose="service",
        trigger="entry_denied", conditions=({"kind": "counter_is",
                                             "counter": "recent_denials", "value": threshold},),
        actions=(Action("alert_staff", None, None,
                        {"text": "Guest stuck at {device.id}: {event.reason}",
                         "device_id": "{device.id}", "reason": "{event.reason}"}),),
    )


def health_watch() -> Rule:
    """A heart rate above the guest's threshold: the watch vibrates, harder each reading."""
    return Rule(
        id="health-watch", name="Heart rate: tell the wearer", purpose="health",
        trigger="telemetry", filters={"device.kind": "watch"},
        conditions=({"kind": "reading_above", "field": "heart_rate_bpm",
                     "limit": "{prefs.heart_rate_threshold}"},),
        actions=(Action("command", SELF, "vibrate", {
            "level": "{counters.heart_rate_level}",
            "reason": "Heart rate {reading.heart_rate_bpm} bpm, above your "
                      "{prefs.heart_rate_threshold}"}),),
    )


def health_staff(readings: int = 3) -> Rule:
    """...and when it lasts ``readings`` readings in a row, staff are alerted, once."""
    return Rule(
        id="health-staff", name="Heart rate: alert staff if it lasts", purpose="health",
        trigger="telemetry", filters={"device.kind": "watch"},
        conditions=({"kind": "reading_above", "field": "heart_rate_bpm",
                     "limit": "{prefs.heart_rate_threshold}"},
                    {"kind": "counter_is", "counter": "heart_rate_high", "value": readings}),
        actions=(Action("alert_staff", None, None, {
            "text": "{guest.display_name}'s heart rate has stayed above "
                    "{prefs.heart_rate_threshold} bpm ({reading.heart_rate_bpm} now)",
            "severity": "urgent", "guest_id": "{guest.id}", "device_id": "{device.id}",
            "heart_rate_bpm": "{reading.heart_rate_bpm}"}),),
    )


def breakfast() -> Rule:
    """After a morning workout, the room's fridge display suggests a fitting breakfast."""
    return Rule(
        id="breakfast", name="Breakfast after a morning workout", purpose="personalization",
        trigger="telemetry", filters={"device.kind": "watch", "reading.workout": "ended"},
        conditions=({"kind": "time_between", "start": "05:00", "end": "11:00", "of": "event"},),
        actions=(Action("command", "room:fridge_display", "show", {
            "text": "Good morning, {guest.display_name}: after your {reading.workout_kind}, "
                    "how about {suggestion.breakfast}?", "kind": "suggestion"}),),
    )


def returning_guest() -> Rule:
    """At a returning guest's first entry of a stay or ticket, staff see who and what they like."""
    return Rule(
        id="returning-guest", name="Returning guest cue", purpose="personalization",
        trigger="entry_allowed", filters={"zone.kind": ["area", "room"]},  # not at every ride
        conditions=({"kind": "first_entry_of_stay"},
                    {"kind": "counter_at_least", "counter": "earlier_stays", "value": 1}),
        actions=(Action("alert_staff", None, None, {
            "text": "Welcome back, {guest.display_name}", "severity": "info",
            "cue": "returning_guest", "guest_id": "{guest.id}", "device_id": "{device.id}",
            "zone_id": "{zone.id}", "room_temperature_c": "{prefs.room_temperature_c}",
            "lighting_scene": "{prefs.lighting_scene}", "language": "{prefs.language}",
            "dietary": "{prefs.dietary}"}),),
    )


def ride_reward(rides: int = 5) -> Rule:
    """On a guest's ``rides``-th ride, an offer: the way a park rewards its regulars."""
    return Rule(
        id="ride-reward", name=f"Offer on the {rides}th ride", purpose="offers",
        trigger="entry_allowed", filters={"zone.kind": "ride"},
        conditions=({"kind": "counter_is", "counter": "rides", "value": rides},),
        actions=(Action("offer", None, None, {
            "text": "{counters.rides} rides! A free drink at the Cafe is on us today.",
            "offer_id": "ride-reward", "merchant_id": "cafe"}),),
    )


def shipped() -> list[Rule]:
    """The automations the demo ships with."""
    return [room_welcome(), stuck_guest(), health_watch(), health_staff(), breakfast(),
            returning_guest(), ride_reward()]
