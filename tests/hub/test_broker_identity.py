"""A client id belongs to the user holding it: the embedded broker on a real socket, paho clients.

The victim is bridge-like: the bridge user, a persistent session (clean_session False),
a QoS 1 subscription. Whatever CONNECT an intruder sends with its client id, refused or
not, the victim must keep its connection and go on receiving. amqtt's own broker fails
that (the last test): when it stops failing, hub.broker's override can be revisited.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from amqtt.broker import Broker as AmqttBroker
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.client import nodelay
from devices.topics import ROOT
from hub import broker as broker_module
from hub.broker import EmbeddedBroker
from hub.broker_auth import BrokerAuth, device_password, device_username
from tests.conftest import free_port

SECRET = b"identity-test-secret-0123456789ab"
BRIDGE, BRIDGE_PASSWORD = "hub-bridge", "bridge-password-identity"
VENUE, DEVICE = "identity-park", "gate-1"
DEVICE_LOGIN = (device_username(VENUE, DEVICE), device_password(SECRET, VENUE, DEVICE))
EVENTS = f"{ROOT}/{VENUE}/device/{DEVICE}/events"
FILTER = f"{ROOT}/+/device/#"
WAIT = 5.0  # for what must happen
QUIET = 1.0  # for what must not


class Client:
    """A paho MQTT 3.1.1 client that records its CONNACK, disconnections and messages."""

    def __init__(self, port: int, client_id: str, login: tuple[str, str] | None, *,
                 clean: bool = False) -> None:
        self.port = port
        self.connack: ReasonCode | None = None
        self.disconnects = 0
        self.messages: queue.Queue[bytes] = queue.Queue()
        self._connack = threading.Event()
        self._subscribed = threading.Event()
        # No reconnection: a victim that is dropped must stay dropped, for the test to see it.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean, protocol=mqtt.MQTTv311,
                                  reconnect_on_failure=False)
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(bytes(msg.payload))

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode,
                    _p: Any) -> None:
        nodelay(client)
        self.connack = rc
        self._connack.set()

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnects += 1

    def connect(self) -> ReasonCode:
        """Connect; the CONNACK's reason code."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self._connack.wait(WAIT), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def subscribe(self, filter_: str) -> None:
        self.client.subscribe(filter_, qos=1)
        assert self._subscribed.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT)

    def receives(self, payload: bytes, timeout: float = WAIT) -> bool:
        """Does ``payload`` arrive within ``timeout`` (skipping others)?"""
        try:
            while self.messages.get(timeout=timeout) != payload:
                pass
        except queue.Empty:
            return False
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def token() -> bytes:
    return uuid.uuid4().hex.encode()


def new_broker(mode: str) -> EmbeddedBroker:
    if mode == "open":
        return EmbeddedBroker("127.0.0.1", free_port(), bridge_login=(BRIDGE, BRIDGE_PASSWORD))
    return EmbeddedBroker("127.0.0.1", free_port(),
                          auth=BrokerAuth(SECRET, BRIDGE, BRIDGE_PASSWORD))


@pytest.fixture(params=["open", "secure"])
def mode(request: pytest.FixtureRequest) -> str:
    """open: bridge_login; secure: auth=BrokerAuth."""
    return str(request.param)


@pytest.fixture
def broker(mode: str) -> Iterator[EmbeddedBroker]:
    broker = new_broker(mode)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def bridge_id() -> str:
    return f"venuehub-bridge-{uuid.uuid4().hex[:8]}"


def bridge_like(port: int, client_id: str) -> Client:
    """The bridge's way: its login, a persistent session, a QoS 1 subscription to devices."""
    bridge = Client(port, client_id, (BRIDGE, BRIDGE_PASSWORD))
    assert not bridge.connect().is_failure
    bridge.subscribe(FILTER)
    return bridge


def attempt(port: int, client_id: str, login: tuple[str, str] | None, *,
            clean: bool) -> ReasonCode:
    """One CONNECT with ``client_id``; its CONNACK."""
    intruder = Client(port, client_id, login, clean=clean)
    try:
        return intruder.connect()
    finally:
        intruder.close()


INTRUDERS: dict[str, tuple[str, str] | None] = {
    "anonymous": None,
    "wrong-password": (BRIDGE, BRIDGE_PASSWORD + "x"),
    "another-user": DEVICE_LOGIN,  # a valid login in both modes, just not the bridge's
}


def expected_refusal(mode: str, intruder: str) -> str:
    if intruder == "anonymous":
        return "login" if mode == "secure" else "takeover"  # open mode lets it log in
    return "login" if intruder == "wrong-password" else "takeover"


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
@pytest.mark.parametrize("intruder", list(INTRUDERS))
def test_the_bridges_client_id_is_refused_to_others(
        broker: EmbeddedBroker, mode: str, bridge_id: str, intruder: str, clean: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    bridge = bridge_like(broker.port, bridge_id)
    device = Client(broker.port, f"dev-{uuid.uuid4().hex[:8]}", DEVICE_LOGIN, clean=True)
    try:
        assert not device.connect().is_failure
        before = token()
        device.publish(EVENTS, before)
        assert bridge.receives(before)
        with caplog.at_level(logging.WARNING, logger="hub.broker"):
            assert attempt(broker.port, bridge_id, INTRUDERS[intruder], clean=clean).is_failure
        after = token()
        device.publish(EVENTS, after)
        assert bridge.receives(after), "the bridge stopped receiving"
        assert bridge.disconnects == 0
    finally:
        device.close()
        bridge.close()
    assert broker.refusals == Counter({expected_refusal(mode, intruder): 1})
    refusals = [r for r in caplog.records if r.name == "hub.broker" and "refused" in r.message]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert BRIDGE_PASSWORD not in caplog.text


def test_an_offline_bridges_session_is_kept_from_others(broker: EmbeddedBroker,
                                                         bridge_id: str) -> None:
    """Its subscription and the messages queued for it wait for the bridge, not a borrower."""
    bridge = bridge_like(broker.port, bridge_id)
    bridge.close()
    device = Client(broker.port, f"dev-{uuid.uuid4().hex[:8]}", DEVICE_LOGIN, clean=True)
    try:
        assert not device.connect().is_failure
        queued = token()
        device.publish(EVENTS, queued)
        for login in INTRUDERS.values():
            for clean in (True, False):
                assert attempt(broker.port, bridge_id, login, clean=clean).is_failure
        back = Client(broker.port, bridge_id, (BRIDGE, BRIDGE_PASSWORD))
        assert not back.connect().is_failure  # no SUBSCRIBE: the session still has it
        try:
            assert back.receives(queued)
            later = token()
            device.publish(EVENTS, later)
            assert back.receives(later)
        finally:
            back.close()
    finally:
        device.close()
    assert sum(broker.refusals.values()) == 6


def test_the_bridge_itself_takes_its_session_over(broker: EmbeddedBroker,
                                                  bridge_id: str) -> None:
    """The same user with the right password may: a bridge back from a network break."""
    first = bridge_like(broker.port, bridge_id)
    device = Client(broker.port, f"dev-{uuid.uuid4().hex[:8]}", DEVICE_LOGIN, clean=True)
    second = Client(broker.port, bridge_id, (BRIDGE, BRIDGE_PASSWORD))
    try:
        assert not device.connect().is_failure
        assert not second.connect().is_failure
        assert second.connack is not None and second.client.is_connected()
        message = token()
        device.publish(EVENTS, message)
        assert second.receives(message)  # the session's subscription went on
        assert not first.receives(message, QUIET)
        assert first.disconnects == 1
    finally:
        device.close()
        second.close()
        first.close()
    assert broker.refusals == Counter()


def test_bridge_login_reserves_only_the_bridge_user() -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port(), bridge_login=(BRIDGE, BRIDGE_PASSWORD))
    broker.start()
    try:
        for login in (None, ("someone", "anything"), DEVICE_LOGIN, (BRIDGE, BRIDGE_PASSWORD)):
            assert not attempt(broker.port, uuid.uuid4().hex, login, clean=True).is_failure
        for login in ((BRIDGE, ""), (BRIDGE, BRIDGE_PASSWORD.upper())):
            assert attempt(broker.port, uuid.uuid4().hex, login, clean=True).is_failure
        assert broker.refusals == Counter({"login": 2})
    finally:
        broker.stop()
    with pytest.raises(ValueError):
        EmbeddedBroker("127.0.0.1", free_port(), bridge_login=(BRIDGE, BRIDGE_PASSWORD),
                       auth=BrokerAuth(SECRET, BRIDGE, BRIDGE_PASSWORD))
    with pytest.raises(ValueError):
        EmbeddedBroker("127.0.0.1", free_port(), bridge_login=(BRIDGE, ""))


class _PlainAmqtt(AmqttBroker):  # type: ignore[misc]  # amqtt is untyped
    """amqtt's broker as it ships, started by EmbeddedBroker's machinery."""

    def __init__(self, config: dict[str, Any], **_hub_options: Any) -> None:
        super().__init__(config)


def test_amqtt_itself_lets_an_intruder_deafen_the_bridge(
        monkeypatch: pytest.MonkeyPatch, bridge_id: str, mode: str) -> None:
    """amqtt 0.12 deletes a session for a clean CONNECT before authenticating it.

    If this starts failing, amqtt fixed it: hub.broker._Broker._admit may go.
    """
    monkeypatch.setattr(broker_module, "_Broker", _PlainAmqtt)
    broker = new_broker(mode)
    broker.start()
    try:
        bridge = bridge_like(broker.port, bridge_id)
        device = Client(broker.port, f"dev-{uuid.uuid4().hex[:8]}", DEVICE_LOGIN, clean=True)
        try:
            assert not device.connect().is_failure
            before = token()
            device.publish(EVENTS, before)
            assert bridge.receives(before)
            # open: amqtt lets the anonymous intruder in; secure: it refuses the wrong password
            intruder = None if mode == "open" else INTRUDERS["wrong-password"]
            assert attempt(broker.port, bridge_id, intruder, clean=True).is_failure == (
                mode == "secure")
            after = token()
            device.publish(EVENTS, after)
            assert not bridge.receives(after, QUIET), "amqtt no longer loses the session"
        finally:
            device.close()
            bridge.close()
    finally:
        broker.stop()
