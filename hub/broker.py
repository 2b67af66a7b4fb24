"""The embedded MQTT broker (amqtt), run on its own thread and event loop.

Its own loop keeps the broker's latency independent of the HTTP server's work.
Real deployments point the hub at Mosquitto or an MQTT 5 cluster instead.

With ``auth=BrokerAuth(...)`` it checks each device's derived password and enforces the
per-device topic rules of ``hub.broker_auth`` (the ones Mosquitto gets as files);
without it, anyone may connect and use any topic.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from hub.broker_auth import BrokerAuth, allowed, password_ok

__all__ = ["BrokerAuth", "EmbeddedBroker", "HubAuthPlugin", "HubTopicPlugin"]

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


# amqtt builds plugins from a config dict of plain values (and may log it), so the
# secrets stay here and the config carries only a random key to them.
_AUTHS: dict[str, BrokerAuth] = {}
_OWNER = "_venuehub_owner"  # attribute naming the user a stored session belongs to


def _auth_of(context: BaseContext) -> BrokerAuth:
    key = getattr(context.config, "auth_id", "")
    try:
        return _AUTHS[key]
    except KeyError:
        raise ValueError("hub broker plugin configured without a registered auth_id") from None


class HubAuthPlugin(BaseAuthPlugin):
    """Accept the bridge user and devices whose password is the one derived for them."""

    @dataclass
    class Config:
        """Only the registry key: secrets never enter amqtt's config."""

        auth_id: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._auth = _auth_of(context)

    async def authenticate(self, *, session: Session) -> bool:
        """True for a known user with the right password (and an allowed last will)."""
        username = session.username or ""
        if not password_ok(username, session.password, self._auth):
            self.context.logger.info("refused MQTT login of %r", username)  # never the password
            return False
        # amqtt sends a last will without any topic check: judge it here, like a publish.
        if session.will_flag and not allowed(username, "publish", session.will_topic or "",
                                             bridge_user=self._auth.bridge_user):
            self.context.logger.info("refused %r: last will on %r", username, session.will_topic)
            return False
        # A clean_session=False login with another user's client id would inherit that
        # user's stored session (subscriptions, queued messages): refuse it.
        owner = getattr(session, _OWNER, None)
        if owner is not None and owner != username:
            self.context.logger.info("refused %r: client id %r belongs to another user",
                                     username, session.client_id)
            return False
        setattr(session, _OWNER, username)
        return True


class HubTopicPlugin(BaseTopicPlugin):
    """Allow a publish, subscribe or delivery only when ``broker_auth.allowed`` says so."""

    @dataclass
    class Config:
        """Only the registry key: secrets never enter amqtt's config."""

        auth_id: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._bridge_user = _auth_of(context).bridge_user

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool:
        """The hub's ACL; anything it cannot judge is refused."""
        if session is None or not session.username or topic is None or action is None:
            return False
        return allowed(session.username, action.value, topic, bridge_user=self._bridge_user)


class EmbeddedBroker:
    """An amqtt broker listening on host:port, started and stopped from sync code."""

    def __init__(self, host: str, port: int, plugins: dict[str, Any] | None = None, *,
                 auth: BrokerAuth | None = None) -> None:
        self.host, self.port = host, port
        self._auth_id: str | None = None
        if auth is None:
            plugins = plugins or {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            }
        else:
            self._auth_id = uuid.uuid4().hex
            _AUTHS[self._auth_id] = auth
            plugins = {**(plugins or {}),
                       f"{__name__}.HubAuthPlugin": {"auth_id": self._auth_id},
                       f"{__name__}.HubTopicPlugin": {"auth_id": self._auth_id}}
        self._config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": plugins,
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
            self._forget_auth()
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
        self._forget_auth()

    def _forget_auth(self) -> None:
        if self._auth_id is not None:
            _AUTHS.pop(self._auth_id, None)
