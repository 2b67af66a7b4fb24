"""Pairing a wearable to its guest: what it reports becomes theirs, under their consent."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.api.main import API_PREFIX
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import seed_demo
from hub.models import Telemetry, Wearable, utcnow
from hub.store import guests
from tests.hub.conftest import who


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wearables") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


def url(path: str) -> str:
    return API_PREFIX + path


def wearer(engine: Engine, device_id: str) -> str | None:
    with Session(engine) as session:
        row = guests.current_wearer(session=session, device_id=device_id)
        return row.guest_id if row else None


def pairings(engine: Engine, device_id: str) -> list[tuple[str, bool]]:
    """The device's pairings, oldest first: (guest, still open)."""
    with Session(engine) as session:
        rows = session.exec(select(Wearable).where(Wearable.device_id == device_id)
                            .order_by(col(Wearable.id))).all()
        return [(r.guest_id, r.unpaired_at is None) for r in rows]


def reading(engine: Engine, device_id: str, event_id: str, at: datetime) -> None:
    with session_scope(engine) as session:
        session.add(Telemetry(device_id=device_id, event_id=event_id, kind="telemetry", ts=at,
                              received_at=at,
                              data={"readings": {"heart_rate_bpm": 90}, "note": event_id}))


def paired_since(engine: Engine, device_id: str, at: datetime) -> None:
    """Move the open pairing's start back to ``at``, as if paired then."""
    with session_scope(engine) as session:
        row = guests.current_wearer(session=session, device_id=device_id)
        assert row is not None
        row.paired_at = at


def test_a_watch_is_paired_to_a_guest_and_unpaired(client: TestClient, app: FastAPI,
                                                   engine: Engine) -> None:
    staff = who(app, "staff")
    assert wearer(engine, "watch-guest-01") == "guest-01"  # the demo pairs it
    r = client.put(url("/devices/watch-guest-01/wearer"), json={"guest_id": "guest-12"},
                   headers=staff)
    assert r.status_code == 200, r.text
    assert (r.json()["device_id"], r.json()["guest_id"]) == ("watch-guest-01", "guest-12")
    assert r.json()["unpaired_at"] is None
    assert wearer(engine, "watch-guest-01") == "guest-12"
    # The earlier pairing ended, and stays: what the watch said until then is guest-01's.
    assert pairings(engine, "watch-guest-01") == [("guest-01", False), ("guest-12", True)]
    # Pairing again to the same guest keeps the pairing (and its date).
    again = client.put(url("/devices/watch-guest-01/wearer"), json={"guest_id": "guest-12"},
                       headers=staff)
    assert again.json()["paired_at"] == r.json()["paired_at"]
    assert client.delete(url("/devices/watch-guest-01/wearer"), headers=staff).status_code == 204
    assert wearer(engine, "watch-guest-01") is None
    assert pairings(engine, "watch-guest-01") == [("guest-01", False), ("guest-12", False)]
    gone = client.delete(url("/devices/watch-guest-01/wearer"), headers=staff)
    assert gone.status_code == 404 and "watch-guest-01" in gone.text


def test_unpaired_then_paired_again_the_gap_is_nobody_s(client: TestClient, app: FastAPI,
                                                        engine: Engine) -> None:
    staff, ana = who(app, "staff"), who(app, "guest-02")
    start = utcnow() - timedelta(hours=1)
    paired_since(engine, "watch-guest-02", start)
    reading(engine, "watch-guest-02", "before", start - timedelta(minutes=1))
    reading(engine, "watch-guest-02", "worn", start + timedelta(minutes=30))
    assert client.delete(url("/devices/watch-guest-02/wearer"), headers=staff).status_code == 204
    with Session(engine) as session:
        [closed] = session.exec(select(Wearable).where(
            Wearable.device_id == "watch-guest-02")).all()
        assert closed.unpaired_at is not None and closed.unpaired_at >= start
    reading(engine, "watch-guest-02", "in-a-drawer", closed.unpaired_at)  # nobody wore it
    r = client.put(url("/devices/watch-guest-02/wearer"), json={"guest_id": "guest-02"},
                   headers=staff)
    assert r.status_code == 200, r.text
    again = datetime.fromisoformat(r.json()["paired_at"])
    assert again > closed.unpaired_at
    reading(engine, "watch-guest-02", "worn-again", again)
    doc = client.get(url("/guests/guest-02/export"), headers=ana).json()
    assert [(datetime.fromisoformat(w["paired_at"]), w["unpaired_at"] is None)
            for w in doc["wearables"]] == [(start, False), (again, True)]
    # What it said while worn, both times; not before, nor while in a drawer.
    assert [e["data"]["note"] for e in doc["wearable_readings"]] == ["worn", "worn-again"]
    assert pairings(engine, "watch-guest-02") == [("guest-02", False), ("guest-02", True)]


def test_the_database_refuses_two_open_pairings_of_one_device(engine: Engine) -> None:
    now = utcnow()
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as session:
        session.add(Wearable(device_id="watch-guest-03", guest_id="guest-04", paired_at=now))
    # A closed pairing beside the open one is history, and fine; so is another device's.
    with session_scope(engine) as session:
        session.add(Wearable(device_id="watch-guest-03", guest_id="guest-04",
                             paired_at=now - timedelta(days=3),
                             unpaired_at=now - timedelta(days=2)))
    assert pairings(engine, "watch-guest-03") == [("guest-03", True), ("guest-04", False)]
    # Nor may a pairing end before it began.
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as session:
        session.add(Wearable(device_id="watch-guest-04", guest_id="guest-04",
                             paired_at=now, unpaired_at=now - timedelta(seconds=1)))


def test_seeding_again_adds_no_pairing_and_pairs_a_handed_back_demo_watch(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    seed_demo(engine, utcnow())
    assert pairings(engine, "watch-guest-05") == [("guest-05", True)]
    assert client.delete(url("/devices/watch-guest-05/wearer"),
                         headers=who(app, "staff")).status_code == 204
    seed_demo(engine, utcnow())
    assert pairings(engine, "watch-guest-05") == [("guest-05", False), ("guest-05", True)]
    with Session(engine) as session:
        ended, current = session.exec(select(Wearable).where(
            Wearable.device_id == "watch-guest-05").order_by(col(Wearable.id))).all()
    assert ended.unpaired_at is not None and current.paired_at >= ended.unpaired_at
    seed_demo(engine, utcnow())
    assert len(pairings(engine, "watch-guest-05")) == 2


def test_pairing_is_refused_with_a_reason(client: TestClient, app: FastAPI,
                                          engine: Engine) -> None:
    staff = who(app, "staff")
    lock = client.put(url("/devices/lock-101/wearer"), json={"guest_id": "guest-01"},
                      headers=staff)
    assert lock.status_code == 409 and "not a wearable" in lock.json()["detail"]
    nobody = client.put(url("/devices/watch-guest-02/wearer"), json={"guest_id": "nobody"},
                        headers=staff)
    assert nobody.status_code in (404, 422) and "nobody" in nobody.text
    ghost = client.put(url("/devices/ghost/wearer"), json={"guest_id": "guest-01"},
                       headers=staff)
    assert ghost.status_code == 404
    bad = client.put(url("/devices/watch-guest-02/wearer"), json={"guest_id": "a/b"},
                     headers=staff)
    assert bad.status_code == 422
    assert wearer(engine, "watch-guest-02") == "guest-02"  # nothing refused changed anything
    # A guest cannot pair (or steal) a watch.
    own = client.put(url("/devices/watch-guest-03/wearer"), json={"guest_id": "guest-01"},
                     headers=who(app, "guest-01"))
    assert own.status_code == 403
    assert wearer(engine, "watch-guest-03") == "guest-03"
