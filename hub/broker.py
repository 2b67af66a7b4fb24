"""The embedded MQTT broker (amqtt), run on its own thread and event loop.

Its own loop keeps the broker's latency independent of the HTTP server's work.
Real deployments point the hub at Mosquitto or an MQTT 5 cluster instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


class _Broker(Broker):
    """amqtt's broker, minus a leak of retained messages to clients that never asked.

    On every connect amqtt offers the new client the retained messages of *every*
    client's subscriptions (0.11-0.12); only a client's own subscriptions count.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        subscribers = self._subscriptions.get(subscription[0], [])
        if any(s.client_id == session.client_id for s, _ in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    """An amqtt broker listening on host:port, started and stopped from sync code."""

    def __init__(self, host: str, port: int, plugins: dict[str, Any] | None = None) -> None:
        self.host, self.port = host, port
        self._config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": plugins or {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="hub-broker", daemon=True)
        self._broker: Broker | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _start(self) -> Broker:
        broker = _Broker(self._config)
        await broker.start()
        return broker

    def start(self, timeout: float = 10.0) -> None:
        """Open the listener; raises if the port cannot be bound."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            self._broker = future.result(timeout)
        except Exception as exc:  # amqtt wraps a busy port in its own BrokerError
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            raise OSError(f"the embedded MQTT broker cannot listen on "
                          f"{self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker on mqtt://%s:%d", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every session, then end the thread."""
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(timeout)
            except Exception:  # a broker that fails to stop must not block the hub's exit
                log.exception("embedded broker did not shut down cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
