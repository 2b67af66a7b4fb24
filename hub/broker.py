"""The embedded MQTT broker (amqtt), run on its own thread and event loop.

Its own loop keeps the broker's latency independent of the HTTP server's work.
Real deployments point the hub at Mosquitto or an MQTT 5 cluster instead.

With ``auth=BrokerAuth(...)`` it checks each device's derived password and enforces the
per-device topic rules of ``hub.broker_auth`` (the ones Mosquitto gets as files);
without it, anyone may connect and use any topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
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
    """amqtt's broker, minus a leak of retained messages and a shutdown that can hang.

    On every connect amqtt offers the new client the retained messages of *every*
    client's subscriptions (0.11-0.12); only a client's own subscriptions count.

    amqtt stops a session by cancelling its reader task, then waits for that task to
    end, without a timeout. The reader awaits each packet through ``asyncio.wait_for``,
    which on Python 3.11 swallows a cancellation that meets a packet already read
    (CPython gh-86296): the task goes on reading, and while the client keeps sending
    it never ends, so neither does the shutdown. Here a shutting-down broker reads
    nothing more: the reader sees end of stream at its next read and ends as if the
    client had gone, and a client connecting meanwhile is turned away.
    """

    _closing = False

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        subscribers = self._subscriptions.get(subscription[0], [])
        if any(s.client_id == session.client_id for s, _ in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        if self._closing:
            writer.close()
            return
        await super().stream_connected(_Intake(reader, self), writer, listener_name)

    async def shutdown(self) -> None:
        self._closing = True
        await super().shutdown()


class _Intake:
    """A connection's StreamReader that reads as ended once its broker shuts down."""

    def __init__(self, reader: asyncio.StreamReader, broker: _Broker) -> None:
        self._reader, self._broker = reader, broker

    async def read(self, n: int = -1) -> bytes:
        if self._broker._closing:
            return b""
        return await self._reader.read(n)

    async def readexactly(self, n: int) -> bytes:
        if self._broker._closing:
            raise asyncio.IncompleteReadError(b"", n)
        return await self._reader.readexactly(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


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
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._sweep_timeout = 1.0  # set by stop(): how long the loop may take to wind down

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Like asyncio.run(): no task may outlive its loop. A task left pending is
            # finalised later by the garbage collector, in whatever code runs then, and
            # its cleanup fails there ("Event loop is closed", "Task was destroyed but
            # it is pending", "coroutine ... was never awaited").
            try:
                loop.run_until_complete(_cancel_all(self._sweep_timeout))
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:  # the loop must be closed whatever happens
                log.exception("embedded broker: its event loop did not wind down cleanly")
            finally:
                asyncio.set_event_loop(None)
                loop.close()  # also lets the idle threads of its default executor go

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
            self.stop(timeout)
            raise OSError(f"the embedded MQTT broker cannot listen on "
                          f"{self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker on mqtt://%s:%d", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every session, then end the thread and close its loop.

        Returns within about ``timeout`` seconds whatever amqtt does; calling it again
        does nothing.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        try:
            if self._thread.ident is None:  # never started: nothing runs on the loop
                self._loop.close()
                return
            if self._broker is not None and self._thread.is_alive():
                future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
                try:
                    future.result(0.6 * timeout)
                except Exception:  # a broker that fails to stop must not block the hub's exit
                    log.exception("embedded broker did not shut down cleanly")
            # Whatever amqtt left running is cancelled by _run() once the loop stops.
            self._sweep_timeout = max(0.1, 0.8 * (deadline - time.monotonic()))
            with contextlib.suppress(RuntimeError):  # closed already: the thread has ended
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.error("embedded broker: its thread did not end within %.1fs", timeout)
        finally:
            self._forget_auth()

    def _forget_auth(self) -> None:
        if self._auth_id is not None:
            _AUTHS.pop(self._auth_id, None)


# A task still running this long after being cancelled is cancelled again.
_RECANCEL_AFTER = 0.1


async def _cancel_all(timeout: float) -> None:
    """Cancel every other task of the running loop and wait for them to end.

    Tasks that start while others end are cancelled too, and a cancellation that a
    task swallowed (see _Broker) is repeated, until none is left or time is up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    this = asyncio.current_task()
    while True:
        tasks = {task for task in asyncio.all_tasks(loop) if task is not this}
        if not tasks:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("embedded broker: %d task(s) still pending as its loop closes: %s",
                      len(tasks), ", ".join(sorted(repr(t.get_coro()) for t in tasks)))
            return
        for task in tasks:
            task.cancel()
        done, _ = await asyncio.wait(tasks, timeout=min(_RECANCEL_AFTER, remaining))
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.debug("embedded broker: %r ended with %r while stopping", task, exc)
