"""The words automations are written in: triggers, actions, purposes, conditions,
counters, readings and the fields templates may name."""

from __future__ import annotations

from typing import Literal

TriggerKind = Literal["entry_allowed", "entry_denied", "payment_approved", "telemetry",
                      "schedule"]
ActionKind = Literal["command", "greet", "notify_guest", "alert_staff", "offer"]
# "service" rules use no personal data of a consent purpose (a stuck guest at a door):
# they always run; every other purpose needs the guest's consent.
Purpose = Literal["personalization", "offers", "health", "analytics", "service"]

TRIGGERS: frozenset[str] = frozenset(TriggerKind.__args__)  # type: ignore[attr-defined]
ACTIONS: frozenset[str] = frozenset(ActionKind.__args__)  # type: ignore[attr-defined]
PURPOSES: frozenset[str] = frozenset(Purpose.__args__)  # type: ignore[attr-defined]
ConditionKind = Literal["first_entry_of_stay", "time_between", "counter_at_least",
                        "counter_is", "preference_set", "reading_above"]
CONDITIONS: frozenset[str] = frozenset(ConditionKind.__args__)  # type: ignore[attr-defined]
# The heads of the fields a filter may test ("zone.kind": "room").
FILTER_HEADS = frozenset({"zone", "device", "event", "reading", "guest"})
# Counters the hub keeps for rules (see hub.automations.gather): entries into the zone
# since the guest's current stay or ticket began (and first_entry, 1 for the first of
# them), distinct days they entered it, rides ever, room stays already over (a returning
# guest), denials at this door in the last two minutes, and the run of a watch's readings
# above the guest's heart-rate threshold (with its level, 1..3, for an escalating
# vibration).
CounterName = Literal["entries", "visits", "rides", "earlier_stays", "recent_denials",
                      "heart_rate_high", "heart_rate_level", "first_entry"]
# Readings rules may look at (what the appliances report; see simulators.appliances).
ReadingName = Literal["heart_rate_bpm", "workout", "workout_kind", "duration_min",
                      "setpoint_c", "temperature_c", "scene", "manual", "source"]
COUNTERS: frozenset[str] = frozenset(CounterName.__args__)  # type: ignore[attr-defined]
READINGS: frozenset[str] = frozenset(ReadingName.__args__)  # type: ignore[attr-defined]
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
