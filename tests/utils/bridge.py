"""Feeding MQTT messages to the real bridge without a broker, and recording what it does.

The bridge is the real :class:`hub.bridge.Bridge` on a real database; only paho's client
is replaced, by one that records publishes and acks. Messages go in the way paho's
network thread hands them over (``_on_message``), and :meth:`OfflineBridge.run_batch`
does what one turn of the worker thread does, in the test's own thread, so the order of
what happens is deterministic. Every commit on the engine, every publish and every ack
lands in one timeline, in the order they happened.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.bridge import Bridge

What = Literal["commit", "publish", "ack"]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the bridge did: a commit, a publish (of the reply to ``ref``, an event id
    or an error code) or an ack (of the message with mid ``ref``)."""

    what: What
    ref: str = ""


@dataclass
class FakeClient:
    """Stands in for paho's client: what the bridge publishes and acknowledges, in order."""

    timeline: list[Step]
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Called with each reply before it is recorded: a test looks at the world as it was.
    on_publish: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        body = json.loads(payload)
        for check in self.on_publish:
            check(topic, body)
        self.published.append((topic, body))
        self.timeline.append(Step("publish", str(body.get("event_id") or body.get("code"))))
        info = mqtt.MQTTMessageInfo(len(self.published))
        info.rc = mqtt.MQTT_ERR_SUCCESS
        return info

    def ack(self, mid: int, qos: int) -> None:
        self.timeline.append(Step("ack", str(mid)))

    def subscribe(self, *_a: Any, **_k: Any) -> None:
        pass

    def unsubscribe(self, *_a: Any, **_k: Any) -> None:
        pass


class OfflineBridge:
    """A bridge on ``engine`` with no broker: inject messages, run its worker's turns."""

    def __init__(self, bridge: Bridge, engine: Engine) -> None:
        self.bridge = bridge
        self.timeline: list[Step] = []
        self.client = FakeClient(self.timeline)
        # The bridge's only handle on paho: everything it sends goes through this.
        bridge._client = self.client  # type: ignore[assignment]
        self._mids = itertools.count(1)
        self._engine = engine
        sa.event.listen(engine, "commit", self._committed)

    def _committed(self, _conn: Any) -> None:
        self.timeline.append(Step("commit"))

    def close(self) -> None:
        """Stop recording commits."""
        sa.event.remove(self._engine, "commit", self._committed)

    def inject(self, topic: str, payload: bytes, *, qos: int = 1) -> int:
        """Hand a message to the bridge as paho's network thread does; return its mid."""
        mid = next(self._mids)
        msg = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
        msg.payload = payload
        msg.qos = qos
        self.bridge._on_message(self.client, None, msg)  # type: ignore[arg-type]
        return mid

    def run_batch(self) -> None:
        """One turn of the worker: take what waits (up to a batch), decide, answer."""
        assert self.bridge._fill(), "the worker was told to stop"
        if self.bridge._taken:
            self.bridge._handle(list(self.bridge._taken))

    def replies(self) -> dict[str, dict[str, Any]]:
        """What was published, by the event id it answers (or the error code)."""
        return {str(body.get("event_id") or body.get("code")): body
                for _, body in self.client.published}
