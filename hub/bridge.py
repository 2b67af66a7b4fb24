"""The MQTT bridge: the only module of the hub that touches paho.

paho's network thread only enqueues messages; one worker thread takes what
has queued up (one message when idle, up to ``bridge_batch_size`` under load),
decides and records it in one transaction, publishes the replies after the
commit and only then acknowledges the messages to the broker (manual ack). So a
decision a device sees is durable, and a message the hub has acknowledged is
never lost: if the hub stops before the ack, the broker delivers it again and
the recorded decision is replayed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.engine import Engine
from sqlmodel import Session

from devices.client import nodelay
from devices.contract import ContractError, ErrorCode, event_id_of
from devices.topics import from_devices, shared
from hub.automation_runner import AutomationRunner
from hub.config import Settings
from hub.db import session_scope
from hub.ingest import Outcome, handle_message, refuse
from hub.models import utcnow
from hub.payment import PaymentLimits
from hub.presented import Trust

log = logging.getLogger(__name__)

# Everything devices publish, and nothing the hub publishes: no echo of our own replies.
_SUBSCRIPTION = from_devices()


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float
    received_at: datetime


class Bridge:
    """Consumes device messages from the broker and answers them."""

    def __init__(self, settings: Settings, engine: Engine,
                 clock: Callable[[], datetime] = utcnow, *, trust: Trust | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.trust = trust or Trust()
        self.command_ttl = timedelta(minutes=settings.command_queue_minutes)
        self.automations: AutomationRunner | None = None  # set by the hub when it runs them
        self.limits = PaymentLimits(max_amount=settings.payment_max_amount,
                                    max_pin_failures=settings.pin_max_failures)
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._queue: queue.Queue[_Inbound | None] = queue.Queue(settings.bridge_queue_size)
        self._connected = threading.Event()
        self._last_message = 0.0
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._mqtt5 = settings.mqtt_protocol == "5"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5 if self._mqtt5 else mqtt.MQTTv311,
            clean_session=None if self._mqtt5 else False,
            manual_ack=True,
        )
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Connect to the broker, subscribe and start the worker."""
        host, port = self.settings.mqtt_address
        self._worker = threading.Thread(target=self._work, name="hub-bridge-worker", daemon=True)
        self._worker.start()
        if self._mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600  # keep our queue while a worker restarts
            self._client.connect(host, port, keepalive=self.settings.mqtt_keepalive,
                                 clean_start=False, properties=props)
        else:
            self._client.connect(host, port, keepalive=self.settings.mqtt_keepalive)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise ConnectionError(f"the broker at {host}:{port} did not accept the bridge")
        log.info("bridge connected to mqtt://%s:%d", host, port)

    def drain(self, quiet: float = 0.25, timeout: float = 10.0) -> bool:
        """Wait until every message taken is answered and none arrived for ``quiet`` s."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = time.perf_counter() - self._last_message
            if not self._queue.unfinished_tasks and idle >= quiet:
                return True
            time.sleep(0.01)
        return False

    def quiesce(self, timeout: float = 10.0) -> None:
        """Stop taking messages and finish those already taken; stay connected, so what
        they set off (automations) can still be published."""
        self._stopping = True
        if self._connected.is_set():
            self._client.unsubscribe(self._filter())
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(max(0.1, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, finish those already taken, then disconnect."""
        self.quiesce(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def _filter(self) -> str:
        group = self.settings.mqtt_shared_group
        return shared(_SUBSCRIPTION, group) if group and self._mqtt5 else _SUBSCRIPTION

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the bridge: %s", rc)
            return
        nodelay(client)
        client.subscribe(self._filter(), qos=1)
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._connected.clear()
        if rc.is_failure and not self._stopping:
            log.warning("bridge lost the broker (%s); paho reconnects", rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        item = _Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.perf_counter(),
                        self.clock())
        self._last_message = item.received
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # Never drop: block paho's network thread, so TCP pushes back and the broker
            # holds further messages until the worker catches up.
            self.counters["queue_full_waits"] += 1
            self._queue.put(item)

    # --------------------------------------------------------------- worker

    @property
    def queue_depth(self) -> int:
        """Messages received and not yet answered."""
        return self._queue.qsize()

    def _work(self) -> None:
        limit = self.settings.bridge_batch_size
        while True:
            batch = [self._queue.get()]
            while len(batch) < limit and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is None
            items = [item for item in batch if item is not None]
            try:
                if items:
                    self._handle(items)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _handle(self, items: list[_Inbound]) -> None:
        self.counters["received"] += len(items)
        now = self.clock()
        try:
            with session_scope(self.engine) as session:
                outcomes = [self._decide(session, item, now) for item in items]
        except Exception:
            # The commit itself failed: nothing of this batch is durable, so no decision
            # goes out; devices get an error and may retry with the same event id.
            log.exception("failed to commit a batch of %d messages", len(items))
            outcomes = [self._internal(item) for item in items]
        for item, outcome in zip(items, outcomes, strict=True):
            self._publish(outcome)
            if outcome.occurrence is not None and self.automations is not None:
                self.automations.submit(outcome.occurrence)
            if outcome.decision is not None:
                self.counters["decisions"] += 1
            if outcome.error is not None:
                self.errors[outcome.error.value] += 1
                log.warning("refused a message on %s: %s", item.topic, outcome.error.value)
            if item.qos > 0:
                self._client.ack(item.mid, item.qos)
        self.counters["batches"] += 1

    def _decide(self, session: Session, item: _Inbound, now: datetime) -> Outcome:
        try:
            with session.begin_nested():
                return handle_message(session, item.topic, item.payload, now,
                                      limits=self.limits, received_at=item.received_at,
                                      trust=self.trust, command_ttl=self.command_ttl)
        except Exception:
            log.exception("failed to handle a message on %s", item.topic)
            return self._internal(item)

    @staticmethod
    def _internal(item: _Inbound) -> Outcome:
        # Name the event, so the device can match the error to its request and retry it.
        return refuse(item.topic, ContractError(ErrorCode.INTERNAL,
                                                "the hub could not process this message",
                                                event_id_of(item.payload)))

    def _publish(self, outcome: Outcome) -> None:
        for reply in outcome.replies:
            self._client.publish(reply.topic, reply.payload, qos=1, retain=reply.retain)
            self.counters["replies"] += 1

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                strict: bool = False) -> None:
        """Publish a message of the hub (a command, a retained list) at QoS 1.

        While the broker is out of reach paho keeps the message in memory for the next
        connection; with ``strict`` it is refused instead (ConnectionError), for callers
        that retry and record failures (automations).
        """
        if strict and not self._connected.is_set():
            # Before paho takes it: it would keep a copy for the next connection, and a
            # retry would add another, all sent later, past any consent re-check.
            raise ConnectionError(f"not published to {topic}: the broker is out of reach")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:  # kept by paho for the next connection
            log.warning("publish to %s deferred: %s", topic, mqtt.error_string(info.rc))

    def snapshot(self) -> dict[str, Any]:
        """Counters for /stats and the console."""
        return {**self.counters, "errors": dict(self.errors), "queue_depth": self.queue_depth,
                "connected": self._connected.is_set()}
