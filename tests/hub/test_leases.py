"""Fleet-wide jobs: of processes racing for a job's lease, exactly one runs it a period."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from hub.db import create_db_engine, init_db
from hub.leases import Gate, take
from tests.conftest import fresh_postgres

T0 = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
PERIOD = timedelta(seconds=15)


def one_period(engines: list[Engine], now: datetime) -> Counter[str]:
    """Each engine a "process": all take the lease at the same instant; who got it."""
    barrier = threading.Barrier(len(engines))
    won: Counter[str] = Counter()
    lock = threading.Lock()

    def run(index: int, engine: Engine) -> None:
        barrier.wait()
        if take(engine, "retention", f"p{index}", PERIOD, now):
            with lock:
                won[f"p{index}"] += 1

    threads = [threading.Thread(target=run, args=(i, e)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return won


def race(engines: list[Engine], periods: int) -> list[Counter[str]]:
    return [one_period(engines, T0 + n * PERIOD) for n in range(periods)]


def assert_one_of_four_takes_each_period(first: Engine) -> None:
    """``first`` and three more engines on its database race for 8 periods."""
    init_db(first)
    url = first.url.render_as_string(hide_password=False)
    engines = [first, *(create_db_engine(url) for _ in range(3))]
    try:
        winners = race(engines, periods=8)
        assert all(sum(w.values()) == 1 for w in winners), winners
    finally:
        for e in engines:
            e.dispose()


@pytest.mark.postgres
def test_one_of_four_processes_takes_each_period_on_postgres(postgres_url: str) -> None:
    assert_one_of_four_takes_each_period(fresh_postgres(postgres_url))


def test_one_of_four_processes_takes_each_period_on_sqlite(tmp_path: Path) -> None:
    assert_one_of_four_takes_each_period(create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}"))


def test_a_lease_is_held_until_it_expires_even_by_its_holder(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    assert take(engine, "sweep", "a", PERIOD, T0)
    assert not take(engine, "sweep", "b", PERIOD, T0 + PERIOD - timedelta(seconds=1))
    assert not take(engine, "sweep", "a", PERIOD, T0 + timedelta(seconds=1))  # no early renew
    assert take(engine, "other", "b", PERIOD, T0)  # a lease per job
    assert take(engine, "sweep", "b", PERIOD, T0 + PERIOD)  # a dead holder is replaced
    gate = Gate(engine, "c", clock=lambda: T0 + 2 * PERIOD)
    assert gate("sweep", PERIOD) and not gate("sweep", PERIOD)
    engine.dispose()


@pytest.mark.postgres
def test_on_postgres_leases_keep_the_database_clock_not_the_process_clock(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = fresh_postgres(postgres_url)
    init_db(engine)
    try:
        assert Gate(engine, "on-time")("sweep", timedelta(minutes=5))
        # A worker whose clock runs an hour fast would take a lease still held for minutes
        # if expiry were judged by its clock: it is judged by the database's.
        monkeypatch.setattr("hub.leases.utcnow",
                            lambda: datetime.now(UTC) + timedelta(hours=1))
        assert not Gate(engine, "fast-clock")("sweep", timedelta(minutes=5))
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT holder, taken_at, now() - taken_at FROM joblease").one()
        assert row[0] == "on-time" and abs(row[2]) < timedelta(seconds=30)
    finally:
        engine.dispose()
