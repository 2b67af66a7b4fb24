"""Per-device credentials and topic ACLs on real brokers: Mosquitto and the embedded amqtt.

Every refusal is checked by delivery, not by the broker's word: a subscriber that may
read the topic waits for a later, allowed message (a sentinel) and must not have seen
the forbidden one. The same scenarios on brokers without the ACL show the forbidden
messages do arrive there, so these tests would notice an ACL that lets them through.
"""

from __future__ import annotations

import queue
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.client import DeviceClient
from devices.contract import Command, DeviceStatus, encode, utcnow
from devices.topics import ROOT
from hub.broker import EmbeddedBroker
from hub.broker_auth import BrokerAuth, device_password, device_username, mosquitto_files
from tests.conftest import free_port, missing, secured_mosquitto

SECRET = b"e2e-acl-test-secret-0123456789ab"
BRIDGE, BRIDGE_PASSWORD = "hub-bridge", "bridge-password-e2e"
# A venue of our own: the session's open Mosquitto keeps other tests' retained messages.
VENUE = f"acl-{uuid.uuid4().hex[:8]}"
A, B = "gate-a", "gate-b"
NOT_AUTHORIZED = 135  # paho's reason code for MQTT 3.1.1 CONNACK 5, "not authorised"
SUBSCRIBE_REFUSED = 0x80
QUIET = 0.3  # how long a forbidden message gets to show up after the sentinel


def topic(publisher: str, device: str, channel: str) -> str:
    return f"{ROOT}/{VENUE}/{publisher}/{device}/{channel}"


def creds(device: str, password_of: str | None = None) -> tuple[str, str]:
    """A device's username with its own password (or another device's)."""
    return (device_username(VENUE, device),
            device_password(SECRET, VENUE, password_of or device))


@dataclass(frozen=True)
class Broker:
    port: int
    acl: bool
    kind: str  # "embedded" or "mosquitto"


class Probe:
    """A paho MQTT 3.1.1 client that records what it receives and every broker answer."""

    def __init__(self, port: int, user: tuple[str, str] | None = None, *,
                 will: str | None = None) -> None:
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self._connack_seen = threading.Event()
        self._subacks: dict[int, list[int]] = {}
        self._suback = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"acl-{uuid.uuid4().hex[:10]}",
                                  protocol=mqtt.MQTTv311)
        if user is not None:
            self.client.username_pw_set(*user)
        if will is not None:
            self.client.will_set(will, b"will " + will.encode(), qos=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if self.connack is None:
            self.connack = rc
        self._connack_seen.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode],
                      _p: Any) -> None:
        with self._suback:
            self._subacks[mid] = [code.value for code in codes]
            self._suback.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def connect(self, timeout: float = 5.0) -> ReasonCode:
        """Connect and return the CONNACK's reason code."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._connack_seen.wait(timeout):
            raise AssertionError("no CONNACK")
        assert self.connack is not None
        return self.connack

    def subscribe(self, filter_: str, timeout: float = 5.0) -> int:
        """Subscribe at QoS 1; the granted QoS, or 0x80 when the broker refused."""
        result, mid = self.client.subscribe(filter_, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        with self._suback:
            assert self._suback.wait_for(lambda: mid in self._subacks, timeout), "no SUBACK"
            return self._subacks[mid][0]

    def publish(self, topic_: str, payload: bytes) -> None:
        info = self.client.publish(topic_, payload, qos=1)
        info.wait_for_publish(5.0)
        assert info.is_published()  # a PUBACK came, also for what the ACL dropped

    def wait_for(self, payload: bytes, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """Everything received until ``payload`` arrived, and for QUIET seconds after."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while not any(p == payload for _, p in seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{payload!r} never arrived; got {seen}")
            try:
                seen.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                continue
        time.sleep(QUIET)
        while not self.messages.empty():
            seen.append(self.messages.get_nowait())
        return seen

    def drop(self) -> None:
        """Vanish without DISCONNECT, so the broker sends the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connected(port: int, user: tuple[str, str] | None, **kw: Any) -> Probe:
    probe = Probe(port, user, **kw)
    rc = probe.connect()
    assert not rc.is_failure, f"{user and user[0]} refused: {rc}"
    return probe


def token() -> bytes:
    return uuid.uuid4().hex.encode()


def topics_with(seen: list[tuple[str, bytes]], *payloads: bytes) -> set[str]:
    """The topics on which any of these payloads arrived (ignores other tests' leftovers)."""
    return {t for t, p in seen if p in payloads}


# -------------------------------------------------------------------- brokers


@pytest.fixture(scope="module")
def acl_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto with the password and ACL files of ``mosquitto_files``."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        missing("mosquitto")
    root, port = tmp_path_factory.mktemp("mosquitto-acl"), free_port()
    passwd, acl = mosquitto_files([(VENUE, A), (VENUE, B)], secret=SECRET, bridge_user=BRIDGE,
                                  bridge_password=BRIDGE_PASSWORD)
    (root / "passwd").write_text(passwd)
    (root / "acl").write_text(acl)
    with secured_mosquitto(str(binary), root, port):
        yield Broker(port, acl=True, kind="mosquitto")


@pytest.fixture(scope="module")
def acl_embedded() -> Iterator[Broker]:
    broker = EmbeddedBroker("127.0.0.1", free_port(),
                            auth=BrokerAuth(SECRET, BRIDGE, BRIDGE_PASSWORD))
    broker.start()
    yield Broker(broker.port, acl=True, kind="embedded")
    broker.stop()


@pytest.fixture(scope="module")
def open_embedded() -> Iterator[Broker]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    yield Broker(broker.port, acl=False, kind="embedded")
    broker.stop()


@pytest.fixture(params=["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def acl_broker(request: pytest.FixtureRequest) -> Broker:
    """A broker enforcing the hub's credentials and ACL."""
    broker: Broker = request.getfixturevalue(f"acl_{request.param}")
    return broker


@pytest.fixture(params=[
    "acl-embedded", pytest.param("acl-mosquitto", marks=pytest.mark.mosquitto),
    "open-embedded", pytest.param("open-mosquitto", marks=pytest.mark.mosquitto),
])
def any_broker(request: pytest.FixtureRequest) -> Broker:
    """Brokers with the ACL and, as the control, the same brokers without it."""
    if request.param == "open-mosquitto":
        return Broker(request.getfixturevalue("mosquitto"), acl=False, kind="mosquitto")
    broker: Broker = request.getfixturevalue(request.param.replace("-", "_"))
    return broker


# ---------------------------------------------------------------------- tests


def test_a_device_cannot_publish_as_another(any_broker: Broker) -> None:
    port = any_broker.port
    bridge = connected(port, (BRIDGE, BRIDGE_PASSWORD))
    a = connected(port, creds(A))
    try:
        assert bridge.subscribe(f"{ROOT}/+/device/#") == 1
        forged, status, own = token(), token(), token()
        a.publish(topic("device", B, "events"), forged)
        a.publish(topic("device", B, "status"), status)
        a.publish(topic("device", A, "events"), own)
        seen = bridge.wait_for(own)
    finally:
        a.close()
        bridge.close()
    got = topics_with(seen, forged, status)
    if any_broker.acl:
        assert got == set()
        assert topics_with(seen, own) == {topic("device", A, "events")}
    else:  # the control: this test does see a cross-device publish when nothing stops it
        assert got == {topic("device", B, "events"), topic("device", B, "status")}


def test_a_device_reads_only_its_own_replies(any_broker: Broker) -> None:
    port = any_broker.port
    bridge = connected(port, (BRIDGE, BRIDGE_PASSWORD))
    a = connected(port, creds(A))
    try:
        granted = {f: a.subscribe(f) for f in (
            topic("hub", B, "decisions"), f"{ROOT}/+/hub/#", f"{ROOT}/{VENUE}/hub/+/decisions",
            f"{ROOT}/{VENUE}/device/#")}
        assert a.subscribe(topic("hub", A, "#")) == 1
        secret_decision, b_event, mine = token(), token(), token()
        bridge.publish(topic("hub", B, "decisions"), secret_decision)
        b = connected(port, creds(B))
        try:
            b.publish(topic("device", B, "events"), b_event)
        finally:
            b.close()
        bridge.publish(topic("hub", A, "decisions"), mine)
        seen = a.wait_for(mine)
    finally:
        a.close()
        bridge.close()
    others = topics_with(seen, secret_decision, b_event)
    if any_broker.acl:
        assert others == set()
        assert topics_with(seen, mine) == {topic("hub", A, "decisions")}
        if any_broker.kind == "embedded":  # refuses them outright
            assert set(granted.values()) == {SUBSCRIBE_REFUSED}, granted
        # Mosquitto 2.0 grants them (SUBACK 1) and checks "read" on each message instead.
    else:
        assert others == {topic("hub", B, "decisions"), topic("device", B, "events")}
        assert set(granted.values()) == {1}


@pytest.mark.parametrize("user", ["b-password", "anonymous", "unknown", "bridge-wrong"])
def test_logins_without_the_right_password_are_refused(acl_broker: Broker, user: str) -> None:
    login: tuple[str, str] | None = {
        "b-password": creds(A, password_of=B),
        "anonymous": None,
        "unknown": (device_username(VENUE, "gate-z"), "made-up-password"),
        "bridge-wrong": (BRIDGE, BRIDGE_PASSWORD + "x"),
    }[user]
    probe = Probe(acl_broker.port, login)
    try:
        assert probe.connect().value == NOT_AUTHORIZED
    finally:
        probe.close()


def test_the_right_passwords_are_accepted(acl_broker: Broker) -> None:
    for login in (creds(A), creds(B), (BRIDGE, BRIDGE_PASSWORD)):
        connected(acl_broker.port, login).close()


def test_a_last_will_cannot_speak_for_another_device(any_broker: Broker) -> None:
    port = any_broker.port
    bridge = connected(port, (BRIDGE, BRIDGE_PASSWORD))
    try:
        assert bridge.subscribe(f"{ROOT}/+/device/#") == 1
        liar = Probe(port, creds(A), will=topic("device", B, "status"))
        if liar.connect().is_failure:
            # the embedded broker refuses the login outright; Mosquitto drops the will later
            assert any_broker.acl
            liar.close()
        else:
            liar.drop()
        honest = connected(port, creds(A), will=topic("device", A, "status"))
        honest.drop()
        seen = bridge.wait_for(b"will " + topic("device", A, "status").encode())
    finally:
        bridge.close()
    forged = b"will " + topic("device", B, "status").encode()
    assert topics_with(seen, forged) == (set() if any_broker.acl
                                         else {topic("device", B, "status")})


def test_the_device_sdk_works_within_the_acl(acl_broker: Broker) -> None:
    """DeviceClient's subscriptions, status, events and last will all fit its ACL."""
    bridge = connected(acl_broker.port, (BRIDGE, BRIDGE_PASSWORD))
    commands: queue.Queue[Command] = queue.Queue()
    try:
        assert bridge.subscribe(f"{ROOT}/+/device/#") == 1
        username, password = creds(A)
        with DeviceClient(VENUE, A, host="127.0.0.1", port=acl_broker.port, username=username,
                          password=password) as gate:
            gate.on_command(commands.put)
            gate.heartbeat()
            sent = Command(command_id=uuid.uuid4().hex, name="greet", issued_at=utcnow())
            # the SDK subscribes after CONNACK: wait until a command gets through
            deadline = time.monotonic() + 5
            while commands.empty():
                assert time.monotonic() < deadline, "no command reached the device"
                bridge.publish(topic("hub", A, "commands"), encode(sent))
                time.sleep(0.1)
            assert commands.get().command_id == sent.command_id
        received = {t for t, _ in bridge.wait_for(encode(DeviceStatus(state="offline")))}
    finally:
        bridge.close()
    assert {topic("device", A, "status"), topic("device", A, "events")} <= received


def test_another_devices_client_id_does_not_hand_over_its_session(acl_broker: Broker) -> None:
    """Replies queued for an offline device go to that device, never to a borrower of its id."""
    port, client_id = acl_broker.port, f"acl-shared-{uuid.uuid4().hex[:8]}"

    def persistent(user: tuple[str, str]) -> Probe:
        probe = Probe(port, user)
        probe.client.reinitialise(client_id=client_id, clean_session=False)
        probe.client.username_pw_set(*user)
        probe.client.on_connect = probe._on_connect
        probe.client.on_subscribe = probe._on_subscribe
        probe.client.on_message = probe._on_message
        return probe

    bridge = connected(port, (BRIDGE, BRIDGE_PASSWORD))
    try:
        b = persistent(creds(B))
        assert not b.connect().is_failure
        assert b.subscribe(topic("hub", B, "decisions")) == 1
        b.close()
        # The premise: this broker keeps B's session and queues its decision while offline.
        queued = token()
        bridge.publish(topic("hub", B, "decisions"), queued)
        b = persistent(creds(B))
        assert not b.connect().is_failure
        assert topics_with(b.wait_for(queued), queued) == {topic("hub", B, "decisions")}
        b.close()
        # Now A borrows B's client id while a decision waits for B.
        queued = token()
        bridge.publish(topic("hub", B, "decisions"), queued)
        a = persistent(creds(A))
        seen: list[tuple[str, bytes]] = []
        if not a.connect().is_failure:  # Mosquitto starts A afresh; the embedded one refuses
            assert acl_broker.kind == "mosquitto"
            assert a.subscribe(topic("hub", A, "#")) == 1
            mine = token()
            bridge.publish(topic("hub", A, "decisions"), mine)
            seen = a.wait_for(mine)
        a.close()
        assert topics_with(seen, queued) == set()
    finally:
        bridge.close()


def test_the_embedded_broker_counts_the_publishes_its_acl_refuses() -> None:
    """A device's publish outside its own events and status (another device's, the hub's,
    one outside the contract) gets no answer in MQTT 3.1.1: it is counted for /stats."""
    broker = EmbeddedBroker("127.0.0.1", free_port(),
                            auth=BrokerAuth(SECRET, BRIDGE, BRIDGE_PASSWORD))
    broker.start()
    try:
        bridge = connected(broker.port, (BRIDGE, BRIDGE_PASSWORD))
        a = connected(broker.port, creds(A))
        try:
            assert bridge.subscribe(f"{ROOT}/+/device/#") == 1
            own = token()
            for refused in (topic("device", B, "events"), topic("hub", A, "decisions"),
                            f"{ROOT}/{VENUE}/elsewhere", "not-venuehub/at-all"):
                a.publish(refused, token())
            a.publish(topic("device", A, "events"), own)
            bridge.wait_for(own)  # one connection's publishes are handled in order
        finally:
            a.close()
            bridge.close()
        assert broker.refusals["publish"] == 4
        assert broker.take_refusals() == []  # counted, not audited
    finally:
        broker.stop()
