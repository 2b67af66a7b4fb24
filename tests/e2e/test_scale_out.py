"""Several hub workers on one PostgreSQL and one MQTT 5 broker: decisions stay right."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from devices.client import DeviceClient
from devices.contract import TapEvent, WristbandCredential, encode
from devices.topics import Channel, device_topic
from hub.db import init_db, session_scope
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.ingest import handle_message
from hub.models import Event, Zone, utcnow
from hub.payment import PaymentLimits
from hub.server import Hub
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
    hubs = [Hub(hub_settings(tmp_path / f"w{n}", broker_url=f"mqtt://127.0.0.1:{mosquitto}",
                             mqtt_protocol="5", mqtt_shared_group="hubs", database_url=url),
                demo=True) for n in (1, 2)]
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
