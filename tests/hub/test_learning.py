"""The learning thermostat counts changes of the dial, not the readings that repeat them;
an erased guest's queued commands are never sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from devices.client import new_event_id
from devices.contract import TelemetryEvent, encode
from devices.topics import Channel, device_topic
from hub import appliance_queue
from hub.automations.learner import learn_from
from hub.db import session_scope
from hub.demo import VENUE_ID
from hub.models import AutomationRun, Consent, GuestPreferences, RunStatus, utcnow
from hub.privacy import erase_guest
from tests.utils.demo_db import demo_sqlite
from tests.utils.ingest import feed


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    engine = demo_sqlite(request, tmp_path / "hub.db", sqlite_synchronous="OFF")
    with session_scope(engine) as session:
        session.add(GuestPreferences(guest_id="guest-02", room_temperature_c=21.0))
        session.add(Consent(guest_id="guest-02", purpose="personalization", granted=True))
    return engine


def dial(engine: Engine, setpoint: float, *, manual: bool, at_s: float) -> None:
    """A thermostat-102 report, fed and then learnt from as the runner would."""
    now = utcnow() + timedelta(seconds=at_s)
    event = TelemetryEvent(event_id=new_event_id(), ts=now, readings={
        "setpoint_c": setpoint, "temperature_c": 21.0, "manual": manual})
    outcome = feed(engine, device_topic(VENUE_ID, "thermostat-102", Channel.EVENTS),
                   encode(event), now)
    assert outcome.occurrence is not None
    with session_scope(engine) as session:
        learn_from(session, outcome.occurrence)


def preferred(engine: Engine) -> float | None:
    with Session(engine) as session:
        prefs = session.get(GuestPreferences, "guest-02")
        return prefs.room_temperature_c if prefs else None


def test_one_turn_of_the_dial_reported_again_and_again_teaches_nothing(engine: Engine) -> None:
    dial(engine, 24.0, manual=True, at_s=1)
    dial(engine, 24.0, manual=True, at_s=2)  # the thermostat's next tick, same setpoint
    dial(engine, 24.0, manual=True, at_s=3)
    assert preferred(engine) == 21.0
    # Three real changes the same way (warmer than 21) are learnt, to the half degree.
    dial(engine, 23.0, manual=True, at_s=4)
    dial(engine, 23.5, manual=True, at_s=5)
    assert preferred(engine) == 23.5  # mean of 24, 23, 23.5


def test_the_same_setpoint_chosen_again_after_an_automation_counts_again(
        engine: Engine) -> None:
    for at, (setpoint, manual) in enumerate([(23.0, True), (21.0, False), (23.0, True),
                                             (21.0, False), (23.0, True)]):
        dial(engine, setpoint, manual=manual, at_s=at)
    assert preferred(engine) == 23.0


def test_an_erased_guest_s_queued_commands_expire_unsent(engine: Engine) -> None:
    now = utcnow()
    with session_scope(engine) as session:
        session.add(AutomationRun(rule_id="room-welcome", action="command",
                                  guest_id="guest-02", device_id="thermostat-102",
                                  command_id="c-1", name="set_temperature",
                                  params={"celsius": 23.5}, status=RunStatus.QUEUED,
                                  created_at=now))
    with session_scope(engine) as session:
        erase_guest(session, guest_id="guest-02", now=now)
    with session_scope(engine) as session:
        sent = appliance_queue.release(session, venue=VENUE_ID, device_id="thermostat-102",
                                       now=now, ttl=timedelta(hours=1))
        run = session.get(AutomationRun, 1)
        assert run is not None
        assert (run.status, run.guest_id, run.params) == (RunStatus.EXPIRED, None, {})
    assert sent == []
