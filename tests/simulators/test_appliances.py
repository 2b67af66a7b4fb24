"""Appliance simulators against a real Mosquitto, with a plain paho client playing the hub.

The "hub" here publishes :class:`Command` messages on the appliances' commands topics and
reads what they publish on their events topics with :func:`parse_event`, exactly as the
real hub's bridge would; the hub package itself is never imported. Every test has a venue
of its own, so retained status messages of other tests cannot be mistaken for its own.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.contract import (
    Command,
    HeartbeatEvent,
    TelemetryEvent,
    encode,
    parse_event,
    parse_status,
    utcnow,
)
from devices.topics import Channel, device_topic, parse_topic, subscription
from simulators.appliances import (
    Appliance,
    Display,
    FridgeDisplay,
    Light,
    Rejection,
    Room,
    Shown,
    Thermostat,
    Vibration,
    Watch,
)
from tests.conftest import free_port, missing, secured_mosquitto

pytestmark = pytest.mark.mosquitto

WAIT = 5.0  # generous, for a loaded CI machine; a passing test never waits this long
QUIET = 0.3  # how long we listen to be sure something was NOT published


class FakeHub:
    """A paho client acting as the hub: sends commands, collects the devices' events."""

    def __init__(self, port: int, venue: str, *, username: str | None = None,
                 password: str | None = None) -> None:
        self.venue = venue
        self.events: dict[str, queue.SimpleQueue[TelemetryEvent | HeartbeatEvent]] = {}
        self.online: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"fake-hub-{uuid.uuid4().hex[:8]}")
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(WAIT), "the fake hub could not subscribe"

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        client.subscribe([(subscription(Channel.EVENTS, self.venue), 1),
                          (subscription(Channel.STATUS, self.venue), 1)])

    def _queue(self, device: str) -> queue.SimpleQueue[TelemetryEvent | HeartbeatEvent]:
        with self._lock:
            return self.events.setdefault(device, queue.SimpleQueue())

    def _online(self, device: str) -> threading.Event:
        with self._lock:
            return self.online.setdefault(device, threading.Event())

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        where = parse_topic(msg.topic)
        if where.channel is Channel.STATUS:
            # Only a live "online" counts: a retained one may be another session's.
            if not msg.retain and parse_status(bytes(msg.payload)).state == "online":
                self._online(where.device).set()
            return
        event = parse_event(bytes(msg.payload))  # raises (and fails the test) off-contract
        assert isinstance(event, TelemetryEvent | HeartbeatEvent), event
        self._queue(where.device).put(event)

    def wait_online(self, *devices: str) -> None:
        """Wait for each device's live "online": its command subscription is in place then
        (the device subscribes before it announces itself, on the same connection)."""
        for device in devices:
            assert self._online(device).wait(WAIT), f"{device} never came online"

    def command(self, device: str, name: str, params: dict[str, Any] | None = None, *,
                command_id: str | None = None) -> Command:
        command = Command(command_id=command_id or uuid.uuid4().hex, name=name,
                          params=params or {}, issued_at=utcnow())
        self.send_raw(device, encode(command))
        return command

    def send_raw(self, device: str, payload: bytes) -> None:
        topic = device_topic(self.venue, device, Channel.COMMANDS)
        self._client.publish(topic, payload, qos=1).wait_for_publish(WAIT)

    def next_event(self, device: str, timeout: float = WAIT) -> TelemetryEvent | HeartbeatEvent:
        try:
            return self._queue(device).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event from {device} within {timeout}s") from None

    def readings(self, device: str, timeout: float = WAIT) -> dict[str, Any]:
        """The readings of the device's next event, which must be telemetry."""
        event = self.next_event(device, timeout)
        assert isinstance(event, TelemetryEvent), event
        return dict(event.readings)

    def assert_quiet(self, device: str) -> None:
        time.sleep(QUIET)
        assert self._queue(device).empty(), self._queue(device).get()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def venue() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def hub(mosquitto: int, venue: str) -> Iterator[FakeHub]:
    fake = FakeHub(mosquitto, venue)
    yield fake
    fake.close()


@pytest.fixture
def connect(mosquitto: int, hub: FakeHub) -> Iterator[Callable[[Appliance], Any]]:
    """Connect an appliance to the test broker, wait until it hears commands; close it after."""
    opened: list[Appliance] = []

    def _connect(appliance: Appliance) -> Any:
        appliance.port = mosquitto
        appliance.connect()
        opened.append(appliance)
        hub.wait_online(appliance.device_id)
        return appliance

    yield _connect
    for appliance in opened:
        appliance.close()


def thermostat_readings(setpoint: float, temperature: float, manual: bool,
                        source: str) -> dict[str, Any]:
    return {"setpoint_c": setpoint, "temperature_c": temperature, "mode": "auto",
            "manual": manual, "source": source}


# ------------------------------------------------------------------ thermostat


def test_set_temperature_changes_the_setpoint_and_reports_it(hub: FakeHub, connect: Any,
                                                             venue: str) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-101"))
    assert t.state == thermostat_readings(21.0, 21.0, False, "default")

    command = hub.command("thermostat-101", "set_temperature",
                          {"celsius": 23.5, "source": "automation"})

    assert hub.readings("thermostat-101") == thermostat_readings(23.5, 21.0, False, "automation")
    assert t.state == thermostat_readings(23.5, 21.0, False, "automation")
    assert [c.command_id for c in t.accepted] == [command.command_id]
    assert t.rejected == []


def test_set_temperature_takes_whole_degrees_and_the_range_ends(hub: FakeHub, connect: Any,
                                                                venue: str) -> None:
    connect(Thermostat(venue, "thermostat-102"))
    for celsius in (22, 16, 28.0):
        hub.command("thermostat-102", "set_temperature", {"celsius": celsius, "source": "guest"})
        readings = hub.readings("thermostat-102")
        assert readings["setpoint_c"] == float(celsius)
        assert isinstance(readings["setpoint_c"], float)
        assert readings["source"] == "guest"


def test_a_missing_source_reads_hub(hub: FakeHub, connect: Any, venue: str) -> None:
    connect(Thermostat(venue, "thermostat-103"))
    hub.command("thermostat-103", "set_temperature", {"celsius": 20.0})
    assert hub.readings("thermostat-103")["source"] == "hub"


def test_the_temperature_drifts_half_a_degree_per_tick(hub: FakeHub, connect: Any,
                                                       venue: str) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-104", temperature_c=20.0))
    hub.command("thermostat-104", "set_temperature", {"celsius": 21.8, "source": "automation"})
    assert hub.readings("thermostat-104")["temperature_c"] == 20.0

    assert [t.tick() for _ in range(5)] == [20.5, 21.0, 21.5, 21.8, 21.8]
    seen = [hub.readings("thermostat-104") for _ in range(4)]
    assert [r["temperature_c"] for r in seen] == [20.5, 21.0, 21.5, 21.8]
    assert all(r["setpoint_c"] == 21.8 and r["source"] == "automation" for r in seen)
    hub.assert_quiet("thermostat-104")  # at the setpoint, a tick changes nothing

    t.manual_set(21.0)  # and down again
    assert hub.readings("thermostat-104")["setpoint_c"] == 21.0
    assert [t.tick(), t.tick()] == [21.3, 21.0]


def test_a_ticking_thermostat_reaches_its_setpoint_by_itself(hub: FakeHub, connect: Any,
                                                             venue: str) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-105", tick_s=0.02))
    hub.command("thermostat-105", "set_temperature", {"celsius": 23.0, "source": "automation"})
    assert t.wait_for(lambda s: s["temperature_c"] == 23.0, timeout=WAIT)
    temperatures = [hub.readings("thermostat-105")["temperature_c"] for _ in range(5)]
    assert temperatures == [21.0, 21.5, 22.0, 22.5, 23.0]


def test_a_guest_at_the_dial_is_reported_as_a_manual_override(hub: FakeHub, connect: Any,
                                                              venue: str) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-106"))
    hub.command("thermostat-106", "set_temperature", {"celsius": 23.0, "source": "automation"})
    assert hub.readings("thermostat-106")["manual"] is False

    t.manual_set(19.5)
    assert hub.readings("thermostat-106") == thermostat_readings(19.5, 21.0, True, "guest")
    t.tick()  # the override stays in the state while the room drifts
    assert hub.readings("thermostat-106") == thermostat_readings(19.5, 20.5, True, "guest")

    hub.command("thermostat-106", "set_temperature", {"celsius": 22.0, "source": "automation"})
    assert hub.readings("thermostat-106") == thermostat_readings(22.0, 20.5, False, "automation")


@pytest.mark.parametrize("celsius", [15.9, 28.5, float("nan"), True])
def test_the_dial_has_the_same_range(hub: FakeHub, connect: Any, venue: str,
                                     celsius: Any) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-107"))
    with pytest.raises(ValueError, match="celsius"):
        t.manual_set(celsius)
    assert t.state["setpoint_c"] == 21.0
    hub.assert_quiet("thermostat-107")


# ------------------------------------------------------------------ light


@pytest.mark.parametrize("scene", ["warm", "bright", "relax", "off"])
def test_set_scene(hub: FakeHub, connect: Any, venue: str, scene: str) -> None:
    light: Light = connect(Light(venue, "light-101", scene="bright" if scene == "off" else "off"))
    # The room-welcome automation sends a source along: it is accepted (and not reported).
    hub.command("light-101", "set_scene", {"scene": scene, "source": "automation"})
    assert hub.readings("light-101") == {"scene": scene, "manual": False}
    assert light.state == {"scene": scene, "manual": False}


def test_a_guest_at_the_switch_is_reported_as_manual(hub: FakeHub, connect: Any,
                                                     venue: str) -> None:
    light: Light = connect(Light(venue, "light-102"))
    light.manual_set("relax")
    assert hub.readings("light-102") == {"scene": "relax", "manual": True}
    hub.command("light-102", "set_scene", {"scene": "warm"})
    assert hub.readings("light-102") == {"scene": "warm", "manual": False}
    with pytest.raises(ValueError, match="scene"):
        light.manual_set("disco")
    hub.assert_quiet("light-102")


# ------------------------------------------------------------------ displays


@pytest.mark.parametrize("cls", [Display, FridgeDisplay])
def test_show_reports_what_is_showing_and_keeps_a_list(hub: FakeHub, connect: Any, venue: str,
                                                       cls: type[Display]) -> None:
    display: Display = connect(cls(venue, "display-101"))
    first = hub.command("display-101", "show", {"text": "Welcome, Charlie", "kind": "greeting"})
    assert hub.readings("display-101") == {"showing": "Welcome, Charlie", "kind": "greeting"}
    second = hub.command("display-101", "show",
                         {"text": "A smoothie after your run?", "kind": "suggestion"})
    assert hub.readings("display-101") == {"showing": "A smoothie after your run?",
                                           "kind": "suggestion"}
    for kind in ("offer", "notice"):
        hub.command("display-101", "show", {"text": f"a {kind}", "kind": kind})
        assert hub.readings("display-101") == {"showing": f"a {kind}", "kind": kind}

    shown = display.shown
    assert shown[:2] == [Shown("Welcome, Charlie", "greeting", first.command_id),
                         Shown("A smoothie after your run?", "suggestion", second.command_id)]
    assert [s.kind for s in shown] == ["greeting", "suggestion", "offer", "notice"]
    assert display.state == {"showing": "a notice", "kind": "notice"}


def test_a_redelivered_command_is_obeyed_once(hub: FakeHub, connect: Any, venue: str) -> None:
    display: Display = connect(FridgeDisplay(venue, "fridge-101"))
    command = hub.command("fridge-101", "show", {"text": "Cold drinks inside", "kind": "offer"})
    hub.send_raw("fridge-101", encode(command))  # the same command_id again
    assert hub.readings("fridge-101")["showing"] == "Cold drinks inside"
    hub.assert_quiet("fridge-101")
    assert len(display.shown) == 1


# ------------------------------------------------------------------ watch


def test_vibrate_is_kept_in_a_list(hub: FakeHub, connect: Any, venue: str) -> None:
    watch: Watch = connect(Watch(venue, "watch-guest-01"))
    one = hub.command("watch-guest-01", "vibrate", {"level": 1, "reason": "table ready"})
    three = hub.command("watch-guest-01", "vibrate", {"level": 3, "reason": "heart rate high"})
    assert watch.wait_for(lambda s: s["vibrations"] == 2, timeout=WAIT)
    assert watch.vibrations == [Vibration(1, "table ready", one.command_id),
                                Vibration(3, "heart rate high", three.command_id)]
    assert watch.rejected == []


def test_the_watch_reports_heart_rate_and_workouts(hub: FakeHub, connect: Any,
                                                   venue: str) -> None:
    watch: Watch = connect(Watch(venue, "watch-guest-02"))
    watch.heart_rate(142)
    assert hub.readings("watch-guest-02") == {"heart_rate_bpm": 142}
    assert watch.state["heart_rate_bpm"] == 142

    before = utcnow()
    ts = watch.workout_ended("run", 35, at_morning=False)
    event = hub.next_event("watch-guest-02")
    assert isinstance(event, TelemetryEvent)
    assert event.readings == {"workout": "ended", "workout_kind": "run", "duration_min": 35}
    assert event.ts == ts and before <= ts <= utcnow()
    assert watch.state["workout_kind"] == "run"

    bad: Any
    for bad in (0, 300, True, 72.5):
        with pytest.raises(ValueError):
            watch.heart_rate(bad)
    with pytest.raises(ValueError):
        watch.workout_ended("swim", 0)
    hub.assert_quiet("watch-guest-02")


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2026, 7, 1, 9, 15, tzinfo=UTC), datetime(2026, 7, 1, 9, 15, tzinfo=UTC)),
    (datetime(2026, 7, 1, 18, 0, tzinfo=UTC), datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),
    (datetime(2026, 7, 1, 3, 0, tzinfo=UTC), datetime(2026, 6, 30, 8, 0, tzinfo=UTC)),
])
def test_a_morning_workout_is_stamped_in_the_morning(hub: FakeHub, connect: Any, venue: str,
                                                     now: datetime, expected: datetime) -> None:
    watch: Watch = connect(Watch(venue, "watch-guest-03", clock=lambda: now))
    ts = watch.workout_ended("yoga", 20, at_morning=True)
    event = hub.next_event("watch-guest-03")
    assert event.ts == ts == expected
    assert isinstance(event, TelemetryEvent) and event.readings["workout_kind"] == "yoga"


def test_morning_is_the_venues_morning() -> None:
    tokyo = timezone(timedelta(hours=9))
    watch = Watch("v", "watch-1", tz=tokyo, clock=lambda: datetime(2026, 7, 1, 0, 30, tzinfo=UTC))
    assert watch.morning() == datetime(2026, 7, 1, 9, 30, tzinfo=tokyo)  # 09:30 in Tokyo
    watch.tz = UTC
    assert watch.morning() == datetime(2026, 6, 30, 8, 0, tzinfo=UTC)


# ------------------------------------------------------------------ rejections


BAD: list[tuple[type[Appliance], str, str, dict[str, Any], str]] = [
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": 15.9}, "outside 16..28"),
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": 28.1}, "outside 16..28"),
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": "22"}, "must be a number"),
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": True}, "must be a number"),
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": None}, "must be a number"),
    (Thermostat, "thermostat-x", "set_temperature", {}, "missing param 'celsius'"),
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": 22, "fan": "high"},
     "unknown param 'fan'"),
    (Thermostat, "thermostat-x", "set_temperature", {"celsius": 22, "source": 7}, "source"),
    (Thermostat, "thermostat-x", "set_scene", {"scene": "warm"}, "unknown command"),
    (Light, "light-x", "set_scene", {"scene": "disco"}, "warm|bright|relax|off"),
    (Light, "light-x", "set_scene", {"scene": None}, "warm|bright|relax|off"),
    (Light, "light-x", "reboot", {}, "unknown command 'reboot'"),
    (Display, "display-x", "show", {"text": "hi"}, "missing param 'kind'"),
    (Display, "display-x", "show", {"text": "hi", "kind": "advert"}, "greeting|suggestion"),
    (Display, "display-x", "show", {"text": "", "kind": "notice"}, "non-empty"),
    (Display, "display-x", "show", {"text": ["hi"], "kind": "notice"}, "text"),
    (FridgeDisplay, "fridge-x", "show", {"text": "x" * 501, "kind": "offer"}, "at most 500"),
    (Watch, "watch-x", "vibrate", {"level": 0, "reason": "r"}, "1..3"),
    (Watch, "watch-x", "vibrate", {"level": 4, "reason": "r"}, "1..3"),
    (Watch, "watch-x", "vibrate", {"level": 2.0, "reason": "r"}, "1..3"),
    (Watch, "watch-x", "vibrate", {"level": 2}, "missing param 'reason'"),
]
GOOD: dict[type[Appliance], tuple[str, dict[str, Any], dict[str, Any]]] = {
    Thermostat: ("set_temperature", {"celsius": 24.0, "source": "guest"},
                 {"setpoint_c": 24.0}),
    Light: ("set_scene", {"scene": "relax"}, {"scene": "relax"}),
    Display: ("show", {"text": "Good night", "kind": "notice"}, {"showing": "Good night"}),
    FridgeDisplay: ("show", {"text": "Water, 2.00", "kind": "offer"},
                    {"showing": "Water, 2.00"}),
    Watch: ("vibrate", {"level": 2, "reason": "ok"}, {"vibrations": 1}),
}


@pytest.mark.parametrize(("cls", "device", "name", "params", "why"), BAD,
                         ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_a_bad_command_is_rejected_and_the_next_good_one_obeyed(
        hub: FakeHub, connect: Any, venue: str, cls: type[Appliance], device: str, name: str,
        params: dict[str, Any], why: str) -> None:
    appliance: Appliance = connect(cls(venue, device))
    before = appliance.state

    bad = hub.command(device, name, params)
    readings = hub.readings(device)
    assert readings["rejected_command"] == name and set(readings) == {"rejected_command", "why"}
    assert why in readings["why"]
    assert appliance.rejected == [Rejection(bad.command_id, name, readings["why"])]
    assert appliance.state == before
    assert appliance.accepted == []

    good_name, good_params, expected = GOOD[cls]
    hub.command(device, good_name, good_params)
    assert appliance.wait_for(lambda s: all(s[k] == v for k, v in expected.items()), WAIT)
    assert len(appliance.accepted) == 1 and len(appliance.rejected) == 1


def test_a_payload_that_is_no_command_is_ignored(hub: FakeHub, connect: Any,
                                                 venue: str) -> None:
    light: Light = connect(Light(venue, "light-103"))
    hub.send_raw("light-103", b"not json")
    hub.send_raw("light-103", json.dumps({"kind": "command", "name": "set_scene"}).encode())
    hub.command("light-103", "set_scene", {"scene": "bright"})
    assert hub.readings("light-103") == {"scene": "bright", "manual": False}
    assert light.rejected == []


def test_a_handler_that_crashes_does_not_take_the_mqtt_thread_with_it(
        hub: FakeHub, connect: Any, venue: str, caplog: pytest.LogCaptureFixture) -> None:
    t = Thermostat(venue, "thermostat-108")

    def explode(_command: Command) -> None:
        raise RuntimeError("boom")

    t._commands["explode"] = explode
    connect(t)
    hub.command("thermostat-108", "explode")
    readings = hub.readings("thermostat-108")
    assert readings["rejected_command"] == "explode"
    assert "internal error" in readings["why"] and "boom" in readings["why"]
    assert "boom" in caplog.text

    hub.command("thermostat-108", "set_temperature", {"celsius": 25.0})
    assert hub.readings("thermostat-108")["setpoint_c"] == 25.0
    assert t.connected


# ------------------------------------------------------------------ wait_for, heartbeats


def test_wait_for_is_true_as_soon_as_the_state_matches(hub: FakeHub, connect: Any,
                                                       venue: str) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-109"))
    assert t.wait_for(lambda s: s["setpoint_c"] == 21.0, timeout=0)  # already true

    start = time.monotonic()
    hub.command("thermostat-109", "set_temperature", {"celsius": 22.5, "source": "automation"})
    assert t.wait_for(lambda s: s["setpoint_c"] == 22.5, timeout=1.0)
    assert time.monotonic() - start < 1.0


def test_wait_for_is_false_when_the_state_never_matches(hub: FakeHub, connect: Any,
                                                        venue: str) -> None:
    t: Thermostat = connect(Thermostat(venue, "thermostat-110"))
    start = time.monotonic()
    assert not t.wait_for(lambda s: s["setpoint_c"] == 30.0, timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 2.0
    # A rejected command is no state change that could satisfy it either.
    hub.command("thermostat-110", "set_temperature", {"celsius": 30.0})
    assert not t.wait_for(lambda s: s["setpoint_c"] == 30.0, timeout=0.3)


def test_heartbeats_on_demand_come_in_order_with_telemetry(hub: FakeHub, connect: Any,
                                                           venue: str) -> None:
    light: Light = connect(Light(venue, "light-104"))
    light.heartbeat(battery_pct=87, firmware="sim-1.0", interval_s=60)
    light.manual_set("warm")
    light.heartbeat()
    first, second, third = (hub.next_event("light-104") for _ in range(3))
    assert isinstance(first, HeartbeatEvent)
    assert (first.battery_pct, first.firmware, first.interval_s) == (87, "sim-1.0", 60)
    assert isinstance(second, TelemetryEvent) and second.readings["scene"] == "warm"
    assert isinstance(third, HeartbeatEvent) and third.battery_pct is None


def test_what_changed_while_offline_is_published_on_connect(hub: FakeHub, connect: Any,
                                                            venue: str) -> None:
    t = Thermostat(venue, "thermostat-111")
    t.manual_set(18.0)
    connect(t)
    assert hub.readings("thermostat-111") == thermostat_readings(18.0, 21.0, True, "guest")


# ------------------------------------------------------------------ a room


def test_a_room_reaches_the_guests_preferred_state_within_a_second(
        hub: FakeHub, mosquitto: int, venue: str) -> None:
    with Room(venue, 101, port=mosquitto) as room:
        assert [a.device_id for a in room.appliances] == [
            "thermostat-101", "light-101", "display-101"]
        hub.wait_online("thermostat-101", "light-101", "display-101")
        assert not room.wait_for(lambda s: s["light"]["scene"] == "relax", timeout=0.1)

        start = time.monotonic()
        hub.command("thermostat-101", "set_temperature", {"celsius": 22.5, "source": "automation"})
        hub.command("light-101", "set_scene", {"scene": "relax", "source": "automation"})
        hub.command("display-101", "show", {"text": "Welcome, Charlie", "kind": "greeting"})
        assert room.wait_for(lambda s: s["thermostat"]["setpoint_c"] == 22.5
                             and s["light"]["scene"] == "relax"
                             and s["display"]["showing"] == "Welcome, Charlie", timeout=1.0)
        assert time.monotonic() - start < 1.0
        assert room.state["display"] == {"showing": "Welcome, Charlie", "kind": "greeting"}
        assert hub.readings("light-101") == {"scene": "relax", "manual": False}
    assert not any(a.connected for a in room.appliances)


def test_a_room_that_cannot_connect_raises_and_leaves_nothing_open(venue: str) -> None:
    room = Room(venue, 102, port=free_port(), tick_s=0.05)
    with pytest.raises(OSError):  # ConnectionRefusedError: nobody listens there
        room.connect(timeout=1.0)
    assert not any(a.connected for a in room.appliances)


# ------------------------------------------------------------------ a secure broker


@pytest.fixture(scope="module")
def secure_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Mosquitto that wants a password, with one device's ACL."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    passwd_tool = shutil.which("mosquitto_passwd")
    if binary is None or passwd_tool is None:
        missing("mosquitto (with mosquitto_passwd)")
    root, port = tmp_path_factory.mktemp("mosquitto-secure"), free_port()
    passwd = root / "passwd"
    passwd.touch(0o600)
    for user, password in (("sec.thermostat-201", "dial-secret"), ("hub", "hub-secret")):
        subprocess.run([str(passwd_tool), "-b", str(passwd), user, password], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (root / "acl").write_text(
        "user hub\ntopic readwrite venuehub/#\n\n"
        "user sec.thermostat-201\n"
        "topic write venuehub/v1/sec/device/thermostat-201/#\n"
        "topic read venuehub/v1/sec/hub/thermostat-201/#\n"
    )
    with secured_mosquitto(str(binary), root, port):
        yield port


def test_an_appliance_logs_in_to_a_secure_broker(secure_mosquitto: int) -> None:
    hub = FakeHub(secure_mosquitto, "sec", username="hub", password="hub-secret")
    try:
        with Thermostat("sec", "thermostat-201", port=secure_mosquitto,
                        username="sec.thermostat-201", password="dial-secret") as t:
            hub.wait_online("thermostat-201")
            hub.command("thermostat-201", "set_temperature", {"celsius": 20.5})
            assert hub.readings("thermostat-201")["setpoint_c"] == 20.5
            assert t.state["setpoint_c"] == 20.5
    finally:
        hub.close()


def test_a_wrong_password_is_refused(secure_mosquitto: int) -> None:
    t = Thermostat("sec", "thermostat-201", port=secure_mosquitto,
                   username="sec.thermostat-201", password="wrong")
    with pytest.raises(ConnectionError):
        t.connect(timeout=1.0)
    assert not t.connected
    t.close()  # harmless on an appliance that never connected
