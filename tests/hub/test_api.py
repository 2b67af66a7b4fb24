"""The REST API over HTTP: the real app from ``create_app`` on a real SQLite file.

Every resource is created, read, listed (each filter, each page), patched and
refused through the app's own routes; taps reach the journey the way the bridge
feeds them, through ``hub.ingest.handle_message``. Expected values come from
what each test created, never from a hard-coded answer.

The last section holds the hub bugs these tests found: fixed ones as regression
tests, open ones as ``xfail(strict=True)`` tests that say what the API should
answer and fail (as expected) until the hub is fixed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine

from devices.contract import Decision, HeartbeatEvent, encode, parse_reply
from devices.topics import Channel, device_topic
from hub.api.main import API_PREFIX, create_app
from hub.config import Settings
from hub.db import create_db_engine, init_db
from hub.demo import STRICT_VENUE_ID, VENUE_ID, seed_demo, wristband_uid
from hub.ingest import Outcome
from hub.models import utcnow
from tests.conftest import bearer, fresh_postgres, staff_token
from tests.utils import ingest
from tests.utils.demo_db import demo_postgres

# The public shapes: what a client may rely on, and nothing internal.
VENUE_KEYS = {"id", "name", "timezone", "currency", "allow_plain_uid", "enabled",
              "folio_credit_limit", "created_at"}
ZONE_KEYS = {"id", "venue_id", "name", "kind", "capacity", "anti_passback", "occupancy"}
DEVICE_KEYS = {"id", "venue_id", "kind", "name", "zone_id", "direction", "merchant_id", "enabled",
               "online", "last_seen", "battery_pct", "firmware", "allow_plain_uid"}
GUEST_KEYS = {"id", "name", "display_name", "email", "created_at"}
CREDENTIAL_KEYS = {"id", "guest_id", "kind", "identifier", "status", "label", "created_at",
                   "status_changed_at", "sun", "key_jti", "secure"}
ENTITLEMENT_KEYS = {"id", "guest_id", "kind", "zone_ids", "valid_from", "valid_until",
                    "schedule", "status"}
EVENT_KEYS = {"id", "device_id", "venue_id", "event_id", "kind", "received_at", "device_ts",
              "credential_kind", "credential_ref", "credential_id", "guest_id", "zone_id",
              "direction", "outcome", "reason", "text", "detail", "decided_at"}
# Columns of the tables that must stay behind the API.
INTERNAL = {"devices": {"created_at"}, "entitlements": {"created_at"}, "events": {"guest_name"}}

MQTT_HOST, MQTT_PORT = "127.0.0.1", 18_883


def url(*parts: str) -> str:
    return "/".join([API_PREFIX, *parts])


def ts(value: str) -> datetime:
    """An API timestamp, which must carry its offset."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"naive timestamp in the API: {value!r}"
    return parsed


def iso(value: datetime) -> str:
    return value.isoformat()


def locs(response: Response) -> list[tuple[Any, ...]]:
    """The locations named by a FastAPI validation error."""
    detail = response.json()["detail"]
    assert isinstance(detail, list), detail
    return [tuple(err["loc"]) for err in detail]


def messages(response: Response) -> str:
    detail = response.json()["detail"]
    return " ".join(err["msg"] for err in detail) if isinstance(detail, list) else detail


def assert_422_at(response: Response, *loc: Any) -> None:
    assert response.status_code == 422, response.text
    assert loc in locs(response), (loc, response.text)


def assert_reference_422(response: Response, field: str, key: str) -> None:
    """A body naming a row that does not exist: 422 naming the field and the key."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str), detail
    assert detail.startswith(f"{field}:"), detail
    assert repr(key) in detail, detail


def assert_404(response: Response, key: str) -> None:
    assert response.status_code == 404, response.text
    assert repr(key) in response.json()["detail"], response.text


def walk_offset(client: TestClient, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every row of a list, page by page with limit/offset."""
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        r = client.get(path, params={**params, "limit": limit, "offset": offset})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page) <= limit
        rows += page
        if len(page) < limit:
            return rows
        offset += limit


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


# ------------------------------------------------------------------ fixtures


DEMO_FIXTURES = {"day", "demo", "raw", "journey"}


SEEDED_AT = utcnow()  # the demo of every test of this module: one seed time, one day


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """The demo venue seeded once (seed_demo hashes a PIN and posts top-ups: slow-ish).

    Returns the SQLite file, closed and checkpointed, and the midnight its stays start at.
    """
    path = tmp_path_factory.mktemp("demo") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, SEEDED_AT)
    engine.dispose()  # the last connection closing folds the WAL into the file
    return path, SEEDED_AT.replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A database of this test, on SQLite or PostgreSQL (the REST API on each engine):
    empty, or a copy of the demo when the test wants it."""
    demo = bool(DEMO_FIXTURES & set(request.fixturenames))
    if request.param == "postgres":
        engine = (demo_postgres(request, now=SEEDED_AT) if demo
                  else fresh_postgres(request.getfixturevalue("postgres_url")))
    else:
        path = tmp_path / "hub.db"
        if demo:
            template, _ = request.getfixturevalue("demo_template")
            shutil.copyfile(template, path)
        engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, broker_url=None, mqtt_host=MQTT_HOST,
                    mqtt_port=MQTT_PORT)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    """The API on this test's database (empty unless the test asks for the demo), as admin."""
    app = create_app(engine=engine, settings=settings)
    with TestClient(app, headers=bearer(staff_token(app))) as c:
        yield c


@pytest.fixture
def day(engine: Engine, demo_template: tuple[Path, datetime]) -> datetime:
    """The database holds the demo venue; its tickets and stays start at this midnight (UTC)."""
    return demo_template[1]


@pytest.fixture
def demo(client: TestClient, day: datetime) -> TestClient:
    """The API on the seeded demo venue."""
    return client


@pytest.fixture
def raw(engine: Engine, settings: Settings, day: datetime) -> Iterator[TestClient]:
    """The demo API answering 500 instead of raising: for the tests that pin hub bugs."""
    app = create_app(engine=engine, settings=settings)
    with TestClient(app, raise_server_exceptions=False, headers=bearer(staff_token(app))) as c:
        yield c


# --------------------------------------------------------------- factories


def created(r: httpx.Response) -> dict[str, Any]:
    """The body of a 201 answer: the created resource, as JSON."""
    assert r.status_code == 201, r.text
    body = r.json()
    assert isinstance(body, dict), body
    return body


def make_venue(client: TestClient, venue_id: str, **kw: Any) -> dict[str, Any]:
    r = client.post(url("venues"), json={"id": venue_id, "name": f"Venue {venue_id}", **kw})
    return created(r)


def make_zone(client: TestClient, zone_id: str, venue_id: str, **kw: Any) -> dict[str, Any]:
    r = client.post(url("zones"), json={"id": zone_id, "venue_id": venue_id,
                                        "name": f"Zone {zone_id}", **kw})
    return created(r)


def make_device(client: TestClient, device_id: str, venue_id: str, kind: str = "gate",
                **kw: Any) -> dict[str, Any]:
    r = client.post(url("devices"), json={"id": device_id, "venue_id": venue_id, "kind": kind,
                                          "name": f"Device {device_id}", **kw})
    return created(r)


def make_guest(client: TestClient, name: str, **kw: Any) -> dict[str, Any]:
    r = client.post(url("guests"), json={"name": name, **kw})
    return created(r)


def make_credential(client: TestClient, guest_id: str, kind: str = "phone_key",
                    **kw: Any) -> dict[str, Any]:
    r = client.post(url("credentials"), json={"guest_id": guest_id, "kind": kind, **kw})
    return created(r)


def entitlement_body(guest_id: str, zone_ids: list[str], kind: str = "ticket",
                     start: datetime | None = None, days: int = 2, **kw: Any) -> dict[str, Any]:
    start = start or datetime(2030, 5, 1, 9, tzinfo=UTC)
    return {"guest_id": guest_id, "kind": kind, "zone_ids": zone_ids,
            "valid_from": iso(start), "valid_until": iso(start + timedelta(days=days)), **kw}


def make_entitlement(client: TestClient, guest_id: str, zone_ids: list[str],
                     **kw: Any) -> dict[str, Any]:
    r = client.post(url("entitlements"), json=entitlement_body(guest_id, zone_ids, **kw))
    return created(r)


def tap(engine: Engine, device: str, now: datetime, event_id: str, *, uid: str | None = None,
        key_id: str | None = None) -> Outcome:
    """Feed one tap at a demo device to the bridge's logic, as if it came at ``now``."""
    return ingest.tap(engine, VENUE_ID, device, now, event_id, uid=uid, key_id=key_id)


# ------------------------------------------------------------------- venues


def test_create_venue_answers_201_with_the_public_shape(client: TestClient) -> None:
    before = utcnow()
    r = client.post(url("venues"), json={"id": "harbour-park_2", "name": "Harbour Park",
                                         "timezone": "Europe/Lisbon", "currency": "EUR"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == VENUE_KEYS
    assert (body["id"], body["name"], body["timezone"], body["currency"]) == (
        "harbour-park_2", "Harbour Park", "Europe/Lisbon", "EUR")
    assert before <= ts(body["created_at"]) <= utcnow()


def test_venue_defaults_to_utc_and_usd(client: TestClient) -> None:
    venue = make_venue(client, "plain")
    assert (venue["timezone"], venue["currency"]) == ("UTC", "USD")
    assert client.get(url("venues", "plain")).json() == venue


def test_get_venue_returns_what_was_created(client: TestClient) -> None:
    created = make_venue(client, "v-get", timezone="Asia/Tokyo", currency="JPY")
    r = client.get(url("venues", "v-get"))
    assert r.status_code == 200
    got = r.json()
    assert got.keys() == created.keys()
    assert {k: got[k] for k in ("id", "name", "timezone", "currency")} == {
        k: created[k] for k in ("id", "name", "timezone", "currency")}
    assert ts(got["created_at"]) == ts(created["created_at"])


def test_get_unknown_venue_is_404_naming_it(client: TestClient) -> None:
    make_venue(client, "known")
    assert_404(client.get(url("venues", "no-such-venue")), "no-such-venue")


def test_list_venues_pages_with_limit_and_offset(client: TestClient) -> None:
    created = ["v-e", "v-a", "v-d", "v-c", "v-b"]
    for vid in created:
        make_venue(client, vid)
    everything = client.get(url("venues")).json()
    assert ids(everything) == sorted(created)  # ordered by id
    for limit in (1, 2, 3, 5, 7):
        assert ids(walk_offset(client, url("venues"), limit)) == sorted(created)
    r = client.get(url("venues"), params={"limit": 2, "offset": 2})
    assert ids(r.json()) == sorted(created)[2:4]
    assert client.get(url("venues"), params={"offset": len(created)}).json() == []


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"limit": -1},
                                    {"offset": -1}, {"limit": "ten"}, {"offset": "1.5"}])
def test_list_rejects_bad_paging(client: TestClient, params: dict[str, Any]) -> None:
    for resource in ("venues", "zones", "devices", "guests", "credentials", "entitlements"):
        [name] = params
        assert_422_at(client.get(url(resource), params=params), "query", name)


def test_duplicate_venue_is_409_and_keeps_the_first(client: TestClient) -> None:
    make_venue(client, "twice", timezone="Europe/Oslo")
    r = client.post(url("venues"), json={"id": "twice", "name": "Other", "timezone": "UTC"})
    assert r.status_code == 409, r.text
    assert "venue" in r.json()["detail"]
    kept = client.get(url("venues", "twice")).json()
    assert (kept["name"], kept["timezone"]) == ("Venue twice", "Europe/Oslo")


@pytest.mark.parametrize(("body", "loc"), [
    ({"id": "v", "name": "V", "timezone": "Mars/Olympus_Mons"}, ("body", "timezone")),
    ({"id": "v", "name": "V", "timezone": "../etc/passwd"}, ("body", "timezone")),
    ({"id": "v", "name": "V", "timezone": ""}, ("body", "timezone")),
    ({"id": "has space", "name": "V"}, ("body", "id")),
    ({"id": "-leading-dash", "name": "V"}, ("body", "id")),
    ({"id": "x" * 65, "name": "V"}, ("body", "id")),
    ({"id": "v/slash", "name": "V"}, ("body", "id")),
    ({"id": "v", "name": ""}, ("body", "name")),
    ({"id": "v", "name": "n" * 201}, ("body", "name")),
    ({"id": "v"}, ("body", "name")),
    ({"id": "v", "name": "V", "owner": "me"}, ("body", "owner")),
    ({"id": 7, "name": "V"}, ("body", "id")),
    ({"id": "v", "name": "V", "currency": "usd"}, ("body", "currency")),
    ({"id": "v", "name": "V", "currency": "EURO"}, ("body", "currency")),
])
def test_create_venue_rejects_invalid_bodies(client: TestClient, body: dict[str, Any],
                                             loc: tuple[str, ...]) -> None:
    assert_422_at(client.post(url("venues"), json=body), *loc)
    assert client.get(url("venues")).json() == []


def test_unknown_time_zone_message_names_it(client: TestClient) -> None:
    r = client.post(url("venues"), json={"id": "v", "name": "V", "timezone": "Europe/Atlantis"})
    assert_422_at(r, "body", "timezone")
    assert "Europe/Atlantis" in messages(r)


# -------------------------------------------------------------------- zones


def test_create_zone_answers_201_with_defaults(client: TestClient) -> None:
    make_venue(client, "v1")
    r = client.post(url("zones"), json={"id": "lagoon", "venue_id": "v1", "name": "Lagoon"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == ZONE_KEYS
    assert body == {"id": "lagoon", "venue_id": "v1", "name": "Lagoon", "kind": "area",
                    "capacity": None, "anti_passback": False, "occupancy": 0}


def test_create_room_zone_keeps_every_field(client: TestClient) -> None:
    make_venue(client, "v1")
    body = {"id": "suite-9", "venue_id": "v1", "name": "Suite 9", "kind": "room",
            "capacity": 4, "anti_passback": True}
    r = client.post(url("zones"), json=body)
    assert r.status_code == 201, r.text
    assert r.json() == {**body, "occupancy": 0}
    assert client.get(url("zones", "suite-9")).json() == {**body, "occupancy": 0}


def test_zone_in_missing_venue_is_422_naming_venue_id(client: TestClient) -> None:
    r = client.post(url("zones"), json={"id": "z", "venue_id": "atlantis", "name": "Z"})
    assert_reference_422(r, "venue_id", "atlantis")
    assert_404(client.get(url("zones", "z")), "z")


def test_get_unknown_zone_is_404_naming_it(client: TestClient) -> None:
    assert_404(client.get(url("zones", "nowhere")), "nowhere")


def test_list_zones_filters_by_venue_and_kind(client: TestClient) -> None:
    for vid in ("va", "vb"):
        make_venue(client, vid)
    made = [make_zone(client, "a-room-1", "va", kind="room"), make_zone(client, "a-area", "va"),
            make_zone(client, "b-room", "vb", kind="room"), make_zone(client, "a-room-2", "va",
                                                                      kind="room")]
    everything = client.get(url("zones")).json()
    assert ids(everything) == sorted(ids(made))
    for params in ({"venue_id": "va"}, {"venue_id": "vb"}, {"kind": "room"}, {"kind": "area"},
                   {"venue_id": "va", "kind": "room"}, {"venue_id": "vb", "kind": "area"}):
        expected = [z for z in everything if all(z[k] == v for k, v in params.items())]
        got = client.get(url("zones"), params=params).json()
        assert got == expected, params
    assert client.get(url("zones"), params={"venue_id": "vc"}).json() == []


def test_list_zones_pages(client: TestClient) -> None:
    make_venue(client, "v1")
    made = sorted(make_zone(client, f"z{n}", "v1")["id"] for n in (5, 3, 9, 1, 7, 2))
    for limit in (1, 4, 6):
        assert ids(walk_offset(client, url("zones"), limit)) == made
        assert ids(walk_offset(client, url("zones"), limit, venue_id="v1")) == made


def test_list_zones_rejects_unknown_kind(client: TestClient) -> None:
    assert_422_at(client.get(url("zones"), params={"kind": "cellar"}), "query", "kind")


def test_patch_zone_changes_only_what_is_sent(client: TestClient) -> None:
    make_venue(client, "v1")
    before = make_zone(client, "pool", "v1", capacity=10)
    r = client.patch(url("zones", "pool"), json={"capacity": 25, "anti_passback": True})
    assert r.status_code == 200, r.text
    expected = {**before, "capacity": 25, "anti_passback": True}
    assert r.json() == expected
    assert client.get(url("zones", "pool")).json() == expected
    r = client.patch(url("zones", "pool"), json={"name": "Big pool", "occupancy": 3})
    assert r.status_code == 200, r.text
    assert client.get(url("zones", "pool")).json() == {**expected, "name": "Big pool",
                                                        "occupancy": 3}


def test_patch_zone_can_clear_capacity(client: TestClient) -> None:
    make_venue(client, "v1")
    make_zone(client, "pool", "v1", capacity=10)
    r = client.patch(url("zones", "pool"), json={"capacity": None})
    assert r.status_code == 200, r.text
    assert client.get(url("zones", "pool")).json()["capacity"] is None


def test_patch_unknown_zone_is_404(client: TestClient) -> None:
    assert_404(client.patch(url("zones", "ghost"), json={"name": "x"}), "ghost")


@pytest.mark.parametrize(("body", "loc"), [
    ({"capacity": -1}, ("body", "capacity")),
    ({"occupancy": -1}, ("body", "occupancy")),
    ({"name": ""}, ("body", "name")),
    ({"kind": "room"}, ("body", "kind")),          # kind is fixed at creation
    ({"venue_id": "elsewhere"}, ("body", "venue_id")),
    ({"anti_passback": "sometimes"}, ("body", "anti_passback")),
])
def test_patch_zone_rejects_invalid_bodies(client: TestClient, body: dict[str, Any],
                                           loc: tuple[str, ...]) -> None:
    make_venue(client, "v1")
    before = make_zone(client, "pool", "v1", capacity=10)
    assert_422_at(client.patch(url("zones", "pool"), json=body), *loc)
    assert client.get(url("zones", "pool")).json() == before


def test_duplicate_zone_is_409(client: TestClient) -> None:
    make_venue(client, "v1")
    make_venue(client, "v2")
    first = make_zone(client, "gate-area", "v1")
    r = client.post(url("zones"), json={"id": "gate-area", "venue_id": "v2", "name": "Other"})
    assert r.status_code == 409, r.text
    assert client.get(url("zones", "gate-area")).json() == first


@pytest.mark.parametrize(("extra", "loc"), [
    ({"kind": "cellar"}, ("body", "kind")),
    ({"capacity": -5}, ("body", "capacity")),
    ({"capacity": 2.5}, ("body", "capacity")),
    ({"occupancy": 3}, ("body", "occupancy")),  # not settable at creation
    ({"id": "bad id"}, ("body", "id")),
])
def test_create_zone_rejects_invalid_bodies(client: TestClient, extra: dict[str, Any],
                                            loc: tuple[str, ...]) -> None:
    make_venue(client, "v1")
    body = {"id": "z", "venue_id": "v1", "name": "Z", **extra}
    assert_422_at(client.post(url("zones"), json=body), *loc)
    assert client.get(url("zones")).json() == []


# ------------------------------------------------------------------ devices


def test_create_device_answers_201_without_internal_fields(client: TestClient) -> None:
    make_venue(client, "v1")
    make_zone(client, "hall", "v1")
    r = client.post(url("devices"), json={"id": "gate-1", "venue_id": "v1", "kind": "gate",
                                          "name": "Gate 1", "zone_id": "hall",
                                          "direction": "in"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == DEVICE_KEYS
    assert not INTERNAL["devices"] & set(body)
    assert body == {"id": "gate-1", "venue_id": "v1", "kind": "gate", "name": "Gate 1",
                    "zone_id": "hall", "direction": "in", "merchant_id": None, "enabled": True,
                    "allow_plain_uid": None, "online": False, "last_seen": None,
                    "battery_pct": None, "firmware": None}
    assert client.get(url("devices", "gate-1")).json() == body


def test_device_in_missing_venue_is_422_naming_venue_id(client: TestClient) -> None:
    r = client.post(url("devices"), json={"id": "d", "venue_id": "nope", "kind": "pos",
                                          "name": "D"})
    assert_reference_422(r, "venue_id", "nope")


def test_device_in_missing_zone_is_422_naming_zone_id(client: TestClient) -> None:
    make_venue(client, "v1")
    r = client.post(url("devices"), json={"id": "d", "venue_id": "v1", "kind": "gate",
                                          "name": "D", "zone_id": "void"})
    assert_reference_422(r, "zone_id", "void")
    assert_404(client.get(url("devices", "d")), "d")


def test_device_of_a_missing_merchant_is_422_naming_merchant_id(client: TestClient) -> None:
    make_venue(client, "v1")
    r = client.post(url("devices"), json={"id": "till", "venue_id": "v1", "kind": "pos",
                                          "name": "Till", "merchant_id": "no-shop"})
    assert_reference_422(r, "merchant_id", "no-shop")
    assert client.get(url("devices")).json() == []


def test_device_of_a_merchant(client: TestClient) -> None:
    make_venue(client, "v1")
    for mid in ("deli", "kiosk"):
        r = client.post(url("merchants"), json={"id": mid, "venue_id": "v1", "name": mid.title(),
                                                "currency": "USD"})
        assert r.status_code == 201, r.text
    till = make_device(client, "till", "v1", kind="pos", merchant_id="deli")
    assert till["merchant_id"] == "deli"
    r = client.patch(url("devices", "till"), json={"merchant_id": "kiosk"})
    assert r.status_code == 200, r.text
    assert client.get(url("devices", "till")).json() == {**till, "merchant_id": "kiosk"}
    assert_reference_422(client.patch(url("devices", "till"), json={"merchant_id": "gone"}),
                         "merchant_id", "gone")
    assert client.get(url("devices", "till")).json()["merchant_id"] == "kiosk"


def test_device_in_a_zone_of_another_venue_is_422(client: TestClient) -> None:
    make_venue(client, "v1")
    make_venue(client, "v2")
    make_zone(client, "far", "v2")
    r = client.post(url("devices"), json={"id": "d", "venue_id": "v1", "kind": "gate",
                                          "name": "D", "zone_id": "far"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("zone_id:") and "'far'" in r.json()["detail"]
    assert client.get(url("devices")).json() == []


def test_get_unknown_device_is_404_naming_it(client: TestClient) -> None:
    assert_404(client.get(url("devices", "ghost-reader")), "ghost-reader")


def test_list_devices_filters_by_venue_kind_and_zone(demo: TestClient) -> None:
    make_venue(demo, "v2")
    make_zone(demo, "v2-hall", "v2")
    make_device(demo, "v2-gate", "v2", zone_id="v2-hall")
    make_device(demo, "v2-pos", "v2", kind="pos")
    everything = walk_offset(demo, url("devices"), 500)
    assert {d["venue_id"] for d in everything} == {VENUE_ID, STRICT_VENUE_ID, "v2"}
    cases: list[dict[str, str]] = [
        {"venue_id": "v2"}, {"venue_id": VENUE_ID}, {"kind": "pos"}, {"kind": "door_lock"},
        {"zone_id": "park"}, {"zone_id": "v2-hall"}, {"venue_id": "v2", "kind": "pos"},
        {"venue_id": VENUE_ID, "kind": "gate", "zone_id": "water-park"},
    ]
    for params in cases:
        expected = [d for d in everything if all(d[k] == v for k, v in params.items())]
        assert expected and len(expected) < len(everything), params
        assert walk_offset(demo, url("devices"), 500, **params) == expected, params
    assert demo.get(url("devices"), params={"zone_id": "no-zone"}).json() == []


def test_list_devices_pages(demo: TestClient) -> None:
    everything = walk_offset(demo, url("devices"), 500)
    assert ids(everything) == sorted(ids(everything)) and len(everything) > 7
    for limit in (1, 7, len(everything), len(everything) + 1):
        assert walk_offset(demo, url("devices"), limit) == everything
    gates = [d for d in everything if d["kind"] == "gate"]
    assert walk_offset(demo, url("devices"), 2, kind="gate") == gates


@pytest.mark.parametrize(("params", "name"), [({"kind": "toaster"}, "kind")])
def test_list_devices_rejects_bad_enum(client: TestClient, params: dict[str, str],
                                       name: str) -> None:
    assert_422_at(client.get(url("devices"), params=params), "query", name)


def test_patch_device(demo: TestClient) -> None:
    before = demo.get(url("devices", "gate-park-in-1")).json()
    r = demo.patch(url("devices", "gate-park-in-1"),
                   json={"name": "North gate", "enabled": False, "zone_id": "water-park",
                         "direction": "out"})
    assert r.status_code == 200, r.text
    expected = {**before, "name": "North gate", "enabled": False, "zone_id": "water-park",
                "direction": "out"}
    assert r.json() == expected
    assert demo.get(url("devices", "gate-park-in-1")).json() == expected


def test_patch_device_zone_to_null_unassigns_it(demo: TestClient) -> None:
    r = demo.patch(url("devices", "lock-101"), json={"zone_id": None})
    assert r.status_code == 200, r.text
    assert demo.get(url("devices", "lock-101")).json()["zone_id"] is None
    assert "lock-101" not in ids(demo.get(url("devices"), params={"zone_id": "room-101"}).json())


def test_patch_device_to_missing_zone_is_422(demo: TestClient) -> None:
    before = demo.get(url("devices", "gate-park-in-1")).json()
    assert_reference_422(demo.patch(url("devices", "gate-park-in-1"),
                                    json={"zone_id": "moon"}), "zone_id", "moon")
    assert demo.get(url("devices", "gate-park-in-1")).json() == before


def test_patch_device_to_a_zone_of_another_venue_is_422(demo: TestClient) -> None:
    make_venue(demo, "v2")
    make_zone(demo, "v2-hall", "v2")
    r = demo.patch(url("devices", "gate-park-in-1"), json={"zone_id": "v2-hall"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("zone_id:")
    assert demo.get(url("devices", "gate-park-in-1")).json()["zone_id"] == "park"


@pytest.mark.parametrize(("body", "loc"), [
    ({"direction": "sideways"}, ("body", "direction")),
    ({"enabled": "maybe"}, ("body", "enabled")),
    ({"online": True}, ("body", "online")),          # health is the device's to report
    ({"battery_pct": 50}, ("body", "battery_pct")),
    ({"kind": "pos"}, ("body", "kind")),
])
def test_patch_device_rejects_invalid_bodies(demo: TestClient, body: dict[str, Any],
                                             loc: tuple[str, ...]) -> None:
    before = demo.get(url("devices", "pos-cafe-1")).json()
    assert_422_at(demo.patch(url("devices", "pos-cafe-1"), json=body), *loc)
    assert demo.get(url("devices", "pos-cafe-1")).json() == before


def test_patch_unknown_device_is_404(client: TestClient) -> None:
    assert_404(client.patch(url("devices", "nobody"), json={"enabled": False}), "nobody")


def test_duplicate_device_is_409(demo: TestClient) -> None:
    before = demo.get(url("devices", "pos-cafe-1")).json()
    r = demo.post(url("devices"), json={"id": "pos-cafe-1", "venue_id": VENUE_ID,
                                        "kind": "kiosk", "name": "Impostor"})
    assert r.status_code == 409, r.text
    assert demo.get(url("devices", "pos-cafe-1")).json() == before


@pytest.mark.parametrize(("extra", "loc"), [
    ({"kind": "toaster"}, ("body", "kind")),
    ({"kind": None}, ("body", "kind")),
    ({"direction": "up"}, ("body", "direction")),
    ({"firmware": "1.0"}, ("body", "firmware")),
    ({"id": "a" * 65}, ("body", "id")),
    ({"id": "#gate"}, ("body", "id")),
])
def test_create_device_rejects_invalid_bodies(client: TestClient, extra: dict[str, Any],
                                              loc: tuple[str, ...]) -> None:
    make_venue(client, "v1")
    body = {"id": "d", "venue_id": "v1", "kind": "gate", "name": "D", **extra}
    assert_422_at(client.post(url("devices"), json=body), *loc)
    assert client.get(url("devices")).json() == []


def test_device_health_from_a_heartbeat_shows_in_the_api(demo: TestClient,
                                                         engine: Engine) -> None:
    seen = datetime(2031, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    beat = HeartbeatEvent(event_id="hb-1", ts=seen, battery_pct=37, firmware="2.4.1")
    topic = device_topic(VENUE_ID, "lock-104", Channel.EVENTS)
    assert ingest.feed(engine, topic, encode(beat), seen).error is None
    got = demo.get(url("devices", "lock-104")).json()
    assert (got["online"], got["battery_pct"], got["firmware"]) == (True, 37, "2.4.1")
    assert ts(got["last_seen"]) == seen
    assert demo.get(url("devices", "lock-105")).json()["last_seen"] is None


# ------------------------------------------------------------------- guests


def test_create_guest_generates_an_id(client: TestClient) -> None:
    before = utcnow()
    r = client.post(url("guests"), json={"name": "Zoë Ångström", "display_name": "Zoë",
                                         "email": "zoe@example.org"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == GUEST_KEYS
    assert (body["name"], body["display_name"], body["email"]) == (
        "Zoë Ångström", "Zoë", "zoe@example.org")
    assert len(body["id"]) == 32 and int(body["id"], 16) >= 0
    assert before <= ts(body["created_at"]) <= utcnow()
    other = make_guest(client, "Zoë Ångström")
    assert other["id"] != body["id"]
    assert client.get(url("guests", body["id"])).json() == body


def test_create_guest_with_own_id(client: TestClient) -> None:
    body = make_guest(client, "Ola", id="crm-4711")
    assert body["id"] == "crm-4711"
    assert (body["display_name"], body["email"]) == (None, None)
    assert client.get(url("guests", "crm-4711")).json() == body


def test_duplicate_guest_id_is_409(client: TestClient) -> None:
    first = make_guest(client, "First", id="g1")
    r = client.post(url("guests"), json={"id": "g1", "name": "Second"})
    assert r.status_code == 409, r.text
    assert client.get(url("guests", "g1")).json() == first


def test_get_unknown_guest_is_404_naming_it(client: TestClient) -> None:
    assert_404(client.get(url("guests", "mr-nobody")), "mr-nobody")


@pytest.mark.parametrize(("extra", "loc"), [
    ({"email": "not-an-email"}, ("body", "email")),
    ({"email": "two@@example.com"}, ("body", "email")),
    ({"email": "sp ace@example.com"}, ("body", "email")),
    ({"name": ""}, ("body", "name")),
    ({"display_name": ""}, ("body", "display_name")),
    ({"display_name": "d" * 81}, ("body", "display_name")),
    ({"id": "with space"}, ("body", "id")),
    ({"vip": True}, ("body", "vip")),
    ({"created_at": "2020-01-01T00:00:00Z"}, ("body", "created_at")),
])
def test_create_guest_rejects_invalid_bodies(client: TestClient, extra: dict[str, Any],
                                             loc: tuple[str, ...]) -> None:
    assert_422_at(client.post(url("guests"), json={"name": "Valid Name", **extra}), *loc)
    assert client.get(url("guests")).json() == []


def test_list_guests_searches_name_display_name_and_email(client: TestClient) -> None:
    made = [make_guest(client, "Alice Wonder", id="g-a", display_name="Ally",
                       email="alice@wonder.land"),
            make_guest(client, "Bob Builder", id="g-b", email="bob@site.example"),
            make_guest(client, "Carol Singer", id="g-c", display_name="Caro")]
    everything = client.get(url("guests")).json()
    assert everything == sorted(made, key=lambda g: g["id"])

    def matching(q: str) -> list[dict[str, Any]]:
        return [g for g in everything
                if any(q.lower() in (g[f] or "").lower() for f in ("name", "display_name",
                                                                   "email"))]

    for q in ("alice", "WONDER", "ally", "site.EXAMPLE", "caro", "er", "b"):
        expected = matching(q)
        assert expected, q
        assert client.get(url("guests"), params={"q": q}).json() == expected, q
    assert client.get(url("guests"), params={"q": "zzz"}).json() == []


def test_list_guests_pages(demo: TestClient) -> None:
    everything = walk_offset(demo, url("guests"), 500)
    assert len(everything) >= 20 and ids(everything) == sorted(ids(everything))
    for limit in (1, 3, 20):
        assert walk_offset(demo, url("guests"), limit) == everything
    searched = [g for g in everything if any("ka" in (g[f] or "").lower()
                                             for f in ("name", "display_name", "email"))]
    assert 1 < len(searched) < len(everything)
    assert walk_offset(demo, url("guests"), 1, q="KA") == searched


def test_patch_guest(client: TestClient) -> None:
    before = make_guest(client, "Dee", id="g1", email="dee@x.example")
    r = client.patch(url("guests", "g1"), json={"display_name": "D", "email": None})
    assert r.status_code == 200, r.text
    expected = {**before, "display_name": "D", "email": None}
    assert r.json() == expected
    assert client.get(url("guests", "g1")).json() == expected


@pytest.mark.parametrize(("body", "loc"), [
    ({"email": "nope"}, ("body", "email")), ({"id": "g2"}, ("body", "id")),
    ({"name": ""}, ("body", "name")),
])
def test_patch_guest_rejects_invalid_bodies(client: TestClient, body: dict[str, Any],
                                            loc: tuple[str, ...]) -> None:
    before = make_guest(client, "Dee", id="g1")
    assert_422_at(client.patch(url("guests", "g1"), json=body), *loc)
    assert client.get(url("guests", "g1")).json() == before


def test_patch_unknown_guest_is_404(client: TestClient) -> None:
    assert_404(client.patch(url("guests", "ghost"), json={"name": "x"}), "ghost")


def test_guest_credentials_and_entitlements(demo: TestClient) -> None:
    guest = make_guest(demo, "Eve", id="eve")
    creds = [make_credential(demo, "eve", label=f"key {n}") for n in range(3)]
    make_credential(demo, "guest-01")
    r = demo.get(url("guests", "eve", "credentials"))
    assert r.status_code == 200
    assert r.json() == sorted(creds, key=lambda c: c["id"])
    assert walk_offset(demo, url("guests", "eve", "credentials"), 2) == r.json()
    ents = [make_entitlement(demo, "eve", ["park"]), make_entitlement(demo, "eve", ["room-101"],
                                                                      kind="room")]
    r = demo.get(url("guests", guest["id"], "entitlements"))
    assert r.status_code == 200
    assert r.json() == sorted(ents, key=lambda e: e["id"])
    assert walk_offset(demo, url("guests", "eve", "entitlements"), 1) == r.json()


def test_guest_subresources_of_unknown_guest_are_404(client: TestClient) -> None:
    for sub in ("credentials", "entitlements"):
        assert_404(client.get(url("guests", "ghost", sub)), "ghost")


# -------------------------------------------------------------- credentials


def test_issue_wristband_stores_the_uid_upper_case(client: TestClient) -> None:
    make_guest(client, "Gil", id="gil")
    before = utcnow()
    r = client.post(url("credentials"), json={"guest_id": "gil", "kind": "wristband",
                                              "identifier": "04ab12cd34ef56", "label": "blue"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == CREDENTIAL_KEYS
    assert (body["guest_id"], body["kind"], body["identifier"], body["status"],
            body["label"]) == ("gil", "wristband", "04AB12CD34EF56", "active", "blue")
    assert (body["sun"], body["secure"]) == (False, False)  # a plain-UID band is flagged
    assert before <= ts(body["created_at"]) <= utcnow()
    assert before <= ts(body["status_changed_at"]) <= utcnow()
    assert client.get(url("credentials", body["id"])).json() == body


def test_issue_phone_key_generates_an_identifier(client: TestClient) -> None:
    make_guest(client, "Gil", id="gil")
    a, b = make_credential(client, "gil"), make_credential(client, "gil")
    for cred in (a, b):
        assert cred["identifier"].startswith("pk-") and len(cred["identifier"]) == 27
        int(cred["identifier"][3:], 16)
    assert a["identifier"] != b["identifier"] and a["id"] != b["id"]
    own = make_credential(client, "gil", identifier="my-key:1")
    assert own["identifier"] == "my-key:1"


def test_credential_for_missing_guest_is_422_naming_guest_id(client: TestClient) -> None:
    r = client.post(url("credentials"), json={"guest_id": "phantom", "kind": "phone_key"})
    assert_reference_422(r, "guest_id", "phantom")
    assert client.get(url("credentials")).json() == []


@pytest.mark.parametrize("identifier", [None, "", "04A1", "04A1B2C3D", "04A1B2C3G1",
                                        "0x04A1B2C3", "04A1B2C3D4E5F60718293A", "04 A1 B2 C3",
                                        "04a1-b2c3"])
def test_wristband_needs_a_hex_uid(client: TestClient, identifier: str | None) -> None:
    make_guest(client, "Gil", id="gil")
    body: dict[str, Any] = {"guest_id": "gil", "kind": "wristband"}
    if identifier is not None:
        body["identifier"] = identifier
    r = client.post(url("credentials"), json=body)
    assert r.status_code == 422, r.text
    assert "identifier" in messages(r) or ("body", "identifier") in locs(r)
    assert client.get(url("credentials")).json() == []


@pytest.mark.parametrize(("extra", "loc"), [
    ({"kind": "retina"}, ("body", "kind")),
    ({"status": "lost"}, ("body", "status")),
    ({"identifier": "k" * 129}, ("body", "identifier")),
    ({"label": "l" * 81}, ("body", "label")),
    ({"id": "my-own-id"}, ("body", "id")),
])
def test_issue_credential_rejects_invalid_bodies(client: TestClient, extra: dict[str, Any],
                                                 loc: tuple[str, ...]) -> None:
    make_guest(client, "Gil", id="gil")
    body = {"guest_id": "gil", "kind": "phone_key", **extra}
    assert_422_at(client.post(url("credentials"), json=body), *loc)
    assert client.get(url("credentials")).json() == []


def test_duplicate_identifier_is_409(client: TestClient) -> None:
    make_guest(client, "Gil", id="gil")
    make_guest(client, "Hal", id="hal")
    band = make_credential(client, "gil", kind="wristband", identifier="04AABBCCDD")
    # The same UID in lower case is the same band.
    r = client.post(url("credentials"), json={"guest_id": "hal", "kind": "wristband",
                                              "identifier": "04aabbccdd"})
    assert r.status_code == 409, r.text
    key = make_credential(client, "gil", identifier="shared-key")
    r = client.post(url("credentials"), json={"guest_id": "hal", "kind": "phone_key",
                                              "identifier": "shared-key"})
    assert r.status_code == 409, r.text
    assert client.get(url("credentials")).json() == sorted([band, key], key=lambda c: c["id"])


def test_same_identifier_of_another_kind_is_fine(client: TestClient) -> None:
    make_guest(client, "Gil", id="gil")
    make_credential(client, "gil", kind="wristband", identifier="04AABBCCDD")
    assert make_credential(client, "gil", identifier="04AABBCCDD")["kind"] == "phone_key"


def test_get_unknown_credential_is_404_naming_it(client: TestClient) -> None:
    assert_404(client.get(url("credentials", "cred-x")), "cred-x")


def test_list_credentials_filters(demo: TestClient) -> None:
    everything = walk_offset(demo, url("credentials"), 500)
    uid = wristband_uid(3)
    cases: list[dict[str, str]] = [
        {"guest_id": "guest-03"}, {"kind": "wristband"}, {"kind": "phone_key"},
        {"identifier": uid}, {"identifier": "pk-guest-07"},
        {"guest_id": "guest-05", "kind": "phone_key"},
    ]
    for params in cases:
        expected = [c for c in everything if all(c[k] == v for k, v in params.items())]
        assert expected and len(expected) < len(everything), params
        assert walk_offset(demo, url("credentials"), 500, **params) == expected, params
    # With kind=wristband a lower-case UID finds the band (UIDs are stored upper-case).
    found = demo.get(url("credentials"), params={"kind": "wristband",
                                                 "identifier": uid.lower()}).json()
    assert found == [c for c in everything if c["identifier"] == uid]
    assert demo.get(url("credentials"), params={"guest_id": "nobody"}).json() == []
    assert_422_at(demo.get(url("credentials"), params={"kind": "retina"}), "query", "kind")


def test_list_credentials_pages(demo: TestClient) -> None:
    everything = walk_offset(demo, url("credentials"), 500)
    assert len(everything) >= 40
    for limit in (1, 7, 40):
        assert walk_offset(demo, url("credentials"), limit) == everything
    bands = [c for c in everything if c["kind"] == "wristband"]
    assert walk_offset(demo, url("credentials"), 6, kind="wristband") == bands


def test_reporting_a_credential_lost_stamps_the_change(demo: TestClient) -> None:
    before = demo.get(url("credentials", "band-guest-04")).json()
    assert before["status"] == "active"
    r = demo.patch(url("credentials", "band-guest-04"), json={"status": "lost"})
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["status"] == "lost"
    assert ts(after["status_changed_at"]) > ts(before["status_changed_at"])
    assert {k: v for k, v in after.items() if k not in ("status", "status_changed_at")} == {
        k: v for k, v in before.items() if k not in ("status", "status_changed_at")}
    assert demo.get(url("credentials", "band-guest-04")).json() == after


def test_same_status_or_label_only_keeps_status_changed_at(demo: TestClient) -> None:
    before = demo.get(url("credentials", "phone-guest-02")).json()
    r = demo.patch(url("credentials", "phone-guest-02"), json={"status": "active"})
    assert r.status_code == 200, r.text
    assert r.json() == before
    r = demo.patch(url("credentials", "phone-guest-02"), json={"label": "old phone"})
    assert r.status_code == 200, r.text
    assert r.json() == {**before, "label": "old phone"}


def test_each_status_change_is_stamped(demo: TestClient) -> None:
    last = ts(demo.get(url("credentials", "phone-guest-09")).json()["status_changed_at"])
    for status in ("suspended", "revoked", "active", "lost"):
        r = demo.patch(url("credentials", "phone-guest-09"), json={"status": status})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
        stamped = ts(r.json()["status_changed_at"])
        assert stamped > last
        last = stamped


def test_lost_wristband_is_refused_at_the_gate(demo: TestClient, engine: Engine,
                                               day: datetime) -> None:
    now = day + timedelta(hours=10)
    uid = wristband_uid(6)
    first = tap(engine, "gate-park-in-1", now, "before-lost", uid=uid)
    assert first.decision is not None and first.decision.outcome == "allow"
    assert demo.patch(url("credentials", "band-guest-06"),
                      json={"status": "lost"}).status_code == 200
    out = tap(engine, "gate-park-out-1", now + timedelta(minutes=1), "after-lost", uid=uid)
    assert out.decision is not None
    assert (out.decision.outcome, out.decision.reason) == ("deny", "credential_lost")
    [event] = demo.get(url("events"), params={"reason": "credential_lost"}).json()["items"]
    assert (event["event_id"], event["credential_id"], event["guest_id"]) == (
        "after-lost", "band-guest-06", "guest-06")
    # The phone key of the same guest still works.
    phone = tap(engine, "gate-park-out-1", now + timedelta(minutes=2), "phone-out",
                key_id="pk-guest-06")
    assert phone.decision is not None and phone.decision.outcome == "allow"


@pytest.mark.parametrize(("body", "loc"), [
    ({"status": "misplaced"}, ("body", "status")),
    ({"identifier": "04AABBCCDD"}, ("body", "identifier")),
    ({"guest_id": "guest-02"}, ("body", "guest_id")),
    ({"label": "x" * 81}, ("body", "label")),
])
def test_patch_credential_rejects_invalid_bodies(demo: TestClient, body: dict[str, Any],
                                                 loc: tuple[str, ...]) -> None:
    before = demo.get(url("credentials", "band-guest-01")).json()
    assert_422_at(demo.patch(url("credentials", "band-guest-01"), json=body), *loc)
    assert demo.get(url("credentials", "band-guest-01")).json() == before


def test_patch_unknown_credential_is_404(client: TestClient) -> None:
    assert_404(client.patch(url("credentials", "c-x"), json={"status": "lost"}), "c-x")


# ------------------------------------------------------------- entitlements


def test_grant_ticket_answers_201_without_internal_fields(demo: TestClient) -> None:
    start = datetime(2030, 7, 1, 8, tzinfo=timezone(timedelta(hours=2)))
    body = entitlement_body("guest-05", ["park", "water-park"], start=start, days=1)
    r = demo.post(url("entitlements"), json=body)
    assert r.status_code == 201, r.text
    got = r.json()
    assert set(got) == ENTITLEMENT_KEYS
    assert not INTERNAL["entitlements"] & set(got)
    assert (got["guest_id"], got["kind"], got["zone_ids"], got["schedule"], got["status"]) == (
        "guest-05", "ticket", ["park", "water-park"], None, "active")
    assert ts(got["valid_from"]) == start
    assert ts(got["valid_until"]) == start + timedelta(days=1)
    stored = demo.get(url("entitlements", got["id"])).json()
    assert {k: stored[k] for k in ("id", "guest_id", "kind", "zone_ids", "schedule", "status")} \
        == {k: got[k] for k in ("id", "guest_id", "kind", "zone_ids", "schedule", "status")}
    assert ts(stored["valid_from"]) == start and ts(stored["valid_until"]) == ts(
        got["valid_until"])


def test_grant_staff_entitlement_with_a_schedule(demo: TestClient) -> None:
    schedule = [{"days": [0, 1, 2, 3, 4], "start": "07:30:00", "end": "16:00:00"},
                {"days": [5], "start": "10:00:00", "end": "12:15:00"}]
    got = make_entitlement(demo, "guest-07", ["park", "room-102"], kind="staff",
                           schedule=schedule, days=365)
    assert got["schedule"] == schedule and got["kind"] == "staff"
    assert demo.get(url("entitlements", got["id"])).json()["schedule"] == schedule


def test_entitlement_for_missing_guest_is_422(demo: TestClient) -> None:
    r = demo.post(url("entitlements"), json=entitlement_body("ghost", ["park"]))
    assert_reference_422(r, "guest_id", "ghost")


def test_entitlement_for_missing_zone_is_422(demo: TestClient) -> None:
    before = walk_offset(demo, url("entitlements"), 500)
    r = demo.post(url("entitlements"), json=entitlement_body("guest-01", ["park", "moon"]))
    assert_reference_422(r, "zone_ids", "moon")
    assert walk_offset(demo, url("entitlements"), 500) == before


@pytest.mark.parametrize(("change", "words"), [
    ({"valid_until": "2030-05-01T09:00:00+00:00"}, "valid_until"),          # equal
    ({"valid_until": "2030-05-01T10:59:59+02:00"}, "valid_until"),          # 1 s before
    ({"valid_until": "2029-05-01T09:00:00Z"}, "valid_until"),
    ({"schedule": [{"days": [0], "start": "08:00", "end": "17:00"}]}, "staff"),
    ({"schedule": [{"days": [0], "start": "17:00", "end": "08:00"}], "kind": "staff"},
     "end after"),
    ({"valid_from": "2030-05-01T09:00:00"}, "timezone"),                    # naive
])
def test_grant_rejects_inconsistent_bodies(demo: TestClient, change: dict[str, Any],
                                           words: str) -> None:
    body = {**entitlement_body("guest-01", ["park"]), **change}
    r = demo.post(url("entitlements"), json=body)
    assert r.status_code == 422, r.text
    assert words in messages(r), r.text
    assert demo.get(url("entitlements"), params={"guest_id": "guest-01"}).json() == [
        e for e in walk_offset(demo, url("entitlements"), 500) if e["guest_id"] == "guest-01"]


@pytest.mark.parametrize(("change", "loc"), [
    ({"kind": "season_pass"}, ("body", "kind")),
    ({"zone_ids": []}, ("body", "zone_ids")),
    ({"zone_ids": "park"}, ("body", "zone_ids")),
    ({"status": "cancelled"}, ("body", "status")),
    ({"note": "vip"}, ("body", "note")),
    ({"valid_from": "tomorrow"}, ("body", "valid_from")),
    ({"kind": "staff", "schedule": [{"days": [7], "start": "08:00", "end": "09:00"}]},
     ("body", "schedule", 0, "days", 0)),
    ({"kind": "staff", "schedule": [{"days": [], "start": "08:00", "end": "09:00"}]},
     ("body", "schedule", 0, "days")),
    ({"kind": "staff", "schedule": [{"days": [1], "start": "08:00", "end": "09:00",
                                     "tz": "UTC"}]}, ("body", "schedule", 0, "tz")),
])
def test_grant_rejects_invalid_bodies(demo: TestClient, change: dict[str, Any],
                                      loc: tuple[Any, ...]) -> None:
    body = {**entitlement_body("guest-01", ["park"]), **change}
    assert_422_at(demo.post(url("entitlements"), json=body), *loc)


def test_get_unknown_entitlement_is_404_naming_it(client: TestClient) -> None:
    assert_404(client.get(url("entitlements", "ent-404")), "ent-404")


def test_list_entitlements_filters_and_pages(demo: TestClient) -> None:
    make_entitlement(demo, "guest-03", ["park"], kind="staff", days=30)
    everything = walk_offset(demo, url("entitlements"), 500)
    for params in ({"guest_id": "guest-03"}, {"kind": "staff"}, {"kind": "room"},
                   {"guest_id": "guest-03", "kind": "ticket"}):
        expected = [e for e in everything if all(e[k] == v for k, v in params.items())]
        assert expected and len(expected) < len(everything), params
        assert walk_offset(demo, url("entitlements"), 500, **params) == expected
        assert walk_offset(demo, url("entitlements"), 1, **params) == expected
    for limit in (1, 9, 40):
        assert walk_offset(demo, url("entitlements"), limit) == everything
    assert_422_at(demo.get(url("entitlements"), params={"kind": "vip"}), "query", "kind")


def test_patch_entitlement_dates_and_status(demo: TestClient) -> None:
    ent = make_entitlement(demo, "guest-02", ["park"])
    new_until = ts(ent["valid_until"]) + timedelta(days=5)
    r = demo.patch(url("entitlements", ent["id"]),
                   json={"valid_until": iso(new_until), "status": "cancelled"})
    assert r.status_code == 200, r.text
    stored = demo.get(url("entitlements", ent["id"])).json()
    assert ts(stored["valid_until"]) == new_until
    assert ts(stored["valid_from"]) == ts(ent["valid_from"])
    assert stored["status"] == "cancelled"
    r = demo.patch(url("entitlements", ent["id"]), json={"status": "active"})
    assert r.status_code == 200 and r.json()["status"] == "active"


@pytest.mark.parametrize("body", [
    {"valid_until": "2030-05-01T09:00:00Z"},                 # = the stored valid_from
    {"valid_from": "2030-05-03T09:00:01Z"},                  # after the stored valid_until
    {"valid_from": "2031-01-02T00:00:00Z", "valid_until": "2031-01-01T00:00:00Z"},
])
def test_patch_entitlement_ending_before_its_start_is_422(demo: TestClient,
                                                          body: dict[str, str]) -> None:
    ent = make_entitlement(demo, "guest-02", ["park"], start=datetime(2030, 5, 1, 9, tzinfo=UTC))
    r = demo.patch(url("entitlements", ent["id"]), json=body)
    assert r.status_code == 422, r.text
    assert "valid_until" in messages(r)
    stored = demo.get(url("entitlements", ent["id"])).json()
    assert (ts(stored["valid_from"]), ts(stored["valid_until"])) == (
        ts(ent["valid_from"]), ts(ent["valid_until"]))


@pytest.mark.parametrize(("body", "loc"), [
    ({"status": "paused"}, ("body", "status")),
    ({"valid_until": "2030-01-01T00:00:00"}, ("body", "valid_until")),
    ({"zone_ids": ["park"]}, ("body", "zone_ids")),
    ({"schedule": None}, ("body", "schedule")),
])
def test_patch_entitlement_rejects_invalid_bodies(demo: TestClient, body: dict[str, Any],
                                                  loc: tuple[str, ...]) -> None:
    before = demo.get(url("entitlements", "ticket-guest-01")).json()
    assert_422_at(demo.patch(url("entitlements", "ticket-guest-01"), json=body), *loc)
    assert demo.get(url("entitlements", "ticket-guest-01")).json() == before


@pytest.mark.parametrize(("resource", "key", "field"), [
    ("zones", "park", "name"), ("zones", "park", "anti_passback"),
    ("zones", "park", "occupancy"), ("devices", "gate-park-in-1", "name"),
    ("devices", "gate-park-in-1", "enabled"), ("guests", "guest-01", "name"),
    ("credentials", "band-guest-01", "status"), ("entitlements", "ticket-guest-01", "status"),
    ("entitlements", "ticket-guest-01", "valid_from"),
    ("entitlements", "ticket-guest-01", "valid_until"),
])
def test_patch_null_into_a_required_field_is_422(demo: TestClient, resource: str, key: str,
                                                 field: str) -> None:
    before = demo.get(url(resource, key)).json()
    r = demo.patch(url(resource, key), json={field: None})
    assert r.status_code == 422, r.text
    assert field in messages(r)
    assert demo.get(url(resource, key)).json() == before


def test_cancel_entitlement_keeps_it_cancelled(demo: TestClient, engine: Engine,
                                               day: datetime) -> None:
    before = demo.get(url("entitlements", "ticket-guest-08")).json()
    r = demo.delete(url("entitlements", "ticket-guest-08"))
    assert r.status_code == 200, r.text
    assert r.json() == {**before, "status": "cancelled"}
    assert demo.get(url("entitlements", "ticket-guest-08")).json() == r.json()
    # A cancelled ticket no longer opens the gate.
    out = tap(engine, "gate-park-in-1", day + timedelta(hours=9), "cancelled-t",
              uid=wristband_uid(8))
    assert out.decision is not None
    assert (out.decision.outcome, out.decision.reason) == ("deny", "wrong_zone")  # only the stay


def test_unknown_entitlement_patch_and_delete_are_404(client: TestClient) -> None:
    assert_404(client.patch(url("entitlements", "e-1"), json={"status": "active"}), "e-1")
    assert_404(client.delete(url("entitlements", "e-2")), "e-2")


# ------------------------------------------------------------------- events


TapSpec = tuple[str, str, dict[str, str]]

# (device, event id, credential) in the order they are fed; received one minute apart.
JOURNEY: list[TapSpec] = [
    ("gate-park-in-1", "t0-in", {"uid": wristband_uid(1)}),
    ("gate-park-in-2", "t1-again", {"uid": wristband_uid(1)}),       # anti-passback
    ("gate-park-in-1", "t2-phone", {"key_id": "pk-guest-02"}),
    ("gate-water-in-1", "t3-water", {"uid": wristband_uid(2)}),      # wrong zone
    ("gate-park-in-2", "t4-stranger", {"uid": "DEADBEEF01"}),         # unknown band
    ("lock-101", "t5-room", {"uid": wristband_uid(1)}),
    ("gate-park-out-1", "t6-out", {"uid": wristband_uid(1)}),
    ("pos-cafe-1", "t7-pos", {"key_id": "pk-guest-03"}),              # not a reader
]


@pytest.fixture
def journey(demo: TestClient, engine: Engine, day: datetime) -> list[dict[str, Any]]:
    """Feed JOURNEY through the bridge's logic; return the events, newest first, via the API."""
    start = day + timedelta(hours=11)
    decisions: list[Decision] = []
    for n, (device, event_id, cred) in enumerate(JOURNEY):
        outcome = tap(engine, device, start + timedelta(minutes=n), event_id, **cred)
        [reply] = outcome.replies
        decision = parse_reply(reply.payload)
        assert isinstance(decision, Decision)
        decisions.append(decision)
    r = demo.get(url("events"), params={"limit": 500})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_cursor"] is None
    items: list[dict[str, Any]] = page["items"]
    assert [e["event_id"] for e in items] == [t[1] for t in reversed(JOURNEY)]
    for event, decision in zip(reversed(items), decisions, strict=True):
        assert (event["outcome"], event["reason"], event["text"]) == (
            decision.outcome, decision.reason.value, decision.text)
    for n, event in enumerate(reversed(items)):
        assert ts(event["received_at"]) == start + timedelta(minutes=n)
    return items


def test_no_events_is_an_empty_page(client: TestClient) -> None:
    r = client.get(url("events"))
    assert r.status_code == 200
    assert r.json() == {"items": [], "next_cursor": None}


def test_event_public_shape(journey: list[dict[str, Any]]) -> None:
    for event in journey:
        assert set(event) == EVENT_KEYS
        assert not INTERNAL["events"] & set(event)
    first = journey[-1]
    assert (first["device_id"], first["venue_id"], first["kind"], first["credential_kind"],
            first["credential_ref"], first["credential_id"], first["guest_id"],
            first["zone_id"]) == ("gate-park-in-1", VENUE_ID, "tap", "wristband",
                                  wristband_uid(1), "band-guest-01", "guest-01", "park")
    assert ts(first["decided_at"]) == ts(first["received_at"])
    stranger = next(e for e in journey if e["event_id"] == "t4-stranger")
    assert (stranger["guest_id"], stranger["credential_id"]) == (None, None)


def test_events_cursor_pages_newest_first(demo: TestClient,
                                          journey: list[dict[str, Any]]) -> None:
    for limit in (1, 2, 3, len(journey) - 1, len(journey)):
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            r = demo.get(url("events"), params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= limit
            seen += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert page["items"] and cursor == str(page["items"][-1]["id"])
        assert seen == journey, limit
        assert pages == -(-len(journey) // limit), limit
    ids_desc = [e["id"] for e in journey]
    assert ids_desc == sorted(ids_desc, reverse=True)


def test_events_filters(demo: TestClient, journey: list[dict[str, Any]]) -> None:
    cases: list[dict[str, str]] = [
        {"guest_id": "guest-01"}, {"guest_id": "guest-02"}, {"device_id": "gate-park-in-2"},
        {"zone_id": "park"}, {"zone_id": "room-101"}, {"outcome": "allow"},
        {"outcome": "deny"}, {"reason": "anti_passback"}, {"reason": "wrong_zone"},
        {"guest_id": "guest-01", "outcome": "allow", "zone_id": "park"},
    ]
    for params in cases:
        expected = [e for e in journey if all(e[k] == v for k, v in params.items())]
        assert expected and len(expected) < len(journey), params
        r = demo.get(url("events"), params=params)
        assert r.status_code == 200, r.text
        assert r.json() == {"items": expected, "next_cursor": None}, params
    for params in ({"guest_id": "guest-19"}, {"device_id": "gate-nowhere"},
                   {"reason": "ok", "outcome": "deny"}):
        assert demo.get(url("events"), params=params).json()["items"] == [], params


def test_events_filter_and_cursor_combine(demo: TestClient,
                                          journey: list[dict[str, Any]]) -> None:
    expected = [e for e in journey if e["guest_id"] == "guest-01"]
    assert len(expected) >= 3
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"guest_id": "guest-01", "limit": 1}
    while True:
        page = demo.get(url("events"), params=params).json()
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == expected


def test_events_since_and_until(demo: TestClient, journey: list[dict[str, Any]]) -> None:
    times = [ts(e["received_at"]) for e in journey]
    since, until = times[5], times[1]  # newest first: [5] is older than [1]
    r = demo.get(url("events"), params={"since": iso(since)})
    assert r.json()["items"] == [e for e, t in zip(journey, times, strict=True) if t >= since]
    r = demo.get(url("events"), params={"until": iso(until)})
    assert r.json()["items"] == [e for e, t in zip(journey, times, strict=True) if t < until]
    r = demo.get(url("events"), params={"since": iso(since), "until": iso(until)})
    window = [e for e, t in zip(journey, times, strict=True) if since <= t < until]
    assert r.json()["items"] == window and len(window) == 4
    # The same instants written with another offset select the same events.
    plus5 = timezone(timedelta(hours=5, minutes=30))
    r = demo.get(url("events"), params={"since": iso(since.astimezone(plus5)),
                                        "until": iso(until.astimezone(plus5))})
    assert r.json()["items"] == window
    # One microsecond after a tap excludes it from since, includes it in until.
    tick = timedelta(microseconds=1)
    r = demo.get(url("events"), params={"since": iso(times[3] + tick)})
    assert r.json()["items"] == journey[:3]
    r = demo.get(url("events"), params={"until": iso(times[3] + tick)})
    assert r.json()["items"] == journey[3:]


@pytest.mark.parametrize("cursor", ["abc", "-5", "", "1.5", " 7", "0x10", "7;DROP"])
def test_events_bad_cursor_is_422(demo: TestClient, cursor: str) -> None:
    r = demo.get(url("events"), params={"cursor": cursor})
    assert r.status_code == 422, r.text
    assert "cursor" in r.json()["detail"] and repr(cursor) in r.json()["detail"]


def test_events_cursor_past_the_oldest_is_empty(demo: TestClient,
                                                journey: list[dict[str, Any]]) -> None:
    oldest = journey[-1]["id"]
    assert demo.get(url("events"), params={"cursor": str(oldest)}).json() == {
        "items": [], "next_cursor": None}
    r = demo.get(url("events"), params={"cursor": str(journey[0]["id"] + 1000)})
    assert r.json()["items"] == journey


@pytest.mark.parametrize("gap", [timedelta(0), -timedelta(seconds=1), -timedelta(days=3)])
def test_events_until_not_after_since_is_422(demo: TestClient, gap: timedelta) -> None:
    since = datetime(2030, 1, 1, 12, tzinfo=UTC)
    r = demo.get(url("events"), params={"since": iso(since), "until": iso(since + gap)})
    assert r.status_code == 422, r.text
    assert "until" in r.json()["detail"]


@pytest.mark.parametrize(("params", "name"), [
    ({"outcome": "maybe"}, "outcome"), ({"since": "2030-01-01T00:00:00"}, "since"),
    ({"until": "yesterday"}, "until"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"),
])
def test_events_rejects_bad_query(demo: TestClient, params: dict[str, Any], name: str) -> None:
    assert_422_at(demo.get(url("events"), params=params), "query", name)


# ---------------------------------------------------------- health, stats


class FakeBridge:
    """Stands in for hub.bridge.Bridge: only snapshot() is used by the API."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> dict[str, Any]:
        return dict(self._snapshot)


def test_health_without_a_bridge_is_degraded(client: TestClient, engine: Engine) -> None:
    # hub api: the fleet decides, and no worker has reported (200: the API itself serves).
    r = client.get(url("health"))
    assert r.status_code == 200
    body = r.json()
    assert {k: body[k] for k in ("status", "mqtt", "mqtt_connected", "database", "deciding")} \
        == {"status": "degraded", "mqtt": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            "mqtt_connected": False, "database": engine.dialect.name, "deciding": False}
    assert body["workers"] == [] and body["problems"] == [
        "no worker has reported in the last 15 s"]


def test_health_without_a_bridge_follows_the_workers_heartbeats(
        client: TestClient, engine: Engine) -> None:
    from hub.db import session_scope
    from hub.models import utcnow
    from hub.store import workers

    with session_scope(engine) as session:
        workers.beat(session=session, name="w1", host="h1", pid=7, seen_at=utcnow(),
                     deciding=True, queue_depth=3, problems="")
        workers.beat(session=session, name="w2", host="h2", pid=9,  # fell silent
                     seen_at=utcnow() - timedelta(seconds=20), deciding=True, queue_depth=0,
                     problems="")
        workers.beat(session=session, name="w3", host="h3", pid=9,  # gone for days
                     seen_at=utcnow() - timedelta(days=3), deciding=True, queue_depth=0,
                     problems="")
        workers.beat(session=session, name="w0", host="h0", pid=8,
                     seen_at=utcnow() - timedelta(minutes=5), deciding=False, queue_depth=0,
                     problems="the bridge is not connected to the broker")
    body = client.get(url("health")).json()
    assert (body["status"], body["deciding"], body["problems"]) == ("ok", True, [])
    assert [(w["name"], w["deciding"], w["queue_depth"]) for w in body["workers"]] == [
        ("w0", False, 0), ("w1", True, 3), ("w2", False, 0)]
    assert body["workers"][0]["seen_s_ago"] >= 300 > body["workers"][1]["seen_s_ago"]
    assert "host" not in body["workers"][0] and "h1" not in str(body)  # public: no hosts


@pytest.mark.parametrize("connected", [True, False])
def test_health_follows_the_bridge(engine: Engine, tmp_path: Path, connected: bool) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="mqtt://broker.example:2883")
    bridge = FakeBridge({"connected": connected, "received": 3})
    with TestClient(create_app(engine=engine, settings=settings, bridge=bridge)) as c:
        r = c.get(url("health"))
    assert r.status_code == (200 if connected else 503)
    body = r.json()
    assert {k: body[k] for k in ("status", "mqtt", "mqtt_connected", "database", "deciding")} \
        == {"status": "ok" if connected else "degraded", "mqtt": "mqtt://broker.example:2883",
            "mqtt_connected": connected, "database": engine.dialect.name, "deciding": connected}
    assert body["problems"] == ([] if connected else ["the bridge is not connected to the broker"])


def test_stats_without_a_bridge_is_empty(client: TestClient) -> None:
    r = client.get(url("stats"))
    assert r.status_code == 200 and r.json() == {}


def test_stats_are_the_bridge_counters(engine: Engine, settings: Settings) -> None:
    counters = {"received": 12, "decisions": 9, "errors": {"schema_violation": 2},
                "queue_depth": 1, "connected": True}
    app = create_app(engine=engine, settings=settings, bridge=FakeBridge(counters))
    with TestClient(app, headers=bearer(staff_token(app))) as c:
        r = c.get(url("stats"))
    assert r.status_code == 200 and r.json() == counters


def test_openapi_lists_every_resource(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for resource in ("venues", "zones", "devices", "guests", "credentials", "entitlements",
                     "events", "health", "stats"):
        assert url(resource) in paths, resource


# ========================================================== hub bugs, found by these tests
#
# Fixed ones stay as regression tests, each with a note on what it was. An open one is
# marked xfail(strict=True, raises=AssertionError, reason=...): it says what the API should
# answer and fails until the hub is fixed, then XPASSes (a failure) until the mark goes; the
# fuzz of test_api_fuzz.py tolerates it meanwhile through its KNOWN_BUGS.

BIG = 2**63  # one past SQLite's largest INTEGER


# Was a hub bug (fixed): the Offset query type (hub/api/deps.py:23) has no upper bound: an offset
# >= 2**63 reaches SQLite and raises OverflowError -> 500 (hub/store/rows.py page(),
# hub/store/money.py transactions())
@pytest.mark.parametrize("resource", ["venues", "zones", "devices", "guests", "credentials",
                                      "entitlements", "guests/guest-01/credentials",
                                      "merchants", "accounts", "transactions"])
def test_huge_offset_is_422(raw: TestClient, resource: str) -> None:
    assert_422_at(raw.get(url(resource), params={"offset": BIG}), "query", "offset")


# Was a hub bug (fixed): hub/api/routes/events.py:33-35: str.isdigit() accepts what int() refuses
# ('²', > 4300 digits: ValueError) and int() accepts what SQLite refuses (>= 2**63: OverflowError
# in hub/store/events.py list_events) -> 500
@pytest.mark.parametrize("cursor", ["²", "9" * 5000, str(BIG), "9" * 30])
def test_cursor_that_isdigit_but_not_a_cursor_is_422(raw: TestClient, cursor: str) -> None:
    r = raw.get(url("events"), params={"cursor": cursor})
    assert r.status_code == 422, (r.status_code, r.text)


# Was a hub bug (fixed): hub/models.py:31 UTCDateTime.process_bind_param: astimezone(UTC) of an
# aware datetime near year 1 / 9999 overflows (OverflowError) -> 500
@pytest.mark.parametrize("params", [{"since": "0001-01-01T00:00:00+01:00"},
                                    {"until": "9999-12-31T23:59:59-01:00"}])
def test_events_at_the_edge_of_time_is_422(raw: TestClient, params: dict[str, str]) -> None:
    r = raw.get(url("events"), params=params)
    assert_422_at(r, "query", next(iter(params)))


# Was a hub bug (fixed): hub/models.py:31 UTCDateTime.process_bind_param: astimezone(UTC)
# overflows for valid_from/valid_until near year 1 / 9999 -> 500 (entitlements.py:29 grant, :46
# update)
@pytest.mark.parametrize(("method", "body"), [
    ("POST", {"valid_from": "0001-01-01T00:00:00+01:00"}),
    ("POST", {"valid_until": "9999-12-31T23:59:59-01:00"}),
    ("PATCH", {"valid_until": "9999-12-31T23:59:59-01:00"}),
])
def test_entitlement_at_the_edge_of_time_is_422(raw: TestClient, method: str,
                                                body: dict[str, str]) -> None:
    if method == "POST":
        r = raw.post(url("entitlements"), json={**entitlement_body("guest-01", ["park"]), **body})
    else:
        r = raw.patch(url("entitlements", "ticket-guest-01"), json=body)
    assert_422_at(r, "body", next(iter(body)))


# Was a hub bug (fixed): unbounded ints in hub/schemas.py (ZoneCreate/ZoneUpdate capacity and
# occupancy, SpendingPolicyUpdate daily_limit and pin_threshold): values >= 2**63 reach SQLite ->
# OverflowError -> 500 (hub/store/rows.py add/update, hub/api/routes/guests.py set_spending_policy
# session.flush())
@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "zones", {"id": "huge", "venue_id": VENUE_ID, "name": "Huge", "capacity": BIG}),
    ("PATCH", "zones/park", {"capacity": BIG}), ("PATCH", "zones/park", {"occupancy": 10**30}),
    ("PUT", "guests/guest-01/spending-policy", {"daily_limit": BIG}),
    ("PUT", "guests/guest-02/spending-policy", {"pin_threshold": 2**64}),
])
def test_integers_beyond_sqlite_are_422(raw: TestClient, method: str, path: str,
                                        body: dict[str, Any]) -> None:
    r = raw.request(method, url(*path.split("/")), json=body)
    assert r.status_code == 422, (r.status_code, r.text)


# Was a hub bug (fixed): hub/api/main.py installs no RequestValidationError handler: FastAPI's
# default one echoes the invalid input, and it cannot be rendered: NaN/Infinity (Starlette
# JSONResponse json.dumps allow_nan=False: ValueError), a lone surrogate (UnicodeEncodeError), a
# non-UTF-8 body sent as non-JSON (fastapi.encoders bytes.decode: UnicodeDecodeError) -> 500 on
# every route with a body
@pytest.mark.parametrize(("path", "raw_body", "content_type"), [
    ("guests", b'{"name": NaN}', "application/json"),
    ("guests", b'{"name": 1e400}', "application/json"),
    ("zones/park", b'{"capacity": Infinity}', "application/json"),
    ("venues", b'{"id": "v", "name": -Infinity}', "application/json"),
    ("guests", b'{"name": "\\ud800"}', "application/json"),
    ("credentials/band-guest-01", b'{"\\udfff": 1}', "application/json"),
    ("venues", b"\x80", "text/plain"),
    ("entitlements/ticket-guest-01", b"\xff\xfe", "application/octet-stream"),
])
def test_unrenderable_invalid_input_is_422(raw: TestClient, path: str, raw_body: bytes,
                                           content_type: str) -> None:
    method = "PATCH" if "/" in path else "POST"
    r = raw.request(method, url(*path.split("/")), content=raw_body,
                    headers={"content-type": content_type})
    assert r.status_code == 422, (r.status_code, r.text)


# Was a hub bug (fixed): reference fields typed plain `str` in hub/schemas.py (venue_id, guest_id,
# zone_id, zone_ids, merchant_id, ...) accepted a lone surrogate (JSON \ud800); rows.require handed
# it to session.get and sqlite3 could not encode it: UnicodeEncodeError -> 500
@pytest.mark.parametrize(("method", "path", "raw_body"), [
    pytest.param("POST", "zones", b'{"id": "z", "venue_id": "\\ud800", "name": "Z"}',
                 id="zone.venue_id"),
    pytest.param("POST", "devices", b'{"id": "d", "venue_id": "demo-resort", "kind": "gate", '
                                    b'"name": "D", "zone_id": "\\udc00"}', id="device.zone_id"),
    pytest.param("POST", "credentials", b'{"guest_id": "\\ud800", "kind": "phone_key"}',
                 id="credential.guest_id"),
    pytest.param("POST", "entitlements",
                 b'{"guest_id": "guest-01", "kind": "ticket", "zone_ids": ["\\ud800"], '
                 b'"valid_from": "2030-01-01T00:00:00Z", "valid_until": "2030-01-02T00:00:00Z"}',
                 id="entitlement.zone_ids"),
    pytest.param("PATCH", "devices/gate-park-in-1", b'{"zone_id": "\\ud800"}',
                 id="patch-device.zone_id"),
])
def test_lone_surrogate_in_a_reference_is_422(raw: TestClient, method: str, path: str,
                                              raw_body: bytes) -> None:
    r = raw.request(method, url(*path.split("/")), content=raw_body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text)


# Was a hub bug (fixed): hub/api/routes/devices.py create_device/update_device check that a
# device's zone is in its venue but not its merchant_id: a terminal of one venue can be bound to
# another venue's merchant
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_device_merchant_of_another_venue_is_422(raw: TestClient, method: str) -> None:
    make_venue(raw, "v2", currency="EUR")
    if method == "POST":
        r = raw.post(url("devices"), json={"id": "till-v2", "venue_id": "v2", "kind": "pos",
                                           "name": "Till", "merchant_id": "cafe"})
    else:
        make_device(raw, "till-v2", "v2", kind="pos")
        r = raw.patch(url("devices", "till-v2"), json={"merchant_id": "cafe"})
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["detail"].startswith("merchant_id:")


# Was a hub bug (fixed): hub/store/guests.py list_guests: q goes into LIKE unescaped, so '%' and
# '_' are wildcards ('%' lists every guest)
@pytest.mark.parametrize("q", ["%", "_", "a%n"])
def test_guest_search_treats_q_literally(raw: TestClient, q: str) -> None:
    make_guest(raw, "Percent % Person", id="pct")
    make_guest(raw, "Under_Score", id="und")
    everything = walk_offset(raw, url("guests"), 500)
    expected = [g for g in everything
                if any(q.lower() in (g[f] or "").lower()
                       for f in ("name", "display_name", "email"))]
    assert raw.get(url("guests"), params={"q": q, "limit": 500}).json() == expected


# Was a hub bug (fixed): hub/schemas.py CredentialCreate.identifier: a phone key id is not checked
# against the wire contract's KeyId pattern (devices/contract.py:23), so keys no device can ever
# present are issued
@pytest.mark.parametrize("identifier", ["has space", "emoji-🔑", "slash/key"])
def test_phone_key_identifier_follows_the_contract(raw: TestClient, identifier: str) -> None:
    r = raw.post(url("credentials"), json={"guest_id": "guest-01", "kind": "phone_key",
                                           "identifier": identifier})
    assert r.status_code == 422, (r.status_code, r.text)


@pytest.mark.parametrize(("message", "status"), [("database is locked", 503),
                                                  ("disk I/O error", 500)])
def test_a_busy_sqlite_is_a_503_to_retry_not_a_500(app: FastAPI, message: str,
                                                   status: int) -> None:
    """SQLite's write lock held past its busy timeout (a backup, a long batch) is the
    caller's to retry; any other database failure stays a 500."""
    import sqlite3

    import sqlalchemy as sa

    def busy() -> None:
        raise sa.exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError(message))

    app.add_api_route("/api/v1/busy-test", busy, methods=["POST"])
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/api/v1/busy-test")
    assert answer.status_code == status
    if status == 503:
        assert answer.headers["retry-after"] == "1" and answer.json()["reason"] == "busy"
