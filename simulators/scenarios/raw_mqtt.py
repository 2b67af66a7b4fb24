"""A bare MQTT connection that does exactly what it is told: the intruder's tool.

``DeviceClient`` subscribes to its own device's topics only and hides a refused CONNACK
behind a timeout; :class:`RawClient` reports CONNACK and SUBACK codes as they are and
records every message it receives.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

QUIET_S = 2.0  # how long an observer listens for what must never arrive
NOT_AUTHORIZED = "Not authorized"  # paho's name of CONNACK 5 (3.1.1) / 0x87 (5)
SUCCESS = "Success"


def _reason_name(code: Any) -> str:
    """paho's ReasonCode by name ("Success", "Not authorized" ...), for 3.1.1 and 5 alike."""
    return str(getattr(code, "getName", lambda: code)())


class RawClient:
    """A bare paho connection that does exactly what it is told: the attacker's tool.

    ``DeviceClient`` subscribes to its own device's topics only and hides a refused
    CONNACK behind a timeout; this one reports CONNACK and SUBACK codes as they are
    and records every message it receives.
    """

    def __init__(self, host: str, port: int, username: str | None = None,
                 password: str | None = None, *, name: str = "intruder") -> None:
        self.host, self.port = host, port
        self.messages: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._connack: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._subacks: dict[int, list[str]] = {}
        self._pubacks: set[int] = set()
        self._cond = threading.Condition()
        self._looping = False
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv311)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    def connect(self, timeout: float = 5.0) -> str | None:
        """Connect; the CONNACK's reason by name, None when none came. OSError if no TCP.

        The network thread starts only once the broker has accepted the login: paho
        would otherwise keep retrying a refused one in the background.
        """
        self._client.connect(self.host, self.port, keepalive=30)
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + timeout
        while self._connack.empty() and time.monotonic() < deadline:
            if self._client.loop(timeout=0.05) not in (mqtt.MQTT_ERR_SUCCESS,
                                                       mqtt.MQTT_ERR_AGAIN):
                break  # the broker closed the connection (after a refusal, or without one)
        try:
            answer = self._connack.get_nowait()
        except queue.Empty:
            return None
        if answer == SUCCESS:
            self._client.loop_start()
            self._looping = True
        return answer

    def subscribe(self, topic: str, timeout: float = 5.0) -> str | None:
        """Subscribe (QoS 1); the SUBACK's code by name, None when none came."""
        result, mid = self._client.subscribe(topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return None
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                return None
            return self._subacks[mid][0]

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> bool:
        """Publish at QoS 1; True when the broker acknowledged it (which grants nothing)."""
        info = self._client.publish(topic, payload, qos=1)
        with self._cond:
            return self._cond.wait_for(lambda: info.mid in self._pubacks, timeout)

    def received(self, within: float) -> list[tuple[str, bytes]]:
        """Everything that arrived, after listening ``within`` seconds more."""
        deadline = time.monotonic() + within
        found: list[tuple[str, bytes]] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return found

    def close(self) -> None:
        self._client.disconnect()
        if self._looping:
            self._client.loop_stop()
            self._looping = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self._connack.put(_reason_name(rc))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: Any, _p: Any = None) -> None:
        with self._cond:
            self._subacks[mid] = [_reason_name(c) for c in codes] or ["?"]
            self._cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any = None,
                    _p: Any = None) -> None:
        with self._cond:
            self._pubacks.add(mid)
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))


def suback_text(code: str | None) -> str:
    """A SUBACK code for the report: ``granted QoS n`` or ``refused (<name>)``."""
    if code is None:
        return "none"
    if code.startswith("Granted QoS"):
        return code.replace("Granted", "granted")
    return f"refused ({code})"


def connack(host: str, port: int, username: str | None, password: str | None,
            timeout: float = 5.0) -> str | None:
    """What the broker answers a login with (``Success``, ``Not authorized`` ...); None if
    nothing; OSError when it cannot be reached at all."""
    client = RawClient(host, port, username, password, name="probe")
    try:
        return client.connect(timeout)
    finally:
        client.close()
