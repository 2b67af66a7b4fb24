"""Several hub workers on one PostgreSQL and one MQTT 5 broker: decisions stay right."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from devices.client import DeviceClient, HubError
from devices.contract import (
    PaymentDecision,
    PaymentRequest,
    TapEvent,
    WristbandCredential,
    encode,
)
from devices.topics import Channel, device_topic
from hub.db import init_db, session_scope
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.ingest import handle_message
from hub.models import Account, Event, LedgerTransaction, Zone, utcnow
from hub.payment import PaymentLimits
from hub.server import Hub
from hub.store import money
from tests.conftest import fresh_postgres, hub_settings

pytestmark = pytest.mark.postgres

LIMITS = PaymentLimits(max_amount=1_000_000, max_pin_failures=5)


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = fresh_postgres(postgres_url)
    init_db(engine)
    seed_demo(engine, utcnow())
    yield engine
    engine.dispose()


def race(engine: Engine, taps: list[tuple[str, TapEvent]], workers: int) -> list[str]:
    """Decide taps from several threads at once, each with its own transactions."""
    barrier = threading.Barrier(workers)
    reasons: list[str] = []
    lock = threading.Lock()

    def work(share: list[tuple[str, TapEvent]]) -> None:
        barrier.wait()
        for device, tap in share:
            topic = device_topic(VENUE_ID, device, Channel.EVENTS)
            with session_scope(engine) as session:
                outcome = handle_message(session, topic, encode(tap), utcnow(), limits=LIMITS)
            assert outcome.decision is not None, outcome
            with lock:
                reasons.append(outcome.decision.reason.value)

    threads = [threading.Thread(target=work, args=(taps[i::workers],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return reasons


def test_concurrent_workers_never_overfill_a_zone(pg_engine: Engine) -> None:
    with session_scope(pg_engine) as session:
        zone = session.get(Zone, "park")
        assert zone is not None
        zone.capacity = 7
    taps = [("gate-park-in-1", TapEvent(event_id=f"c{n}", ts=utcnow(),
                                        credential=WristbandCredential(uid=wristband_uid(n))))
            for n in range(1, 21)]
    reasons = race(pg_engine, taps, workers=6)
    assert Counter(reasons) == {"ok": 7, "zone_full": 13}
    with Session(pg_engine) as session:
        assert session.get(Zone, "park").occupancy == 7  # type: ignore[union-attr]


def test_concurrent_redeliveries_are_recorded_once(pg_engine: Engine) -> None:
    tap = TapEvent(event_id="same-1", ts=utcnow(),
                   credential=WristbandCredential(uid=wristband_uid(2)))
    reasons = race(pg_engine, [("gate-park-in-1", tap)] * 12, workers=6)
    assert reasons == ["ok"] * 12  # every copy gets the first decision, none anti-passback
    with Session(pg_engine) as session:
        assert session.exec(select(func.count()).select_from(Event)).one() == 1
        assert session.get(Zone, "park").occupancy == 1  # type: ignore[union-attr]


@pytest.mark.mosquitto
def test_two_hub_workers_share_the_traffic(tmp_path: Path, mosquitto: int,
                                           postgres_url: str) -> None:
    engine = fresh_postgres(postgres_url)
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    # One data directory: the fleet's workers share its secrets (their group's name on
    # the broker is derived from them).
    hubs = [Hub(hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}",
                             mqtt_protocol="5", mqtt_shared_group="hubs", database_url=url,
                             worker_name=f"w{n}"), demo=True) for n in (1, 2)]
    for hub in hubs:
        hub.start()
    try:
        with DeviceClient(VENUE_ID, "lock-107", port=mosquitto, mqtt5=True) as lock:
            futures = [lock.send_tap(WristbandCredential(uid=wristband_uid(7)))[1]
                       for _ in range(200)]
            decisions = [f.result(10) for f in futures]
        assert all(d.reason == "ok" for d in decisions)
        taken = [hub.bridge.counters["decisions"] for hub in hubs]  # type: ignore[union-attr]
        assert sum(taken) == 200 and min(taken) > 0, taken  # split, each tap decided once
    finally:
        for hub in hubs:
            hub.stop()


PAYMENTS = 1_500  # as in the issue


@pytest.mark.mosquitto
def test_two_hubs_take_hundreds_of_payments_without_internal_or_overspend(
        tmp_path: Path, mosquitto: int, postgres_url: str) -> None:
    """Two hubs on one PostgreSQL and one Mosquitto (a shared subscription) take 300
    payments from three tills at once, every tenth sent again under its key: guests
    spend their wallets down past empty, at all three merchants in every order, so the
    workers' batches meet on wallets and revenue accounts. Every terminal gets a
    decision (none `internal`, no error), a key is charged at most once, no wallet is
    below zero, and the ledger verifies."""
    engine = fresh_postgres(postgres_url)
    url = engine.url.render_as_string(hide_password=False)
    # One data directory: the fleet's workers share its secrets (their group's name on
    # the broker is derived from them).
    hubs = [Hub(hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}",
                             mqtt_protocol="5", mqtt_shared_group="hubs", database_url=url,
                             worker_name=f"w{n}"), demo=True) for n in (1, 2)]
    for hub in hubs:
        hub.start()
    rng = random.Random(16)
    tills = {m: f"pos-{m}-1" for m in ("cafe", "shop", "bar")}
    try:
        clients = {m: DeviceClient(VENUE_ID, d, port=mosquitto, mqtt5=True)
                   for m, d in tills.items()}
        for c in clients.values():
            c.connect()
        sent: list[tuple[PaymentRequest, Future[PaymentDecision]]] = []
        # The tills together have at most this many payments waiting for a decision (a
        # till waits for one before the next guest taps): a load, not a flood past the
        # deadline that would be declined too_late.
        window = threading.Semaphore(24)
        for n in range(PAYMENTS):
            merchant = rng.choice(list(tills))
            if n % 10 == 9:  # a till's retry: the same payment under the same key
                first, _ = sent[rng.randrange(len(sent))]
                merchant = first.merchant_id
                request = first.model_copy(update={"event_id": f"again-{n}"})
            else:  # guests 2..10: their own wallets (guest 1's PIN, 11..20's limits aside)
                request = PaymentRequest(
                    event_id=f"p-{n}", ts=utcnow(), amount=rng.randint(10, 200),
                    currency="USD", merchant_id=merchant, idempotency_key=f"k-{n}",
                    account="wallet",
                    credential=WristbandCredential(uid=wristband_uid(rng.randint(2, 10))))
            client = clients[merchant]
            window.acquire(timeout=60)
            future = client.expect(request.event_id)
            future.add_done_callback(lambda _: window.release())
            client.publish_event(request)
            sent.append((request, future))
        outcomes: Counter[str] = Counter()
        by_key: dict[str, set[str | None]] = {}
        for request, future in sent:
            try:
                decision = future.result(120)
            except HubError as exc:
                outcomes[f"error:{exc.error.code.value}"] += 1
                continue
            outcomes[decision.reason] += 1
            by_key.setdefault(request.idempotency_key, set()).add(decision.transaction_id)
        for c in clients.values():
            c.close()
        taken = [hub.bridge.counters["decisions"] for hub in hubs]  # type: ignore[union-attr]
    finally:
        for hub in hubs:
            hub.stop()
    assert sum(outcomes.values()) == PAYMENTS, outcomes
    assert not any(r == "internal" or r.startswith("error:") for r in outcomes), outcomes
    assert outcomes["ok"] > 0 and outcomes["insufficient_funds"] > 0, outcomes
    assert all(len(ids) == 1 for ids in by_key.values())  # a retry: the first answer
    assert min(taken) > 0, taken  # both hubs decided payments
    with Session(engine) as session:
        assert money.verify(session=session) == []
        wallets = session.exec(select(Account).where(Account.kind == "wallet")).all()
        assert all(w.balance >= 0 for w in wallets)
        approved = session.exec(select(LedgerTransaction).where(
            LedgerTransaction.type == "charge", col(LedgerTransaction.approved))).all()
        # Each approved key charged once, and exactly the keys the tills were told "ok".
        assert sorted(t.idempotency_key for t in approved) \
            == sorted(k for k, ids in by_key.items() if ids != {None})
    engine.dispose()
