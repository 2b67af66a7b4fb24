"""The runner: actions reach the wire after the fact; failures are retried and counted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, col, select

from devices.contract import parse_command
from devices.topics import Channel, device_topic, staff_topic
from hub import appliance_queue, privacy
from hub.automations.catalogue import ride_reward, room_welcome, stuck_guest
from hub.automations.facts import Facts
from hub.automations.occurrence import Occurrence
from hub.automations.rules import Rule
from hub.automations.runner import AutomationRunner
from hub.db import create_db_engine, init_db, session_scope
from hub.models import (
    AutomationRun,
    Consent,
    Device,
    DeviceKind,
    Guest,
    RunStatus,
    Venue,
    utcnow,
)

ROOM = ("thermostat-102", "light-102", "display-102")


def runner_with(tmp_path: Path, publish: object, facts: Facts | None, *,
                online: tuple[str, ...] = ROOM,
                rules: Sequence[Rule] | None = None) -> AutomationRunner:
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
                              lambda: rules or [room_welcome(), stuck_guest()], attempts=3)
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
                  event={"reason": "wrong_zone"}, counters={"recent_denials": 2})
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), facts)
    runner.submit(Occurrence("entry_denied", "demo-resort", "lock-104", None, utcnow()))
    assert runner.drain()
    runner.stop()
    [(topic, payload)] = sent
    assert topic == staff_topic("demo-resort")
    assert json.loads(payload)["reason"] == "wrong_zone"


def test_a_door_that_keeps_denying_pages_staff_once(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    facts = Facts(trigger="entry_denied", now=utcnow(), device={"id": "gate-park-in-1"},
                  event={"reason": "unknown_credential"}, counters={"recent_denials": 3})
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), facts)
    runner.submit(Occurrence("entry_denied", "demo-resort", "gate-park-in-1", None, utcnow()))
    assert runner.drain()
    runner.stop()
    assert sent == []  # the second denial in the window paged them already


# ------------------------------------------------ every action recorded as an AutomationRun


def recorded(runner: AutomationRunner) -> list[AutomationRun]:
    with Session(runner.engine) as session:
        return list(session.exec(select(AutomationRun).order_by(col(AutomationRun.id))).all())


def guests_welcome() -> Facts:
    return replace(welcome_facts(), guest={"id": "guest-02", "display_name": "Ana"})


def test_every_sent_action_is_recorded_with_the_command_id_it_carried(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), guests_welcome())
    at = utcnow()
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", at))
    assert runner.drain()
    runner.stop()
    runs = recorded(runner)
    assert [(r.rule_id, r.action, r.device_id, r.name, r.status) for r in runs] == [
        ("room-welcome", "command", d, n, RunStatus.SENT)
        for d, n in (("thermostat-102", "set_temperature"), ("light-102", "set_scene"),
                     ("display-102", "show"))]
    assert [r.command_id for r in runs] == [parse_command(p).command_id for _, p in sent]
    assert len({r.command_id for r in runs}) == 3
    assert runs[0].params == {"celsius": 22.0, "source": "automation"}
    assert runs[2].params == {"text": "Welcome, Ana", "kind": "greeting"}
    for run in runs:
        assert run.guest_id == "guest-02" and run.created_at == at
        assert run.sent_at is not None and run.detail is None and run.overridden_at is None


def test_a_command_for_an_offline_appliance_is_queued_not_published(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), guests_welcome(),
                         online=("thermostat-102", "display-102"))
    at = utcnow()
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", at))
    assert runner.drain()
    runner.stop()
    assert [t for t, _ in sent] == [device_topic("demo-resort", d, Channel.COMMANDS)
                                    for d in ("thermostat-102", "display-102")]
    light = {r.device_id: r for r in recorded(runner)}["light-102"]
    assert (light.status, light.sent_at, light.name) == (RunStatus.QUEUED, None, "set_scene")
    assert light.command_id is not None and light.params["scene"] == "relax"
    assert runner.queued["room-welcome"] == 1 and runner.fired["room-welcome"] == 2
    assert light.purposes == ["personalization"]  # what must still hold when it goes out
    # Back online: the very command the automation made goes out, issued when it was made
    with session_scope(runner.engine) as session:
        session.add(Guest(id="guest-02", name="Ana Lopez"))
        session.flush()
        session.add(Consent(guest_id="guest-02", purpose="personalization", granted=True))
    with session_scope(runner.engine) as session:
        [(topic, payload)] = appliance_queue.release(
            session, venue="demo-resort", device_id="light-102", now=at + timedelta(minutes=3),
            ttl=timedelta(hours=1))
    command = parse_command(payload)
    assert topic == device_topic("demo-resort", "light-102", Channel.COMMANDS)
    assert (command.command_id, command.name, command.params["scene"], command.issued_at) == (
        light.command_id, "set_scene", "relax", at)
    assert {r.device_id: r.status for r in recorded(runner)}["light-102"] is RunStatus.SENT


def test_an_action_that_always_fails_is_recorded_failed_with_why(tmp_path: Path) -> None:
    def down(_t: str, _p: bytes) -> None:
        raise ConnectionError("broker away")

    runner = runner_with(tmp_path, down, guests_welcome())
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    runs = recorded(runner)
    assert [(r.device_id, r.status, r.detail, r.sent_at) for r in runs] == [
        (d, RunStatus.FAILED, "broker away", None) for d in ROOM]


def test_a_retried_action_is_recorded_once_as_sent(tmp_path: Path) -> None:
    calls: list[str] = []

    def flaky(topic: str, _payload: bytes) -> None:
        calls.append(topic)
        if len(calls) < 3:
            raise ConnectionError("broker away")

    runner = runner_with(tmp_path, flaky, guests_welcome())
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    assert [(r.device_id, r.status) for r in recorded(runner)] == [
        (d, RunStatus.SENT) for d in ROOM]


def test_a_staff_alert_is_recorded_without_a_device_or_command_id(tmp_path: Path) -> None:
    facts = Facts(trigger="entry_denied", now=utcnow(), device={"id": "lock-104"},
                  event={"reason": "wrong_zone"}, counters={"recent_denials": 2})
    runner = runner_with(tmp_path, lambda t, p: None, facts)
    runner.submit(Occurrence("entry_denied", "demo-resort", "lock-104", None, utcnow()))
    assert runner.drain()
    runner.stop()
    [run] = recorded(runner)
    assert (run.rule_id, run.action, run.device_id, run.command_id, run.guest_id,
            run.status) == ("stuck-guest", "alert_staff", None, None, None, RunStatus.SENT)
    assert run.params == {"text": "Guest stuck at lock-104: wrong_zone",
                          "device_id": "lock-104", "reason": "wrong_zone"}


def test_an_offer_for_nobody_is_recorded_failed_and_never_published(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    facts = Facts(trigger="entry_allowed", now=utcnow(), consents=frozenset({"offers"}),
                  zone={"id": "coaster", "kind": "ride"}, device={"id": "ride-coaster-1"},
                  counters={"rides": 5})
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), facts,
                         rules=[ride_reward()])
    runner.submit(Occurrence("entry_allowed", "demo-resort", "ride-coaster-1", None, utcnow()))
    assert runner.drain()
    runner.stop()
    [run] = recorded(runner)
    assert (run.rule_id, run.action, run.status) == ("ride-reward", "offer", RunStatus.FAILED)
    assert run.detail is not None and "nobody to notify" in run.detail
    assert sent == [] and runner.failed["ride-reward"] == 1


def test_no_facts_no_runs(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, lambda t, p: None, None)
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-999", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    assert recorded(runner) == [] and not runner.fired and not runner.failed


def test_a_queued_command_does_not_go_out_once_consent_is_withdrawn(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, lambda t, p: None, guests_welcome(), online=())
    at = utcnow()
    with session_scope(runner.engine) as session:
        session.add(Guest(id="guest-02", name="Ana Lopez"))
        session.flush()
        privacy.set_consent(session, guest_id="guest-02", purpose="personalization",
                            granted=True, actor="guest-02", now=at)
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", at))
    assert runner.drain()
    runner.stop()
    assert {r.status for r in recorded(runner)} == {RunStatus.QUEUED}
    with session_scope(runner.engine) as session:
        privacy.set_consent(session, guest_id="guest-02", purpose="personalization",
                            granted=False, actor="guest-02", now=at)
    assert {(r.status, r.detail) for r in recorded(runner)} == {
        (RunStatus.EXPIRED, "the guest withdrew consent to personalization")}
    with session_scope(runner.engine) as session:
        assert appliance_queue.release(session, venue="demo-resort", device_id="light-102",
                                       now=at, ttl=timedelta(hours=1)) == []


def test_a_device_back_online_before_its_command_is_queued_gets_it_now(
        tmp_path: Path) -> None:
    """The runner read the device offline; it came back before the command was queued:
    queued, the command would wait for the next heartbeat. It is sent instead."""
    sent: list[tuple[str, bytes]] = []
    runner = runner_with(tmp_path, lambda t, p: sent.append((t, p)), welcome_facts(), online=())
    real = runner._queue_while_offline

    def back_just_before(run: AutomationRun) -> bool:
        with session_scope(runner.engine) as session:  # the bridge hears "online" now
            device = session.get(Device, run.device_id)
            assert device is not None
            device.online = True
        return real(run)
    runner._queue_while_offline = back_just_before  # type: ignore[method-assign]
    runner.submit(Occurrence("entry_allowed", "demo-resort", "lock-102", "guest-02", utcnow()))
    assert runner.drain()
    runner.stop()
    assert sent, "the command stayed queued for a device that was online"
    assert all(r.status is RunStatus.SENT for r in recorded(runner) if r.action == "command")
