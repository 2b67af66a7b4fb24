"""Scheduled automations: due at their venue time, once a day across workers, per guest."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.automations.occurrence import Occurrence
from hub.automations.rules import Action, Rule, RuleError, validate
from hub.automations.scheduler import Scheduler, due, guests_on_site, schedule_of
from hub.db import session_scope
from hub.demo import SPA_GUESTS, STRICT_VENUE_ID, VENUE_ID
from hub.models import ScheduleFiring, Venue
from tests.utils.demo_db import demo_sqlite

NOW = datetime(2026, 11, 23, 7, 40, tzinfo=UTC)


def morning(at: str = "07:30", rule_id: str = "good-morning") -> Rule:
    return Rule(id=rule_id, name="Good morning", purpose="personalization", trigger="schedule",
                filters={"event.schedule": at},
                actions=(Action("command", "room:display", "show",
                                {"text": "Good morning, {guest.display_name}",
                                 "kind": "greeting"}),))


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return demo_sqlite(request, tmp_path / "hub.db", now=NOW - timedelta(hours=2),
                       sqlite_synchronous="OFF")


def test_due_from_its_time_for_an_hour() -> None:
    at = time(7, 30)
    assert not due(at, NOW.replace(hour=7, minute=29))
    assert due(at, NOW.replace(hour=7, minute=30))
    assert due(at, NOW.replace(hour=8, minute=29, second=59))
    assert not due(at, NOW.replace(hour=8, minute=30))  # a greeting is not sent at noon


def test_only_a_schedule_rule_with_a_valid_time_has_a_schedule() -> None:
    assert schedule_of(morning()) == time(7, 30)
    assert schedule_of(morning("7h30")) is None
    assert schedule_of(Rule(id="x", name="x", purpose="service", trigger="entry_allowed",
                            filters={"event.schedule": "07:30"})) is None
    with pytest.raises(RuleError, match="event.schedule"):
        validate(morning("25:00"), known_devices=[])
    validate(morning(), known_devices=[])  # a good one passes


def test_guests_on_site_are_those_with_a_stay_or_ticket_now(engine: Engine) -> None:
    with Session(engine) as session:
        assert len(guests_on_site(session, "demo-resort", NOW)) == 20
        assert guests_on_site(session, "demo-resort", NOW + timedelta(days=10)) == []
        assert guests_on_site(session, "elsewhere", NOW) == []


def test_a_rule_fires_once_a_day_whichever_worker_gets_there(engine: Engine) -> None:
    handed: list[Occurrence] = []
    clock = [NOW]
    workers = [Scheduler(engine, handed.append, lambda: [morning()], clock=lambda: clock[0])
               for _ in range(2)]
    # The demo's 20 guests at the resort, and the 5 of them with a spa pass at the spa.
    assert workers[0].run_once() == 25
    assert workers[1].run_once() == 0  # the other worker finds today's firing recorded
    assert workers[0].run_once() == 0
    assert {o.guest_id for o in handed} == {f"guest-{n:02d}" for n in range(1, 21)}
    assert sorted(str(o.guest_id) for o in handed if o.venue == STRICT_VENUE_ID) == [
        f"guest-{n:02d}" for n in SPA_GUESTS]
    assert {(o.trigger, o.device_id, o.schedule, o.rule_id) for o in handed} == {
        ("schedule", None, "07:30", "good-morning")}
    clock[0] = NOW + timedelta(days=1)  # tomorrow morning: again (the guests are still here)
    assert workers[1].run_once() == 25
    with Session(engine) as session:
        days = sorted((f.day, f.venue_id) for f in session.exec(select(ScheduleFiring)).all())
    assert days == [(day, venue) for day in ("2026-11-23", "2026-11-24")
                    for venue in sorted((VENUE_ID, STRICT_VENUE_ID))]


def test_the_venue_s_time_zone_decides(engine: Engine) -> None:
    with session_scope(engine) as session:
        venue = session.get(Venue, "demo-resort")
        assert venue is not None
        venue.timezone = "Asia/Tokyo"  # 07:40 UTC is 16:40 there
    handed: list[Occurrence] = []
    scheduler = Scheduler(engine, handed.append, lambda: [morning(), morning("16:00", "tea")],
                          clock=lambda: NOW)
    assert scheduler.run_once() == 25
    # At the resort it is tea time; the spa next door keeps UTC, where it is morning.
    assert {(o.venue, o.rule_id) for o in handed} == {(VENUE_ID, "tea"),
                                                      (STRICT_VENUE_ID, "good-morning")}


def test_nothing_scheduled_reads_nothing(engine: Engine) -> None:
    handed: list[Occurrence] = []
    disabled = Rule(**{**morning().__dict__, "enabled": False})
    assert Scheduler(engine, handed.append, lambda: [disabled], clock=lambda: NOW).run_once() == 0
    assert handed == []
