"""The runner: actions reach the wire after the fact; failures are retried and counted."""

from __future__ import annotations

import json
from pathlib import Path

from devices.contract import parse_command
from devices.topics import Channel, device_topic, staff_topic
from hub.automation_runner import AutomationRunner, Occurrence
from hub.automations import Facts, room_welcome, stuck_guest
from hub.db import create_db_engine, init_db, session_scope
from hub.models import Device, DeviceKind, Venue, utcnow


ROOM = ("thermostat-102", "light-102", "display-102")


def runner_with(tmp_path: Path, publish: object, facts: Facts | None, *,
                online: tuple[str, ...] = ROOM) -> AutomationRunner:
    """A runner on a fresh database whose room appliances ``online`` are connected."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    with session_scope(engine) as session:
        session.add(Venue(id="demo-resort", name="Demo"))
        session.flush()
        for device_id in ROOM:
            session.add(Device(id=device_id, venue_id="demo-resort", name=device_id,
                               kind=DeviceKind(device_id.split("-")[0]),
                               online=device_id in online))
    runner = AutomationRunner(engine, publish, lambda _s, _o: facts,  # type: ignore[arg-type]
                              lambda: [room_welcome(), stuck_guest()], attempts=3)
    runner.start()
    return runner


def welcome_facts() -> Facts:
    return Facts(trigger="entry_allowed", now=utcnow(), guest={"display_name": "Ana"},
                 prefs={"room_temperature_c": 22.0, "lighting_scene": "relax"},
                 consents=frozenset({"personalization"}), zone={"id": "room-102", "kind": "room"},
                 device={"id": "lock-102", "kind": "door_lock"}, counters={"entries": 1},
                 room_devices={"thermostat": "thermostat-102", "light": "light-102",
                               "display": "display-102"})


def test_room_welcome_commands_reach_the_room(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), welcome_facts())
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    topics = [t for t, _ in sent]
    assert topics == [device_topic("demo-resort", d, Channel.COMMANDS)
                      for d in ("thermostat-102", "light-102", "display-102")]
    command = parse_command(sent[0][1])
    assert (command.name, command.params["celsius"]) == ("set_temperature", 22.0)
    assert runner.fired["room-welcome"] == 3 and not runner.failed


def test_a_failing_action_is_retried_then_reported(tmp_path: Path) -> None:
    calls: list[str] = []

    def flaky(topic: str, _payload: bytes) -> None:
        calls.append(topic)
        if len(calls) < 3:
            raise ConnectionError("broker away")

    runner = runner_with(tmp_path, flaky, welcome_facts())
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    assert runner.fired["room-welcome"] == 3  # the first action made it on its third attempt
    assert len(calls) == 5


def test_an_action_that_always_fails_is_counted(tmp_path: Path) -> None:
    def down(_t: str, _p: bytes) -> None:
        raise ConnectionError("broker away")

    runner = runner_with(tmp_path, down, welcome_facts())
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    assert runner.failed["room-welcome"] == 3 and not runner.fired


def test_stuck_guest_alert_goes_to_staff(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    facts = Facts(trigger="entry_denied", now=utcnow(), device={"id": "lock-104"},
                  event={"reason": "wrong_zone"}, counters={"recent_denials": 3})
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), facts)
    runner.submit(Occurrence("entry_denied", "demo-resort", "lock-104", None, utcnow()))
    assert runner.drain()
    runner.stop()
    [(topic, payload)] = sent
    assert topic == staff_topic("demo-resort")
    assert json.loads(payload)["reason"] == "wrong_zone"
