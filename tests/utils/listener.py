"""A subscriber to what the hub publishes for staff and guests, for end-to-end tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.contract import parse_notification, parse_staff_alert

Predicate = Callable[[str, dict[str, Any]], bool]


class Listener:
    """Every message on ``topics`` as JSON, in arrival order; each is also read by the
    contract's parser (staff alerts, or a guest's notifications), what it refuses kept in
    ``invalid``."""

    def __init__(self, host: str, port: int, topics: Sequence[str]) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.invalid: list[tuple[str, bytes, str]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe([(topic, 1) for topic in topics])
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        parse = parse_staff_alert if message.topic.endswith("/staff/alerts") else (
            parse_notification)
        with self._cond:
            try:
                parse(payload)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                self.invalid.append((message.topic, payload, str(exc).splitlines()[0]))
            self.messages.append((message.topic, json.loads(payload)))
            self._cond.notify_all()

    def matching(self, predicate: Predicate) -> list[dict[str, Any]]:
        with self._cond:
            return [body for topic, body in self.messages if predicate(topic, body)]

    def wait(self, predicate: Predicate, count: int = 1,
             timeout: float = 3.0) -> list[dict[str, Any]]:
        """The matching messages once there are ``count`` (or what came within ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := [b for t, b in self.messages if predicate(t, b)]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
