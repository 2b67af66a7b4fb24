"""The automation rules are pure: matching, consent gating, templates, validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import combinations
from zoneinfo import ZoneInfo

import pytest

from hub.automations.catalogue import (
    breakfast,
    health_staff,
    health_watch,
    returning_guest,
    ride_reward,
    room_welcome,
    shipped,
    stuck_guest,
)
from hub.automations.engine import plan
from hub.automations.facts import Facts
from hub.automations.learning import OVERRIDE_WINDOW, is_override
from hub.automations.menu import BREAKFASTS, PLAIN_BREAKFAST, breakfast_for
from hub.automations.rules import (
    Action,
    CounterIs,
    ReadingAbove,
    Rule,
    RuleError,
    TimeBetween,
    parse_rule,
    validate,
)
from hub.automations.vocabulary import SELF

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
                   conditions=(TimeBetween(start="18:00", end="23:00"),
                               ReadingAbove(field="heart_rate_bpm",
                                            limit="{prefs.heart_rate_threshold}")),
                   actions=(Action("command", "watch-1", "vibrate", {"level": 1}),))
    facts = Facts(trigger="telemetry", now=NOW, consents=frozenset({"health"}),
                  prefs={"heart_rate_threshold": 150}, reading={"heart_rate_bpm": 162})
    assert len(plan([evening], facts)) == 1
    assert plan([evening], replace(facts, reading={"heart_rate_bpm": 140})) == []
    assert plan([evening], replace(facts, now=NOW.replace(hour=9))) == []


def test_validation_names_every_problem() -> None:
    bad = {"id": "x", "name": "x", "purpose": "personalization", "trigger": "entry_allowed",
           "filters": {"weather.rain": True}, "conditions": [{"kind": "moon_phase"}],
           "actions": [{"kind": "command", "target": "ghost-device",
                        "params": {"text": "Hi {guest.shoe_size}"}}]}
    with pytest.raises(RuleError) as caught:
        parse_rule(bad, known_devices=["lock-101"])
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
    from hub.automations.learning import learned_temperature

    assert learned_temperature(preferred, manual) == learned


# ------------------------------------------------- the health, breakfast, returning-guest,
# ------------------------------------------------- ride-reward rules and overrides

MORNING = datetime(2026, 7, 1, 7, 45, tzinfo=UTC)
TOFU = "a tofu scramble with spinach and potatoes"
OMELETTE = "a veggie omelette with roast tomatoes"
EGGS = "scrambled eggs on sourdough with a fruit salad"
DIETS = ("vegetarian", "vegan", "pescatarian", "gluten_free", "lactose_free", "halal",
         "kosher", "nut_allergy")  # hub.schemas.Diet


def worn(**kw: object) -> Facts:
    """A reading of Charlie's watch: health data, whatever the rule's own purpose."""
    base = Facts(
        trigger="telemetry", now=MORNING, data_purposes=frozenset({"health"}),
        guest={"id": "guest-01", "name": "Charlie Baker", "display_name": "Charlie"},
        prefs={"heart_rate_threshold": 150, "dietary": []},
        consents=frozenset({"health", "personalization"}),
        device={"id": "watch-guest-01", "kind": "watch"}, event={"at": MORNING},
        reading={"heart_rate_bpm": 162}, counters={"heart_rate_high": 1, "heart_rate_level": 1},
        room_devices={"thermostat": "thermostat-101", "fridge_display": "fridge-101"},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def workout(**kw: object) -> Facts:
    return worn(reading={"workout": "ended", "workout_kind": "run", "duration_min": 30}, **kw)


def high(run: int) -> dict[str, int]:
    return {"heart_rate_high": run, "heart_rate_level": min(run, 3)}


# ---- consent: the rule's purpose, and the purposes of the data it looks at


@pytest.mark.parametrize(("rule", "facts", "consents", "fires"), [
    # breakfast is personalization, but a watch's readings are health data: both needed
    (breakfast(), workout(), {"personalization", "health"}, True),
    (breakfast(), workout(), {"personalization"}, False),
    (breakfast(), workout(), {"health"}, False),
    (breakfast(), workout(), {"personalization", "offers", "analytics"}, False),
    # the same rule on data that is not health data needs personalization only
    (breakfast(), workout(data_purposes=frozenset()), {"personalization"}, True),
    (health_watch(), worn(), {"health"}, True),
    (health_watch(), worn(), {"personalization", "offers", "analytics"}, False),
    (health_staff(), worn(counters=high(3)), {"health"}, True),
    (health_staff(), worn(counters=high(3)), set(), False),
    # even a service rule needs consent to the data's purpose
    (stuck_guest(), Facts(trigger="entry_denied", now=NOW, data_purposes=frozenset({"health"}),
                          device={"id": "lock-103"}, counters={"recent_denials": 2}),
     set(), False),
    (stuck_guest(), Facts(trigger="entry_denied", now=NOW, data_purposes=frozenset({"health"}),
                          device={"id": "lock-103"}, counters={"recent_denials": 2}),
     {"health"}, True),
    (returning_guest(), arrival(counters={"entries": 1, "earlier_stays": 1}),
     {"personalization"}, True),
    (returning_guest(), arrival(counters={"entries": 1, "earlier_stays": 1}),
     {"offers", "health"}, False),
    (ride_reward(), arrival(zone={"id": "coaster", "kind": "ride"}, counters={"rides": 5}),
     {"offers"}, True),
    (ride_reward(), arrival(zone={"id": "coaster", "kind": "ride"}, counters={"rides": 5}),
     {"personalization", "health", "analytics"}, False),
])
def test_every_rule_needs_consent_to_its_purpose_and_to_its_data(
        rule: Rule, facts: Facts, consents: set[str], fires: bool) -> None:
    planned = plan([rule], replace(facts, consents=frozenset(consents)))
    assert bool(planned) is fires
    if fires:
        assert all(p.rule_id == rule.id for p in planned)


# ---- heart rate: the watch vibrates harder, staff hear of it once


@pytest.mark.parametrize(("run", "level"), [(1, 1), (2, 2), (3, 3), (4, 3)])
def test_the_watch_itself_vibrates_at_the_counters_level(run: int, level: int) -> None:
    facts = worn(counters=high(run), reading={"heart_rate_bpm": 171})
    [vibrate] = plan([health_watch()], facts)
    assert (vibrate.kind, vibrate.device_id, vibrate.name) == ("command", "watch-guest-01",
                                                               "vibrate")
    assert vibrate.params["level"] == level and type(vibrate.params["level"]) is int
    assert vibrate.params["reason"] == "Heart rate 171 bpm, above your 150"


def test_the_level_sequence_of_an_episode_is_1_2_3_3() -> None:
    levels = [plan([health_watch()], worn(counters=high(n)))[0].params["level"]
              for n in (1, 2, 3, 4)]
    assert levels == [1, 2, 3, 3]


@pytest.mark.parametrize("bpm", [150, 120, True, "170", None])
def test_no_vibration_at_or_below_the_threshold_or_without_a_number(bpm: object) -> None:
    reading = {} if bpm is None else {"heart_rate_bpm": bpm}
    assert plan([health_watch(), health_staff()], worn(reading=reading, counters=high(3))) == []


def test_no_threshold_means_no_health_rule_fires() -> None:
    assert plan([health_watch(), health_staff()],
                worn(prefs={"dietary": []}, counters=high(3))) == []


def test_staff_are_alerted_only_on_the_third_reading_in_a_row() -> None:
    alerts = {n: plan([health_staff()], worn(counters=high(n), reading={"heart_rate_bpm": 168}))
              for n in range(1, 7)}
    assert [n for n, planned in alerts.items() if planned] == [3]
    [alert] = alerts[3]
    assert (alert.kind, alert.device_id) == ("alert_staff", None)
    assert alert.params["severity"] == "urgent"
    assert alert.params["text"] == \
        "Charlie's heart rate has stayed above 150 bpm (168 now)"
    assert (alert.params["guest_id"], alert.params["device_id"],
            alert.params["heart_rate_bpm"]) == ("guest-01", "watch-guest-01", 168)


def test_a_watch_vibrates_and_staff_are_alerted_from_the_shipped_set() -> None:
    planned = plan(shipped(), worn(counters=high(3)))
    assert [(p.rule_id, p.kind) for p in planned] == [("health-watch", "command"),
                                                      ("health-staff", "alert_staff")]


def test_self_is_the_device_the_event_came_from() -> None:
    rule = Rule(id="r", name="r", purpose="service", trigger="telemetry",
                actions=(Action("command", SELF, "show", {"text": "hi"}),))
    [planned] = plan([rule], worn(device={"id": "display-104", "kind": "display"}))
    assert planned.device_id == "display-104"
    assert plan([rule], worn(device={})) == []  # nothing to command


# ---- breakfast after a morning workout


@pytest.mark.parametrize(("hour", "minute", "fires"), [
    (4, 59, False), (5, 0, True), (7, 45, True), (10, 59, True), (11, 0, False), (23, 0, False),
])
def test_breakfast_only_after_a_workout_between_5_and_11(hour: int, minute: int,
                                                        fires: bool) -> None:
    at = MORNING.replace(hour=hour, minute=minute)
    assert bool(plan([breakfast()], workout(event={"at": at}))) is fires


def test_breakfast_goes_by_when_the_workout_ended_not_when_the_hub_heard() -> None:
    late_report = workout(now=MORNING.replace(hour=13), event={"at": MORNING.replace(hour=9)})
    assert len(plan([breakfast()], late_report)) == 1
    late_workout = workout(now=MORNING.replace(hour=9), event={"at": MORNING.replace(hour=13)})
    assert plan([breakfast()], late_workout) == []
    assert plan([breakfast()], workout(event={})) == []  # no time: no breakfast


def test_breakfast_window_is_in_the_venues_time_zone() -> None:
    madrid = ZoneInfo("Europe/Madrid")  # UTC+2 in July
    now = MORNING.astimezone(madrid)
    # 04:30 UTC is 06:30 in Madrid: morning there
    assert plan([breakfast()], workout(now=now, event={"at": MORNING.replace(hour=4,
                                                                           minute=30)}))
    # 09:30 UTC is 11:30 in Madrid: too late
    assert plan([breakfast()], workout(now=now, event={"at": MORNING.replace(hour=9,
                                                                           minute=30)})) == []


def test_breakfast_needs_an_ended_workout_on_a_watch_and_a_fridge() -> None:
    assert plan([breakfast()], worn()) == []  # a heart rate, no workout
    started = workout()
    started = replace(started, reading={**started.reading, "workout": "started"})
    assert plan([breakfast()], started) == []
    assert plan([breakfast()], workout(device={"id": "lock-101", "kind": "door_lock"})) == []
    assert plan([breakfast()], workout(room_devices={"thermostat": "thermostat-101"})) == []


@pytest.mark.parametrize(("dietary", "dish"), [
    ([], EGGS),
    (["vegan"], TOFU),
    (["gluten_free"], OMELETTE),
    (["gluten-free"], OMELETTE),
    (["Gluten Free"], OMELETTE),
    (["vegan", "gluten-free"], TOFU),
    (["vegetarian"], EGGS),
    (["lactose_free"], "smoked salmon and avocado on rye"),
    (["vegetarian", "lactose_free"], TOFU),
    (["vegan", "raw_food"], PLAIN_BREAKFAST),  # nothing on the menu meets an unknown need
    (["shellfish_allergy"], PLAIN_BREAKFAST),
])
def test_the_breakfast_suggested_meets_every_need(dietary: list[str], dish: str) -> None:
    assert breakfast_for(dietary) == dish
    [show] = plan([breakfast()], workout(prefs={"heart_rate_threshold": 150,
                                                "dietary": dietary}))
    assert (show.device_id, show.name) == ("fridge-101", "show")
    assert show.params == {"kind": "suggestion",
                           "text": f"Good morning, Charlie: after your run, how about {dish}?"}


def test_every_combination_of_known_diets_gets_a_dish_that_meets_it() -> None:
    menu = dict(BREAKFASTS)
    for n in range(len(DIETS) + 1):
        for needs in combinations(DIETS, n):
            dish = breakfast_for(needs)
            assert dish == PLAIN_BREAKFAST or set(needs) <= menu[dish], (needs, dish)


# ---- a returning guest, a ride reward


@pytest.mark.parametrize(("counters", "fires"), [
    ({"entries": 1, "earlier_stays": 1}, True),
    ({"entries": 1, "earlier_stays": 4}, True),
    ({"entries": 1, "earlier_stays": 0}, False),
    ({"entries": 1}, False),  # no counter: not a returning guest
    ({"entries": 2, "earlier_stays": 3}, False),  # not the first entry of the stay
])
def test_returning_guest_cue_only_with_earlier_stays(counters: dict[str, int],
                                                     fires: bool) -> None:
    prefs = {"room_temperature_c": 20.5, "lighting_scene": "warm", "language": "es",
             "dietary": ["vegan"]}
    planned = plan([returning_guest()], arrival(counters=counters, prefs=prefs))
    assert bool(planned) is fires
    if fires:
        [cue] = planned
        assert cue.kind == "alert_staff" and cue.device_id is None
        assert dict(cue.params) == {
            "text": "Welcome back, Charlie", "severity": "info", "cue": "returning_guest",
            "guest_id": "guest-01", "device_id": "lock-101", "zone_id": "room-101",
            "room_temperature_c": 20.5, "lighting_scene": "warm", "language": "es",
            "dietary": ["vegan"]}


@pytest.mark.parametrize(("rides", "fires"), [(0, False), (4, False), (5, True), (6, False),
                                              (10, False)])
def test_ride_reward_exactly_on_the_fifth_ride(rides: int, fires: bool) -> None:
    ride = arrival(zone={"id": "coaster", "kind": "ride"},
                   device={"id": "ride-coaster-1", "kind": "gate"},
                   consents=frozenset({"offers"}), counters={"rides": rides, "entries": 1})
    planned = plan([ride_reward()], ride)
    assert bool(planned) is fires
    if fires:
        [offer] = planned
        assert offer.kind == "offer"
        assert offer.params == {"text": "5 rides! A free drink at the Cafe is on us today.",
                                "offer_id": "ride-reward", "merchant_id": "cafe"}


def test_ride_reward_only_at_a_ride() -> None:
    park = arrival(zone={"id": "park", "kind": "area"}, consents=frozenset({"offers"}),
                   counters={"rides": 5})
    assert plan([ride_reward()], park) == []
    assert plan([ride_reward()], replace(park, trigger="entry_denied",
                                         zone={"id": "coaster", "kind": "ride"})) == []


# ---- conditions added with these rules


@pytest.mark.parametrize(("hour", "minute", "holds"), [
    (22, 0, True), (23, 59, True), (0, 0, True), (5, 59, True), (6, 0, False), (12, 0, False),
    (21, 59, False),
])
def test_a_time_window_across_midnight(hour: int, minute: int, holds: bool) -> None:
    night = Rule(id="n", name="n", purpose="service", trigger="entry_allowed",
                 conditions=(TimeBetween(start="22:00", end="06:00"),),
                 actions=(Action("alert_staff", None, None, {"text": "late"}),))
    facts = arrival(now=NOW.replace(hour=hour, minute=minute))
    assert bool(plan([night], facts)) is holds


def test_reading_above_looks_at_its_field_and_counter_is_is_exact() -> None:
    long_run = Rule(id="l", name="l", purpose="health", trigger="telemetry",
                    conditions=(ReadingAbove(field="duration_min", limit=45),
                                CounterIs(counter="visits", value=2)),
                    actions=(Action("notify_guest", None, None, {"text": "well done"}),))
    facts = workout(counters={"visits": 2})
    assert plan([long_run], facts) == []  # 30 minutes: not above 45
    longer = replace(facts, reading={**facts.reading, "duration_min": 60})
    assert len(plan([long_run], longer)) == 1
    assert plan([long_run], replace(longer, counters={"visits": 3})) == []
    assert plan([long_run], replace(longer, counters={})) == []


# ---- a guest's hand undoing what an automation set


SENT = datetime(2026, 7, 1, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(("name", "params", "readings", "after", "overridden"), [
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "setpoint_c": 24.0},
     timedelta(minutes=5), True),
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "setpoint_c": 24.0},
     OVERRIDE_WINDOW, True),  # the edge of the window is still in it
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "setpoint_c": 24.0},
     OVERRIDE_WINDOW + timedelta(seconds=1), False),  # too late: a new choice, not an undo
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "setpoint_c": 24.0},
     -timedelta(seconds=1), False),  # before the command was sent
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "setpoint_c": 22.0},
     timedelta(minutes=1), False),  # the same value: nothing undone
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "setpoint_c": 22},
     timedelta(minutes=1), False),
    ("set_temperature", {"celsius": 22.0}, {"manual": False, "setpoint_c": 24.0},
     timedelta(minutes=1), False),  # the automation's own report
    ("set_temperature", {"celsius": 22.0}, {"setpoint_c": 24.0}, timedelta(minutes=1), False),
    ("set_temperature", {"celsius": 22.0}, {"manual": "true", "setpoint_c": 24.0},
     timedelta(minutes=1), False),
    ("set_temperature", {"celsius": 22.0}, {"manual": True, "scene": "bright"},
     timedelta(minutes=1), False),  # another setting
    ("set_scene", {"scene": "warm"}, {"manual": True, "scene": "bright"},
     timedelta(minutes=2), True),
    ("set_scene", {"scene": "warm"}, {"manual": True, "scene": "warm"},
     timedelta(minutes=2), False),
    ("show", {"text": "Welcome"}, {"manual": True, "scene": "bright"},
     timedelta(minutes=2), False),  # a greeting cannot be undone
    (None, {}, {"manual": True, "setpoint_c": 24.0}, timedelta(minutes=2), False),
])
def test_is_override(name: str | None, params: dict[str, object], readings: dict[str, object],
                     after: timedelta, overridden: bool) -> None:
    assert is_override(name, params, readings, sent_at=SENT, now=SENT + after) is overridden


def test_a_filter_list_is_any_of_its_values_so_rides_bring_no_welcome_back_cue() -> None:
    facts = Facts(trigger="entry_allowed", now=NOW, guest={"id": "g", "display_name": "G"},
                  consents=frozenset({"personalization"}), device={"id": "gate-1"},
                  counters={"entries": 1, "earlier_stays": 2})
    for kind, cues in (("area", 1), ("room", 1), ("ride", 0), (None, 0)):
        zone = {"id": "z", "kind": kind} if kind else {}
        assert len(plan([returning_guest()], replace(facts, zone=zone))) == cues, kind
