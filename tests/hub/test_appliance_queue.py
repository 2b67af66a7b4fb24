"""Commands queued for an offline appliance: sent when it is back, or expired and reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from devices.contract import parse_command
from devices.topics import Channel, device_topic, staff_topic
from hub.appliance_queue import release
from hub.db import create_db_engine, init_db, session_scope
from hub.models import AutomationRun, RunStatus

VENUE = "demo-resort"
NOW = datetime(2026, 7, 1, 18, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}", sqlite_synchronous="OFF")
    init_db(engine)
    yield engine
    engine.dispose()


def queue(engine: Engine, device_id: str, name: str, params: dict[str, Any], created: datetime,
          *, status: RunStatus = RunStatus.QUEUED, rule_id: str = "room-welcome") -> None:
    with session_scope(engine) as session:
        n = len(session.exec(select(AutomationRun)).all()) + 1
        session.add(AutomationRun(rule_id=rule_id, action="command", guest_id="guest-01",
                                  device_id=device_id, command_id=f"cmd-{n}", name=name,
                                  params=params, status=status, created_at=created,
                                  sent_at=created if status is RunStatus.SENT else None))


def back_online(engine: Engine, device_id: str, now: datetime = NOW) -> list[tuple[str, bytes]]:
    with session_scope(engine) as session:
        return release(session, venue=VENUE, device_id=device_id, now=now, ttl=TTL)


def runs(engine: Engine) -> dict[str, AutomationRun]:
    with Session(engine) as session:
        return {r.command_id or "": r for r in
                session.exec(select(AutomationRun).order_by(col(AutomationRun.id))).all()}


def said(alert: dict[str, Any], name: str) -> Any:
    """A staff alert's field, or what it carries in its ``details``."""
    return alert[name] if name in alert else alert.get("details", {}).get(name)


def test_queued_commands_go_out_in_order_with_their_ids_when_the_device_is_back(
        engine: Engine) -> None:
    queue(engine, "thermostat-101", "set_temperature", {"celsius": 22.0},
          NOW - timedelta(minutes=20))
    queue(engine, "thermostat-101", "set_temperature", {"celsius": 23.5},
          NOW - timedelta(minutes=5))
    messages = back_online(engine, "thermostat-101")
    topic = device_topic(VENUE, "thermostat-101", Channel.COMMANDS)
    assert [t for t, _ in messages] == [topic, topic]
    commands = [parse_command(p) for _, p in messages]
    assert [(c.command_id, c.name, dict(c.params)) for c in commands] == [
        ("cmd-1", "set_temperature", {"celsius": 22.0}),
        ("cmd-2", "set_temperature", {"celsius": 23.5})]
    # issued when the automation decided, not now: the device can tell its age
    assert [c.issued_at for c in commands] == [NOW - timedelta(minutes=20),
                                               NOW - timedelta(minutes=5)]
    stored = runs(engine)
    assert [(r.status, r.sent_at, r.detail) for r in stored.values()] == [
        (RunStatus.SENT, NOW, None), (RunStatus.SENT, NOW, None)]
    assert back_online(engine, "thermostat-101") == []  # sent once only


def test_a_command_older_than_the_ttl_expires_and_staff_are_told(engine: Engine) -> None:
    created = NOW - TTL - timedelta(seconds=1)
    queue(engine, "display-101", "show", {"text": "Welcome, Charlie"}, created)
    queue(engine, "display-101", "show", {"text": "Dinner at eight"}, NOW - TTL)  # just in time
    messages = back_online(engine, "display-101")
    assert [t for t, _ in messages] == [staff_topic(VENUE),
                                        device_topic(VENUE, "display-101", Channel.COMMANDS)]
    alert = json.loads(messages[0][1])
    assert {k: said(alert, k) for k in ("kind", "rule", "cue", "device_id", "command")} == {
        "kind": "alert", "rule": "room-welcome", "cue": "command_expired",
        "device_id": "display-101", "command": "show"}
    assert datetime.fromisoformat(said(alert, "queued_at")) == created
    assert datetime.fromisoformat(alert["at"]) == NOW
    assert "was not sent" in alert["text"] and "display-101" in alert["text"]
    assert parse_command(messages[1][1]).params["text"] == "Dinner at eight"
    expired, sent = runs(engine).values()
    assert (expired.status, expired.sent_at) == (RunStatus.EXPIRED, None)
    assert expired.detail is not None and "display-101" in expired.detail
    assert (sent.status, sent.sent_at) == (RunStatus.SENT, NOW)
    assert back_online(engine, "display-101") == []  # reported once only


def test_only_this_devices_queued_commands_are_released(engine: Engine) -> None:
    queue(engine, "light-101", "set_scene", {"scene": "warm"}, NOW - timedelta(minutes=3))
    queue(engine, "light-102", "set_scene", {"scene": "relax"}, NOW - timedelta(minutes=3))
    queue(engine, "light-101", "set_scene", {"scene": "bright"}, NOW - timedelta(minutes=30),
          status=RunStatus.SENT)
    queue(engine, "light-101", "set_scene", {"scene": "off"}, NOW - timedelta(minutes=2),
          status=RunStatus.FAILED)
    messages = back_online(engine, "light-101")
    assert [parse_command(p).command_id for _, p in messages] == ["cmd-1"]
    stored = runs(engine)
    assert stored["cmd-2"].status is RunStatus.QUEUED and stored["cmd-2"].sent_at is None
    assert (stored["cmd-3"].status, stored["cmd-3"].sent_at) == (
        RunStatus.SENT, NOW - timedelta(minutes=30))  # untouched
    assert stored["cmd-4"].status is RunStatus.FAILED
    assert back_online(engine, "light-999") == []


def test_nothing_is_marked_when_the_transaction_fails(engine: Engine) -> None:
    queue(engine, "thermostat-101", "set_temperature", {"celsius": 22.0},
          NOW - timedelta(minutes=5))
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        assert release(session, venue=VENUE, device_id="thermostat-101", now=NOW, ttl=TTL)
        raise RuntimeError("the bridge could not publish")
    assert runs(engine)["cmd-1"].status is RunStatus.QUEUED  # still there for next time
