"""Who takes a share of the fleet's traffic on the broker: only live workers.

A shared subscription hands each member of its group a share of the taps. A stranger
joining the group (any device's or guest's login on Mosquitto, whose ACL file does not
stop the SUBSCRIBE, only the delivery) would swallow a share of every tap; so would a
dead worker's session for as long as the broker keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.client import DeviceClient
from devices.contract import Decision, WristbandCredential
from hub.demo import VENUE_ID, wristband_uid
from tests.utils.fleet import Mosquitto, Worker, demo_database

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]

TAPS = 30


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Mosquitto, list[Worker]]]:
    url = demo_database(tmp_path, postgres_url)
    broker = Mosquitto(tmp_path)
    broker.start()
    # A short session: the test waits it out rather than the default's 30 s.
    workers = [Worker(f"w{n}", tmp_path, broker.port, url,
                      env={"HUB_MQTT_SESSION_EXPIRY": "2"}) for n in (1, 2)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_connected()
        yield broker, workers
    finally:
        for w in workers:
            w.stop()
        broker.stop()


def answered(port: int, taps: int = TAPS, within: float = 8.0) -> int:
    """Taps sent at once by one gate; how many got a decision ``within`` seconds."""
    with DeviceClient(VENUE_ID, "gate-park-in-1", port=port, mqtt5=True) as gate:
        futures: list[Future[Decision]] = [
            gate.send_tap(WristbandCredential(uid=wristband_uid(100 + n)))[1]
            for n in range(taps)]
        deadline = time.monotonic() + within
        got = 0
        for future in futures:
            try:
                future.result(max(0.0, deadline - time.monotonic()))
                got += 1
            except Exception:  # no answer in time
                pass
        return got


def stranger(port: int, client_id: str, topic: str, *, stay: bool) -> mqtt.Client:
    """A client (as a device or guest login would) subscribing to ``topic``, with a
    session kept a day; connected (``stay``) or gone, leaving its session behind."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 86_400
    subscribed: list[Any] = []
    client.on_subscribe = lambda *args: subscribed.append(args)
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + 5
    while not subscribed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert subscribed, "the broker did not answer the SUBSCRIBE"
    if not stay:
        client.disconnect()
        client.loop_stop()
    return client


@pytest.mark.parametrize("group", ["hubs", "hub"])  # the CLI's default, the example's
def test_a_stranger_in_the_workers_group_by_its_name_takes_no_taps(
        fleet: tuple[Mosquitto, list[Worker]], group: str) -> None:
    broker, _ = fleet
    topic = f"$share/{group}/venuehub/v1/+/device/#"
    present = [stranger(broker.port, f"thief-{n}", topic, stay=True) for n in range(3)]
    stranger(broker.port, "thief-gone", topic, stay=False)
    try:
        assert answered(broker.port) == TAPS
    finally:
        for client in present:
            client.disconnect()
            client.loop_stop()


def test_a_dead_workers_share_goes_to_the_live_one_once_its_session_ends(
        fleet: tuple[Mosquitto, list[Worker]]) -> None:
    broker, workers = fleet
    assert answered(broker.port) == TAPS  # both deciding
    workers[0].kill()  # no goodbye: the broker keeps its session for the expiry
    time.sleep(3)  # past HUB_MQTT_SESSION_EXPIRY (2 s)
    assert answered(broker.port) == TAPS
