"""The automation rules are pure: matching, consent gating, templates, validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hub.automations import (
    Action,
    Facts,
    Rule,
    RuleError,
    plan,
    room_welcome,
    shipped,
    stuck_guest,
    validate,
)

NOW = datetime(2026, 7, 1, 18, 30, tzinfo=UTC)


def arrival(**kw: object) -> Facts:
    base = Facts(
        trigger="entry_allowed", now=NOW,
        guest={"id": "guest-01", "name": "Charlie Baker", "display_name": "Charlie"},
        prefs={"room_temperature_c": 20.5, "lighting_scene": "warm"},
        consents=frozenset({"personalization"}),
        zone={"id": "room-101", "kind": "room"}, device={"id": "lock-101", "kind": "door_lock"},
        counters={"entries": 1},
        room_devices={"thermostat": "thermostat-101", "light": "light-101",
                      "display": "display-101"},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_room_welcome_sets_the_room_to_the_guests_taste() -> None:
    actions = plan([room_welcome()], arrival())
    assert [(a.device_id, a.name, dict(a.params)) for a in actions] == [
        ("thermostat-101", "set_temperature", {"celsius": 20.5, "source": "automation"}),
        ("light-101", "set_scene", {"scene": "warm", "source": "automation"}),
        ("display-101", "show", {"text": "Welcome, Charlie", "kind": "greeting"}),
    ]


@pytest.mark.parametrize("facts", [
    arrival(consents=frozenset()),  # no consent: nothing, whatever else holds
    arrival(consents=frozenset({"offers", "health"})),  # consent for other purposes only
    arrival(counters={"entries": 2}),  # not the first entry of the stay
    arrival(trigger="entry_denied"),
    arrival(device={"id": "gate-park-in-1", "kind": "gate"}),
    arrival(zone={"id": "park", "kind": "area"}),
])
def test_room_welcome_does_not_fire(facts: Facts) -> None:
    assert plan([room_welcome()], facts) == []


def test_a_disabled_rule_and_a_missing_device_are_skipped() -> None:
    assert plan([replace(room_welcome(), enabled=False)], arrival()) == []
    no_light = arrival(room_devices={"thermostat": "thermostat-101", "display": "display-101"})
    assert [a.name for a in plan([room_welcome()], no_light)] == ["set_temperature", "show"]


def test_service_rules_need_no_consent() -> None:
    denied = Facts(trigger="entry_denied", now=NOW, device={"id": "lock-103"},
                   event={"reason": "wrong_zone"}, counters={"recent_denials": 2})
    [alert] = plan([stuck_guest()], denied)
    assert alert.kind == "alert_staff"
    assert alert.params["text"] == "Guest stuck at lock-103: wrong_zone"
    assert plan([stuck_guest()], replace(denied, counters={"recent_denials": 1})) == []


def test_conditions_on_time_and_readings() -> None:
    evening = Rule(id="r", name="r", purpose="health", trigger="telemetry",
                   conditions=({"kind": "time_between", "start": "18:00", "end": "23:00"},
                               {"kind": "reading_above", "field": "heart_rate_bpm",
                                "limit": "{prefs.heart_rate_threshold}"}),
                   actions=(Action("command", "watch-1", "vibrate", {"level": 1}),))
    facts = Facts(trigger="telemetry", now=NOW, consents=frozenset({"health"}),
                  prefs={"heart_rate_threshold": 150}, reading={"heart_rate_bpm": 162})
    assert len(plan([evening], facts)) == 1
    assert plan([evening], replace(facts, reading={"heart_rate_bpm": 140})) == []
    assert plan([evening], replace(facts, now=NOW.replace(hour=9))) == []


def test_validation_names_every_problem() -> None:
    bad = Rule(id="x", name="x", purpose="personalization", trigger="entry_allowed",
               filters={"weather.rain": True}, conditions=({"kind": "moon_phase"},),
               actions=(Action("command", "ghost-device", None,
                               {"text": "Hi {guest.shoe_size}"}),))
    with pytest.raises(RuleError) as caught:
        validate(bad, known_devices=["lock-101"])
    problems = " | ".join(caught.value.problems)
    for expected in ("weather.rain", "moon_phase", "ghost-device", "needs a name",
                     "{guest.shoe_size}"):
        assert expected in problems
    for rule in shipped():
        validate(rule, known_devices=[])  # the shipped rules are valid


@pytest.mark.parametrize(("preferred", "manual", "learned"), [
    (20.5, [23.0, 23.0, 23.5], 23.0),  # warmer three times: the preference follows
    (22.0, [20.0, 19.5, 20.5], 20.0),  # cooler three times
    (21.0, [23.0, 20.0, 23.0], None),  # back and forth: nothing learned
    (21.0, [23.0, 23.0], None),  # not yet often enough
    (21.0, [19.0, 23.0, 23.0, 23.0], 23.0),  # only the last three count
    (None, [22.0, 22.0, 22.0], None),  # the same as the first: nothing to change
])
def test_learning_follows_consistent_manual_changes(preferred: float | None,
                                                    manual: list[float],
                                                    learned: float | None) -> None:
    from hub.automations import learned_temperature

    assert learned_temperature(preferred, manual) == learned
