"""Room welcome through the real broker: the door opens, then the room takes the guest's
taste, only with their consent, and never before the door's decision."""

from __future__ import annotations

import threading
import time

from devices.client import DeviceClient
from devices.contract import Command, WristbandCredential
from hub.db import session_scope
from hub.demo import VENUE_ID, wristband_uid
from hub.models import Consent, GuestPreferences, utcnow
from hub.server import Hub


def prefer(hub: Hub, guest: str, *, celsius: float, scene: str, consent: bool) -> None:
    assert hub.engine is not None
    with session_scope(hub.engine) as session:
        session.add(GuestPreferences(guest_id=guest, room_temperature_c=celsius,
                                     lighting_scene=scene))
        session.add(Consent(guest_id=guest, purpose="personalization", granted=consent,
                            changed_at=utcnow()))


class Appliance:
    """A room appliance that records the commands it gets."""

    def __init__(self, hub: Hub, device_id: str) -> None:
        self.commands: list[Command] = []
        self.arrived = threading.Event()
        host, port = hub.settings.mqtt_address
        self.client = DeviceClient(VENUE_ID, device_id, host=host, port=port)
        self.client.on_command(self._on)

    def _on(self, command: Command) -> None:
        self.commands.append(command)
        self.arrived.set()


def test_room_welcome_sets_the_room_within_a_second(running_hub: Hub) -> None:
    prefer(running_hub, "guest-03", celsius=19.5, scene="relax", consent=True)
    host, port = running_hub.settings.mqtt_address
    thermostat, light = Appliance(running_hub, "thermostat-103"), Appliance(running_hub,
                                                                             "light-103")
    with thermostat.client, light.client, DeviceClient(VENUE_ID, "lock-103", host=host,
                                                       port=port) as lock:
        start = time.perf_counter()
        assert lock.tap(WristbandCredential(uid=wristband_uid(3))).outcome == "allow"
        assert thermostat.arrived.wait(1.0) and light.arrived.wait(1.0)
        elapsed = time.perf_counter() - start
        [setpoint] = thermostat.commands
        assert (setpoint.name, setpoint.params["celsius"]) == ("set_temperature", 19.5)
        assert light.commands[0].params["scene"] == "relax"
        assert elapsed < 1.0
        # A second entry of the same stay is not a welcome.
        assert lock.tap(WristbandCredential(uid=wristband_uid(3))).outcome == "allow"
        time.sleep(0.5)
        assert len(thermostat.commands) == 1


def test_no_consent_no_welcome(running_hub: Hub) -> None:
    prefer(running_hub, "guest-04", celsius=26.0, scene="bright", consent=False)
    host, port = running_hub.settings.mqtt_address
    thermostat = Appliance(running_hub, "thermostat-104")
    with thermostat.client, DeviceClient(VENUE_ID, "lock-104", host=host, port=port) as lock:
        assert lock.tap(WristbandCredential(uid=wristband_uid(4))).outcome == "allow"
        assert not thermostat.arrived.wait(1.0)
    assert running_hub.automations is not None
    assert running_hub.automations.fired["room-welcome"] == 0


def test_two_denials_at_one_door_alert_staff(running_hub: Hub) -> None:
    import json

    from devices.contract import parse_staff_alert
    from devices.topics import staff_topic
    from tests.utils.listener import Listener

    host, port = running_hub.settings.mqtt_address
    with Listener(host, port, [staff_topic(VENUE_ID)]) as staff, \
            DeviceClient(VENUE_ID, "lock-105", host=host, port=port) as lock:
        stranger = WristbandCredential(uid=wristband_uid(1))  # Charlie is in room 101
        assert lock.tap(stranger).reason == "wrong_zone"
        time.sleep(0.5)
        assert staff.messages == []  # one denial is no reason to send someone
        assert lock.tap(stranger).reason == "wrong_zone"
        [body] = staff.wait(lambda _t, _b: True)
        assert staff.invalid == []
    alert = parse_staff_alert(json.dumps(body).encode())
    assert (alert.rule, alert.device_id, alert.reason, alert.severity) == (
        "stuck-guest", "lock-105", "wrong_zone", "warning")
    assert alert.text == "Guest stuck at lock-105: wrong_zone" and alert.details == {}


def test_the_thermostat_learns_from_the_guests_hand(running_hub: Hub) -> None:
    prefer(running_hub, "guest-02", celsius=20.5, scene="warm", consent=True)
    prefer(running_hub, "guest-05", celsius=20.5, scene="warm", consent=False)
    host, port = running_hub.settings.mqtt_address
    for device in ("thermostat-102", "thermostat-105"):
        with DeviceClient(VENUE_ID, device, host=host, port=port) as dial:
            for setpoint in (23.0, 23.5, 23.0):
                dial.telemetry({"setpoint_c": setpoint, "manual": True, "source": "guest"})
    assert running_hub.automations is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        running_hub.automations.drain()
        if preferred(running_hub, "guest-02") == 23.0:
            break
        time.sleep(0.1)
    assert preferred(running_hub, "guest-02") == 23.0
    assert preferred(running_hub, "guest-05") == 20.5  # no consent: nothing learned


def preferred(hub: Hub, guest: str) -> float | None:
    assert hub.engine is not None
    with session_scope(hub.engine) as session:
        prefs = session.get(GuestPreferences, guest)
        return prefs.room_temperature_c if prefs else None
