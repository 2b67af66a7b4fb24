"""The multi-worker fault test: three ``hub worker`` processes on Mosquitto (MQTT 5, a
shared subscription) and PostgreSQL take a stream of entries and payments, with
duplicates and retries, while one worker is SIGKILLed, PostgreSQL crashes and restarts
(``pg_ctl stop -m immediate``: no checkpoint, recovery from the WAL) and Mosquitto
restarts. Every tap
is decided once, no idempotency key moves money twice, the ledger verifies, and every
reader has an answer for every event id it sent.

HUB_FLEET_TAPS sets how many taps: 10,000 by default, as the issue asks and CI runs it
(about three minutes on two cores); fewer for a quick look while working on it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel
from sqlmodel import Session, col, select

from devices.contract import (
    ErrorMessage,
    PaymentDecision,
    PaymentRequest,
    TapEvent,
    WristbandCredential,
    encode,
    parse_reply,
)
from devices.topics import Channel, device_topic
from hub.demo import VENUE_ID, wristband_uid
from hub.models import Event, LedgerTransaction, utcnow
from tests.utils import postgres
from tests.utils.fleet import Mosquitto, Worker, demo_database

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]

TAPS = int(os.environ.get("HUB_FLEET_TAPS", "10000"))
WORKERS = 3
IN_FLIGHT = 48  # readers together wait for at most this many answers (a load, not a flood)
RESEND_AFTER = 5.0  # s without an answer before a reader sends the same event again
GATES = ("gate-park-in-1", "gate-park-in-2")
TILLS = ("pos-cafe-1", "pos-shop-1", "pos-bar-1")
ENTRY_GUESTS = [n for n in range(1, 21) if n not in (6, 7, 8)]  # bare-UID bands
PAYING_GUESTS = (2, 3, 4, 5, 9, 10)  # their own wallets, no PIN, no secure band


# ------------------------------------------------------------------- the readers


@dataclass
class Sent:
    device: str
    message: TapEvent | PaymentRequest
    last_sent: float
    sends: int = 1
    answers: list[Any] = field(default_factory=list)


class Readers:
    """Gates and tills, each with a persistent MQTT 5 session (clean_start=False), that
    send again what has no answer yet, as a real reader does."""

    def __init__(self, port: int) -> None:
        self.sent: dict[str, Sent] = {}
        self.lock = threading.Lock()
        self.window = threading.Semaphore(IN_FLIGHT)
        self.clients: dict[str, mqtt.Client] = {}
        for device in (*GATES, *TILLS):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{device}",
                                 protocol=mqtt.MQTTv5)
            client.max_queued_messages_set(0)
            client.reconnect_delay_set(min_delay=1, max_delay=2)
            client.on_connect = self._subscriber(device)
            client.on_message = self._on_message
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
            client.connect("127.0.0.1", port, keepalive=10, clean_start=False,
                           properties=props)
            client.loop_start()
            self.clients[device] = client
        time.sleep(0.5)

    def _subscriber(self, device: str) -> Any:
        def on_connect(client: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
            client.subscribe([(device_topic(VENUE_ID, device, Channel.DECISIONS), 1),
                              (device_topic(VENUE_ID, device, Channel.ERRORS), 1)])
        return on_connect

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        reply = parse_reply(bytes(msg.payload))
        if reply.event_id is None:
            return
        with self.lock:
            entry = self.sent.get(reply.event_id)
            if entry is None:
                return
            first = not entry.answers
            entry.answers.append(reply)
        if first:
            self.window.release()

    def send(self, device: str, message: TapEvent | PaymentRequest) -> None:
        deadline = time.monotonic() + 120
        while not self.window.acquire(timeout=1.0):  # a reader waits, and sends again
            assert time.monotonic() < deadline, "no answers for two minutes"
            self.resend_unanswered(RESEND_AFTER)
        with self.lock:
            self.sent[message.event_id] = Sent(device, message, time.monotonic())
        self._publish(device, message)

    def send_again(self, event_id: str) -> None:
        """The same event, the same id: a redelivery the hub must not decide twice."""
        with self.lock:
            entry = self.sent[event_id]
            entry.sends += 1
        self._publish(entry.device, entry.message)

    def _publish(self, device: str, message: BaseModel) -> None:
        self.clients[device].publish(device_topic(VENUE_ID, device, Channel.EVENTS),
                                     encode(message), qos=1)

    def unanswered(self) -> list[str]:
        with self.lock:
            return [e for e, s in self.sent.items() if not s.answers]

    def resend_unanswered(self, older_than: float) -> int:
        now, count = time.monotonic(), 0
        with self.lock:
            stale = [s for s in self.sent.values()
                     if not s.answers and now - s.last_sent > older_than]
            for entry in stale:
                entry.last_sent, entry.sends = now, entry.sends + 1
        for entry in stale:
            self._publish(entry.device, entry.message)
            count += 1
        return count

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


# ------------------------------------------------------------------- the stream


def stream(rng: random.Random, count: int) -> Iterator[tuple[str, TapEvent | PaymentRequest
                                                          | str]]:
    """(device, message) or ("again", event id): entries, payments, and their repeats."""
    payments: list[tuple[str, PaymentRequest]] = []
    sent_ids: list[str] = []
    for n in range(count):
        roll = rng.random()
        if sent_ids and roll < 0.05:  # the same event id sent again at once
            yield "again", rng.choice(sent_ids[-50:])
            continue
        if payments and roll < 0.12:  # a till's retry: same key, a new event id
            till, first = rng.choice(payments[-50:])
            yield till, first.model_copy(update={"event_id": f"retry-{n}"})
            continue
        if roll < 0.55:
            till = rng.choice(TILLS)
            request = PaymentRequest(
                event_id=f"pay-{n}", ts=utcnow(), amount=rng.randint(1, 40), currency="USD",
                merchant_id=till.split("-")[1], idempotency_key=f"key-{n}", account="wallet",
                credential=WristbandCredential(uid=wristband_uid(rng.choice(PAYING_GUESTS))))
            payments.append((till, request))
            sent_ids.append(request.event_id)
            yield till, request
        else:
            tap = TapEvent(event_id=f"tap-{n}", ts=utcnow(), credential=WristbandCredential(
                uid=wristband_uid(rng.choice(ENTRY_GUESTS))))
            sent_ids.append(tap.event_id)
            yield rng.choice(GATES), tap


@contextmanager
def fleet(tmp_path: Path, own_postgres: postgres.Cluster
          ) -> Iterator[tuple[Mosquitto, list[Worker], str]]:
    url = demo_database(tmp_path, own_postgres.url)
    broker = Mosquitto(tmp_path)
    broker.start()
    workers = [Worker(f"w{n}", tmp_path, broker.port, url) for n in range(1, WORKERS + 1)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_connected()
        yield broker, workers, url
    finally:
        codes = {w.name: w.stop() for w in workers}
        broker.stop()
    # A worker stopped by SIGTERM drains and exits 0: anything else is a crash (checked
    # only when the test body passed, so its own failure is what is reported).
    assert all(code == 0 for code in codes.values()), codes


def test_three_workers_survive_a_kill_a_database_crash_and_a_broker_restart(
        tmp_path: Path, own_postgres: postgres.Cluster) -> None:
    rng = random.Random(18)
    started = time.monotonic()
    with fleet(tmp_path, own_postgres) as (broker, workers, url):
        readers = Readers(broker.port)
        victim = workers[1]
        try:
            for n, (device, message) in enumerate(stream(rng, TAPS)):
                if n == TAPS // 3:
                    victim.kill()  # mid-traffic: what it took and did not answer is redone
                if n == TAPS // 3 + TAPS // 10:
                    victim.start()  # systemd's Restart=always: its session is waiting
                    victim.wait_connected(times=2)
                if n == TAPS // 2:
                    own_postgres.restart("immediate")  # every worker's connections die with it
                if n == 2 * TAPS // 3:
                    broker.stop()
                    broker.start()
                if device == "again":
                    assert isinstance(message, str)
                    readers.send_again(message)
                else:
                    assert not isinstance(message, str)
                    readers.send(device, message)
                if n % 200 == 0:
                    readers.resend_unanswered(RESEND_AFTER)
            deadline = time.monotonic() + 180
            while readers.unanswered() and time.monotonic() < deadline:
                readers.resend_unanswered(RESEND_AFTER)
                time.sleep(0.5)
            time.sleep(1.0)  # late duplicates' answers
            assert not readers.unanswered(), readers.unanswered()[:20]
        finally:
            readers.close()
        elapsed = time.monotonic() - started
        print(f"\n{TAPS} taps, {len(readers.sent)} events, "
              f"{sum(s.sends for s in readers.sent.values())} sends in {elapsed:.1f} s")
        verify = subprocess.run(
            [sys.executable, "-c", "from hub.cli import app; app()", "ledger", "verify",
             "--database-url", url], capture_output=True, text=True, timeout=120)
    check(readers, url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ledger OK" in verify.stdout


def check(readers: Readers, url: str) -> None:
    from hub.db import create_db_engine

    sent = readers.sent
    # Every event id has an answer, and every answer to it says the same.
    errors = Counter(type(a).__name__ for s in sent.values() for a in s.answers
                     if isinstance(a, ErrorMessage))
    assert not errors, errors
    for event_id, entry in sent.items():
        reasons = {(a.outcome, a.reason) for a in entry.answers}
        assert len(reasons) == 1, (event_id, entry.answers)
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            events = session.exec(select(Event.device_id, Event.event_id, Event.reason)).all()
            approved = session.exec(select(LedgerTransaction).where(
                LedgerTransaction.type == "charge", col(LedgerTransaction.approved))).all()
    finally:
        engine.dispose()
    # Exactly one recorded decision per tap, and it is what the reader was told.
    recorded = Counter((d, e) for d, e, _ in events)
    assert all(c == 1 for c in recorded.values()), [k for k, c in recorded.items() if c > 1]
    assert set(recorded) == {(s.device, e) for e, s in sent.items()}
    told = {e: s.answers[0].reason for e, s in sent.items()}
    assert {e: r for _, e, r in events} == told
    # No key moved money twice; every retry of a key got the first answer's transaction.
    keys = Counter(t.idempotency_key for t in approved)
    assert all(c == 1 for c in keys.values()), [k for k, c in keys.items() if c > 1]
    by_key: dict[str, set[str | None]] = {}
    for entry in sent.values():
        for answer in entry.answers:
            if isinstance(answer, PaymentDecision):
                by_key.setdefault(answer.idempotency_key, set()).add(answer.transaction_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sorted(keys) == sorted(k for k, ids in by_key.items() if ids != {None})
    outcomes = Counter(s.answers[0].reason for s in sent.values())
    assert outcomes["ok"] > 0, outcomes
    assert not outcomes["internal"], outcomes
