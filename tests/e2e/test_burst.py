"""Overload sheds, never spirals: a burst of taps from many devices at once is answered in
full, each tap with exactly one recorded decision (allow, deny or too_late), on the
embedded broker and on Mosquitto; and retained poison never stops a (re)starting hub."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, col, select

from devices.client import DeviceClient, nodelay
from devices.contract import TapEvent, WristbandCredential, encode, parse_reply, utcnow
from devices.topics import Channel, device_topic
from hub.bridge import Bridge
from hub.demo import VENUE_ID, wristband_uid
from hub.models import Device, Event
from hub.server import Hub
from tests.conftest import hub_settings
from tests.utils.hubs import bridge_of, demo_hub_on, wait_for

DEVICES, PER_DEVICE = 50, 100



class Fleet:
    """Many device connections, each publishing its own taps and collecting its replies."""

    def __init__(self, host: str, port: int, device_ids: list[str], tag: str) -> None:
        self.replies: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        self.clients: list[tuple[str, mqtt.Client]] = []
        ready = threading.Semaphore(0)
        for device_id in device_ids:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{tag}-{device_id}")
            c.max_inflight_messages_set(0)  # publish the whole burst at once
            c.max_queued_messages_set(0)

            def on_connect(client: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any,
                           device: str = device_id) -> None:
                nodelay(client)
                client.subscribe(f"{device_topic(VENUE_ID, device, Channel.DECISIONS)}", qos=1)
                client.subscribe(f"{device_topic(VENUE_ID, device, Channel.ERRORS)}", qos=1)

            c.on_connect = on_connect
            c.on_subscribe = lambda *_a: ready.release()
            c.on_message = self._on_message
            c.connect(host, port)
            c.loop_start()
            self.clients.append((device_id, c))
        for _ in range(2 * len(device_ids)):
            assert ready.acquire(timeout=30), "a device could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        reply = parse_reply(bytes(msg.payload))
        reason = getattr(reply, "reason", None) or getattr(reply, "code", "?")
        with self._lock:
            self.replies[reply.event_id or "?"] += 1
            self.reasons[reply.event_id or "?"] = str(reason)

    def burst(self, per_device: int, tag: str) -> list[str]:
        ids: list[str] = []
        for d, (device_id, c) in enumerate(self.clients):
            for n in range(per_device):
                event_id = f"{tag}-{d}-{n}"
                guest = 1 + (d * per_device + n) % 25  # 21-25: unknown bands
                tap = TapEvent(event_id=event_id, ts=utcnow(),
                               credential=WristbandCredential(uid=wristband_uid(guest)))
                c.publish(device_topic(VENUE_ID, device_id, Channel.EVENTS), encode(tap), qos=1)
                ids.append(event_id)
        return ids

    def close(self) -> None:
        for _, c in self.clients:
            c.loop_stop()
            c.disconnect()


def fifty_devices(hub_: Hub) -> list[str]:
    with Session(hub_.engine) as session:
        ids = list(session.exec(select(Device.id).order_by(col(Device.id))).all())
    assert len(ids) >= DEVICES
    return ids[:DEVICES]


@pytest.fixture(params=["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def hub_for_burst(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    with demo_hub_on(request.param, request, tmp_path, http=False) as running:
        yield running


def test_a_burst_of_5000_taps_from_50_devices_is_answered_in_full(hub_for_burst: Hub) -> None:
    hub_ = hub_for_burst
    host, port = hub_.settings.mqtt_address
    fleet = Fleet(host, port, fifty_devices(hub_), tag=f"burst-{port}")
    try:
        ids = fleet.burst(PER_DEVICE, tag="b")
        wait_for(lambda: sum(fleet.replies.values()) >= len(ids), timeout=240, every=0.1)
        time.sleep(0.5)  # a duplicate answer would show up now
    finally:
        fleet.close()
    assert set(fleet.replies) == set(ids)
    assert all(count == 1 for count in fleet.replies.values())
    with Session(hub_.engine) as session:
        rows = session.exec(select(Event.event_id, Event.outcome, Event.reason)
                            .where(col(Event.event_id).startswith("b-"))).all()
    recorded = Counter(event_id for event_id, _, _ in rows)
    assert set(recorded) == set(ids) and set(recorded.values()) == {1}
    assert {outcome for _, outcome, _ in rows} <= {"allow", "deny"}
    # The hub is itself again at once: the next tap is decided, not shed.
    with DeviceClient(VENUE_ID, "gate-park-in-2", host=host, port=port) as gate:
        after = gate.tap(WristbandCredential(uid=wristband_uid(20)), timeout=10)
    assert after.reason != "too_late"
    assert hub_.bridge is not None
    wait_for(lambda: hub_.bridge is not None and hub_.bridge.queue_depth == 0, timeout=10)
    assert hub_.bridge.snapshot()["worker_deaths"] == 0
    print("burst reasons:", Counter(fleet.reasons.values()).most_common())


# ---------------------------------------------------------------- retained poison

POISONS = [b'{"event_id":"\\ud800"}', b"[" * 1000 + b"]" * 1000, b"\xff\xfe\x00garbage",
           b'{"v":1,"kind":"status","state":"online","x":' + b"9" * 5000 + b"}",
           b'{"kind":"status","state":NaN}']


@pytest.mark.mosquitto
def test_retained_poison_on_status_topics_never_stops_a_restarting_hub(
        mosquitto: int, tmp_path: Path) -> None:
    # Not the gate that taps below: its own retained "online" would replace the poison.
    devices = ["lock-101", "thermostat-101", "gate-water-in-1", "pos-cafe-1", "watch-guest-01"]
    poisoner = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="poisoner")
    poisoner.connect("127.0.0.1", mosquitto)
    poisoner.loop_start()
    try:
        for device_id, poison in zip(devices, POISONS, strict=True):
            poisoner.publish(device_topic(VENUE_ID, device_id, Channel.STATUS), poison, qos=1,
                             retain=True).wait_for_publish(5)
        settings = hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}",
                                mqtt_protocol="5")
        for round_ in range(2):  # start, stop, start again on the same data and session
            running = Hub(settings, demo=True)
            running.start()
            try:
                with DeviceClient(VENUE_ID, "gate-park-in-1", host="127.0.0.1",
                                  port=mosquitto) as gate:
                    decision = gate.tap(WristbandCredential(uid=wristband_uid(7 + round_)),
                                        timeout=10)
                assert (decision.outcome, decision.reason) == ("allow", "ok")
                bridge = bridge_of(running)

                def all_counted(b: Bridge = bridge) -> bool:
                    errors: dict[str, int] = b.snapshot()["errors"]
                    return sum(errors.values()) >= len(POISONS)
                # Each poison is counted (not answered: status is no request), at every start.
                wait_for(all_counted, timeout=10)
                assert bridge.snapshot()["worker_deaths"] == 0 and bridge.worker_alive
            finally:
                running.stop()
    finally:
        for device_id in devices:  # the session's Mosquitto is shared: clean up
            poisoner.publish(device_topic(VENUE_ID, device_id, Channel.STATUS), b"", qos=1,
                             retain=True).wait_for_publish(5)
        poisoner.loop_stop()
        poisoner.disconnect()
