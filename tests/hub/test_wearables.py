"""Pairing a wearable to its guest: what it reports becomes theirs, under their consent."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.api.main import API_PREFIX
from hub.db import create_db_engine, init_db
from hub.demo import seed_demo
from hub.models import Wearable, utcnow
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
        row = session.get(Wearable, device_id)
        return row.guest_id if row else None


def test_a_watch_is_paired_to_a_guest_and_unpaired(client: TestClient, app: FastAPI,
                                                   engine: Engine) -> None:
    staff = who(app, "staff")
    assert wearer(engine, "watch-guest-01") == "guest-01"  # the demo pairs it
    r = client.put(url("/devices/watch-guest-01/wearer"), json={"guest_id": "guest-12"},
                   headers=staff)
    assert r.status_code == 200, r.text
    assert (r.json()["device_id"], r.json()["guest_id"]) == ("watch-guest-01", "guest-12")
    assert wearer(engine, "watch-guest-01") == "guest-12"
    # Pairing again to the same guest keeps the pairing (and its date).
    again = client.put(url("/devices/watch-guest-01/wearer"), json={"guest_id": "guest-12"},
                       headers=staff)
    assert again.json()["paired_at"] == r.json()["paired_at"]
    assert client.delete(url("/devices/watch-guest-01/wearer"), headers=staff).status_code == 204
    assert wearer(engine, "watch-guest-01") is None
    gone = client.delete(url("/devices/watch-guest-01/wearer"), headers=staff)
    assert gone.status_code == 404 and "watch-guest-01" in gone.text


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
