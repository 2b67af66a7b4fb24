"""The bench's devices on the wire, and its phases: sequential, paced, burst.

A :class:`Fleet` is N paho clients (one per device, TCP_NODELAY, QoS 1, no client-side
window) that publish for one responder (the echo or the hub) and record the first reply
to every event id. Replies arrive on paho's network threads, so the callback only
parses the JSON, takes the time and stores it under a lock; the phases read the store
from the main thread.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.client import nodelay
from simulators.bench_mix import Traffic
from simulators.bench_stats import ERROR_PREFIX, PhaseRecord, Reply
from simulators.load import paced as on_schedule

POLL_S = 0.005


class Fleet:
    """One client per device; ``events(device)`` is where it publishes, ``replies(device)``
    the topics it listens on (an ``.../errors`` topic's messages are error replies)."""

    def __init__(self, host: str, port: int, device_ids: Sequence[str], *, mqtt5: bool, tag: str,
                 events: Callable[[str], str], replies: Callable[[str], list[str]]) -> None:
        self.host, self.port = host, port
        self._topics = [events(d) for d in device_ids]
        self._lock = threading.Lock()
        self._replies: dict[str, Reply] = {}
        self._duplicates: Counter[str] = Counter()
        self._waiters: dict[str, threading.Event] = {}
        self.unreadable = 0
        self._subscribed = threading.Semaphore(0)
        self._clients: list[mqtt.Client] = []
        run = uuid.uuid4().hex[:6]
        for device_id in device_ids:
            client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                 client_id=f"bench-{tag}-{run}-{device_id}",
                                 protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
            # No client-side window or queue limit: a burst leaves at once, and the open
            # loop's schedule is the only thing deciding when a message goes.
            client.max_inflight_messages_set(0)
            client.max_queued_messages_set(0)
            client.user_data_set([(topic, 1) for topic in replies(device_id)])
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            self._clients.append(client)

    # ------------------------------------------------------------ lifecycle

    def connect(self, timeout: float = 30.0) -> Fleet:
        """Connect every client and wait until each has subscribed; ConnectionError if not."""
        try:
            for client in self._clients:
                client.connect(self.host, self.port, keepalive=60)
                client.loop_start()
            deadline = time.monotonic() + timeout
            for _ in self._clients:
                if not self._subscribed.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise ConnectionError(f"not every bench device could subscribe at "
                                          f"{self.host}:{self.port} in {timeout:g}s")
        except BaseException:
            self.close()  # no __exit__ follows a failed __enter__: stop the clients begun
            raise
        return self

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()
        for client in self._clients:
            client.loop_stop()

    def __enter__(self) -> Fleet:
        return self.connect()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, topics: list[tuple[str, int]], _f: Any, rc: Any,
                    _p: Any = None) -> None:
        if rc.is_failure:
            return
        nodelay(client)
        client.subscribe(topics)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.release()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        at = time.perf_counter()
        try:
            data = json.loads(msg.payload)
            event_id = data["event_id"]
        except (ValueError, TypeError, KeyError):
            self.unreadable += 1
            return
        if msg.topic.endswith("/errors"):
            reason = f"{ERROR_PREFIX}{data.get('code')}"
        else:
            reason = str(data.get("reason", "echo"))
        with self._lock:
            if event_id in self._replies:
                self._duplicates[event_id] += 1
                return
            self._replies[event_id] = Reply(at, reason)
            waiter = self._waiters.pop(event_id, None)
        if waiter is not None:
            waiter.set()

    # ---------------------------------------------------------------- I/O

    def send(self, index: int, payload: bytes) -> float:
        """Publish ``payload`` from device ``index``; when it left (perf_counter)."""
        at = time.perf_counter()
        self._clients[index].publish(self._topics[index], payload, qos=1)
        return at

    def expect(self, event_id: str) -> threading.Event:
        """An event set when the reply to ``event_id`` arrives (register before sending)."""
        done = threading.Event()
        with self._lock:
            if event_id in self._replies:
                done.set()
            else:
                self._waiters[event_id] = done
        return done

    def wait_for(self, event_ids: Sequence[str], deadline: float) -> bool:
        """Wait until every one of ``event_ids`` has a reply, or perf_counter() passes
        ``deadline``; whether all did."""
        remaining = list(event_ids)
        while True:
            with self._lock:
                remaining = [e for e in remaining if e not in self._replies]
            if not remaining:
                return True
            if time.perf_counter() >= deadline:
                return False
            time.sleep(POLL_S)

    def record(self, phase: str, sent: dict[str, float], **figures: Any) -> PhaseRecord:
        """A phase's record: what it sent and the replies to it so far."""
        with self._lock:
            replies = {e: self._replies[e] for e in sent if e in self._replies}
            duplicates = sum(self._duplicates[e] for e in sent if e in self._duplicates)
        return PhaseRecord(phase=phase, sent=sent, replies=replies, duplicates=duplicates,
                           **figures)


# ------------------------------------------------------------------- phases


def sequential(fleet: Fleet, traffic: Traffic, count: int, *, timeout: float) -> PhaseRecord:
    """``count`` round trips, one at a time: the latency of an idle responder."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for _ in range(count):
        index, event_id, payload = traffic.next()
        done = fleet.expect(event_id)
        sent[event_id] = fleet.send(index, payload)
        done.wait(timeout)
    return fleet.record("sequential", sent, timeout=timeout,
                        send_elapsed=time.perf_counter() - start)


def paced(fleet: Fleet, traffic: Traffic, rate: float, seconds: float, *, timeout: float,
          drain: float, phase: str = "paced") -> PhaseRecord:
    """Open loop: ``rate`` messages/s for ``seconds`` on a fixed schedule, whatever the
    responder does, so a slow one shows as latency and losses, not as a lower rate.

    Then wait ``timeout`` for the last replies, and up to ``drain`` more for the late
    ones, so the next phase starts on an idle responder.
    """
    total = max(1, int(rate * seconds))
    sent: dict[str, float] = {}
    max_lag = 0.0
    start = time.perf_counter()
    for _k, due in on_schedule(rate, total):
        index, event_id, payload = traffic.next()  # built now: a fresh ts, as a reader would
        at = fleet.send(index, payload)
        sent[event_id] = at
        max_lag = max(max_lag, at - due)
    rest = start + seconds - time.perf_counter()
    if rest > 0:  # the window lasts the full duration, so the achieved rate is comparable
        time.sleep(rest)
    elapsed = time.perf_counter() - start
    _settle(fleet, sent, timeout=timeout, drain=drain)
    return fleet.record(phase, sent, timeout=timeout, send_elapsed=elapsed, rate=rate,
                        seconds=seconds, max_lag_ms=max_lag * 1000)


def burst(fleet: Fleet, traffic: Traffic, count: int, *, timeout: float,
          drain: float) -> PhaseRecord:
    """``count`` messages published at once, round-robin over the devices."""
    # Built before the first leaves, so the burst is as sudden as the wire allows; their
    # timestamps are a few hundred ms older than they would be, far inside any deadline.
    batch = [traffic.next() for _ in range(count)]
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for index, event_id, payload in batch:
        sent[event_id] = fleet.send(index, payload)
    elapsed = time.perf_counter() - start
    _settle(fleet, sent, timeout=timeout, drain=drain)
    return fleet.record("burst", sent, timeout=timeout, send_elapsed=elapsed)


def _settle(fleet: Fleet, sent: dict[str, float], *, timeout: float, drain: float) -> None:
    last = max(sent.values(), default=time.perf_counter())
    ids = list(sent)
    if not fleet.wait_for(ids, last + timeout):
        fleet.wait_for(ids, time.perf_counter() + drain)
