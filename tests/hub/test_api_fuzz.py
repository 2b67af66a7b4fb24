"""No request makes the API answer 5xx: every route of the app, fed by hypothesis.

The routes are read from the app itself, so a new route is fuzzed without
touching this file (a route with a body also needs a valid example body in
``VALID_BODIES``; the test fails until it has one). Each request carries random
path values, query values and a JSON body (random JSON, a mutated valid body,
or raw bytes) and must be answered below 500.

Hub bugs already pinned by ``xfail`` tests in test_api.py are recognised by
where their exception is raised (``KNOWN_BUGS``) and tolerated here, so the
fuzzer keeps looking for new ones instead of stopping at the first known one.
Any other exception or 5xx fails with hypothesis' minimal example.

``HUB_FUZZ_EXAMPLES=500`` (default 50 per route) hunts longer; run with
``--hypothesis-show-statistics`` to see the statuses each route answered.
"""

from __future__ import annotations

import base64
import json
import os
import re
import traceback
import typing
from collections.abc import Iterator
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Mount, Route

import hub
from devices.topics import ID_PATTERN
from hub.api.main import DOCS_STATIC, create_app
from hub.api.routes.automations import AutomationPatch, AutomationPut
from hub.automations.vocabulary import ACTIONS, PURPOSES, TEMPLATE_FIELDS, TRIGGERS
from hub.config import Settings
from hub.db import create_db_engine, init_db
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.models import (
    CredentialStatus,
    DeviceKind,
    Direction,
    EntitlementStatus,
    ZoneKind,
    utcnow,
)
from hub.schemas import (
    AccountCreate,
    AccountUpdate,
    ConsentUpdate,
    CredentialCreate,
    CredentialUpdate,
    DeviceCreate,
    DevicePolicy,
    DeviceUpdate,
    EntitlementCreate,
    EntitlementUpdate,
    GuestCreate,
    GuestUpdate,
    MerchantCreate,
    PhoneKeyRequest,
    PreferencesUpdate,
    RefundCreate,
    Settlement,
    SpendingPolicyUpdate,
    StaffUserChange,
    TokenRequest,
    TopUp,
    VenueCreate,
    VenueFolioPolicy,
    VenuePolicy,
    VenueUpdate,
    WearerSet,
    ZoneCreate,
    ZoneUpdate,
)
from tests.conftest import bearer, staff_token
from tests.utils import ingest

HUB_DIR = str(Path(hub.__file__).parent)

# -------------------------------------------------------------- the routes


def flat_routes(app: FastAPI) -> list[tuple[str, str, BaseRoute]]:
    """(method, full path, route) for every route of the app.

    FastAPI >= 0.13x keeps included routers as lazy branches in ``app.routes``;
    older versions list the APIRoutes themselves. Both are read here.
    """
    found: list[tuple[str, str, BaseRoute]] = []

    def add(path: str, route: BaseRoute) -> None:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":  # Starlette's automatic twin of GET
                found.append((method, path, route))

    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):  # an included router
            for ctx in route.effective_route_contexts():
                add(ctx.path, ctx.original_route)
        elif isinstance(route, Route):
            add(route.path, route)
        elif isinstance(route, Mount) and route.path == DOCS_STATIC:
            # The docs' own scripts and styles: any file name, '../' and '%00' included.
            found.append(("GET", f"{route.path}/{{file}}", route))
        else:
            raise AssertionError(f"a kind of route this fuzzer cannot read: {route!r}")
    return found


def _routes_of_a_blank_app() -> list[tuple[str, str, BaseRoute]]:
    engine = sa.create_engine("sqlite://")
    try:
        return flat_routes(create_app(engine=engine, settings=Settings(broker_url=None)))
    finally:
        engine.dispose()


ROUTES = _routes_of_a_blank_app()


def test_the_app_has_the_routes_we_expect_to_fuzz() -> None:
    """Guard against reading no routes at all (the fuzz below would pass vacuously)."""
    api = {(m, p) for m, p, r in ROUTES if isinstance(r, APIRoute)}
    assert len(api) >= 28
    assert ("PATCH", "/api/v1/credentials/{credential_id}") in api
    assert ("GET", "/api/v1/events") in api
    assert ("DELETE", "/api/v1/entitlements/{entitlement_id}") in api


# ----------------------------------------------------------- known hub bugs

# (xfail test in test_api.py that pins it, exception type, where it is raised, message);
# "where" is the innermost frame in the hub package, else the innermost frame at all. E.g.
#   ("test_bug_x_is_422", OverflowError, r"hub/store/rows\.py:page$", r"too large to convert"),
KNOWN_BUGS: list[tuple[str, type[BaseException], str, str]] = []  # all fixed so far


def frames_of(exc: BaseException) -> list[tuple[bool, str]]:
    """(in the hub package?, 'path:function') of every frame the exception went through."""
    out = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(HUB_DIR + os.sep):
            out.append((True, "hub/" + Path(frame.filename).relative_to(HUB_DIR).as_posix()
                        + f":{frame.name}"))
        else:
            out.append((False, "/".join(Path(frame.filename).parts[-2:]) + f":{frame.name}"))
    return out


def where_raised(exc: BaseException) -> str:
    """The innermost frame in the hub package, else the innermost frame."""
    frames = frames_of(exc)
    return ([f for ours, f in frames if ours] or [f for _, f in frames] or ["?"])[-1]


def known_bug(exc: BaseException) -> str | None:
    """The xfail test of test_api.py that pins this exception, or None for a new bug.

    Hub-raised bugs must match where the hub raised them; framework-raised ones (the
    error response that cannot be rendered) match a frame they passed through.
    """
    where, frames = where_raised(exc), [f for ours, f in frames_of(exc) if not ours]
    for test, kind, place, message in KNOWN_BUGS:
        if not (isinstance(exc, kind) and re.search(message, str(exc))):
            continue
        if re.search(place, where) or (not place.startswith("hub/")
                                       and any(re.search(place, f) for f in frames)):
            return test
    return None


# ------------------------------------------------------------------ the app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app, one SQLite file, the demo venue; raising, so a 500 shows its exception.

    Every request carries an admin's token, so the fuzz reaches past authorization.
    """
    path = tmp_path_factory.mktemp("fuzz") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    now = utcnow()
    seed_demo(engine, now)
    for n, (device, uid) in enumerate([("gate-park-in-1", wristband_uid(1)),  # a journey, so
                                       ("gate-park-in-2", wristband_uid(1)),  # /events has
                                       ("lock-102", wristband_uid(2)),        # rows to page
                                       ("gate-water-in-1", "DEADBEEF")]):
        ingest.tap(engine, VENUE_ID, device, now + timedelta(seconds=n), f"fuzz-{n}", uid=uid)
    for n, guest in enumerate((3, 4)):  # charges, so refunds have something to refund
        ingest.pay(engine, VENUE_ID, "pos-cafe-1", now, f"fuzz-pay-{n}", amount=1_250,
                   merchant_id="cafe", uid=wristband_uid(guest))
    app = create_app(engine=engine, settings=Settings(data_dir=path.parent, broker_url=None))
    with TestClient(app, raise_server_exceptions=True, follow_redirects=False,
                    headers=bearer(staff_token(app))) as c:
        transactions = c.get("/api/v1/transactions", params={"limit": 500}).json()
        by_type = {kind: [t["id"] for t in transactions if t["type"] == kind]
                   for kind in ("charge", "topup")}
        assert by_type["charge"] and by_type["topup"], transactions
        EXISTING["transaction_id"] = by_type["charge"] + by_type["topup"][:2]
        yield c
    engine.dispose()


# --------------------------------------------------------------- strategies

NASTY = ["", ".", "..", "../", "../../etc/passwd", "%00", "\x00", "a%00b", "%2e%2e%2f",
         "..%2F..%2F", "/", "//", "?", "#", "%", "%%", "_", "'", '"', "\\", ";", "' OR 1=1 --",
         "null", "None", "true", "NaN", "Infinity", "-0", "0", "1", "-1", "²", "١٢", "１２",
         "9" * 25, str(2**63), str(2**64), "9" * 5000, "a" * 5000, "é" * 300, "🔑" * 100,
         "\u202e", "\ufeff", "\n", " ", "\t", "demo-resort", "guest-01"]
IDS = [VENUE_ID, "park", "water-park", "room-101", "gate-park-in-1", "gate-park-out-1",
       "lock-101", "pos-cafe-1", "guest-01", "guest-02", "band-guest-01", "phone-guest-02",
       "ticket-guest-01", "stay-guest-03"]

# Rows of the demo venue each path parameter can name, so PATCH and DELETE reach real rows.
EXISTING = {"venue_id": [VENUE_ID], "zone_id": ["park", "water-park", "room-101", "room-110"],
            "device_id": ["gate-park-in-1", "gate-water-out-1", "lock-101", "pos-bar-1",
                          "watch-guest-01"],
            "guest_id": ["guest-01", "guest-02", "guest-20"],
            "purpose": ["personalization", "health"],
            "credential_id": ["band-guest-01", "phone-guest-02", "band-guest-20"],
            "entitlement_id": ["ticket-guest-01", "stay-guest-02", "ticket-guest-20"],
            "merchant_id": ["cafe", "shop"],
            "account_id": ["wallet-guest-01", "folio-guest-02", "wallet-guest-11"],
            "rule_id": ["room-welcome", "stuck-guest", "pool-closing"],
            "transaction_id": []}  # filled in by the client fixture: their ids are generated


big_ints = st.one_of(st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400]))
datetimes = st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
edge_datetimes = st.sampled_from([
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999Z", "2030-02-30T00:00:00Z", "2030-01-01T24:00:00Z",
    "2030-01-01", "1700000000", "2030-01-01T00:00:00+25:00"])
texts = st.text(max_size=40)
unicode_texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)

# Anything a query string or a path segment can carry.
scalar_strings = st.one_of(
    texts, st.sampled_from(NASTY), big_ints.map(str), datetimes, edge_datetimes,
    st.sampled_from(IDS), st.from_regex(ID_PATTERN, fullmatch=True),
    st.text(alphabet="0123456789", min_size=1, max_size=30),
)


def choices_of(annotation: Any) -> list[str]:
    """The values an Enum or Literal query parameter accepts (to reach past validation)."""
    found: list[str] = []
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        found += [str(m.value) for m in annotation]
    if typing.get_origin(annotation) is typing.Literal:
        found += [str(a) for a in typing.get_args(annotation)]
    for arg in typing.get_args(annotation):
        if arg is not annotation:
            found += choices_of(arg)
    return found


def query_value(name: str, annotation: Any) -> st.SearchStrategy[str]:
    """Random strings, and as often values of the parameter's own type."""
    options = []
    if choices := choices_of(annotation):
        options.append(st.sampled_from(choices))
    if name in ("limit", "offset", "cursor"):
        options.append(st.integers(min_value=-3, max_value=600).map(str))
    if name in ("since", "until"):
        options.append(st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
    if EXISTING.get(name):
        options.append(st.sampled_from(EXISTING[name]))
    return st.one_of(scalar_strings, *options) if options else scalar_strings


json_scalars = st.one_of(
    st.none(), st.booleans(), big_ints, st.floats(), texts, unicode_texts,
    st.sampled_from(NASTY), datetimes, edge_datetimes, st.sampled_from(IDS),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
)
json_keys = st.one_of(texts, st.sampled_from(["id", "name", "guest_id", "zone_ids", "kind",
                                               "status", "schedule", "valid_from"]))


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4)


json_values = st.recursive(json_scalars, _containers, max_leaves=12)

slugs = st.from_regex(ID_PATTERN, fullmatch=True)
names = st.text(min_size=1, max_size=200)
aware = st.datetimes(timezones=st.timezones(), min_value=datetime(1990, 1, 1),
                     max_value=datetime(2090, 1, 1))


def _window(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.times())
    end = draw(st.times().filter(lambda t: t > start)) if start.hour < 23 else start
    return {"days": draw(st.lists(st.integers(0, 6), min_size=1, max_size=7)),
            "start": start.isoformat(), "end": end.isoformat()}


@st.composite
def entitlement_create(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(aware)
    end = draw(aware.filter(lambda e: e > start))
    kind = draw(st.sampled_from(["ticket", "room", "staff"]))
    body: dict[str, Any] = {
        "guest_id": draw(st.sampled_from(["guest-01", "guest-02", "guest-03"])),
        "kind": kind, "zone_ids": draw(st.lists(st.sampled_from(IDS[1:4]), min_size=1)),
        "valid_from": start.isoformat(), "valid_until": end.isoformat()}
    if kind == "staff" and draw(st.booleans()):
        body["schedule"] = [_window(draw) for _ in range(draw(st.integers(1, 2)))]
    return body


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A PATCH body: any subset of the fields, each valid."""
    return st.fixed_dictionaries({}, optional=fields)


def _phone_jwk() -> dict[str, str]:
    """A phone's public key, EC P-256, as a JWK."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}


PHONE_JWK = _phone_jwk()
currencies = st.sampled_from(["USD", "EUR", "JPY"])
keys = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
amounts = st.integers(1, 100_000_000)

VALID_BODIES: dict[type, st.SearchStrategy[dict[str, Any]]] = {
    VenueCreate: st.fixed_dictionaries(
        {"id": slugs, "name": names},
        optional={"timezone": st.sampled_from(["UTC", "Europe/Paris", "Pacific/Chatham"]),
                  "currency": currencies}),
    ZoneCreate: st.fixed_dictionaries(
        {"id": slugs, "venue_id": st.just(VENUE_ID), "name": names},
        optional={"kind": st.sampled_from([k.value for k in ZoneKind]),
                  "capacity": st.none() | st.integers(0, 10_000),
                  "anti_passback": st.booleans()}),
    DevicePolicy: st.fixed_dictionaries({"allow_plain_uid": st.sampled_from([None, True,
                                                                             False])}),
    VenueFolioPolicy: st.fixed_dictionaries(
        {"folio_credit_limit": st.none() | st.integers(0, 2**63 - 1)}),
    AccountUpdate: optional(credit_limit=st.none() | st.integers(0, 10**9)),
    VenueUpdate: optional(name=names, enabled=st.booleans(),
                          timezone=st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus"])),
    ZoneUpdate: optional(name=names, capacity=st.none() | st.integers(0, 10_000),
                         anti_passback=st.booleans(), occupancy=st.integers(0, 10_000)),
    DeviceCreate: st.fixed_dictionaries(
        {"id": slugs, "venue_id": st.just(VENUE_ID),
         "kind": st.sampled_from([k.value for k in DeviceKind]), "name": names},
        optional={"zone_id": st.sampled_from([None, "park", "room-101"]),
                  "direction": st.sampled_from([None, *[d.value for d in Direction]]),
                  "merchant_id": st.sampled_from([None, "cafe", "bar"]),
                  "enabled": st.booleans()}),
    DeviceUpdate: optional(name=names, zone_id=st.sampled_from([None, "park", "water-park"]),
                           direction=st.sampled_from([None, "in", "out"]),
                           merchant_id=st.sampled_from([None, "cafe", "shop"]),
                           enabled=st.booleans()),
    GuestCreate: st.fixed_dictionaries(
        {"name": names},
        optional={"id": st.none() | slugs, "display_name": st.text(min_size=1, max_size=80),
                  "email": st.emails()}),
    GuestUpdate: optional(name=names, display_name=st.text(min_size=1, max_size=80),
                          email=st.emails()),
    CredentialCreate: st.one_of(
        st.fixed_dictionaries({
            "guest_id": st.sampled_from(["guest-01", "guest-04"]), "kind": st.just("wristband"),
            "identifier": st.from_regex(r"\A(?:[0-9A-Fa-f]{2}){4,10}\Z")},
            optional={"label": st.text(max_size=80)}),
        st.fixed_dictionaries({
            "guest_id": st.sampled_from(["guest-01", "guest-04"]), "kind": st.just("phone_key")},
            optional={"identifier": st.text(min_size=1, max_size=128),
                      "label": st.text(max_size=80)})),
    CredentialUpdate: optional(status=st.sampled_from([s.value for s in CredentialStatus]),
                               label=st.none() | st.text(max_size=80)),
    EntitlementCreate: entitlement_create(),
    EntitlementUpdate: optional(status=st.sampled_from([s.value for s in EntitlementStatus]),
                                valid_from=aware.map(lambda d: d.isoformat()),
                                valid_until=aware.map(lambda d: d.isoformat())),
    MerchantCreate: st.fixed_dictionaries({"id": slugs, "venue_id": st.just(VENUE_ID),
                                           "name": names, "currency": currencies}),
    SpendingPolicyUpdate: optional(payment_enabled=st.booleans(),
                                   daily_limit=st.none() | st.integers(0, 10**6),
                                   pin=st.none() | st.from_regex(r"\A[0-9]{4,8}\Z"),
                                   pin_threshold=st.none() | st.integers(0, 10**6),
                                   payer_guest_id=st.sampled_from([None, "guest-01", "guest-02"]),
                                   reset_pin_lock=st.booleans()),
    AccountCreate: st.fixed_dictionaries(
        {"guest_id": st.sampled_from(["guest-01", "guest-05"]), "venue_id": st.just(VENUE_ID),
         "kind": st.sampled_from(["wallet", "folio"])},
        optional={"stay_id": st.sampled_from([None, "stay-guest-01", "stay-guest-05",
                                              "ticket-guest-01"])}),
    TopUp: st.fixed_dictionaries({"amount": amounts, "idempotency_key": keys},
                                 optional={"method": st.sampled_from(["card", "cash"])}),
    RefundCreate: st.fixed_dictionaries(
        {"idempotency_key": keys},
        optional={"amount": st.none() | amounts, "reason": st.none() | st.text(max_size=200)}),
    Settlement: st.fixed_dictionaries({"idempotency_key": keys}),
    PhoneKeyRequest: st.fixed_dictionaries({"phone_jwk": st.just(PHONE_JWK)}),
    VenuePolicy: st.fixed_dictionaries({"allow_plain_uid": st.booleans()}),
    StaffUserChange: st.fixed_dictionaries(
        {"active": st.booleans()}, optional={"password": st.text(min_size=8, max_size=64)}),
    TokenRequest: st.fixed_dictionaries({
        "username": st.sampled_from(["admin", "auditor", "nobody"]) | st.text(min_size=1,
                                                                              max_size=64),
        "password": st.sampled_from(["demo-admin", "demo-auditor", "wrong"])
        | st.text(min_size=1, max_size=64)}),
    PreferencesUpdate: optional(
        room_temperature_c=st.none() | st.floats(16, 28),
        lighting_scene=st.sampled_from([None, "warm", "bright", "relax", "off"]),
        language=st.sampled_from([None, "en", "pt-BR", "zh-Hant-TW"]),
        dietary=st.lists(st.sampled_from(["vegan", "halal", "nut_allergy"]), max_size=4),
        display_name=st.none() | st.text(min_size=1, max_size=80),
        heart_rate_threshold=st.none() | st.integers(100, 220)),
    ConsentUpdate: st.fixed_dictionaries({"granted": st.booleans()}),
    AutomationPut: st.fixed_dictionaries(
        {"name": names, "purpose": st.sampled_from(sorted(PURPOSES)),
         "trigger": st.sampled_from(sorted(TRIGGERS)),
         "actions": st.lists(st.fixed_dictionaries(
             {"kind": st.sampled_from(sorted(ACTIONS))},
             optional={"target": st.sampled_from([None, "room:thermostat", "display-101",
                                                  "lock-101", "nowhere"]),
                       "name": st.sampled_from(["show", "set_temperature", "set_scene"]),
                       "params": st.dictionaries(texts, st.sampled_from(
                           sorted("{" + f + "}" for f in TEMPLATE_FIELDS)) | json_scalars,
                           max_size=3)}), min_size=1, max_size=3)},
        optional={"filters": st.dictionaries(st.sampled_from(["zone.kind", "device.kind",
                                                              "device.id", "zone.id"]),
                                             st.sampled_from(IDS) | st.just("room"), max_size=2),
                  "conditions": st.lists(st.sampled_from([
                      {"kind": "first_entry_of_stay"},
                      {"kind": "time_between", "start": "08:00", "end": "22:00"},
                      {"kind": "counter_at_least", "counter": "visits", "value": 2},
                      {"kind": "preference_set", "preference": "language"},
                      {"kind": "reading_above", "field": "heart_rate_bpm",
                       "limit": "{prefs.heart_rate_threshold}"},
                      {"kind": "unknown"}]), max_size=3),
                  "enabled": st.booleans()}),
    AutomationPatch: st.fixed_dictionaries({"enabled": st.booleans()}),
    WearerSet: st.fixed_dictionaries({"guest_id": st.sampled_from(IDS)}),
}


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]],
            fields: list[str]) -> Any:
    """A valid body with one to three changes: a key dropped, nulled, retyped or added.

    The key changed is one of the body's, or any field of the model (``fields``).
    """
    body: dict[str, Any] = dict(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "null", "replace", "extra", "huge", "nasty"]))
        key = draw(st.sampled_from(sorted(set(body) | set(fields)) or ["id"]))
        if op == "drop":
            body.pop(key, None)
        elif op == "null":
            body[key] = None
        elif op == "replace":
            body[key] = draw(json_values)
        elif op == "extra":
            body[draw(texts)] = draw(json_values)
        elif op == "huge":
            body[key] = draw(big_ints)
        else:
            body[key] = draw(st.sampled_from(NASTY) | edge_datetimes)
    return body


def skeleton(model: Any) -> st.SearchStrategy[dict[str, Any]]:
    """For a body model without an example (test_every_route_with_a_body_has_a_valid_example
    fails meanwhile): its required fields, each with a random JSON value."""
    required = [n for n, f in model.model_fields.items() if f.is_required()]
    return st.fixed_dictionaries({n: json_values for n in required})


def body_model(route: BaseRoute) -> type | None:
    field = getattr(route, "body_field", None)
    return field.field_info.annotation if field is not None else None


def encode_json(value: Any) -> bytes:
    # allow_nan: NaN/Infinity are what a non-strict JSON client may send; ensure_ascii
    # escapes lone surrogates as \udxxx, which Python's JSON parser reads back.
    return json.dumps(value, allow_nan=True, ensure_ascii=True).encode()


def bodies(route: BaseRoute) -> st.SearchStrategy[bytes | None]:
    model = body_model(route)
    options: list[st.SearchStrategy[bytes | None]] = [
        json_values.map(encode_json), st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"[]", b"{}", b"null", b'{"a":1,"a":2}', b"\xff\xfe",
                         b'{"name": NaN}', b"1e999"]),
    ]
    if model is None:
        options.append(st.none())
    else:  # mostly valid or nearly valid: those reach the hub's own code
        valid = VALID_BODIES[model] if model in VALID_BODIES else skeleton(model)
        fields = sorted(getattr(model, "model_fields", {}))
        options += 2 * [valid.map(encode_json)] + 3 * [mutated(valid, fields).map(encode_json)]
    return st.one_of(*options)


def path_values(name: str) -> st.SearchStrategy[str]:
    existing = st.sampled_from(EXISTING.get(name) or IDS)
    return st.one_of(existing, existing, scalar_strings)  # an existing row 2/3 of the time


def render_path(template: str, values: dict[str, str], raw: bool) -> str:
    """Fill the path; ``raw`` leaves '/', '.' and '%' as they are ('../', '%00' reach Starlette)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", quote(value, safe="/.%" if raw else ""))
    return template


@st.composite
def requests(draw: st.DrawFn, method: str, path: str, route: BaseRoute) -> dict[str, Any]:
    dependant = getattr(route, "dependant", None)
    path_names = re.findall(r"{(\w+)(?::\w+)?}", path)
    values = {n: draw(path_values(n)) for n in path_names}
    raw = draw(st.booleans())
    params: dict[str, str] = {}
    for param in dependant.query_params if dependant else ():
        if draw(st.booleans()):
            params[param.name] = draw(query_value(param.name, param.field_info.annotation))
    if draw(st.booleans()):
        params[draw(texts)] = draw(scalar_strings)  # unknown parameters are ignored
    content = draw(bodies(route))
    headers = {"content-type": draw(st.sampled_from(
        ["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded",
         "application/json; charset=latin-1"]))}
    return {"method": method, "url": render_path(path, values, raw), "params": params,
            "content": content, "headers": headers}


# ---------------------------------------------------------------------- test


def test_every_route_with_a_body_has_a_valid_example() -> None:
    missing = {body_model(r) for _, _, r in ROUTES if body_model(r) is not None} - set(
        VALID_BODIES)
    assert not missing, f"add a valid body strategy to VALID_BODIES for {missing}"


@pytest.mark.parametrize(("method", "path", "route"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
@settings(max_examples=int(os.environ.get("HUB_FUZZ_EXAMPLES", "50")), deadline=None,
          database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_no_request_is_answered_5xx(client: TestClient, method: str, path: str,
                                    route: BaseRoute, data: st.DataObject) -> None:
    request = data.draw(requests(method, path, route), label="request")
    try:
        response = client.request(**request)
    except Exception as exc:  # the app raised: a client would have got a 500
        pinned = known_bug(exc)
        if pinned is None:
            raise AssertionError(
                f"500 from {request['method']} {request['url']}: {type(exc).__name__}: {exc} "
                f"(raised at {where_raised(exc)})") from exc
        note(f"known hub bug, pinned by {pinned}: {type(exc).__name__} at {where_raised(exc)}")
        event(f"known bug: {type(exc).__name__} at {where_raised(exc)}")
        return
    event(f"status {response.status_code}")  # see --hypothesis-show-statistics
    assert response.status_code < 500, (response.status_code, response.text[:500])
