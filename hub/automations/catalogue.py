"""The automations the hub ships with: what a venue gets before it writes its own."""

from __future__ import annotations

from hub.automations.rules import (
    Action,
    CounterAtLeast,
    CounterIs,
    FirstEntryOfStay,
    ReadingAbove,
    Rule,
    TimeBetween,
)
from hub.automations.vocabulary import SELF


def room_welcome() -> Rule:
    """On the first door entry of a stay: the room takes the guest's taste, the display greets."""
    return Rule(
        id="room-welcome", name="Room welcome", purpose="personalization",
        trigger="entry_allowed", filters={"device.kind": "door_lock", "zone.kind": "room"},
        conditions=(FirstEntryOfStay(),),
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
        trigger="entry_denied",
        conditions=(CounterIs(counter="recent_denials", value=threshold),),
        actions=(Action("alert_staff", None, None,
                        {"text": "Guest stuck at {device.id}: {event.reason}",
                         "device_id": "{device.id}", "reason": "{event.reason}"}),),
    )


def health_watch() -> Rule:
    """A heart rate above the guest's threshold: the watch vibrates, harder each reading."""
    return Rule(
        id="health-watch", name="Heart rate: tell the wearer", purpose="health",
        trigger="telemetry", filters={"device.kind": "watch"},
        conditions=(ReadingAbove(field="heart_rate_bpm", limit="{prefs.heart_rate_threshold}"),),
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
        conditions=(ReadingAbove(field="heart_rate_bpm", limit="{prefs.heart_rate_threshold}"),
                    CounterIs(counter="heart_rate_high", value=readings)),
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
        conditions=(TimeBetween(start="05:00", end="11:00", of="event"),),
        actions=(Action("command", "room:fridge_display", "show", {
            "text": "Good morning, {guest.display_name}: after your {reading.workout_kind}, "
                    "how about {suggestion.breakfast}?", "kind": "suggestion"}),),
    )


def returning_guest() -> Rule:
    """At a returning guest's first entry of a stay or ticket, staff see who and what they like."""
    return Rule(
        id="returning-guest", name="Returning guest cue", purpose="personalization",
        trigger="entry_allowed", filters={"zone.kind": ["area", "room"]},  # not at every ride
        conditions=(FirstEntryOfStay(), CounterAtLeast(counter="earlier_stays", value=1)),
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
        conditions=(CounterIs(counter="rides", value=rides),),
        actions=(Action("offer", None, None, {
            "text": "{counters.rides} rides! A free drink at the Cafe is on us today.",
            "offer_id": "ride-reward", "merchant_id": "cafe"}),),
    )


def shipped() -> list[Rule]:
    """The automations the demo ships with."""
    return [room_welcome(), stuck_guest(), health_watch(), health_staff(), breakfast(),
            returning_guest(), ride_reward()]
