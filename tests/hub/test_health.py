"""Whether the fleet decides taps, from its workers' heartbeats (hub api's health)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.health import SILENT_AFTER, bridge_problems, fleet_problems
from hub.models import WorkerBeat

NOW = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


def beat(name: str, ago: timedelta, *, deciding: bool, problems: str = "") -> WorkerBeat:
    return WorkerBeat(name=name, host="h", pid=1, seen_at=NOW - ago, deciding=deciding,
                      problems=problems)


def test_one_live_deciding_worker_is_enough() -> None:
    beats = [beat("w1", timedelta(seconds=2), deciding=True),
             beat("w2", timedelta(seconds=3), deciding=False, problems="stuck")]
    assert fleet_problems(beats, NOW) == []


def test_workers_fallen_silent_do_not_count_however_they_last_felt() -> None:
    beats = [beat("w1", SILENT_AFTER + timedelta(seconds=1), deciding=True)]
    assert fleet_problems(beats, NOW) == ["no worker has reported in the last 15 s"]
    assert fleet_problems([], NOW) == ["no worker has reported in the last 15 s"]


def test_live_workers_not_deciding_say_why() -> None:
    beats = [beat("w1", timedelta(seconds=1), deciding=False,
                  problems="the bridge is not connected to the broker"),
             beat("w2", timedelta(seconds=1), deciding=False)]
    assert fleet_problems(beats, NOW) == [
        "worker w1: the bridge is not connected to the broker",
        "worker w2: not deciding"]


def test_a_bridge_is_deciding_when_connected_alive_and_on_time() -> None:
    assert bridge_problems({"connected": True, "worker_alive": True,
                            "oldest_waiting_ms": 10.0}, 2000) == []
    assert len(bridge_problems({"connected": False, "worker_alive": False,
                                "oldest_waiting_ms": 2500.0}, 2000)) == 3


def test_a_stopped_worker_says_so_in_its_last_beat(tmp_path: Path) -> None:
    from sqlmodel import Session

    from hub.db import create_db_engine, init_db
    from hub.heartbeat import Heartbeat

    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    try:
        beats = Heartbeat(engine, "w9", lambda: {"connected": True, "worker_alive": True,
                                                 "queue_depth": 2}, 2000).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with Session(engine) as session:
                row = session.get(WorkerBeat, "w9")
            if row is not None:
                break
            time.sleep(0.05)
        assert row is not None and row.deciding and row.queue_depth == 2
        beats.stop()
        with Session(engine) as session:
            row = session.get(WorkerBeat, "w9")
        assert row is not None and not row.deciding and row.problems == "stopped"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_on_postgres_beats_and_retention_keep_the_databases_clock(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlmodel import Session

    from hub.heartbeat import Heartbeat
    from hub.retention import start
    from tests.conftest import fresh_postgres

    engine = fresh_postgres(postgres_url)
    from hub.db import init_db
    init_db(engine)
    # A worker whose clock drifted a year ahead after its start (the start check passed).
    ahead = lambda: datetime.now(UTC) + timedelta(days=365)  # noqa: E731
    monkeypatch.setattr("hub.heartbeat.utcnow", ahead)
    monkeypatch.setattr("hub.retention.utcnow", ahead)
    try:
        beats = Heartbeat(engine, "w-ahead", lambda: {"connected": True,
                                                      "worker_alive": True}, 2000)
        beats.beat()
        with Session(engine) as session:
            row = session.get(WorkerBeat, "w-ahead")
        assert row is not None and abs(row.seen_at - datetime.now(UTC)) < timedelta(minutes=1)
        purging = start(engine, days=30)
        purging.stop()
        assert purging.clock() - datetime.now(UTC) < timedelta(minutes=1)
    finally:
        engine.dispose()
