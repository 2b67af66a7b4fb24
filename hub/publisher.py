"""The MQTT client of ``hub api``: what the REST API publishes once its transaction has
committed (receipts and notices to guests' apps, the venues' retained key material),
when the process runs no bridge to publish through. It subscribes to nothing.

It logs in as the bridge does (:mod:`hub.mqtt_client`: HUB_MQTT_USERNAME/PASSWORD, TLS,
MQTT 5 when the settings say so) under a client id of its own, and reconnects by itself.
While the broker is away an API call still succeeds (what it changed is committed):

- a receipt or notice waits in memory, counted ``publish_deferred``, and goes out when
  the broker is back; it is lost should this process stop first (there is no outbox), or
  beyond ``queue_limit`` messages waiting (counted ``publish_failed``);
- a retained message is not kept (``retained_deferred``): at every connection the
  publisher publishes the current retained state (``retained``, the key material read
  from the database), which holds that change and any later one. A copy kept from
  before could reach the broker after it and be what the broker retains.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from hub.config import Settings
from hub.mqtt_client import Link, new_client, open_connection

log = logging.getLogger(__name__)

# Messages kept in memory while the broker is away: receipts of a long outage at a busy
# front desk, a few hundred bytes each.
QUEUE_LIMIT = 10_000

# Between two tries at the retained state when the database does not answer.
_RETRY_RETAINED = 5.0


class Publisher:
    """Publishes the hub's messages at QoS 1; ``publish`` as :meth:`hub.bridge.Bridge.publish`."""

    def __init__(self, settings: Settings, client_id: str, *,
                 retained: Callable[[], list[tuple[str, bytes]]] | None = None,
                 queue_limit: int = QUEUE_LIMIT) -> None:
        self.settings = settings
        self.client_id = client_id
        # The current retained state, as (topic, payload): published at every connection.
        self._retained = retained
        self.counters: Counter[str] = Counter()
        self._link = Link("API's publisher", self.counters)
        self._stopping = False
        # Set at each connection: the retained state is to be published (off paho's
        # network thread, since it reads the database).
        self._retained_due = threading.Event()
        self._closed = threading.Event()
        self._retainer: threading.Thread | None = None
        # No session to keep: it subscribes to nothing, and what waits for the broker waits
        # here, in paho's memory.
        self._client = new_client(settings, client_id, persistent=False,
                                  queue_limit=queue_limit)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def start(self, timeout: float = 10.0) -> None:
        """Connect (:class:`hub.broker_errors.BrokerUnreachable` when the broker is out of
        reach or refuses the login) and publish the retained state."""
        self._retainer = threading.Thread(target=self._publish_retained_when_due,
                                          name="hub-publisher-retained", daemon=True)
        self._retainer.start()
        open_connection(self._client, self.settings, self._link, timeout=timeout)
        log.info("API publisher %r connected to %s", self.settings.worker_name,
                 self.settings.broker_shown)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing the retained state, then disconnect (what paho still holds for
        a broker that is away is dropped)."""
        self._stopping = True
        self._closed.set()
        self._retained_due.set()
        if self._retainer is not None:
            self._retainer.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                strict: bool = False) -> None:
        """Publish at QoS 1; the API calls it after its transaction committed.

        While the broker is away: ``strict`` refuses (ConnectionError); a retained message
        is left to the next connection's retained state; anything else waits in memory.
        """
        if not self._link.connected.is_set():
            if strict:
                raise ConnectionError(f"not published to {topic}: the broker is out of reach")
            if retain and self._retained is not None:
                self.counters["retained_deferred"] += 1
                log.warning("broker out of reach: %s is published with the retained state "
                            "when it is back", topic)
                return
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.counters["published"] += 1
        elif info.rc == mqtt.MQTT_ERR_NO_CONN:  # kept by paho for the next connection
            self.counters["publish_deferred"] += 1
            log.warning("broker out of reach: %s waits for the next connection (lost "
                        "should this process stop first)", topic)
        else:  # the queue is full: dropped
            self.counters["publish_failed"] += 1
            log.error("not published to %s: %s", topic, mqtt.error_string(info.rc))

    @property
    def connected(self) -> bool:
        """Is it connected to the broker now?"""
        return self._link.connected.is_set()

    def snapshot(self) -> dict[str, Any]:
        """Counters for /stats of ``hub api``."""
        always = dict.fromkeys(("published", "publish_deferred", "publish_failed",
                                "retained_deferred", "retained_published",
                                "retained_failed", "disconnects"), 0)
        return {"publisher": {**always, **self.counters, "connected": self.connected},
                "worker": self.settings.worker_name}

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if self._link.accepted(client, rc):
            self._link.up()
            self._retained_due.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if self._link.lost(rc, stopping=self._stopping) and not self._stopping:
            log.warning("API publisher lost the broker (%s); reconnecting", rc)

    def _publish_retained_when_due(self) -> None:
        """At each connection, the current retained state; should the database not answer,
        again every few seconds until it does (or the connection is gone: the next one
        asks again)."""
        while True:
            self._retained_due.wait()
            if self._closed.is_set():
                return
            self._retained_due.clear()
            if self._retained is None or not self._link.connected.is_set():
                continue
            try:
                # Read now, after the connection: it holds every change committed before,
                # including those whose own publication was left to it.
                messages = self._retained()
            except Exception:
                self.counters["retained_failed"] += 1
                log.exception("could not read the retained state to publish; retrying")
                if not self._closed.wait(_RETRY_RETAINED):
                    self._retained_due.set()
                continue
            for topic, payload in messages:
                self.publish(topic, payload, retain=True)
            self.counters["retained_published"] += 1
