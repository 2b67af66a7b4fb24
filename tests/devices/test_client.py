"""The device SDK against a real broker (the hub's embedded amqtt on a free port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.client import DeviceClient, broker_round_trips, credential_from_text
from devices.contract import PhoneKeyCredential, WristbandCredential
from hub.broker import EmbeddedBroker
from tests.conftest import free_port


@pytest.fixture(scope="module")
def broker_port() -> Iterator[int]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    yield broker.port
    broker.stop()


def test_broker_round_trips_measure_each_message(broker_port: int) -> None:
    samples = broker_round_trips("127.0.0.1", broker_port, 50)
    assert len(samples) == 50
    assert all(0 < s < 1000 for s in samples)


def test_broker_round_trips_fail_clearly_without_a_broker() -> None:
    with pytest.raises(OSError):
        broker_round_trips("127.0.0.1", free_port(), 1)


@pytest.mark.parametrize(("text", "kind"), [
    ("04A1B2C3D4E501", WristbandCredential), ("04a1b2c3", WristbandCredential),
    ("pk-guest-01", PhoneKeyCredential), ("04A1B2C", PhoneKeyCredential),
])
def test_credential_from_text(text: str, kind: type) -> None:
    assert isinstance(credential_from_text(text), kind)


def test_retained_messages_reach_only_matching_subscribers(broker_port: int) -> None:
    """A client gets the retained messages of its own subscriptions, not of everyone's."""
    def connect(filter_: str, seen: list[str]) -> mqtt.Client:
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_message = lambda _c, _u, m: seen.append(m.topic)
        client.on_subscribe = lambda *_a: subscribed.set()
        client.connect("127.0.0.1", broker_port)
        client.subscribe(filter_, 1)
        client.loop_start()
        assert subscribed.wait(5)
        return client

    with DeviceClient("venue", "lock-1", port=broker_port):  # leaves a retained status
        hub_seen: list[str] = []
        hub_like = connect("venuehub/v1/+/device/#", hub_seen)
        stranger_seen: list[str] = []
        stranger = connect("foo/#", stranger_seen)
        time.sleep(0.5)
        for client in (hub_like, stranger):
            client.disconnect()
            client.loop_stop()
    assert "venuehub/v1/venue/device/lock-1/status" in hub_seen
    assert stranger_seen == []
