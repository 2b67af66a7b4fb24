"""The facts and counters automations see, gathered from a real (demo) database; overrides."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.automations.catalogue import breakfast, returning_guest, ride_reward, shipped
from hub.automations.engine import Planned, plan
from hub.automations.facts import Facts
from hub.automations.gather import load_facts
from hub.automations.learner import mark_overrides
from hub.automations.occurrence import Occurrence
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import VENUE_ID, seed_demo
from hub.models import (
    AutomationRun,
    Consent,
    Event,
    GuestPreferences,
    RunStatus,
    Telemetry,
    Venue,
)
from hub.store import guests

# The demo is seeded at a fixed time: its stays and tickets start at DAY and last three days.
NOW = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
DAY = NOW.replace(hour=0, minute=0)
WATCH = "watch-guest-01"
ROOM_101 = {"thermostat": "thermostat-101", "light": "light-101", "display": "display-101",
            "fridge_display": "fridge-101"}
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo venue, seeded once; ``engine`` (tests/hub/conftest.py) copies it per test."""
    path = tmp_path_factory.mktemp("occurrences") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, NOW)
    engine.dispose()
    return path


def facts_of(engine: Engine, occurrence: Occurrence) -> Facts:
    """The facts, everything read while the session is open (much of it is lazy)."""
    with session_scope(engine) as session:
        facts = load_facts(session, occurrence)
        assert facts is not None
        return replace(facts, counters=dict(facts.counters), guest=dict(facts.guest),
                       prefs=dict(facts.prefs), room_devices=dict(facts.room_devices))


def add(engine: Engine, *rows: Any) -> None:
    with session_scope(engine) as session:
        for row in rows:
            session.add(row)


def consent(engine: Engine, guest_id: str, *purposes: str, granted: bool = True) -> None:
    add(engine, *(Consent(guest_id=guest_id, purpose=p, granted=granted) for p in purposes))


def prefs(engine: Engine, guest_id: str, **values: Any) -> None:
    add(engine, GuestPreferences(guest_id=guest_id, **values))


def tap(engine: Engine, device_id: str, zone_id: str, guest_id: str, at: datetime, *,
        outcome: str = "allow") -> None:
    """A decided tap in the journey, as ingest records it."""
    add(engine, Event(device_id=device_id, venue_id=VENUE_ID, event_id=f"e-{next(_ids)}",
                      received_at=at, guest_id=guest_id, zone_id=zone_id, outcome=outcome,
                      reason="ok" if outcome == "allow" else "wrong_zone", text="",
                      decided_at=at))


def report(engine: Engine, device_id: str, at: datetime, readings: Mapping[str, Any]) -> int:
    """A telemetry row as ingest stores it; its id."""
    row = Telemetry(device_id=device_id, event_id=f"t-{next(_ids)}", kind="telemetry", ts=at,
                    received_at=at, data={"readings": dict(readings)})
    with session_scope(engine) as session:
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def heart(engine: Engine, bpm: int, at: datetime, device_id: str = WATCH) -> Occurrence:
    """A watch's heart-rate reading, stored, and the occurrence the runner gets for it."""
    row = report(engine, device_id, at, {"heart_rate_bpm": bpm})
    return Occurrence("telemetry", VENUE_ID, device_id, None, at,
                      readings={"heart_rate_bpm": bpm}, reported_at=at, telemetry_id=row)


def entry(guest_id: str, device_id: str, at: datetime = NOW) -> Occurrence:
    return Occurrence("entry_allowed", VENUE_ID, device_id, guest_id, at)


def summary(planned: list[Planned]) -> list[tuple[str, str, Any]]:
    return [(p.rule_id, p.kind, p.params.get("level")) for p in planned]


# ------------------------------------------------------------------ facts


def test_a_watchs_reading_is_its_wearers_and_is_health_data(engine: Engine) -> None:
    consent(engine, "guest-01", "health")
    consent(engine, "guest-01", "offers", granted=False)
    prefs(engine, "guest-01", display_name="Chuck", heart_rate_threshold=150, dietary=["vegan"])
    occurrence = heart(engine, 160, NOW)
    facts = facts_of(engine, occurrence)
    assert facts.guest == {"id": "guest-01", "name": "Charlie Baker", "display_name": "Chuck"}
    assert facts.device == {"id": WATCH, "kind": "watch"}
    assert facts.data_purposes == frozenset({"health"})
    assert facts.consents == frozenset({"health"})  # a refused consent is no consent
    assert facts.zone == {}
    assert facts.room_devices == ROOM_101  # the room of the wearer's stay, no door lock
    assert facts.reading == {"heart_rate_bpm": 160}
    assert (facts.prefs["heart_rate_threshold"], facts.prefs["dietary"]) == (150, ["vegan"])
    assert facts.trigger == "telemetry"


def test_a_door_is_not_health_data_and_its_room_is_its_own(engine: Engine) -> None:
    facts = facts_of(engine, entry("guest-03", "lock-103"))
    assert facts.data_purposes == frozenset()
    assert facts.guest["display_name"] == "Bo"  # no preferences: the guest's own
    assert facts.zone == {"id": "room-103", "kind": "room"}
    assert facts.room_devices == {k: v.replace("101", "103") for k, v in ROOM_101.items()}
    assert facts.consents == frozenset() and facts.prefs == {}


def test_an_unpaired_watch_belongs_to_nobody(engine: Engine) -> None:
    with session_scope(engine) as session:
        worn = guests.current_wearer(session=session, device_id=WATCH)
        assert worn is not None
        session.delete(worn)
    facts = facts_of(engine, heart(engine, 170, NOW))
    assert facts.guest == {} and facts.room_devices == {} and facts.consents == frozenset()
    assert facts.data_purposes == frozenset({"health"})  # a watch's readings still are
    assert "heart_rate_high" not in facts.counters and "earlier_stays" not in facts.counters
    assert plan(shipped(), facts) == []


def test_a_device_that_is_gone_has_no_facts(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert load_facts(session, entry("guest-01", "lock-999")) is None


def test_now_is_venue_local(engine: Engine) -> None:
    with session_scope(engine) as session:
        venue = session.get(Venue, VENUE_ID)
        assert venue is not None
        venue.timezone = "Asia/Tokyo"
    facts = facts_of(engine, entry("guest-01", "lock-101"))
    assert facts.now == NOW
    assert (facts.now.hour, facts.now.utcoffset()) == (18, timedelta(hours=9))
    assert facts.event["at"].utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize(("said", "believed"), [
    (timedelta(minutes=-5), True),
    (timedelta(hours=-23), True),
    (timedelta(days=-1), True),  # exactly a day old: still believed
    (timedelta(0), True),
    (timedelta(days=-1, seconds=-1), False),  # stale: the device's clock is wrong
    (timedelta(seconds=1), False),  # in the future: the device's clock is wrong
    (None, False),
])
def test_event_at_is_the_devices_time_when_plausible(engine: Engine, said: timedelta | None,
                                                     believed: bool) -> None:
    reported = None if said is None else NOW + said
    occurrence = Occurrence("telemetry", VENUE_ID, WATCH, None, NOW,
                            readings={"workout": "ended"}, reported_at=reported)
    at = facts_of(engine, occurrence).event["at"]
    assert at == (reported if believed else NOW)
    assert at.tzinfo is not None


# ---------------------------------------------------------------- counters


def test_recent_denials_are_this_doors_in_the_last_two_minutes(engine: Engine) -> None:
    for ago in (timedelta(seconds=10), timedelta(seconds=90), timedelta(minutes=3)):
        tap(engine, "lock-103", "room-103", "guest-04", NOW - ago, outcome="deny")
    tap(engine, "lock-104", "room-104", "guest-04", NOW, outcome="deny")  # another door
    tap(engine, "lock-103", "room-103", "guest-03", NOW - timedelta(seconds=5))  # allowed
    denied = Occurrence("entry_denied", VENUE_ID, "lock-103", "guest-04", NOW,
                        reason="wrong_zone")
    assert facts_of(engine, denied).counters["recent_denials"] == 2


@pytest.mark.parametrize(("guest", "earlier"), [("guest-01", 1), ("guest-02", 1),
                                                 ("guest-03", 0), ("guest-11", 0)])
def test_earlier_stays_are_the_demos_returning_guests(engine: Engine, guest: str,
                                                      earlier: int) -> None:
    assert facts_of(engine, entry(guest, "gate-park-in-1")).counters["earlier_stays"] == earlier


def test_rides_entries_and_visits(engine: Engine) -> None:
    guest = "guest-03"
    tap(engine, "gate-park-in-1", "park", guest, DAY - timedelta(days=2))  # an old ticket
    tap(engine, "gate-park-in-1", "park", guest, DAY - timedelta(hours=1))  # yesterday
    tap(engine, "gate-park-in-1", "park", guest, NOW - timedelta(hours=2))
    tap(engine, "gate-park-in-1", "park", guest, NOW - timedelta(hours=1))
    tap(engine, "gate-park-in-1", "park", guest, NOW - timedelta(minutes=30), outcome="deny")
    tap(engine, "gate-park-in-1", "park", "guest-04", NOW)  # someone else
    tap(engine, "ride-coaster-1", "coaster", guest, NOW - timedelta(minutes=20))
    tap(engine, "ride-carousel-1", "carousel", guest, NOW - timedelta(minutes=10))
    tap(engine, "ride-coaster-1", "coaster", guest, NOW - timedelta(minutes=5), outcome="deny")
    tap(engine, "ride-coaster-1", "coaster", guest, DAY - timedelta(days=3))  # rides ever
    counters = facts_of(engine, entry(guest, "gate-park-in-1")).counters
    assert counters["entries"] == 2  # since today's ticket began, allowed only
    assert counters["visits"] == 3  # three distinct days in the park
    assert counters["rides"] == 3  # every allowed ride, of any ticket
    ride = facts_of(engine, entry(guest, "ride-coaster-1")).counters
    assert (ride["entries"], ride["visits"], ride["rides"]) == (1, 2, 3)


def test_a_guest_without_an_entitlement_for_the_zone_has_no_earlier_entries(
        engine: Engine) -> None:
    # guest-03 has no stay in room 101: only what happens from now on counts
    tap(engine, "lock-101", "room-101", "guest-03", NOW - timedelta(minutes=1))
    tap(engine, "lock-101", "room-101", "guest-03", NOW)
    assert facts_of(engine, entry("guest-03", "lock-101")).counters["entries"] == 1


def test_the_heart_rate_run_escalates_1_2_3_3_and_staff_hear_once(engine: Engine) -> None:
    consent(engine, "guest-01", "health")
    prefs(engine, "guest-01", heart_rate_threshold=150)
    runs, levels, planned = [], [], []
    for minute, bpm in enumerate((140, 155, 160, 171, 180)):
        facts = facts_of(engine, heart(engine, bpm, NOW + timedelta(minutes=minute)))
        runs.append(facts.counters["heart_rate_high"])
        levels.append(facts.counters["heart_rate_level"])
        planned.append(summary(plan(shipped(), facts)))
    assert runs == [0, 1, 2, 3, 4]
    assert levels == [0, 1, 2, 3, 3]
    assert planned == [
        [],
        [("health-watch", "command", 1)],
        [("health-watch", "command", 2)],
        [("health-watch", "command", 3), ("health-staff", "alert_staff", None)],
        [("health-watch", "command", 3)],
    ]


def test_without_health_consent_a_high_heart_rate_does_nothing(engine: Engine) -> None:
    consent(engine, "guest-01", "personalization", "offers", "analytics")
    consent(engine, "guest-01", "health", granted=False)
    prefs(engine, "guest-01", heart_rate_threshold=150)
    for minute in range(4):
        facts = facts_of(engine, heart(engine, 170, NOW + timedelta(minutes=minute)))
        assert plan(shipped(), facts) == []
    assert facts.counters["heart_rate_high"] == 4


def test_what_breaks_a_heart_rate_run_and_what_does_not(engine: Engine) -> None:
    prefs(engine, "guest-01", heart_rate_threshold=150)
    at = NOW - timedelta(minutes=20)
    heart(engine, 170, at)  # too long ago to be this episode
    heart(engine, 170, at + timedelta(minutes=11))
    heart(engine, 150, at + timedelta(minutes=12))  # at the threshold: not above it
    heart(engine, 165, at + timedelta(minutes=13))
    report(engine, WATCH, at + timedelta(minutes=14), {"workout": "ended",
                                                      "workout_kind": "run"})  # no bpm
    heart(engine, 166, at + timedelta(minutes=15))
    heart(engine, 160, at + timedelta(minutes=16), device_id="watch-guest-02")  # not this watch
    current = heart(engine, 172, at + timedelta(minutes=16))
    assert facts_of(engine, current).counters["heart_rate_high"] == 3
    # A reading the runner gets to later does not count for this one
    heart(engine, 190, at + timedelta(minutes=16))
    assert facts_of(engine, current).counters["heart_rate_high"] == 3


def test_staff_hear_once_of_a_long_episode_whatever_the_watchs_rhythm(engine: Engine) -> None:
    consent(engine, "guest-01", "health")
    prefs(engine, "guest-01", heart_rate_threshold=150)
    alerts = 0
    for n in range(6):  # a reading every four minutes, all high: one episode of 20 minutes
        facts = facts_of(engine, heart(engine, 170, NOW + timedelta(minutes=4 * n)))
        alerts += sum(p.rule_id == "health-staff" for p in plan(shipped(), facts))
    assert alerts == 1


def test_no_threshold_no_heart_rate_counters(engine: Engine) -> None:
    prefs(engine, "guest-01", dietary=["vegan"])
    counters = facts_of(engine, heart(engine, 200, NOW)).counters
    assert (counters["heart_rate_high"], counters["heart_rate_level"]) == (0, 0)


# ------------------------------------------------- shipped rules on the real facts


def test_breakfast_after_a_morning_workout_reported_late(engine: Engine) -> None:
    consent(engine, "guest-01", "personalization", "health")
    prefs(engine, "guest-01", dietary=["vegan"])
    readings = {"workout": "ended", "workout_kind": "swim", "duration_min": 40}
    heard = NOW.replace(hour=12, minute=30)  # the watch synced at lunchtime
    morning = Occurrence("telemetry", VENUE_ID, WATCH, None, heard, readings=readings,
                         reported_at=NOW.replace(hour=8, minute=10))
    [show] = plan(shipped(), facts_of(engine, morning))
    assert (show.rule_id, show.device_id, show.name) == ("breakfast", "fridge-101", "show")
    assert show.params["text"] == ("Good morning, Charlie: after your swim, how about "
                                   "a tofu scramble with spinach and potatoes?")
    noon = Occurrence("telemetry", VENUE_ID, WATCH, None, heard, readings=readings,
                      reported_at=NOW.replace(hour=11, minute=50))
    assert plan([breakfast()], facts_of(engine, noon)) == []
    # without the health consent, a watch's workout is not for the fridge
    with session_scope(engine) as session:
        health = session.get(Consent, ("guest-01", "health"))
        assert health is not None
        health.granted = False
    assert plan([breakfast()], facts_of(engine, morning)) == []


def test_returning_guest_cue_on_the_first_entry_of_a_stay(engine: Engine) -> None:
    for guest in ("guest-01", "guest-03"):
        consent(engine, guest, "personalization")
    prefs(engine, "guest-01", room_temperature_c=21.5, language="es")
    tap(engine, "lock-101", "room-101", "guest-01", NOW)
    [cue] = plan([returning_guest()], facts_of(engine, entry("guest-01", "lock-101")))
    assert (cue.params["guest_id"], cue.params["zone_id"], cue.params["text"]) == (
        "guest-01", "room-101", "Welcome back, Charlie")
    assert (cue.params["room_temperature_c"], cue.params["language"]) == (21.5, "es")
    later = NOW + timedelta(hours=2)
    tap(engine, "lock-101", "room-101", "guest-01", later)
    assert plan([returning_guest()], facts_of(engine, entry("guest-01", "lock-101", later))) \
        == []
    tap(engine, "lock-103", "room-103", "guest-03", NOW)  # a first stay
    assert plan([returning_guest()], facts_of(engine, entry("guest-03", "lock-103"))) == []


def test_ride_reward_on_the_fifth_ride_only(engine: Engine) -> None:
    consent(engine, "guest-04", "offers")
    offers = []
    for n, gate in enumerate(["ride-coaster-1", "ride-carousel-1"] * 3, start=1):
        at = NOW + timedelta(minutes=10 * n)
        tap(engine, gate, gate.split("-")[1], "guest-04", at)
        facts = facts_of(engine, entry("guest-04", gate, at))
        assert facts.counters["rides"] == n
        offers += [(n, p.params["text"]) for p in plan([ride_reward()], facts)]
    assert offers == [(5, "5 rides! A free drink at the Cafe is on us today.")]


# ------------------------------------------------------------------ overrides


def sent_run(device_id: str, name: str, params: dict[str, Any], sent: datetime, *,
             status: RunStatus = RunStatus.SENT) -> AutomationRun:
    return AutomationRun(rule_id="room-welcome", action="command", guest_id="guest-01",
                         device_id=device_id, command_id=f"c-{next(_ids)}", name=name,
                         params=params, status=status, created_at=sent,
                         sent_at=sent if status is RunStatus.SENT else None)


def manual(device_id: str, at: datetime = NOW, **readings: Any) -> Occurrence:
    return Occurrence("telemetry", VENUE_ID, device_id, None, at,
                      readings={"manual": True, **readings})


def overridden(engine: Engine) -> dict[int, datetime | None]:
    with Session(engine) as session:
        return {run.id: run.overridden_at for run in session.exec(select(AutomationRun)).all()
                if run.id is not None}


def mark(engine: Engine, occurrence: Occurrence) -> int:
    with session_scope(engine) as session:
        return mark_overrides(session, occurrence)


def test_only_the_latest_command_undone_within_ten_minutes_is_marked(engine: Engine) -> None:
    minutes = [timedelta(minutes=m) for m in range(11)]
    add(engine,
        sent_run("thermostat-101", "set_temperature", {"celsius": 21.0}, NOW - minutes[8]),
        sent_run("thermostat-101", "set_temperature", {"celsius": 22.0}, NOW - minutes[3]),
        sent_run("thermostat-101", "set_temperature", {"celsius": 20.0}, NOW,
                 status=RunStatus.QUEUED),  # never reached the thermostat
        sent_run("thermostat-102", "set_temperature", {"celsius": 22.0},
                 NOW - minutes[2]))  # another room
    assert mark(engine, manual("thermostat-101", setpoint_c=24.0)) == 1
    assert overridden(engine) == {1: None, 2: NOW, 3: None, 4: None}
    # Reported again (the thermostat's next tick): already marked, when it first happened
    assert mark(engine, manual("thermostat-101", NOW + timedelta(minutes=1),
                               setpoint_c=24.0)) == 0
    assert overridden(engine) == {1: None, 2: NOW, 3: None, 4: None}


@pytest.mark.parametrize(("sent_ago", "readings", "marked"), [
    (timedelta(minutes=10), {"manual": True, "setpoint_c": 24.0}, 1),
    (timedelta(minutes=10, seconds=1), {"manual": True, "setpoint_c": 24.0}, 0),
    (timedelta(minutes=2), {"manual": True, "setpoint_c": 22.0}, 0),  # what it was set to
    (timedelta(minutes=2), {"manual": False, "setpoint_c": 24.0}, 0),
    (timedelta(minutes=2), {"manual": True, "temperature_c": 24.0}, 0),  # no setpoint
])
def test_an_override_is_a_manual_change_to_another_value_within_ten_minutes(
        engine: Engine, sent_ago: timedelta, readings: dict[str, Any], marked: int) -> None:
    add(engine, sent_run("thermostat-101", "set_temperature", {"celsius": 22.0}, NOW - sent_ago))
    occurrence = Occurrence("telemetry", VENUE_ID, "thermostat-101", None, NOW,
                            readings=readings)
    assert mark(engine, occurrence) == marked
    assert overridden(engine) == {1: NOW if marked else None}


def test_the_latest_command_of_each_name_counts(engine: Engine) -> None:
    add(engine,
        sent_run("light-101", "set_scene", {"scene": "warm"}, NOW - timedelta(minutes=5)),
        sent_run("light-101", "blink", {"times": 2}, NOW - timedelta(minutes=1)))
    # a later command of another name does not supersede the scene
    assert mark(engine, manual("light-101", scene="bright")) == 1
    assert overridden(engine) == {1: NOW, 2: None}
