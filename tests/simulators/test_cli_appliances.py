"""``hub-sim room`` and ``hub-sim watch`` against a demo hub (its embedded broker, in this
process): the real command, run as a subprocess, plays the devices; what it prints is
what the hub made them do. Bad input is refused (exit 2) before anything connects.

The tests may set a guest's preferences and consent straight in the hub's database; the
simulators themselves never import the hub.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from devices.client import DeviceClient
from devices.contract import Command, WristbandCredential, encode, utcnow
from devices.topics import Channel, device_topic
from hub.db import session_scope
from hub.demo import VENUE_ID, wristband_uid
from hub.models import Consent, GuestPreferences
from hub.server import Hub
from simulators.appliances import Note, Thermostat
from simulators.cli import app
from simulators.live import parse_bpms, parse_workout, watch_device_id
from tests.conftest import bearer, free_port, staff_token

HUB_SIM = Path(sys.executable).parent / "hub-sim"
WAIT = 10.0  # generous, for a loaded machine; a passing test never waits this long


# ------------------------------------------------------------------ helpers


def prefer(hub: Hub, guest: str, *, consents: dict[str, bool], **prefs: Any) -> None:
    """Set a guest's preferences and consents straight in the hub's database."""
    assert hub.engine is not None
    with session_scope(hub.engine) as session:
        row = session.get(GuestPreferences, guest) or GuestPreferences(guest_id=guest)
        for name, value in prefs.items():
            setattr(row, name, value)
        session.add(row)
        for purpose, granted in consents.items():
            session.merge(Consent(guest_id=guest, purpose=purpose, granted=granted,
                                  changed_at=utcnow()))


def sim_args(hub: Hub) -> list[str]:
    host, port = hub.settings.mqtt_address
    return [str(HUB_SIM), "--api", f"http://127.0.0.1:{hub.settings.http_port}",
            "--broker", f"mqtt://{host}:{port}"]


def sim(hub: Hub, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*sim_args(hub), *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


class Running:
    """A ``hub-sim`` command running in the background; its output lines as they come."""

    def __init__(self, hub: Hub, *args: str) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen([*sim_args(hub), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "COLUMNS": "200"})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = WAIT) -> str:
        """The first line matching ``pattern`` (a regex), waiting for it to be printed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matches {pattern!r} in:\n{self.output}")
                self._cond.wait(min(left, 0.1))

    def finish(self, timeout: float = WAIT + 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def online(hub: Hub, device_id: str) -> bool:
    """Whether the hub has seen the device come online."""
    assert hub.app is not None
    r = httpx.get(f"http://127.0.0.1:{hub.settings.http_port}/api/v1/devices/{device_id}",
                  headers=bearer(staff_token(hub.app, "admin")))
    return bool(r.status_code == 200 and r.json().get("online"))


def wait_until_online(hub: Hub, *device_ids: str) -> None:
    deadline = time.monotonic() + WAIT
    while not all(online(hub, d) for d in device_ids):
        assert time.monotonic() < deadline, f"the hub never saw {device_ids} online"
        time.sleep(0.05)


def tap_door(hub: Hub, room: int, guest_number: int) -> None:
    host, port = hub.settings.mqtt_address
    with DeviceClient(VENUE_ID, f"lock-{room}", host=host, port=port) as lock:
        decision = lock.tap(WristbandCredential(uid=wristband_uid(guest_number)))
    assert decision.outcome == "allow", decision


def log_lines(output: str, device: str) -> list[str]:
    """The log lines of one device, without their time: ``obeyed set_scene ...``."""
    found = []
    for line in output.splitlines():
        match = re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d (\S+)\s+(.*)", line)
        if match and match.group(1) == device:
            found.append(match.group(2))
    return found


# ------------------------------------------------------------------ hub-sim watch


def test_a_watch_feels_the_hub_vibrate_harder_at_each_high_heart_rate(
        running_hub: Hub) -> None:
    prefer(running_hub, "guest-03", consents={"health": True}, heart_rate_threshold=120)
    done = sim(running_hub, "watch", "3", "--bpm", "130,135,140", "--every", "0.2")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = log_lines(done.stdout, "watch-guest-03")
    vibrations = [line for line in lines if line.startswith("vibrated")]
    assert vibrations == [
        "vibrated level 1: Heart rate 130 bpm, above your 120",
        "vibrated level 2: Heart rate 135 bpm, above your 120",
        "vibrated level 3: Heart rate 140 bpm, above your 120",
    ], done.stdout
    reports = [line for line in lines if line.startswith("reported")]
    assert reports == [f"reported heart rate {bpm} bpm" for bpm in (130, 135, 140)]
    assert ("watch-guest-03: reported 3 heart rates; 3 vibrations (levels 1, 2, 3); "
            "0 commands rejected") in done.stdout


def test_without_health_consent_the_watch_feels_nothing(running_hub: Hub) -> None:
    prefer(running_hub, "guest-04", consents={"health": False}, heart_rate_threshold=120)
    done = sim(running_hub, "watch", "watch-guest-04", "--bpm", "150", "--bpm", "160",
               "--every", "0.1", "--wait", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reported heart rate 160 bpm" in done.stdout
    assert "vibrated" not in done.stdout
    assert "reported 2 heart rates; 0 vibrations (levels -)" in done.stdout


# ------------------------------------------------------------------ hub-sim room


def test_a_room_prints_the_welcome_a_consenting_guest_gets_at_the_door(
        running_hub: Hub) -> None:
    prefer(running_hub, "guest-03", consents={"personalization": True},
           room_temperature_c=19.5, lighting_scene="relax")
    room = Running(running_hub, "room", "103", "--duration", "4")
    try:
        room.wait_line(r"^room 103: thermostat-103, light-103, display-103, fridge-103 online")
        wait_until_online(running_hub, "thermostat-103", "light-103", "display-103")
        tap_door(running_hub, 103, 3)
        room.wait_line(r"display-103 .*Welcome")
        assert room.finish() == 0, room.output
    finally:
        room.kill()
    thermostat = log_lines(room.output, "thermostat-103")
    assert thermostat[0].startswith("state setpoint_c=21.0 temperature_c=21.0")
    assert thermostat[1:] == ['obeyed set_temperature celsius=19.5 source="automation"',
                              'now setpoint_c 21.0 -> 19.5, source "default" -> "automation"']
    assert log_lines(room.output, "light-103")[1:] == [
        'obeyed set_scene scene="relax" source="automation"', 'now scene "off" -> "relax"']
    assert any(line.startswith('now showing "" -> "Welcome') and 'kind "" -> "greeting"' in line
               for line in log_lines(room.output, "display-103")), room.output
    assert log_lines(room.output, "fridge-103") == ['state showing="" kind=""']
    assert room.lines[-1] == "room 103: 3 commands obeyed, 0 rejected"


def test_a_room_says_which_commands_it_refuses_and_why(running_hub: Hub) -> None:
    room = Running(running_hub, "room", "105", "--no-fridge", "--duration", "2.5")
    host, port = running_hub.settings.mqtt_address
    hub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    try:
        room.wait_line(r"^room 105: thermostat-105, light-105, display-105 online")
        wait_until_online(running_hub, "thermostat-105")
        hub.connect(host, port)
        hub.loop_start()
        for celsius in (40, 23):  # what the hub would never send, then what it would
            command = Command(command_id=uuid.uuid4().hex, name="set_temperature",
                              params={"celsius": celsius}, issued_at=utcnow())
            topic = device_topic(VENUE_ID, "thermostat-105", Channel.COMMANDS)
            hub.publish(topic, encode(command), qos=1).wait_for_publish(WAIT)
        room.wait_line(r"thermostat-105 .*setpoint_c 21\.0 -> 23\.0")
        assert room.finish() == 0, room.output
    finally:
        hub.disconnect()
        hub.loop_stop()
        room.kill()
    assert "fridge-105" not in room.output
    assert log_lines(room.output, "thermostat-105")[1:] == [
        "rejected set_temperature (celsius=40): celsius 40 is outside 16..28",
        "obeyed set_temperature celsius=23",
        'now setpoint_c 21.0 -> 23.0, source "default" -> "hub"']
    assert room.lines[-1] == "room 105: 1 command obeyed, 1 rejected"


def test_a_morning_workout_on_the_watch_shows_breakfast_on_the_rooms_fridge(
        running_hub: Hub) -> None:
    prefer(running_hub, "guest-02", consents={"personalization": True, "health": True},
           dietary=["vegan"], display_name="Ana")
    room = Running(running_hub, "room", "102", "--duration", "30")
    try:
        room.wait_line(r"^room 102: .*fridge-102 online")
        wait_until_online(running_hub, "fridge-102")
        done = sim(running_hub, "watch", "2", "--workout", "run:30", "--morning", "--wait", "0")
        assert done.returncode == 0, done.stdout + done.stderr
        [reported] = log_lines(done.stdout, "watch-guest-02")
        assert re.fullmatch(r"reported workout 'run' of 30 min ended, stamped "
                            r"\d{4}-\d\d-\d\d (0[6-9]|10):\d\d UTC", reported), reported
        line = room.wait_line(r"fridge-102 .*obeyed show")
        assert 'text="Good morning, Ana: after your run, how about a tofu scramble' in line
        assert 'kind="suggestion"' in line
    finally:
        if room.proc.poll() is None:
            room.proc.terminate()  # SIGTERM stops it like Ctrl-C: summary, exit 0
        code = room.finish()
        room.kill()
    assert code == 0, room.output
    assert room.lines[-1] == "room 102: 1 command obeyed, 0 rejected"


# ------------------------------------------------------------------ no broker, bad input


@pytest.mark.parametrize("args", [["room", "101", "--duration", "1"],
                                  ["watch", "1", "--bpm", "80"]])
def test_without_a_broker_both_exit_2_and_say_so(args: list[str]) -> None:
    broker = f"mqtt://127.0.0.1:{free_port()}"  # nobody listens there
    done = subprocess.run([str(HUB_SIM), "--broker", broker, *args, "--connect-timeout", "2"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"MQTT broker unreachable at {broker}" in done.stderr


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["watch", "3", "--bpm", "72,300"], "heart rate 300 is outside 20..250 bpm"),
        (["watch", "3", "--bpm", "19"], "heart rate 19 is outside 20..250 bpm"),
        (["watch", "3", "--bpm", "72,fast"], "a heart rate is a whole number of bpm, not 'fast'"),
        (["watch", "3", "--workout", "run"], "a workout is KIND:MINUTES (e.g. run:30), not 'run'"),
        (["watch", "3", "--workout", "run:0"], "a workout lasts 1..1440 minutes, not 0"),
        (["watch", "3", "--workout", "run:half"],
         "a workout's minutes are a whole number, not 'half'"),
        (["watch", "3", "--morning"], "--morning stamps the workout: give --workout too"),
        (["watch", "3", "--workout", "run:30", "--tz", "Mars/Olympus"],
         "unknown time zone 'Mars/Olympus'"),
        (["watch", "0"], "a guest's number starts at 1, not '0'"),
        (["watch", "my watch"], "'my watch' is neither a guest's number nor a device id"),
        (["room", "1 0 1"], "'1 0 1' is not a room number"),
    ],
)
def test_bad_input_exits_2_with_the_reason_before_connecting(args: list[str],
                                                             reason: str) -> None:
    broker = f"mqtt://127.0.0.1:{free_port()}"  # had it connected, it would say unreachable
    result = runner.invoke(app, ["--broker", broker, *args])
    assert result.exit_code == 2, result.output
    # Without rich's box and line wraps.
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert reason in said, said
    assert "unreachable" not in said


def test_what_a_user_types_is_read_as_meant() -> None:
    assert watch_device_id("1") == "watch-guest-01"
    assert watch_device_id(" 12 ") == "watch-guest-12"
    assert watch_device_id("guest-05") == "watch-guest-05"
    assert watch_device_id("watch-spa-7") == "watch-spa-7"
    assert parse_bpms(["72,130", " 140 ", "20,250"]) == [72, 130, 140, 20, 250]
    assert parse_workout("run:30") == ("run", 30)
    assert parse_workout("yoga: 45") == ("yoga", 45)
    assert parse_workout("a:b:5") == ("a:b", 5)


def test_listeners_hear_a_command_before_the_change_it_makes() -> None:
    """What the commands print comes from Appliance.listen (no broker needed to call it)."""
    def broken(_note: Note) -> None:
        raise RuntimeError("a listener's bug")

    dial = Thermostat(VENUE_ID, "thermostat-199")
    heard: list[Note] = []
    dial.listen(heard.append)
    dial.listen(broken)  # logged, not felt
    ok = Command(command_id="c1", name="set_temperature", params={"celsius": 22},
                 issued_at=utcnow())
    dial._on_command(ok)
    dial._on_command(ok)  # a redelivery: nothing new
    dial._on_command(Command(command_id="c2", name="set_temperature",
                             params={"celsius": 99}, issued_at=utcnow()))
    dial._on_command(Command(command_id="c3", name="set_temperature",
                             params={"celsius": 22.0}, issued_at=utcnow()))  # no change
    dial.manual_set(19.0)
    assert [(n.what, n.command.command_id if n.command else None, n.changes, n.why)
            for n in heard] == [
        ("obeyed", "c1", (), ""),
        ("changed", None, (("setpoint_c", 21.0, 22.0), ("source", "default", "hub")), ""),
        ("rejected", "c2", (), "celsius 99 is outside 16..28"),
        ("obeyed", "c3", (), ""),
        ("changed", None, (("setpoint_c", 22.0, 19.0), ("manual", False, True),
                           ("source", "hub", "guest")), ""),
    ]
    assert dial.state["setpoint_c"] == 19.0
