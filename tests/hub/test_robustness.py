"""What one bad rule, a withdrawn consent or a departed guest must not be able to do."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub import appliance_queue
from hub.automations.catalogue import health_watch
from hub.automations.engine import plan
from hub.automations.facts import Facts
from hub.automations.occurrence import Occurrence
from hub.automations.rules import Action, ReadingAbove, Rule
from hub.automations.runner import AutomationRunner
from hub.db import create_db_engine, init_db, session_scope
from hub.models import AutomationRun, Consent, Entitlement, RunStatus, utcnow
from tests.utils.demo_db import demo_sqlite

NOW = utcnow()
BROKEN = Rule(id="broken", name="stored before validation got stricter", purpose="health",
              trigger="telemetry", filters={"device.kind": "watch"},
              actions=(Action("notify_guest", None, None, {"text": "{weather.sky}"}),))


def watch_facts() -> Facts:
    return Facts(trigger="telemetry", now=NOW, data_purposes=frozenset({"health"}),
                 guest={"id": "guest-03", "display_name": "Bo"},
                 prefs={"heart_rate_threshold": 120}, consents=frozenset({"health"}),
                 device={"id": "watch-guest-03", "kind": "watch"},
                 reading={"heart_rate_bpm": 150}, counters={"heart_rate_level": 1})


def test_a_rule_that_cannot_be_evaluated_does_not_silence_the_others() -> None:
    errors: list[tuple[str, str]] = []
    actions = plan([BROKEN, health_watch()], watch_facts(),
                   on_error=lambda rule, exc: errors.append((rule.id, type(exc).__name__)))
    assert [(a.rule_id, a.name) for a in actions] == [("health-watch", "vibrate")]
    assert errors == [("broken", "AttributeError")]


def test_a_limit_that_is_no_number_makes_the_condition_false_not_a_crash() -> None:
    odd = Rule(id="odd", name="odd", purpose="health", trigger="telemetry",
               conditions=(ReadingAbove(field="heart_rate_bpm", limit="high"),),
               actions=(Action("notify_guest", None, None, {"text": "x"}),))
    assert plan([odd], watch_facts()) == []


def test_a_service_rule_sees_no_preferences_even_if_stored_so() -> None:
    nosy = Rule(id="nosy", name="nosy", purpose="service", trigger="telemetry",
                actions=(Action("alert_staff", None, None,
                                {"text": "limit {prefs.heart_rate_threshold}"}),))
    facts = watch_facts()
    [action] = plan([nosy], Facts(**{**facts.__dict__, "data_purposes": frozenset()}))
    assert action.params["text"] == "limit "


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return demo_sqlite(request, tmp_path / "hub.db", now=NOW - timedelta(hours=1),
                       sqlite_synchronous="OFF")


def test_the_runner_records_the_broken_rule_and_carries_out_the_others(engine: Engine) -> None:
    sent: list[str] = []
    runner = AutomationRunner(engine, lambda t, p: sent.append(t), lambda _s, _o: watch_facts(),
                              lambda: [BROKEN, health_watch()])
    with session_scope(engine) as session:
        device = session.get(__import__("hub.models").models.Device, "watch-guest-03")
        assert device is not None
        device.online = True
    runner.start()
    runner.submit(Occurrence("telemetry", "demo-resort", "watch-guest-03", None, NOW))
    assert runner.drain()
    runner.stop()
    with Session(engine) as session:
        rows = {r.rule_id: r for r in session.exec(select(AutomationRun)).all()}
    assert rows["broken"].status is RunStatus.FAILED and "weather" in (rows["broken"].detail
                                                                        or "")
    assert rows["health-watch"].status is RunStatus.SENT and len(sent) == 1


def test_a_queued_welcome_is_not_shown_to_the_next_guest_of_the_room(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Consent(guest_id="guest-01", purpose="personalization", granted=True))
        session.add(AutomationRun(rule_id="room-welcome", action="command", guest_id="guest-01",
                                  device_id="display-101", command_id="c-1", name="show",
                                  params={"text": "Welcome, Charlie", "kind": "greeting"},
                                  purposes=["personalization"], status=RunStatus.QUEUED,
                                  created_at=NOW))
    with session_scope(engine) as session:  # Charlie checks out before the display is back
        stay = session.get(Entitlement, "stay-guest-01")
        assert stay is not None
        stay.valid_until = NOW + timedelta(minutes=1)
    with session_scope(engine) as session:
        out = appliance_queue.release(session, venue="demo-resort", device_id="display-101",
                                      now=NOW + timedelta(minutes=5), ttl=timedelta(hours=1))
        run = session.exec(select(AutomationRun)).one()
        assert (run.status, run.detail) == (RunStatus.EXPIRED,
                                            "the guest no longer stays in room-101")
    assert out == []


def test_a_quick_double_tap_still_welcomes_once(engine: Engine) -> None:
    from hub.automations.catalogue import room_welcome
    from hub.automations.gather import load_facts
    from hub.demo import wristband_uid
    from hub.models import GuestPreferences
    from tests.utils import ingest

    with session_scope(engine) as session:
        session.add(Consent(guest_id="guest-04", purpose="personalization", granted=True))
        session.add(GuestPreferences(guest_id="guest-04", room_temperature_c=22.0,
                                     lighting_scene="warm"))
    first = ingest.tap(engine, "demo-resort", "lock-104", NOW, "t1", uid=wristband_uid(4))
    second = ingest.tap(engine, "demo-resort", "lock-104", NOW + timedelta(seconds=1), "t2",
                       uid=wristband_uid(4))
    assert first.occurrence is not None and second.occurrence is not None
    # The runner gets to both after both are recorded.
    welcomes = []
    for occurrence in (first.occurrence, second.occurrence):
        with session_scope(engine) as session:
            facts = load_facts(session, occurrence)
            assert facts is not None
            welcomes.append(len(plan([room_welcome()], facts)))
    assert welcomes == [3, 0]  # thermostat, light, display: once


def test_an_appliance_that_never_comes_back_has_its_queue_expired_and_reported(
        engine: Engine) -> None:
    from devices.contract import parse_staff_alert
    from hub.automations.scheduler import Scheduler

    with session_scope(engine) as session:
        for n, age in ((1, 90), (2, 10)):  # minutes waiting
            session.add(AutomationRun(rule_id="room-welcome", action="command",
                                      device_id="thermostat-101", command_id=f"c-{n}",
                                      name="set_temperature", params={"celsius": 22},
                                      status=RunStatus.QUEUED,
                                      created_at=NOW - timedelta(minutes=age)))
    published: list[tuple[str, bytes]] = []
    sweeper = Scheduler(engine, lambda _o: None, list, clock=lambda: NOW,
                        publish=lambda t, p: published.append((t, p)),
                        command_ttl=timedelta(hours=1))
    assert sweeper.sweep() == 1
    assert sweeper.sweep() == 0  # reported once
    with Session(engine) as session:
        status = {r.command_id: r.status for r in session.exec(select(AutomationRun)).all()}
    assert status == {"c-1": RunStatus.EXPIRED, "c-2": RunStatus.QUEUED}
    [(topic, payload)] = published
    alert = parse_staff_alert(payload)
    assert topic.endswith("/staff/alerts")
    assert (alert.cue, alert.device_id) == ("command_expired", "thermostat-101")


def test_a_guest_who_consented_to_nothing_is_not_worth_the_facts(engine: Engine) -> None:
    from hub.automations.catalogue import returning_guest, room_welcome, stuck_guest
    from hub.automations.gather import might_apply

    tap = Occurrence("entry_allowed", "demo-resort", "lock-105", "guest-05", NOW)
    with Session(engine) as session:
        assert not might_apply(session, tap, [room_welcome(), returning_guest()])
        assert might_apply(session, tap, [room_welcome(), stuck_guest()])  # service: always
        unknown = Occurrence("entry_denied", "demo-resort", "lock-105", None, NOW)
        assert might_apply(session, unknown, [room_welcome()])
    with session_scope(engine) as session:
        session.add(Consent(guest_id="guest-05", purpose="personalization", granted=True))
    with Session(engine) as session:
        assert might_apply(session, tap, [room_welcome(), returning_guest()])


def test_the_reader_engine_reads_beside_a_writer_and_refuses_to_write(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'rw.db'}"
    writer = create_db_engine(url)
    init_db(writer)
    reader = create_db_engine(url, read_only=True)
    with writer.connect() as holding:  # a writer in the middle of its transaction
        holding.exec_driver_sql("INSERT INTO venue (id, name, timezone, currency, "
                                "allow_plain_uid, created_at) VALUES ('v', 'V', 'UTC', "
                                "'USD', 1, '2026-01-01 00:00:00')")
        with reader.connect() as looking:
            assert looking.exec_driver_sql("SELECT count(*) FROM venue").scalar() == 0
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                looking.exec_driver_sql("DELETE FROM venue")
        holding.commit()


def test_the_learnt_temperature_stays_within_what_a_guest_may_prefer() -> None:
    from hub.automations.learning import learned_temperature

    assert learned_temperature(21.0, [40.0, 45.0, 50.0]) == 28.0
    assert learned_temperature(21.0, [5.0, 3.0, 4.0]) == 16.0
    assert learned_temperature(21.0, [float("nan"), 23.0, float("inf"), 23.0, 24.0]) == 23.5
    assert learned_temperature(21.0, [1e308, 1e308, 1e308, 23.0]) is None  # no overflow


def test_a_queued_vibration_is_not_felt_by_the_watch_s_next_wearer(engine: Engine) -> None:
    from hub.wearables import pair

    with session_scope(engine) as session:
        session.add(Consent(guest_id="guest-03", purpose="health", granted=True))
        session.add(AutomationRun(rule_id="health-watch", action="command", guest_id="guest-03",
                                  device_id="watch-guest-03", command_id="v-1", name="vibrate",
                                  params={"level": 1, "reason": "Heart rate 150 bpm"},
                                  purposes=["health"], status=RunStatus.QUEUED,
                                  created_at=NOW))
    with session_scope(engine) as session:
        pair(session, device_id="watch-guest-03", guest_id="guest-13", now=NOW)
    with session_scope(engine) as session:
        out = appliance_queue.release(session, venue="demo-resort", device_id="watch-guest-03",
                                      now=NOW + timedelta(minutes=1), ttl=timedelta(hours=1))
        run = session.exec(select(AutomationRun)).one()
        assert (run.status, run.detail) == (RunStatus.EXPIRED,
                                            "watch-guest-03 is no longer worn by the guest")
    assert out == []


def test_an_automation_publish_is_refused_while_the_broker_is_away(tmp_path: Path,
                                                                   engine: Engine) -> None:
    from hub.bridge import Bridge
    from tests.conftest import hub_settings

    bridge = Bridge(hub_settings(tmp_path), engine)  # never connected
    with pytest.raises(ConnectionError, match="out of reach"):
        bridge.publish("venuehub/v1/demo-resort/hub/watch-guest-03/commands", b"{}",
                       strict=True)
    # Others (receipts, retained key lists) let paho keep it for the next connection.
    bridge.publish("venuehub/v1/demo-resort/keys/jwks", b"{}", retain=True)


def test_a_command_whose_preference_is_unset_is_not_sent() -> None:
    from hub.automations.catalogue import room_welcome

    facts = Facts(trigger="entry_allowed", now=NOW, guest={"id": "g", "display_name": "Bo"},
                  prefs={"lighting_scene": "warm"}, consents=frozenset({"personalization"}),
                  zone={"id": "room-103", "kind": "room"},
                  device={"id": "lock-103", "kind": "door_lock"}, counters={"first_entry": 1},
                  room_devices={"thermostat": "t", "light": "l", "display": "d"})
    # No room temperature set: the light and the greeting, but no set_temperature(null).
    assert [(a.device_id, a.name) for a in plan([room_welcome()], facts)] == [
        ("l", "set_scene"), ("d", "show")]

