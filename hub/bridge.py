"""The MQTT bridge: devices' messages in, the hub's answers out (its paho client is
:mod:`hub.mqtt_client`'s, as the API's publisher's is).

paho's network thread only enqueues messages; one worker thread takes what has
queued up (one message when idle, up to ``bridge_batch_size`` under load, and no
more than ``bridge_batch_ms`` of work), decides and records it in one transaction,
publishes the replies after the commit and only then acknowledges the messages to
the broker (manual ack). So a decision a device sees is durable, and a message the
hub has acknowledged is never lost: if the hub stops before the ack, the broker
delivers it again and the recorded decision is replayed.

Nothing a message does stops the worker. A batch whose transaction fails is decided
again message by message, each in its own transaction, so one poison message cannot
take its neighbours down; a message that still cannot be processed is answered
``internal``, kept in the dead-letter table and acknowledged. When the database itself
is away, nothing is acknowledged: the batch waits and is tried again. And should the
worker thread die all the same, a supervisor starts another that picks up the batch
where the dead one left it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.engine import Engine
from sqlmodel import Session

from devices.contract import (
    MAX_PAYLOAD_BYTES,
    ContractError,
    ErrorCode,
    PaymentRequest,
    event_id_of,
    parse_event,
)
from devices.topics import from_devices, parse_topic, shared
from hub.automations.runner import AutomationRunner
from hub.cashier import pin_hash_for
from hub.config import Settings
from hub.db import (
    CONFLICT_TRIES,
    brief,
    conflict_pause,
    database_away,
    is_conflict,
    session_scope,
)
from hub.deadline import Deadline
from hub.ingest import Outcome, handle_message, lock_ahead, refuse
from hub.models import utcnow
from hub.mqtt_client import Link, new_client, open_connection
from hub.payment import PaymentLimits
from hub.pin_checks import PinChecks, redact_pins
from hub.presented import Trust
from hub.store import events, rows
from hub.store.registry import Registry

log = logging.getLogger(__name__)

# Everything devices publish, and nothing the hub publishes: no echo of our own replies.
_SUBSCRIPTION = from_devices()

# MQTT 5 reason code of a DISCONNECT sent because another client took our client id.
_SESSION_TAKEN_OVER = 142

# How often the supervisor looks at the worker thread.
_SUPERVISE_EVERY = 0.1

# Waits before deciding a batch again while the database is out of reach.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0

# Times a message alone may fail "transiently" while the database answers others,
# before it is taken for the cause and dead-lettered.
_TRANSIENT_TRIES = 3


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float  # perf_counter, for ages
    received_at: datetime  # the hub's clock, recorded with the decision
    generation: int  # the connection it came on: a mid means nothing on another one
    pin_checked: bool = False  # its PIN was checked ahead (see hub.pin_checks)


class Bridge:
    """Consumes device messages from the broker and answers them."""

    def __init__(self, settings: Settings, engine: Engine,
                 clock: Callable[[], datetime] = utcnow, *, trust: Trust | None = None,
                 reader: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        # Reads that must not take SQLite's write lock (PINs checked ahead); None: no
        # checking ahead, PINs are checked in the decision.
        self.reader = reader
        self.pins = PinChecks()
        self._pin_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-pins")
        self.clock = clock
        self.trust = trust or Trust()
        self.client_id = settings.mqtt_client_id or "venuehub-bridge"
        self.command_ttl = timedelta(minutes=settings.command_queue_minutes)
        self.deadline = Deadline(limit=timedelta(milliseconds=settings.tap_deadline_ms),
                                 clock_skew=timedelta(milliseconds=settings.device_clock_skew_ms))
        self.automations: AutomationRunner | None = None  # set by the hub when it runs them
        self.limits = PaymentLimits(max_amount=settings.payment_max_amount,
                                    max_pin_failures=settings.pin_max_failures)
        # The embedded broker's counters for /stats (refusals, process restarts), if any.
        self.broker_stats: Callable[[], dict[str, Any]] | None = None
        # Called before each message is decided: tests use it to hold the hub up.
        self.before_decide: Callable[[], None] | None = None
        # Devices, venues, guests, credentials, entitlements: cached, never stale.
        self.registry = Registry()
        self.counters: Counter[str] = Counter()
        self._database_away_since: float | None = None  # monotonic
        self._database_waits = 0  # in this outage
        self.errors: Counter[str] = Counter()
        # Unbounded on purpose: paho's network thread must never wait on it, since that
        # thread also sends the replies (a door that opens late). The broker bounds it:
        # MQTT 5's Receive Maximum (below), or Mosquitto's max_inflight_messages.
        self._queue: queue.Queue[_Inbound | None] = queue.Queue()
        # Taken from the queue, not yet answered: a restarted worker starts with these.
        self._taken: deque[_Inbound] = deque()
        self._link = Link("bridge", self.counters)
        self._last_message = 0.0
        self._last_decision: float | None = None
        self._stopping = False
        self._stop_after_batch = False
        self._paused = threading.Event()  # set: the supervisor lets the worker stay down
        self._closed = threading.Event()  # set: the supervisor ends
        self._worker: threading.Thread | None = None
        self._death_cause: BaseException | None = None
        self._supervisor: threading.Thread | None = None
        self._lifecycle = threading.Lock()  # who starts a worker: the supervisor or resume
        self._mqtt5 = settings.mqtt_protocol == "5"
        self._client = new_client(settings, self.client_id, persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Connect to the broker, subscribe and start the worker and its supervisor."""
        self._start_worker()
        self._supervisor = threading.Thread(target=self._supervise, name="hub-bridge-supervisor",
                                            daemon=True)
        self._supervisor.start()
        props: Properties | None = None
        if self._mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            # Kept while a worker restarts (see mqtt_session_expiry for why not longer).
            props.SessionExpiryInterval = self.settings.mqtt_session_expiry
            # No more unacknowledged messages than the queue is meant to hold.
            props.ReceiveMaximum = min(65_535, self.settings.bridge_queue_size)
        open_connection(self._client, self.settings, self._link, timeout=timeout,
                        properties=props, clean_start=False)
        # Never the client id: whoever reads logs or /stats must not learn it.
        log.info("bridge %r connected to %s", self.settings.worker_name,
                 self.settings.broker_shown)

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
        if self._link.connected.is_set():
            self._client.unsubscribe(self._filter())
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline \
                and self.worker_alive:
            time.sleep(0.01)
        self._stop_worker(max(0.1, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, finish those already taken, then disconnect."""
        self.quiesce(timeout)
        self._closed.set()
        self._pin_thread.shutdown(wait=False, cancel_futures=False)
        self._client.disconnect()
        self._client.loop_stop()

    def _filter(self) -> str:
        group = self.settings.mqtt_shared_group
        return shared(_SUBSCRIPTION, group) if group and self._mqtt5 else _SUBSCRIPTION

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if self._link.accepted(client, rc):
            client.subscribe(self._filter(), qos=1)  # again at each connection
            self._link.up()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not self._link.lost(rc, stopping=self._stopping):
            return
        if getattr(rc, "value", None) == _SESSION_TAKEN_OVER:
            self.counters["taken_over"] += 1
            log.error("another client connected with the bridge's client id and the broker "
                      "dropped the bridge; reconnecting")
        elif not self._stopping:
            log.warning("bridge lost the broker (%s); reconnecting", rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # What waits is never more than the contract reads: one byte past its limit is
        # enough to answer payload_too_large, and a flood of huge messages cannot fill
        # memory while they wait.
        item = _Inbound(msg.topic, bytes(msg.payload[:MAX_PAYLOAD_BYTES + 1]), msg.mid, msg.qos,
                        time.perf_counter(),
                        self.clock(), self._link.generation)
        self._last_message = item.received
        self._queue.put_nowait(item)  # never blocks: see __init__
        if self._queue.qsize() > self.settings.bridge_queue_size:
            self.counters["queue_over_limit"] += 1
            if self.counters["queue_over_limit"] % 1000 == 1:
                log.warning("%d messages wait for a decision, more than HUB_BRIDGE_QUEUE_SIZE "
                            "(%d): the broker is not bounding what it sends",
                            self._queue.qsize(), self.settings.bridge_queue_size)

    # ------------------------------------------------------------ supervision

    @property
    def worker_alive(self) -> bool:
        """Is a worker thread deciding messages?"""
        return self._worker is not None and self._worker.is_alive()

    def _start_worker(self) -> None:
        self._stop_after_batch = False
        self._worker = threading.Thread(target=self._work, name="hub-bridge-worker", daemon=True)
        self._worker.start()

    def _stop_worker(self, timeout: float) -> None:
        self._paused.set()
        if self.worker_alive:
            self._queue.put(None)
            assert self._worker is not None
            self._worker.join(timeout)

    def _supervise(self) -> None:
        while not self._closed.wait(_SUPERVISE_EVERY):
            with self._lifecycle:  # not between resume_worker's two steps
                if self.worker_alive or self._paused.is_set():
                    continue
                self.counters["worker_deaths"] += 1
                cause, self._death_cause = self._death_cause, None
                log.error("the bridge worker died (%s); started another, %d death(s) so far",
                          type(cause).__name__ if cause else "no exception",
                          self.counters["worker_deaths"], exc_info=cause)
                self._start_worker()

    def pause_worker(self, timeout: float = 10.0) -> None:
        """Stop deciding (messages wait in the queue) until :meth:`resume_worker`."""
        self._stop_worker(timeout)

    def resume_worker(self) -> None:
        """Start deciding again after :meth:`pause_worker`."""
        with self._lifecycle:  # else the supervisor could take the gap for a death
            self._paused.clear()
            if not self.worker_alive:
                self._start_worker()

    # --------------------------------------------------------------- worker

    @property
    def queue_depth(self) -> int:
        """Messages received and not yet answered."""
        return self._queue.qsize() + len(self._taken)

    def oldest_waiting(self) -> float | None:
        """Seconds the oldest message not yet answered has waited, or None."""
        oldest: float | None = None
        if self._taken:
            with contextlib.suppress(IndexError):  # answered meanwhile, by the worker
                oldest = self._taken[0].received
        if oldest is None:
            with self._queue.mutex:
                head = next((i for i in self._queue.queue if i is not None), None)
            oldest = head.received if head is not None else None
        return None if oldest is None else time.perf_counter() - oldest

    def last_decision_age(self) -> float | None:
        """Seconds since the last message was answered, or None before the first."""
        last = self._last_decision
        return None if last is None else time.perf_counter() - last

    def _work(self) -> None:
        try:
            while self._fill():
                if self._taken:
                    self._handle(list(self._taken))
        except BaseException as exc:
            # This thread ends here; the supervisor logs it once and starts another, which
            # begins with the messages this one had taken.
            self._death_cause = exc

    def _fill(self) -> bool:
        """Take what waits into the batch (after what a dead worker left); False: stop."""
        if self._stop_after_batch and not self._taken:
            return False
        if not self._taken:
            first = self._queue.get()
            if first is None:
                self._queue.task_done()
                return False
            self._take(first)
        while len(self._taken) < self.settings.bridge_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.task_done()
                self._stop_after_batch = True
                break
            self._take(item)
        return True

    def _take(self, item: _Inbound) -> None:
        """Into the batch; a payment with a PIN first goes to have its PIN checked."""
        if self.reader is not None and not item.pin_checked and b'"pin"' in item.payload \
                and item.topic.endswith("/events"):
            self._pin_thread.submit(self._check_pin_ahead, item)
            return
        self._taken.append(item)

    def _check_pin_ahead(self, item: _Inbound) -> None:
        """On the PIN thread: the argon2 check, then the payment back in line."""
        try:
            request = parse_event(item.payload)
            where = parse_topic(item.topic)
            if isinstance(request, PaymentRequest) and request.pin is not None \
                    and self.reader is not None:
                with Session(self.reader) as session:
                    hashed = pin_hash_for(session, venue=where.venue, device_id=where.device,
                                          req=request, trust=self.trust, now=self.clock())
                if hashed is not None:
                    self.pins.check_ahead(hashed, request.pin)
        except Exception:  # only a head start: the decision checks whatever happens here
            log.debug("no PIN check ahead for a message on %s", item.topic, exc_info=True)
        finally:
            # Counted as unfinished until back (put first, then done), so drain waits.
            self._queue.put(replace(item, pin_checked=True))
            self._queue.task_done()

    def _handle(self, items: list[_Inbound]) -> None:
        """Decide a batch in one transaction (as much of it as fits the time budget)."""
        budget = self.settings.bridge_batch_ms / 1000
        decided: list[tuple[_Inbound, Outcome]] = []
        for attempt in range(1, CONFLICT_TRIES + 1):
            started = time.perf_counter()
            decided = []
            try:
                with session_scope(self.engine) as session:
                    # The accounts all batches share, locked first and in one order.
                    lock_ahead(session, [item.topic for item in items], registry=self.registry)
                    for item in items:
                        if decided and time.perf_counter() - started > budget:
                            break  # the rest waits for the next batch: replies must not wait
                        decided.append((item, self._decide(session, item)))
                self._database_answers_again()
                break
            except Exception as exc:
                if is_conflict(exc) and attempt < CONFLICT_TRIES:
                    # PostgreSQL aborted this batch to let another worker's go on (a
                    # deadlock through one guest's rows, say): nothing of it was written
                    # or answered, so the whole batch is decided again, a moment later.
                    self.counters["batches_retried"] += 1
                    time.sleep(conflict_pause(attempt))
                    continue
                if database_away(exc) and not self._database_answers():
                    self._wait_for_database(exc)
                    return  # nothing acknowledged: the same messages are decided again
                # Something in this batch broke its transaction: decide each message alone.
                log.warning("a batch of %d messages failed (%s: %s); deciding them one by one",
                            len(decided) + 1, type(exc).__name__, exc)
                self.counters["batches_split"] += 1
                decided = self._one_by_one(items[:len(decided) + 1])
                break
        self.counters["batches"] += 1
        self._answer(decided)

    def _one_by_one(self, items: list[_Inbound]) -> list[tuple[_Inbound, Outcome]]:
        decided: list[tuple[_Inbound, Outcome]] = []
        for item in items:
            outcome = self._decide_alone(item)
            if outcome is None:
                break  # the database is away: the rest stays taken, for later
            decided.append((item, outcome))
        return decided

    def _decide_alone(self, item: _Inbound) -> Outcome | None:
        """One message in its own transaction; dead-lettered if it cannot be decided."""
        failure: Exception | None = None
        transient = 0
        for attempt in range(CONFLICT_TRIES):
            if failure is not None and is_conflict(failure):  # aborted for another worker
                time.sleep(conflict_pause(attempt))
            elif attempt:  # a lock held a moment by another writer: give it that moment
                time.sleep(_BACKOFF_FIRST * 2 ** attempt)
            try:
                with session_scope(self.engine) as session:
                    return self._decide(session, item)
            except Exception as exc:
                failure = exc
                if is_conflict(exc):
                    continue
                transient += 1
                if not database_away(exc) or transient >= _TRANSIENT_TRIES:
                    break
                if not self._database_answers():
                    self._wait_for_database(exc)
                    return None
        assert failure is not None
        try:
            with session_scope(self.engine) as session:
                return self._dead_letter(session, item, failure)
        except Exception as exc:
            self._wait_for_database(exc)
            return None

    def _decide(self, session: Session, item: _Inbound) -> Outcome:
        if self.before_decide is not None:
            self.before_decide()
        now = self.clock()
        try:
            # handle_message undoes its own writes when it raises (a savepoint per message).
            return handle_message(session, item.topic, item.payload, now,
                                  limits=self.limits, received_at=item.received_at,
                                  trust=self.trust, command_ttl=self.command_ttl,
                                  deadline=self.deadline, registry=self.registry,
                                  verify_pin=self.pins.verify)
        except Exception as exc:
            if database_away(exc):
                raise
            return self._dead_letter(session, item, exc)

    def _dead_letter(self, session: Session, item: _Inbound, exc: Exception) -> Outcome:
        self.counters["dead_letters"] += 1
        count = self.counters["dead_letters"]
        # A flood of poison must not flood the log too: the first ten in full, then one
        # line in a hundred (the table has each of them).
        if count <= 10 or count % 100 == 0:
            log.error("dead letter %d: could not process a message on %r (%s)", count,
                      item.topic, type(exc).__name__, exc_info=exc if count <= 10 else None)
        error = f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace").decode()
        events.record_dead_letter(session=session, topic=item.topic,
                                  payload=redact_pins(item.payload),
                                  error=error, received_at=item.received_at, now=self.clock(),
                                  worker=self.settings.worker_name,
                                  keep=self.settings.dead_letters_kept)
        return self._internal(item)

    def _database_answers(self) -> bool:
        return rows.database_answers(engine=self.engine)

    def _wait_for_database(self, exc: BaseException) -> None:
        self.counters["database_waits"] += 1
        if self._database_away_since is None:  # once an outage, and when it ends
            self._database_away_since, self._database_waits = time.monotonic(), 0
            log.error("the database is out of reach (%s); %d messages wait, none is "
                      "acknowledged until it answers", brief(exc), self.queue_depth)
        self._database_waits += 1
        time.sleep(min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** min(self._database_waits, 6)))

    def _database_answers_again(self) -> None:
        if self._database_away_since is not None:
            log.warning("the database answers again, after %.1f s",
                        time.monotonic() - self._database_away_since)
            self._database_away_since = None

    def _answer(self, decided: list[tuple[_Inbound, Outcome]]) -> None:
        """Publish what the commit made durable, then acknowledge, in arrival order."""
        for item, outcome in decided:
            try:
                self._publish(outcome)
                if outcome.occurrence is not None and self.automations is not None:
                    self.automations.submit(outcome.occurrence)
            except Exception:  # never let a reply stop the acks of the others
                log.exception("could not publish the answer to a message on %s", item.topic)
            if outcome.decision is not None:
                self.counters["decisions"] += 1
                if outcome.decision.reason == "too_late":
                    self.counters["too_late"] += 1
            if outcome.alert is not None:
                self.counters["offline_entry_alerts"] += 1
            if outcome.error is not None:
                self.errors[outcome.error.value] += 1
                log.info("refused a message on %r: %s", item.topic, outcome.error.value)
            self._ack(item)
            self._taken.popleft()
            self._queue.task_done()
            self.counters["received"] += 1
            self._last_decision = time.perf_counter()

    def _ack(self, item: _Inbound) -> None:
        if item.qos == 0:
            return
        if item.generation != self._link.generation:
            # Its connection is gone: the broker delivers it again, and the recorded
            # decision is replayed. Acking its mid now could acknowledge another message.
            self.counters["acks_skipped_after_reconnect"] += 1
            return
        self._client.ack(item.mid, item.qos)

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
        if strict and not self._link.connected.is_set():
            # Before paho takes it: it would keep a copy for the next connection, and a
            # retry would add another, all sent later, past any consent re-check.
            raise ConnectionError(f"not published to {topic}: the broker is out of reach")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:  # kept by paho for the next connection
            log.warning("publish to %s deferred: %s", topic, mqtt.error_string(info.rc))

    @property
    def connected(self) -> bool:
        """Is the bridge connected to the broker now?"""
        return self._link.connected.is_set()

    def snapshot(self) -> dict[str, Any]:
        """Counters for /stats and the console."""
        oldest = self.oldest_waiting()
        last = self.last_decision_age()
        # The counters staff watch are there at 0 too, not only once something happened.
        always = dict.fromkeys(("received", "decisions", "too_late", "batches", "replies",
                                "dead_letters", "worker_deaths", "disconnects",
                                "database_waits", "offline_entry_alerts"), 0)
        return {**always, **self.counters, "errors": dict(self.errors),
                "queue_depth": self.queue_depth,
                "connected": self.connected, "worker_alive": self.worker_alive,
                "oldest_waiting_ms": None if oldest is None else round(oldest * 1000, 1),
                "last_decision_ms_ago": None if last is None else round(last * 1000, 1),
                "worker": self.settings.worker_name,
                "pins_checked_ahead": self.pins.ahead, "pins_checked_inline": self.pins.inline,
                **(self.broker_stats() if self.broker_stats else {})}
