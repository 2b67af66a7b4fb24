"""The embedded MQTT broker (amqtt), run on its own thread and event loop.

Its own loop keeps the broker's latency independent of the HTTP server's work.
Real deployments point the hub at Mosquitto or an MQTT 5 cluster instead.

With ``auth=BrokerAuth(...)`` it checks each device's derived password and enforces the
per-device topic rules of ``hub.broker_auth`` (the ones Mosquitto gets as files);
without it, anyone may connect and use any topic, and ``bridge_login`` (when given) keeps
the bridge's username for whoever knows its password.

Either way a client id belongs to the user holding it: a CONNECT with the id of another
user's connection or persistent session is refused, and that session is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OUTGOING, Session

from hub.broker_auth import NO_CHANGES, BrokerAuth, Logins, Refusal, allowed, password_ok
from hub.ports import check_free
from hub.tls import TlsListener

__all__ = ["BrokerAuth", "EmbeddedBroker", "HubAuthPlugin", "HubOpenAuthPlugin",
           "HubTopicPlugin"]

log = logging.getLogger(__name__)


# The reasons EmbeddedBroker.refusals counts, and what each means in the log.
# Refusals kept for the hub to audit, newest last; past this many (a flood) the oldest go:
# the counters still count every one.
_KEPT_REFUSALS = 1000

# A connection must send its CONNECT within this many seconds.
_CONNECT_WITHIN = 10.0
# Connections from one address that may wait for their CONNECT at once.
_WAITING_PER_ADDRESS = 256
_LOGGED_PER_SECOND = 10
# What of a client's username and client id is logged and audited: they are the client's
# to choose, up to 64 KB each, control characters included.
_SHOWN = 64


def _shown(value: object) -> str:
    text = "" if value is None else str(value)
    text = "".join(c if c.isprintable() else "?" for c in text[:_SHOWN])
    return text


_REFUSALS = {
    "login": "unknown user, wrong password or a forbidden last will",
    "takeover": "its client id belongs to another user's connection or session",
    "crowd": "too many connections from its address waiting to log in",
    "publish": "a publish outside what its user may write (counted only, not audited)",
}
# How long a takeover waits for the previous connection's end to be handled.
_TAKEOVER_WAIT = 5.0
_ADMITTED = "venuehub.admitted"  # Session.attributes key: _admit authenticated this CONNECT


def _owner(session: Session) -> str:
    """Whose a session is: its username ("" for anonymous clients)."""
    return session.username or ""


def _claimed(session: Session) -> bool:
    """Does a session still belong to its user: connected, or kept for them while offline?

    amqtt drops a disconnected clean or anonymous session (within a second), so those
    hold nothing a newcomer must not take.
    """
    return bool(session.transitions.is_connected()
                or not (session.clean_session or session.is_anonymous))


class _Subscriptions(dict[str, list[tuple[Any, int]]]):
    """amqtt's subscriptions by topic filter, whose ``items()`` is a snapshot.

    amqtt's broadcast walks ``_subscriptions.items()`` and awaits inside the walk (the
    ACL check, queueing for an offline session): a client subscribing or leaving meanwhile
    changes the dict, and the walk dies with "dictionary changed size during iteration",
    so the message never reaches the subscribers after that point (seen under the demo's
    scenarios). A snapshot, lists copied too, delivers to those subscribed when it began.
    """

    def items(self) -> list[tuple[str, list[tuple[Any, int]]]]:  # type: ignore[override]
        return [(topic, list(subscribers)) for topic, subscribers in super().items()]


class _Broker(Broker):
    """amqtt's broker, minus a session takeover by anyone, a leak of retained messages, a
    broadcast that dies when the subscriptions change under it, and a shutdown that can hang.

    amqtt settles a CONNECT's session before authenticating it: a clean CONNECT deletes the
    client id's session (subscriptions, queued messages), a persistent one writes its
    username, password and will onto it; then it takes over the id's connection even when
    the newcomer failed to log in. So ``mosquitto_pub -i <the bridge's id>``, refused or
    not, left the bridge connected but deaf. Here a CONNECT is authenticated first
    (_admit), and the id's session is touched only for the user who holds it.

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

    def __init__(self, config: dict[str, Any], *,
                 on_refusal: Callable[[Refusal], None] | None = None) -> None:
        super().__init__(config)
        self._subscriptions = _Subscriptions()
        self._on_refusal = on_refusal or (lambda _reason: None)
        self._waiting: Counter[str] = Counter()  # connections before their CONNECT, by address
        self._waiting_of: dict[int, str] = {}
        self._logged_at, self._logged = 0.0, 0  # refusal warnings this second

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
        # Sockets that have not logged in yet are capped per address: otherwise anyone who
        # can reach the port holds thousands of them open, the broker runs out of file
        # descriptors and no device can connect again.
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._waiting[address] >= _WAITING_PER_ADDRESS:
            self._on_refusal(Refusal("crowd", "", "", address))
            writer.close()
            return
        self._waiting[address] += 1
        self._waiting_of[id(writer)] = address
        try:
            # amqtt's own, with a reader that ends on shutdown and a writer a takeover can cut.
            await self._client_connected(listener_name,
                                         StreamReaderAdapter(_Intake(reader, self)),
                                         _Writer(writer))
        finally:
            self._admitted(writer)

    def _admitted(self, writer: Any) -> None:
        """The connection is past its CONNECT (or gone): it no longer counts as waiting."""
        raw = writer._stream if isinstance(writer, _Writer) else writer
        address = self._waiting_of.pop(id(raw), None)
        if address is not None:
            self._waiting[address] -= 1
            if self._waiting[address] <= 0:
                del self._waiting[address]

    async def shutdown(self) -> None:
        self._closing = True
        await super().shutdown()

    # ------------------------------------------------------------ admission
    # amqtt's _client_connected calls _initialize_client_session, then
    # _handle_client_session; the session is settled between the two, after authentication.

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[Any, Session]:
        """Read the CONNECT, and only that: amqtt settles the session here too, unchecked.

        amqtt waits for the CONNECT for ever: a socket that sends nothing is dropped here
        after ``_CONNECT_WITHIN`` seconds."""
        try:
            connected: tuple[Any, Session] = await asyncio.wait_for(
                _Handler.init_from_connect(reader, writer, self.plugins_manager),
                _CONNECT_WITHIN)
            self._admitted(writer)  # a session now, whatever its login: no longer waiting
            return connected
        except TimeoutError as exc:
            with contextlib.suppress(OSError):
                await writer.close()
            raise AMQTTError(f"no CONNECT from {remote_address}:{remote_port} within "
                             f"{_CONNECT_WITHIN:.0f}s") from exc
        except (AMQTTError, MQTTError, NoDataError) as exc:
            with contextlib.suppress(OSError):  # amqtt leaves some of these sockets open
                await writer.close()
            raise AMQTTError(f"no valid CONNECT from {remote_address}:{remote_port}: "
                             f"{exc}") from exc

    async def _handle_client_session(self, reader: Any, writer: Any, client_session: Session,
                                     handler: Any, server: Any, listener_name: str) -> None:
        # amqtt's, once _admit has authenticated the CONNECT and settled its session; and
        # whatever happens, a takeover waiting for this connection's end learns of it.
        try:
            session = await self._admit(client_session, writer,
                                        self.listeners_config[listener_name])
            if session is not None:
                await super()._handle_client_session(reader, writer, session, handler, server,
                                                     listener_name)
        finally:
            handler.ended.set()

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        # amqtt's _handle_client_session asks again, of the session _admit settled: that
        # CONNECT is authenticated already, and nothing else is let through.
        return session.attributes.pop(_ADMITTED, None) is True

    async def _admit(self, incoming: Session, writer: Any, listener: Any) -> Session | None:
        """The session a CONNECT gets, once authenticated; None when it was refused."""
        if not await super()._authenticate(incoming, listener):
            await self._refuse(incoming, writer, "login", NOT_AUTHORIZED)
            return None
        while (held := self._sessions.get(incoming.client_id)) is not None:
            session, handler = held
            if _owner(session) != _owner(incoming) and _claimed(session):
                await self._refuse(incoming, writer, "takeover", IDENTIFIER_REJECTED)
                return None
            if not session.transitions.is_connected():
                break
            await self._take_over(session, handler, incoming)  # then look again: it awaited
        # No other CONNECT of this id may run from here until amqtt's _handle_client_session
        # marks the session connected: nothing in between yields (amqtt's _delete_session,
        # the one await, does not in 0.12).
        session = await self._settle(incoming)
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        session.attributes[_ADMITTED] = True
        return session

    async def _settle(self, incoming: Session) -> Session:
        """The id's session resumed for its owner, or a new one (amqtt's rules, once admitted)."""
        held = self._sessions.get(incoming.client_id)
        if held is not None and (incoming.clean_session or _owner(held[0]) != _owner(incoming)):
            await self._delete_session(incoming.client_id)
            held = None
        if held is None:
            incoming.parent = 0  # no session present
            return incoming
        session: Session = held[0]
        # What amqtt copies from the newcomer, plus what it forgets: the will's retain flag,
        # the clean flag and the auth plugins' verdicts.
        for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain",
                     "keep_alive", "username", "password", "clean_session", "is_anonymous",
                     "remote_address", "remote_port", "ssl_object"):
            setattr(session, name, getattr(incoming, name))
        session.attributes.update(incoming.attributes)
        session.parent = 1
        return session

    async def _take_over(self, session: Session, handler: Any, incoming: Session) -> None:
        """End the connection holding ``session`` for a newer one of its user [MQTT-3.1.4-2].

        The connection is cut, not closed politely: amqtt's close waits for the peer to read
        what is buffered, and a broken network, the usual reason to connect again, never
        does. Its message loop then ends it as usual (last will, marked disconnected) before
        the newcomer marks the shared session connected.
        """
        log.info("MQTT client %r connected again; dropping its previous connection",
                 session.client_id)
        if not (session.clean_session or incoming.clean_session):
            session.will_flag = False  # the session goes on, so no last will (as in Mosquitto)
        if isinstance(handler.writer, _Writer):
            handler.writer.abort()
        await handler.handle_connection_closed()
        ended = getattr(handler, "ended", None)
        if ended is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), _TAKEOVER_WAIT)
        if session.transitions.is_connected():
            log.error("MQTT client %r: its previous connection did not end within %.0fs",
                      session.client_id, _TAKEOVER_WAIT)
            await self._stop_handler(handler)
            session.transitions.disconnect()

    async def _refuse(self, incoming: Session, writer: Any, reason: str, code: int) -> None:
        """Answer a refused CONNECT, close its connection, log and count it."""
        user, client_id = _shown(incoming.username), _shown(incoming.client_id)
        self._on_refusal(Refusal(reason, user, client_id, str(incoming.remote_address or "")))
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            if self._logged > _LOGGED_PER_SECOND:
                log.warning("... and %d more refused MQTT clients (counted in /stats)",
                            self._logged - _LOGGED_PER_SECOND)
            self._logged_at, self._logged = now, 0
        self._logged += 1
        if self._logged <= _LOGGED_PER_SECOND:  # a flood of CONNECTs must not flood the log
            log.warning("refused MQTT client %r (user %r) from %s:%s: %s", client_id, user,
                        incoming.remote_address, incoming.remote_port, _REFUSALS[reason])
        with contextlib.suppress(OSError):
            await ConnackPacket.build(0, code).to_stream(writer)  # 0: no session present
        with contextlib.suppress(OSError):
            await writer.close()


class _Handler(BrokerProtocolHandler):
    """amqtt's broker side of one connection, minus the loss of unacknowledged QoS 1 messages.

    amqtt sends a subscriber each message at once (no limit in flight), waits 5 s for its
    PUBACK, then forgets it ("Timeout waiting for PUBACK"); a connection that ends forgets
    every message still waiting for one. The bridge acknowledges a message only once its
    decision is committed: under load a third were lost, and a restarted bridge never got
    the ones it had not committed. Here a QoS 1 message leaves the session's
    ``inflight_out`` only when its PUBACK comes, however late. Nothing is sent twice while
    the connection lives (MQTT 3.1.1 and 5 resend only on reconnection); amqtt's
    ``_retry_deliveries`` sends what is left, DUP, when the session connects again
    [MQTT-4.4.0-1]. A clean session's leftovers go with the session.

    The PUBACK is awaited by a callback, so a publish returns once the PUBLISH is written:
    amqtt awaits its publishes while it holds up a subscription (retained messages) or a
    reconnection (queued messages, and its retries, which it cancels after 10 s).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopped = False
        self.ended = asyncio.Event()  # set by _Broker._handle_client_session

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        session = self.session
        if app_message.direction != OUTGOING or session is None:
            await super()._handle_qos1_message_flow(app_message)  # from the client: amqtt's
            return
        packet_id = app_message.packet_id
        if packet_id is None or app_message.puback_packet is not None:
            raise AMQTTError(f"QoS 1 message {packet_id!r}: no packet id, or acknowledged")
        session.inflight_out.setdefault(packet_id, app_message)
        if self._stopped:
            return  # the connection is gone: the session's next one sends it
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(lambda done: self._acknowledged(session, app_message, done))
        # Waiting before the PUBLISH is written: its PUBACK may be read while the write drains.
        self._puback_waiters[packet_id] = waiter
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        app_message.publish_packet = packet  # from now on it goes again as a DUP
        await self._send_packet(packet)

    def _acknowledged(self, session: Session, message: Any, waiter: asyncio.Future[Any]) -> None:
        if self._puback_waiters.get(message.packet_id) is waiter:
            del self._puback_waiters[message.packet_id]
        if waiter.cancelled():
            return  # amqtt stopped this connection: the message stays in flight
        message.puback_packet = waiter.result()
        if session.inflight_out.get(message.packet_id) is message:
            del session.inflight_out[message.packet_id]

    async def stop(self) -> None:
        self._stopped = True
        await super().stop()

    async def wait_disconnect(self) -> Any:
        # amqtt makes the future this awaits in start(): a connection stopped before that
        # (taken over at once) would leave its message loop waiting forever.
        if self._stopped:
            return None
        return await super().wait_disconnect()


class _Writer(StreamWriterAdapter):
    """amqtt's adapter of a connection's StreamWriter, which can also cut the connection."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self._stream = writer

    def abort(self) -> None:
        """Drop the connection now, with whatever is still buffered for it."""
        self.is_closed = True  # amqtt's close() then does nothing more
        self._stream.transport.abort()


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
_LOGINS: dict[str, Logins] = {}  # the re-issued and revoked logins, replaced whole on change
_BRIDGE_LOGINS: dict[str, tuple[str, str]] = {}  # open mode: the bridge's (username, password)
# Called for each publish the ACL refused (a device writing outside its own events and
# status, a topic outside the contract): MQTT 3.1.1 cannot tell the publisher, so it is
# counted for /stats instead. Not audited: a misconfigured device would add a row a second.
_REFUSED_PUBLISHES: dict[str, Callable[[], None]] = {}


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
        # The broker logs each refusal once (a warning); these say which check failed.
        username = session.username or ""
        logins = _LOGINS.get(getattr(self.context.config, "auth_id", ""), NO_CHANGES)
        if not password_ok(username, session.password, self._auth, logins):
            self.context.logger.debug("refused MQTT login of %r", username)  # never the password
            return False
        # amqtt sends a last will without any topic check: judge it here, like a publish.
        if session.will_flag and not allowed(username, "publish", session.will_topic or "",
                                             bridge_user=self._auth.bridge_user):
            self.context.logger.debug("refused %r: last will on %r", username, session.will_topic)
            return False
        # Whose client id it is (another user's session) is the broker's check: _Broker._admit.
        return True


class HubOpenAuthPlugin(BaseAuthPlugin):
    """Open mode: anyone may connect, as anyone but the bridge user without its password."""

    @dataclass
    class Config:
        """Only the registry key: the bridge's password never enters amqtt's config."""

        auth_id: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        try:
            self._user, self._password = _BRIDGE_LOGINS[getattr(context.config, "auth_id", "")]
        except KeyError:
            raise ValueError("HubOpenAuthPlugin configured without a registered auth_id") from None

    async def authenticate(self, *, session: Session) -> bool:
        """True for anyone not claiming to be the bridge, and for the bridge's password."""
        if (session.username or "") != self._user:
            # As amqtt's AnonymousAuthPlugin: a user nobody vouched for is "anonymous", so
            # amqtt keeps neither their session nor messages for them while they are offline.
            session.is_anonymous = True
            return True
        given = session.password
        if given is None:
            return False
        given = given.encode() if isinstance(given, str) else bytes(given)
        return hmac.compare_digest(given, self._password.encode())


class HubTopicPlugin(BaseTopicPlugin):
    """Allow a publish, subscribe or delivery only when ``broker_auth.allowed`` says so."""

    @dataclass
    class Config:
        """Only the registry key: secrets never enter amqtt's config."""

        auth_id: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._bridge_user = _auth_of(context).bridge_user
        self._auth_id = getattr(context.config, "auth_id", "")

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool:
        """The hub's ACL; anything it cannot judge is refused, a refused publish counted."""
        ok = (session is not None and bool(session.username) and topic is not None
              and action is not None
              and allowed(session.username or "", action.value, topic,
                          bridge_user=self._bridge_user))
        if not ok and action is not None and action.value == "publish":
            _REFUSED_PUBLISHES.get(self._auth_id, lambda: None)()
        return ok


class EmbeddedBroker:
    """An amqtt broker listening on host:port, started and stopped from sync code.

    ``auth`` checks every login and topic (see the module); without it the broker is open,
    and ``bridge_login=(username, password)`` reserves that username for that password.
    """

    def __init__(self, host: str, port: int, plugins: dict[str, Any] | None = None, *,
                 auth: BrokerAuth | None = None,
                 bridge_login: tuple[str, str] | None = None,
                 logins: Logins = NO_CHANGES, tls: TlsListener | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self._auth_id: str | None = None
        self._refusal_lock = threading.Lock()
        self._refusals: Counter[str] = Counter()
        self._refused_log: deque[Refusal] = deque(maxlen=_KEPT_REFUSALS)
        if bridge_login is not None:
            if auth is not None:
                raise ValueError("bridge_login is for the open broker: with auth, the bridge "
                                 "user is auth.bridge_user")
            if not (bridge_login[0] and bridge_login[1]):
                raise ValueError("bridge_login needs a username and a password")
            self._auth_id = uuid.uuid4().hex
            _BRIDGE_LOGINS[self._auth_id] = bridge_login
            plugins = {**(plugins or {}),
                       f"{__name__}.HubOpenAuthPlugin": {"auth_id": self._auth_id}}
        elif auth is None:
            plugins = plugins or {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            }
        else:
            self._auth_id = uuid.uuid4().hex
            _AUTHS[self._auth_id] = auth
            _LOGINS[self._auth_id] = dict(logins)
            _REFUSED_PUBLISHES[self._auth_id] = self._refused_publish
            plugins = {**(plugins or {}),
                       f"{__name__}.HubAuthPlugin": {"auth_id": self._auth_id},
                       f"{__name__}.HubTopicPlugin": {"auth_id": self._auth_id}}
        listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"{host}:{port}"}}
        if tls is not None:
            # The same broker, so the same auth and topic plugins (amqtt's are global), on a
            # second socket. asyncio sets TCP_NODELAY on every TCP transport, TLS or not.
            listeners["tls"] = {"type": "tcp", "bind": f"{host}:{tls.port}", "ssl": True,
                                "certfile": str(tls.certfile), "keyfile": str(tls.keyfile)}
        self._config: dict[str, Any] = {"listeners": listeners, "plugins": plugins}
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

    @property
    def refusals(self) -> Counter[str]:
        """Refusals by reason: CONNECTs ("login", "takeover", "crowd") and publishes the ACL
        refused ("publish"); a copy, safe from any thread."""
        with self._refusal_lock:
            return Counter(self._refusals)

    def _refused_publish(self) -> None:
        with self._refusal_lock:
            self._refusals["publish"] += 1

    def _refused(self, refusal: Refusal) -> None:
        with self._refusal_lock:  # counted on the broker's thread, read from others
            self._refusals[refusal.reason] += 1
            self._refused_log.append(refusal)

    def take_refusals(self) -> list[Refusal]:
        """The refusals since the last call, oldest first (at most the last 1,000)."""
        with self._refusal_lock:
            taken = list(self._refused_log)
            self._refused_log.clear()
        return taken

    async def _start(self) -> Broker:
        broker = _Broker(self._config, on_refusal=self._refused)
        await broker.start()
        return broker

    def start(self, timeout: float = 10.0) -> None:
        """Open the listeners; raises OSError if a port cannot be bound (CannotListen,
        naming the port, when it is known to be taken before amqtt tries)."""
        try:
            # First, so a busy port is told as such, without amqtt's traceback in the log.
            check_free("mqtt_port", self.host, self.port)
            if self.tls is not None:
                check_free("mqtt_tls_port", self.host, self.tls.port)
        except OSError:
            self.stop(timeout)
            raise
        self._thread.start()
        try:
            # Quiet before the start is scheduled: the loop's thread may fail (and log)
            # before this thread runs its next line.
            with _quiet_startup_failure():
                future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
                self._broker = future.result(timeout)
        except Exception as exc:  # amqtt wraps a busy port in its own BrokerError
            self.stop(timeout)
            ports = f"{self.port}" + (f" and {self.tls.port} (TLS)" if self.tls else "")
            raise OSError(f"the embedded MQTT broker cannot listen on "
                          f"{self.host}:{ports}: {exc}") from exc
        log.info("embedded MQTT broker on mqtt://%s:%d%s", self.host, self.port,
                 f" and mqtts://{self.host}:{self.tls.port}" if self.tls else "")

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

    def set_logins(self, logins: Logins) -> None:
        """Follow re-issued and revoked logins: new CONNECTs are judged by ``logins`` at
        once, and a client connected under a login they no longer open is cut off."""
        if self._auth_id is None or self._auth_id not in _AUTHS:
            return  # an open broker checks no device's password
        _LOGINS[self._auth_id] = dict(logins)
        if self._broker is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(
                _cut_off(self._broker, _AUTHS[self._auth_id], dict(logins)), self._loop)
            future.result(5)

    def _forget_auth(self) -> None:
        if self._auth_id is not None:
            _AUTHS.pop(self._auth_id, None)
            _LOGINS.pop(self._auth_id, None)
            _REFUSED_PUBLISHES.pop(self._auth_id, None)
            _BRIDGE_LOGINS.pop(self._auth_id, None)


class _StartupFailure(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Broker startup failed"


@contextlib.contextmanager
def _quiet_startup_failure() -> Iterator[None]:
    """Drop amqtt's traceback of a failed start: start() raises it, with the address."""
    amqtt_log, quiet = logging.getLogger("amqtt.broker"), _StartupFailure()
    amqtt_log.addFilter(quiet)
    try:
        yield
    finally:
        amqtt_log.removeFilter(quiet)


async def _cut_off(broker: _Broker, auth: BrokerAuth, logins: Logins) -> None:
    """Disconnect every client whose login no longer opens with the password it gave."""
    for session, handler in list(broker._sessions.values()):
        username = session.username or ""
        if (not session.transitions.is_connected() or username == auth.bridge_user
                or password_ok(username, session.password, auth, logins)):
            continue
        log.warning("MQTT client %r (user %r): its login was revoked or re-issued; "
                    "disconnecting it", session.client_id, username)
        session.will_flag = False
        if isinstance(handler.writer, _Writer):
            handler.writer.abort()
        await handler.handle_connection_closed()


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
