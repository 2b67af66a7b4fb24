"""A small device client for integrators and simulators (paho-mqtt).

It connects with a last will that marks the device offline, publishes its
events, and waits for the hub's reply to a tap by ``event_id``::

    with DeviceClient("demo-resort", "gate-park-in-1", host="127.0.0.1") as gate:
        decision = gate.tap(WristbandCredential(uid="04A1B2C3D4E501"))
        print(decision.outcome, decision.reason)
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ValidationError

from devices.contract import (
    Command,
    Decision,
    DeviceStatus,
    ErrorMessage,
    HeartbeatEvent,
    PaymentDecision,
    PaymentRequest,
    PhoneKeyCredential,
    TapEvent,
    TelemetryEvent,
    WristbandCredential,
    WristbandSunCredential,
    encode,
    parse_command,
    parse_reply,
    utcnow,
)
from devices.topics import Channel, device_topic, keys_topic


class HubError(RuntimeError):
    """The hub refused a message of this device (an ErrorMessage came back)."""

    def __init__(self, error: ErrorMessage) -> None:
        super().__init__(f"{error.code.value}: {error.detail}")
        self.error = error


class LoginRefused(ConnectionError):
    """The broker answered the CONNECT and refused it: a wrong, revoked or re-issued login
    (retrying the same one cannot help)."""


class NoReply(TimeoutError):
    """No decision arrived in time."""


class NoEcho(TimeoutError):
    """The broker did not hand a probe message back in time (its ACL refused the probe's
    topic, or it is overloaded): no broker-only baseline to compare with."""


def nodelay(client: mqtt.Client) -> None:
    """Turn Nagle off on the client's socket: paho leaves it on, which adds 40-90 ms to
    every request/reply. Call it from on_connect, so a reconnection's socket gets it too."""
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def use_tls(client: mqtt.Client, ca: Path | str) -> None:
    """Speak TLS to the broker, trusting only the CA in the PEM file ``ca`` (the venue's).

    The broker's name is checked against its certificate: connect by a name it carries
    (``hub init --tls-name``). TCP_NODELAY still comes from :func:`nodelay` in on_connect.
    """
    client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)


def new_event_id() -> str:
    """A fresh, unique event id."""
    return uuid.uuid4().hex


class DeviceClient:
    """One device's MQTT connection to the hub."""

    def __init__(
        self,
        venue: str,
        device_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        mqtt5: bool = False,
        keepalive: int = 30,
        tls_ca: Path | str | None = None,
    ) -> None:
        """``tls_ca``: connect with TLS (to the broker's TLS port), trusting that CA file."""
        self.venue = venue
        self.device_id = device_id
        self.host, self.port, self.keepalive = host, port, keepalive
        self._topics = {ch: device_topic(venue, device_id, ch) for ch in Channel}
        self._pending: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refused: Any = None  # the CONNACK's reason when the broker said no
        self._command_handler: Callable[[Command], None] | None = None
        self._keys_handler: Callable[[str, bytes], None] | None = None
        self._keys = {name: keys_topic(venue, name) for name in ("jwks", "revocations")}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dev-{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        )
        self._username = username
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls_ca is not None:
            use_tls(self._client, tls_ca)
        self._client.will_set(
            self._topics[Channel.STATUS], encode(DeviceStatus(state="offline")), qos=1, retain=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ------------------------------------------------------------ lifecycle

    def connect(self, timeout: float = 10.0) -> DeviceClient:
        """Connect, subscribe to this device's replies and announce it online."""
        self._client.connect(self.host, self.port, keepalive=self.keepalive)
        self._client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._connected.wait(0.05):
            if self._refused is not None:
                self._client.loop_stop()
                self._client.disconnect()
                raise LoginRefused(f"the broker at {self.host}:{self.port} refused the login "
                                   f"of {self._username!r}: {self._refused}")
            if time.monotonic() >= deadline:
                self._client.loop_stop()
                raise ConnectionError(f"no CONNACK from {self.host}:{self.port} in {timeout}s")
        return self

    def close(self) -> None:
        """Announce offline, fail taps still awaiting a decision, and disconnect cleanly."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for event_id, future in pending.items():
            future.set_exception(NoReply(f"closed before a decision for {event_id}"))
        if self._connected.is_set():
            info = self._client.publish(
                self._topics[Channel.STATUS], encode(DeviceStatus(state="offline")), 1, retain=True
            )
            info.wait_for_publish(2.0)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> DeviceClient:
        return self.connect()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            self._refused = rc  # paho would keep retrying the same refused login
            return
        nodelay(client)
        topics = [(self._topics[Channel.DECISIONS], 1), (self._topics[Channel.ERRORS], 1),
                  (self._topics[Channel.COMMANDS], 1)]
        if self._keys_handler is not None:
            topics += [(topic, 1) for topic in self._keys.values()]
        client.subscribe(topics)
        client.publish(
            self._topics[Channel.STATUS], encode(DeviceStatus(state="online")), 1, retain=True
        )
        self._connected.set()

    # ------------------------------------------------------------- messages

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
        self._connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._keys_handler is not None and msg.topic in self._keys.values():
            name = msg.topic.rsplit("/", 1)[-1]
            self._keys_handler(name, bytes(msg.payload))
            return
        if msg.topic == self._topics[Channel.COMMANDS]:
            if self._command_handler is not None:
                try:
                    command = parse_command(bytes(msg.payload))
                except ValidationError:
                    return
                self._command_handler(command)
            return
        try:
            reply = parse_reply(bytes(msg.payload))
        except ValidationError:
            return
        if reply.event_id is None:
            return
        with self._lock:
            future = self._pending.pop(reply.event_id, None)
        if future is None:
            return
        if isinstance(reply, ErrorMessage):
            future.set_exception(HubError(reply))
        else:
            future.set_result(reply)

    def watch_keys(self, handler: Callable[[str, bytes], None]) -> None:
        """Follow the venue's retained key material (``jwks``, ``revocations``): what an
        offline-capable lock needs to verify phone keys alone. Call before connect()."""
        self._keys_handler = handler

    def publish_event(self, event: BaseModel) -> None:
        """Publish any device event of the contract (e.g. an OfflineEntry upload)."""
        self._client.publish(self._topics[Channel.EVENTS], encode(event), qos=1)

    @property
    def connected(self) -> bool:
        """Whether the broker session is up right now."""
        return self._connected.is_set()

    def on_command(self, handler: Callable[[Command], None]) -> None:
        """Call ``handler`` (on the MQTT thread) for each command to this device."""
        self._command_handler = handler

    def publish_raw(self, payload: bytes, channel: Channel = Channel.EVENTS) -> None:
        """Publish bytes as they are: for tests of what the hub does with bad input."""
        self._client.publish(self._topics[channel], payload, qos=1)

    def expect(self, event_id: str) -> Future[Any]:
        """A future for the hub's reply to ``event_id``, registered before publishing."""
        future: Future[Any] = Future()
        with self._lock:
            self._pending[event_id] = future
        return future

    def send_tap(
        self,
        credential: WristbandCredential | WristbandSunCredential | PhoneKeyCredential,
        *,
        event_id: str | None = None,
        direction: str | None = None,
    ) -> tuple[TapEvent, Future[Decision]]:
        """Publish a tap without waiting; the future resolves with the decision."""
        event = TapEvent(
            event_id=event_id or new_event_id(),
            ts=utcnow(),
            credential=credential,
            direction=direction,  # type: ignore[arg-type]
        )
        future = self.expect(event.event_id)
        self._client.publish(self._topics[Channel.EVENTS], encode(event), qos=1)
        return event, future

    def tap(
        self,
        credential: WristbandCredential | WristbandSunCredential | PhoneKeyCredential,
        *,
        event_id: str | None = None,
        direction: str | None = None,
        timeout: float = 5.0,
    ) -> Decision:
        """Publish a tap and wait for the decision; HubError if the hub refuses it."""
        event, future = self.send_tap(credential, event_id=event_id, direction=direction)
        try:
            return future.result(timeout)
        except TimeoutError:
            with self._lock:
                self._pending.pop(event.event_id, None)
            raise NoReply(f"no decision for {event.event_id} within {timeout}s") from None

    def pay(self, request: PaymentRequest, *, timeout: float = 5.0) -> PaymentDecision:
        """Send a payment request and wait for the decision; HubError if the hub refuses it."""
        future = self.expect(request.event_id)
        self._client.publish(self._topics[Channel.EVENTS], encode(request), qos=1)
        try:
            decision: PaymentDecision = future.result(timeout)
        except TimeoutError:
            with self._lock:
                self._pending.pop(request.event_id, None)
            raise NoReply(f"no decision for {request.event_id} within {timeout}s") from None
        return decision

    def heartbeat(self, *, battery_pct: int | None = None, firmware: str | None = None,
                  interval_s: int | None = None) -> None:
        """Report that the device is alive."""
        event = HeartbeatEvent(event_id=new_event_id(), ts=utcnow(), battery_pct=battery_pct,
                               firmware=firmware, interval_s=interval_s)
        self._client.publish(self._topics[Channel.EVENTS], encode(event), qos=1)

    def telemetry(self, readings: dict[str, float | int | str | bool]) -> None:
        """Report appliance readings."""
        event = TelemetryEvent(event_id=new_event_id(), ts=utcnow(), readings=readings)
        self._client.publish(self._topics[Channel.EVENTS], encode(event), qos=1)


def credential_from_text(text: str) -> WristbandCredential | PhoneKeyCredential:
    """A hex UID (``04A1B2C3D4E501``) is a wristband; anything else is a phone key id."""
    try:
        return WristbandCredential(uid=text)
    except ValidationError:
        return PhoneKeyCredential(key_id=text)


def broker_round_trips(host: str, port: int, count: int = 200, *, username: str | None = None,
                       password: str | None = None, timeout: float = 5.0,
                       tls_ca: Path | str | None = None) -> list[float]:
    """Milliseconds for ``count`` QoS 1 publish -> receive loops through the broker alone;
    NoEcho when the broker does not pass them back (OSError when it cannot be reached).

    The baseline a tap's latency is compared with: the same client, broker and
    socket options, but no hub. The topic lies outside the contract, so no hub sees it.
    """
    topic = f"venuehub-probe/{uuid.uuid4().hex}"
    arrived: queue.SimpleQueue[tuple[bytes, float]] = queue.SimpleQueue()
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    if username is not None:
        client.username_pw_set(username, password)
    if tls_ca is not None:
        use_tls(client, tls_ca)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
        nodelay(c)
        c.subscribe(topic, 1)

    refused: list[str] = []

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        refused.extend(str(code) for code in codes if code.is_failure)
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, m: arrived.put((bytes(m.payload), time.perf_counter()))
    client.connect(host, port)
    client.loop_start()
    try:
        if not ready.wait(timeout):
            raise NoEcho(f"the broker at {host}:{port} did not confirm the probe's "
                         f"subscription within {timeout:g}s")
        if refused:
            raise NoEcho(f"the broker at {host}:{port} refused the probe's subscription to "
                         f"{topic} ({', '.join(refused)})")
        samples = []
        for n in range(count):
            tag = f"{n:08d}".encode().ljust(160, b"x")
            start = time.perf_counter()
            client.publish(topic, tag, qos=1)
            while True:  # a broker may deliver a QoS 1 message twice: match by content
                try:
                    payload, at = arrived.get(timeout=timeout)
                except queue.Empty:
                    raise NoEcho(f"the broker at {host}:{port} did not pass the probe "
                                 f"message back within {timeout:g}s (does its ACL let "
                                 f"this login read {topic}?)") from None
                if payload == tag:
                    break
            samples.append((at - start) * 1000)
        return samples
    finally:
        client.disconnect()
        client.loop_stop()
