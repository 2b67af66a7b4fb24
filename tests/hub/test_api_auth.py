"""Who may call what: tokens, roles, a guest's own data, and the audit log.

``ROUTES`` is the role table of the API. One test checks that the app declares
exactly these roles on exactly these routes (and that only ``PUBLIC`` routes
declare none); then every route is called without a token (401), by each role it
refuses (403) and by each role it lets in (2xx). "guest" is guest-01, and the
paths name guest-01's data; ``GUEST_SCOPED`` calls each guest-reachable route on
guest-01's data as guest-02, which must be refused and change nothing.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import stat
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

import hub
from devices.contract import PaymentDecision, parse_reply
from devices.phone_key import phone_keypair
from hub import cli, security
from hub.api.deps import declared_roles
from hub.api.main import API_PREFIX, PUBLIC, create_app
from hub.automations.rules import Action, Rule
from hub.automations.ruleset import row_of
from hub.config import Settings
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.models import AuditEntry, Credential, SpendingPolicy, StaffUser, utcnow
from hub.phone_keys import SigningKey, new_signing_key
from hub.presented import issuer
from hub.security import issue_api_token
from hub.server import Hub
from hub.store import guests
from simulators.rest import HubApi, HubApiError
from tests.conftest import bearer, guest_token, hub_settings, staff_token
from tests.hub.test_api_fuzz import flat_routes
from tests.utils import ingest

KEY = secrets.token_bytes(32)
ADMIN, STAFF, INTEGRATOR, AUDITOR, GUEST = "admin", "staff", "integrator", "auditor", "guest"
ROLES = [ADMIN, STAFF, INTEGRATOR, AUDITOR, GUEST]
SETUP_READERS = frozenset({ADMIN, STAFF, INTEGRATOR, AUDITOR})
GUEST_DATA = frozenset({ADMIN, STAFF, AUDITOR})
FRONT_DESK = frozenset({ADMIN, STAFF})
INSTALLERS = frozenset({ADMIN, INTEGRATOR})
OWN = frozenset({GUEST})
PHONE_JWK = phone_keypair()[1]
BROKER_KEY = b"broker-key-for-these-tests-only!"
PIN = "90817263"  # set below; must never reach the audit log


@dataclass(frozen=True)
class Route:
    """One route of the API, a call of it that succeeds, who may make it and what it audits.

    ``path`` may hold ``{charge}`` (a charge of guest-01); an audited ``target`` may
    hold ``{id}`` (the id the response carries).
    """

    method: str
    template: str
    path: str
    roles: frozenset[str]
    body: dict[str, Any] | None = None
    audit: tuple[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


ROUTES = [
    Route("GET", "/stats", "/stats", SETUP_READERS),
    Route("GET", "/dead-letters", "/dead-letters", GUEST_DATA),
    Route("GET", "/users", "/users", frozenset({ADMIN, AUDITOR})),
    Route("PATCH", "/users/{username}", "/users/test-admin", frozenset({ADMIN}),
          {"active": True}, ("user.change", "user:test-admin")),
    Route("GET", "/venues", "/venues", SETUP_READERS),
    Route("POST", "/venues", "/venues", INSTALLERS, {"id": "v-new", "name": "New venue"},
          ("venue.create", "venue:v-new")),
    Route("GET", "/venues/{venue_id}", f"/venues/{VENUE_ID}", SETUP_READERS),
    Route("PUT", "/venues/{venue_id}/security-policy", f"/venues/{VENUE_ID}/security-policy",
          frozenset({ADMIN}), {"allow_plain_uid": True},
          ("venue.security_policy", f"venue:{VENUE_ID}")),
    Route("PATCH", "/venues/{venue_id}", f"/venues/{VENUE_ID}", frozenset({ADMIN}),
          {"enabled": False}, ("venue.update", f"venue:{VENUE_ID}")),
    Route("PUT", "/venues/{venue_id}/folio-policy", f"/venues/{VENUE_ID}/folio-policy",
          frozenset({ADMIN}), {"folio_credit_limit": 500_000},
          ("venue.folio_policy", f"venue:{VENUE_ID}")),
    Route("DELETE", "/venues/{venue_id}", "/venues/old-pier", frozenset({ADMIN}), None,
          ("venue.delete", "venue:old-pier")),
    Route("GET", "/zones", "/zones", SETUP_READERS),
    Route("POST", "/zones", "/zones", INSTALLERS,
          {"id": "z-new", "venue_id": VENUE_ID, "name": "New zone"}, ("zone.create", "zone:z-new")),
    Route("GET", "/zones/{zone_id}", "/zones/park", SETUP_READERS),
    Route("PATCH", "/zones/{zone_id}", "/zones/park", FRONT_DESK, {"capacity": 2500},
          ("zone.update", "zone:park")),
    Route("GET", "/devices", "/devices", SETUP_READERS),
    Route("POST", "/devices", "/devices", INSTALLERS,
          {"id": "gate-new", "venue_id": VENUE_ID, "kind": "gate", "name": "New gate",
           "zone_id": "park", "direction": "in"}, ("device.create", "device:gate-new")),
    Route("GET", "/devices/{device_id}", "/devices/gate-park-in-1", SETUP_READERS),
    Route("PATCH", "/devices/{device_id}", "/devices/gate-park-in-1", FRONT_DESK,
          {"enabled": False}, ("device.update", "device:gate-park-in-1")),
    Route("PUT", "/devices/{device_id}/security-policy",
          "/devices/gate-park-in-1/security-policy", frozenset({ADMIN}),
          {"allow_plain_uid": False}, ("device.security_policy", "device:gate-park-in-1")),
    Route("DELETE", "/devices/{device_id}", "/devices/gate-park-in-1", INSTALLERS, None,
          ("device.delete", "device:gate-park-in-1")),
    Route("POST", "/devices/{device_id}/broker-credentials",
          "/devices/gate-park-in-1/broker-credentials", INSTALLERS, None,
          ("device.broker_login.reissue", "device:gate-park-in-1")),
    Route("DELETE", "/devices/{device_id}/broker-credentials",
          "/devices/gate-park-in-1/broker-credentials", INSTALLERS | FRONT_DESK, None,
          ("device.broker_login.revoke", "device:gate-park-in-1")),
    Route("PUT", "/devices/{device_id}/wearer", "/devices/watch-guest-01/wearer", FRONT_DESK,
          {"guest_id": "guest-02"}, ("device.pair", "device:watch-guest-01")),
    Route("DELETE", "/devices/{device_id}/wearer", "/devices/watch-guest-01/wearer", FRONT_DESK,
          None, ("device.unpair", "device:watch-guest-01")),
    Route("GET", "/guests", "/guests", GUEST_DATA),
    Route("POST", "/guests", "/guests", FRONT_DESK, {"id": "g-new", "name": "New Guest"},
          ("guest.create", "guest:g-new")),
    Route("GET", "/guests/{guest_id}", "/guests/guest-01", GUEST_DATA | OWN),
    Route("PATCH", "/guests/{guest_id}", "/guests/guest-01", FRONT_DESK, {"display_name": "Chaz"},
          ("guest.update", "guest:guest-01")),
    Route("GET", "/guests/{guest_id}/credentials", "/guests/guest-01/credentials",
          GUEST_DATA | OWN),
    Route("GET", "/guests/{guest_id}/entitlements", "/guests/guest-01/entitlements",
          GUEST_DATA | OWN),
    Route("GET", "/guests/{guest_id}/spending-policy", "/guests/guest-01/spending-policy",
          GUEST_DATA | OWN),
    Route("PUT", "/guests/{guest_id}/spending-policy", "/guests/guest-01/spending-policy",
          FRONT_DESK | OWN, {"payment_enabled": True, "pin": PIN, "pin_threshold": 4000},
          ("spending_policy.set", "guest:guest-01")),
    Route("POST", "/guests/{guest_id}/token", "/guests/guest-01/token", FRONT_DESK, None,
          ("guest.token", "guest:guest-01")),
    Route("POST", "/guests/{guest_id}/broker-login", "/guests/guest-01/broker-login",
          FRONT_DESK | OWN, None, ("guest.broker_login", "guest:guest-01")),
    Route("DELETE", "/guests/{guest_id}/broker-login", "/guests/guest-01/broker-login",
          FRONT_DESK | OWN, None, ("guest.broker_login.revoke", "guest:guest-01")),
    Route("GET", "/credentials", "/credentials", GUEST_DATA),
    Route("POST", "/credentials", "/credentials", FRONT_DESK,
          {"guest_id": "guest-01", "kind": "phone_key", "label": "spare"},
          ("credential.create", "credential:{id}")),
    Route("GET", "/credentials/{credential_id}", "/credentials/band-guest-01", GUEST_DATA | OWN),
    Route("PATCH", "/credentials/{credential_id}", "/credentials/band-guest-01",
          FRONT_DESK | OWN, {"status": "lost"}, ("credential.update", "credential:band-guest-01")),
    Route("POST", "/credentials/{credential_id}/phone-key",
          "/credentials/phone-guest-01/phone-key", FRONT_DESK | OWN, {"phone_jwk": PHONE_JWK},
          ("phone_key.issue", "credential:phone-guest-01")),
    Route("GET", "/entitlements", "/entitlements", GUEST_DATA),
    Route("POST", "/entitlements", "/entitlements", FRONT_DESK,
          {"guest_id": "guest-01", "kind": "ticket", "zone_ids": ["water-park"],
           "valid_from": "2030-05-01T09:00:00Z", "valid_until": "2030-05-02T09:00:00Z"},
          ("entitlement.create", "entitlement:{id}")),
    Route("GET", "/entitlements/{entitlement_id}", "/entitlements/ticket-guest-01",
          GUEST_DATA | OWN),
    Route("PATCH", "/entitlements/{entitlement_id}", "/entitlements/ticket-guest-01",
          FRONT_DESK, {"status": "cancelled"},
          ("entitlement.update", "entitlement:ticket-guest-01")),
    Route("DELETE", "/entitlements/{entitlement_id}", "/entitlements/ticket-guest-01",
          FRONT_DESK, None, ("entitlement.cancel", "entitlement:ticket-guest-01")),
    Route("GET", "/events", "/events", SETUP_READERS | OWN),
    Route("GET", "/merchants", "/merchants", SETUP_READERS),
    Route("POST", "/merchants", "/merchants", INSTALLERS,
          {"id": "deli", "venue_id": VENUE_ID, "name": "Deli", "currency": "USD"},
          ("merchant.create", "merchant:deli")),
    Route("GET", "/merchants/{merchant_id}", "/merchants/cafe", SETUP_READERS),
    Route("GET", "/accounts", "/accounts", GUEST_DATA | OWN),
    Route("POST", "/accounts", "/accounts", FRONT_DESK,
          {"guest_id": "newcomer", "venue_id": VENUE_ID, "kind": "wallet"},
          ("account.open", "account:{id}")),
    Route("GET", "/accounts/{account_id}", "/accounts/wallet-guest-01", GUEST_DATA | OWN),
    Route("PATCH", "/accounts/{account_id}", "/accounts/folio-guest-01", FRONT_DESK,
          {"credit_limit": 100_000}, ("account.update", "account:folio-guest-01")),
    Route("GET", "/accounts/{account_id}/statement", "/accounts/wallet-guest-01/statement",
          GUEST_DATA | OWN),
    Route("POST", "/accounts/{account_id}/topups", "/accounts/wallet-guest-01/topups",
          FRONT_DESK, {"amount": 500, "idempotency_key": "desk-1"},
          ("account.topup", "account:wallet-guest-01")),
    Route("POST", "/accounts/{account_id}/settle", "/accounts/folio-guest-01/settle",
          FRONT_DESK, {"idempotency_key": "checkout-1"},
          ("account.settle", "account:folio-guest-01")),
    Route("GET", "/transactions", "/transactions", GUEST_DATA | OWN),
    Route("GET", "/transactions/{transaction_id}", "/transactions/{charge}", GUEST_DATA),
    Route("POST", "/transactions/{transaction_id}/refunds", "/transactions/{charge}/refunds",
          FRONT_DESK, {"idempotency_key": "refund-1", "amount": 250},
          ("transaction.refund", "transaction:{charge}")),
    Route("GET", "/audit", "/audit", frozenset({ADMIN, AUDITOR})),
    Route("GET", "/guests/{guest_id}/preferences", "/guests/guest-01/preferences",
          GUEST_DATA | OWN),
    # Empty: its audit names the changed fields, never their values (see test_profile.py).
    Route("PUT", "/guests/{guest_id}/preferences", "/guests/guest-01/preferences",
          FRONT_DESK | OWN, {}, ("preferences.set", "guest:guest-01")),
    Route("GET", "/guests/{guest_id}/consent", "/guests/guest-01/consent", GUEST_DATA | OWN),
    Route("PUT", "/guests/{guest_id}/consent/{purpose}", "/guests/guest-01/consent/offers",
          FRONT_DESK | OWN, {"granted": True}, ("consent.set", "guest:guest-01")),
    Route("GET", "/guests/{guest_id}/export", "/guests/guest-01/export", FRONT_DESK | OWN),
    Route("POST", "/guests/{guest_id}/erase", "/guests/guest-01/erase", frozenset({ADMIN}),
          None, ("guest.erase", "guest:guest-01")),
    Route("GET", "/automations", "/automations", SETUP_READERS),
    Route("GET", "/automations/export", "/automations/export", SETUP_READERS),
    Route("GET", "/automations/stats", "/automations/stats", SETUP_READERS),
    Route("GET", "/automations/runs", "/automations/runs", GUEST_DATA),
    Route("POST", "/automations/import", "/automations/import", FRONT_DESK,
          {"rules": [{"id": "vip-gate", "name": "VIP at the gate", "purpose": "service",
                      "trigger": "entry_allowed", "filters": {"device.id": "gate-park-in-1"},
                      "conditions": [], "actions": [{"kind": "alert_staff", "target": None,
                                                     "name": None,
                                                     "params": {"text": "{guest.name}"}}],
                      "enabled": True}]},
          ("automation.import", "automations")),
    Route("GET", "/automations/{rule_id}", "/automations/room-welcome", SETUP_READERS),
    Route("PUT", "/automations/{rule_id}", "/automations/pool-closing", FRONT_DESK,
          {"name": "Pool closing", "purpose": "service", "trigger": "entry_allowed",
           "filters": {"zone.id": "water-park"},
           "actions": [{"kind": "command", "target": "display-101", "name": "show",
                        "params": {"text": "The pool closes at 8 pm"}}]},
          ("automation.create", "automation:pool-closing")),
    Route("PATCH", "/automations/{rule_id}", "/automations/room-welcome", FRONT_DESK,
          {"enabled": False}, ("automation.update", "automation:room-welcome")),
    Route("DELETE", "/automations/{rule_id}", "/automations/late-checkout", FRONT_DESK, None,
          ("automation.delete", "automation:late-checkout")),
]
MUTATING = [r for r in ROUTES if r.method != "GET"]
BY_GUEST = [r for r in MUTATING if GUEST in r.roles]


def url(path: str) -> str:
    return API_PREFIX + path


# ------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Template:
    path: Path
    charges: dict[str, str]  # guest id -> the id of a charge they made


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The demo venue with a journey and a charge for guest-01, guest-02 and guest-11."""
    path = tmp_path_factory.mktemp("auth") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    now = utcnow()
    seed_demo(engine, now)
    charges = {}
    for n, guest in enumerate((1, 2, 11)):
        ingest.tap(engine, VENUE_ID, "gate-park-in-1", now + timedelta(seconds=n), f"in-{n}",
                   uid=wristband_uid(guest))
        paid = ingest.pay(engine, VENUE_ID, "pos-cafe-1", now, f"pay-{n}", amount=1_250,
                          merchant_id="cafe", uid=wristband_uid(guest))
        decision = parse_reply(paid.replies[0].payload)
        assert isinstance(decision, PaymentDecision) and decision.transaction_id
        charges[f"guest-{guest:02d}"] = decision.transaction_id
    with session_scope(engine) as session:
        session.add(hub.models.Guest(id="newcomer", name="New Comer"))  # no accounts yet
        session.add(hub.models.Venue(id="old-pier", name="Old pier"))  # empty: may be deleted
        session.add(row_of(Rule(  # a stored automation, for DELETE /automations/{rule_id}
            id="late-checkout", name="Late checkout", purpose="service", trigger="entry_denied",
            actions=(Action("alert_staff", params={"text": "{event.reason}"}),))))
    engine.dispose()
    return Template(path, charges)


@pytest.fixture(scope="module")
def signing_keys() -> list[SigningKey]:
    return [new_signing_key(utcnow() - timedelta(minutes=1), timedelta(days=90))]


@pytest.fixture
def engine(tmp_path: Path, template: Template) -> Iterator[Engine]:
    path = tmp_path / "hub.db"
    shutil.copyfile(template.path, path)
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    yield engine
    engine.dispose()


def make_app(engine: Engine, tmp_path: Path, keys: list[SigningKey], **settings: Any) -> FastAPI:
    return create_app(engine=engine, settings=Settings(data_dir=tmp_path, broker_url=None,
                                                       **settings),
                      signing_keys=keys, token_key=KEY, broker_key=BROKER_KEY,
                      # GETs through a read-only engine, as in the running hub: a GET
                      # that tried to write would fail here.
                      reader=create_db_engine(str(engine.url), read_only=True))


@pytest.fixture
def app(engine: Engine, tmp_path: Path, signing_keys: list[SigningKey]) -> FastAPI:
    return make_app(engine, tmp_path, signing_keys)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The API with no token by default: each call says who makes it."""
    with TestClient(app) as c:
        yield c


def who(app: FastAPI, name: str) -> dict[str, str]:
    """The headers of a caller: a role ("guest" is guest-01), a guest id, or "nobody"."""
    if name == "nobody":
        return {}
    if name == GUEST:
        return bearer(guest_token(app, "guest-01"))
    if name.startswith("guest-"):
        return bearer(guest_token(app, name))
    return bearer(staff_token(app, name))


def call(client: TestClient, app: FastAPI, template: Template, route: Route,
         caller: str) -> httpx.Response:
    path = route.path.replace("{charge}", template.charges["guest-01"])
    response: httpx.Response = client.request(route.method, url(path), json=route.body,
                                              headers=who(app, caller))
    return response


def audit_rows(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all())


# ------------------------------------------------------------- the role table


def test_the_app_declares_exactly_the_role_table(app: FastAPI) -> None:
    declared = {(m, p.removeprefix(API_PREFIX)): declared_roles(r)
                for m, p, r in flat_routes(app) if isinstance(r, APIRoute)}
    expected: dict[tuple[str, str], frozenset[str] | None] = {
        (r.method, r.template): r.roles for r in ROUTES}
    expected |= {route: None for route in PUBLIC}
    # The interactive docs (hub.api.docs): public pages, no data.
    expected |= {("GET", "/docs"): None, ("GET", "/docs/oauth2-redirect"): None,
                 ("GET", "/redoc"): None}
    assert declared == expected


def test_a_route_that_declares_no_roles_is_refused_at_startup(engine: Engine,
                                                             tmp_path: Path) -> None:
    from hub.api.routes import zones

    @zones.router.get("/{zone_id}/forgotten")
    def forgotten(zone_id: str) -> str:
        return zone_id

    try:
        with pytest.raises(RuntimeError, match="forgotten declares no roles"):
            create_app(engine=engine, settings=Settings(data_dir=tmp_path))
    finally:
        zones.router.routes.pop()


@pytest.mark.parametrize("route", [r for r in ROUTES], ids=str)
def test_without_a_token_every_route_but_the_public_ones_is_401(
        client: TestClient, app: FastAPI, template: Template, route: Route) -> None:
    r = call(client, app, template, route, "nobody")
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


@pytest.mark.parametrize(("route", "role"), [(r, role) for r in ROUTES for role in ROLES],
                         ids=[f"{r} as {role}" for r in ROUTES for role in ROLES])
def test_each_role_is_let_in_or_refused_as_the_table_says(
        client: TestClient, app: FastAPI, engine: Engine, template: Template, route: Route,
        role: str) -> None:
    before = len(audit_rows(engine))
    r = call(client, app, template, route, role)
    if role in route.roles:
        assert 200 <= r.status_code < 300, (r.status_code, r.text)
    else:
        assert r.status_code == 403, (r.status_code, r.text)
        detail = r.json()["detail"]
        assert "may not" in detail and all(allowed in detail for allowed in route.roles)
        assert len(audit_rows(engine)) == before  # a refused call changes nothing


@pytest.mark.parametrize("path", ["/health", f"/venues/{VENUE_ID}/jwks",
                                  f"/venues/{VENUE_ID}/revocations"])
def test_what_locks_read_offline_stays_public(client: TestClient, path: str) -> None:
    assert client.get(url(path)).status_code == 200


def test_openapi_offers_bearer_tokens(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" in spec["paths"][url("/zones")]["get"]
    assert "security" not in spec["paths"][url("/auth/token")]["post"]


# ------------------------------------------------------------------- logging in


def test_log_in_gives_a_token_with_every_claim(client: TestClient) -> None:
    before = utcnow()
    r = client.post(url("/auth/token"), json={"username": "staff", "password": "demo-staff"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["token_type"], body["expires_in"], body["roles"]) == ("bearer", 3600, ["staff"])
    assert r.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], KEY, algorithms=["HS256"], audience="venuehub-api")
    assert set(claims) == {"iss", "aud", "sub", "roles", "typ", "iat", "exp", "jti", "ver"}
    assert (claims["iss"], claims["aud"], claims["sub"], claims["roles"], claims["typ"]) == (
        "venuehub", "venuehub-api", "staff", ["staff"], "staff")
    assert int(before.timestamp()) <= claims["iat"] <= int(utcnow().timestamp())
    assert claims["exp"] - claims["iat"] == 3600 and re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    guests = client.get(url("/guests"), headers=bearer(body["access_token"]))
    assert guests.status_code == 200 and len(guests.json()) > 20


def test_token_lifetime_follows_the_setting(engine: Engine, tmp_path: Path,
                                            signing_keys: list[SigningKey]) -> None:
    app = make_app(engine, tmp_path, signing_keys, api_token_minutes=5)
    with TestClient(app) as c:
        r = c.post(url("/auth/token"), json={"username": "admin", "password": "demo-admin"})
        assert r.json()["expires_in"] == 300
        r = c.post(url("/guests/guest-01/token"), headers=bearer(r.json()["access_token"]))
        assert r.json()["expires_in"] == 300


@pytest.mark.parametrize(("username", "password"), [
    ("admin", "wrong"), ("admin", "demo-staff"), ("nobody", "demo-admin"), ("Admin", "demo-admin"),
    ("disabled", "demo-disabled"), ("test-admin", "!"),
])
def test_every_failed_log_in_is_the_same_401(client: TestClient, engine: Engine, username: str,
                                             password: str) -> None:
    with session_scope(engine) as session:
        session.add(StaffUser(username="disabled", active=False, roles=["admin"],
                              password_hash=security.hash_secret("demo-disabled")))
    r = client.post(url("/auth/token"), json={"username": username, "password": password})
    assert r.status_code == 401, r.text
    assert r.json() == {"detail": "invalid username or password"}
    assert r.headers["www-authenticate"] == "Bearer"


def test_an_unknown_user_costs_one_password_check_like_a_known_one(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = security.verify_secret

    def counting(hashed: str, secret: str) -> bool:
        checked.append(hashed)
        return real(hashed, secret)

    monkeypatch.setattr(security, "verify_secret", counting)
    for username in ("admin", "nobody"):
        client.post(url("/auth/token"), json={"username": username, "password": "guess"})
    assert len(checked) == 2 and checked[1] == security.dummy_hash()
    assert checked[0].startswith("$argon2id$") and checked[1].startswith("$argon2id$")


@pytest.mark.parametrize("body", [{}, {"username": "admin"}, {"username": "", "password": "x"},
                                  {"username": "admin", "password": "x" * 1025},
                                  {"username": "admin", "password": "demo-admin", "otp": 1}])
def test_a_malformed_log_in_is_422(client: TestClient, body: dict[str, Any]) -> None:
    assert client.post(url("/auth/token"), json=body).status_code == 422


# ---------------------------------------------------------------- bad tokens


def forge(claims: dict[str, Any], key: bytes | None = KEY, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # PyJWT warns that 32 bytes are short for HS512: we know
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(utcnow().timestamp())
    claims = {"iss": "venuehub", "aud": "venuehub-api", "sub": "test-admin", "roles": ["admin"],
              "typ": "staff", "iat": now, "exp": now + 600, "jti": "a" * 32}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_forged_token_with_good_claims_works(client: TestClient, app: FastAPI) -> None:
    staff_token(app)  # the user must exist
    assert client.get(url("/zones"), headers=bearer(forge(good_claims()))).status_code == 200


def _tampered(app: FastAPI) -> str:
    header, payload, signature = staff_token(app, STAFF).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["roles"] = ["admin"]
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def _resigned(app: FastAPI) -> str:
    header, payload, signature = staff_token(app).split(".")
    return ".".join([header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA"
                                                         else "BBBB")])


BAD_TOKENS: dict[str, Callable[[FastAPI], str]] = {
    "tampered roles": _tampered,
    "tampered signature": _resigned,
    "expired": lambda app: issue_api_token(KEY, subject="test-admin", roles=["admin"],
                                           typ="staff", minutes=60,
                                           now=utcnow() - timedelta(hours=2)).token,
    "alg none": lambda app: forge(good_claims(), None, "none"),
    "alg none, capitalised": lambda app: ".".join([
        jwt.utils.base64url_encode(b'{"alg":"None","typ":"JWT"}').decode(),
        jwt.utils.base64url_encode(json.dumps(good_claims()).encode()).decode(), ""]),
    "HS512": lambda app: forge(good_claims(), KEY, "HS512"),
    "another key": lambda app: forge(good_claims(), secrets.token_bytes(32)),
    "wrong audience": lambda app: forge(good_claims(aud="venuehub-devices")),
    "no audience": lambda app: forge(good_claims(aud=None)),
    "wrong issuer": lambda app: forge(good_claims(iss="someone-else")),
    "no expiry": lambda app: forge(good_claims(exp=None)),
    "no jti": lambda app: forge(good_claims(jti=None)),
    "no typ": lambda app: forge(good_claims(typ=None)),
    "no roles": lambda app: forge(good_claims(roles=None)),
    "issued in the future": lambda app: forge(good_claims(iat=int(utcnow().timestamp()) + 3600)),
    "a guest claiming admin": lambda app: forge(good_claims(typ="guest", sub="guest-01")),
    "staff claiming guest": lambda app: forge(good_claims(roles=["guest"])),
    "a role that does not exist": lambda app: forge(good_claims(roles=["root"])),
    "roles not a list": lambda app: forge(good_claims(roles="admin")),
    "an unknown user": lambda app: forge(good_claims(sub="mallory")),
    "garbage": lambda app: "not.a.token",
    "empty": lambda app: "",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_tokens_are_401(client: TestClient, app: FastAPI, engine: Engine, kind: str) -> None:
    staff_token(app)  # test-admin exists: the refusals are about the token
    token = BAD_TOKENS[kind](app)
    r = client.get(url("/zones"), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.patch(url("/zones/park"), json={"capacity": 1},
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    # A token the hub signed for nobody it knows is audited (once); forgeries leave no trace.
    assert [(e.action, e.detail["why"]) for e in audit_rows(engine)] == (
        [("auth.token_refused", "user disabled or removed")] if kind == "an unknown user"
        else [])


@pytest.mark.parametrize("header", ["Basic YWRtaW46ZGVtby1hZG1pbg==", "Bearer", "bearer",
                                    "Token x"])
def test_other_authorization_schemes_are_401(client: TestClient, header: str) -> None:
    r = client.get(url("/zones"), headers={"Authorization": header})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_an_invalid_token_says_so_in_the_challenge(client: TestClient) -> None:
    r = client.get(url("/zones"), headers=bearer("not.a.token"))
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_a_disabled_user_s_token_stops_at_once(client: TestClient, app: FastAPI,
                                              engine: Engine) -> None:
    headers = who(app, STAFF)
    assert client.get(url("/guests"), headers=headers).status_code == 200
    with session_scope(engine) as session:
        user = session.exec(select(StaffUser).where(StaffUser.username == "test-staff")).one()
        user.active = False
    assert client.get(url("/guests"), headers=headers).status_code == 401
    assert client.get(url("/guests"), headers=headers).status_code == 401
    # Whoever still holds it is seen: once a minute per token, not a row per request.
    assert [(e.action, e.target, e.detail["why"]) for e in audit_rows(engine)] == [
        ("auth.token_refused", "staff:test-staff", "user disabled or removed")]


def test_an_erased_guest_s_token_is_refused_and_audited(client: TestClient, app: FastAPI,
                                                      engine: Engine) -> None:
    headers = who(app, "guest-02")
    assert client.get(url("/guests/guest-02"), headers=headers).status_code == 200
    erased = client.post(url("/guests/guest-02/erase"), headers=who(app, ADMIN))
    assert erased.status_code == 200, erased.text
    r = client.get(url("/guests/guest-02/preferences"), headers=headers)
    assert r.status_code == 401
    refused = [e for e in audit_rows(engine) if e.action == "auth.token_refused"]
    assert [(e.actor, e.detail["why"]) for e in refused] == [("guest:guest-02", "revoked")]
    assert refused[0].source == "testclient"


def test_a_role_taken_away_stops_at_once(client: TestClient, app: FastAPI,
                                         engine: Engine) -> None:
    headers = bearer(staff_token(app, STAFF, AUDITOR, username="two-hats"))
    assert client.post(url("/guests"), json={"name": "X"}, headers=headers).status_code == 201
    with session_scope(engine) as session:
        user = session.exec(select(StaffUser).where(StaffUser.username == "two-hats")).one()
        user.roles = [AUDITOR]
    r = client.post(url("/guests"), json={"name": "Y"}, headers=headers)
    assert r.status_code == 403 and "two-hats (auditor)" in r.json()["detail"]
    assert client.get(url("/audit"), headers=headers).status_code == 200


def test_a_token_of_another_hub_is_refused(client: TestClient, engine: Engine, tmp_path: Path,
                                           signing_keys: list[SigningKey]) -> None:
    other = create_app(engine=engine, settings=Settings(data_dir=tmp_path),
                       token_key=secrets.token_bytes(32))
    assert client.get(url("/zones"), headers=bearer(staff_token(other))).status_code == 401
    same = make_app(engine, tmp_path, signing_keys)  # the same key: another worker of this hub
    assert client.get(url("/zones"), headers=bearer(staff_token(same))).status_code == 200


# ---------------------------------------------------------------- guest tokens


def test_staff_issue_a_guest_token_that_reaches_the_guest_s_own_data(
        client: TestClient, app: FastAPI) -> None:
    r = client.post(url("/guests/guest-03/token"), headers=who(app, STAFF))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["token_type"], body["expires_in"], body["roles"]) == ("bearer", 3600, ["guest"])
    claims = jwt.decode(body["access_token"], KEY, algorithms=["HS256"], audience="venuehub-api")
    assert (claims["sub"], claims["roles"], claims["typ"]) == ("guest-03", ["guest"], "guest")
    mine = bearer(body["access_token"])
    assert client.get(url("/guests/guest-03"), headers=mine).json()["name"] == "Bo Chen"
    assert client.get(url("/guests/guest-04"), headers=mine).status_code == 403
    assert client.get(url("/guests"), headers=mine).status_code == 403


def test_no_token_for_a_guest_who_does_not_exist(client: TestClient, app: FastAPI) -> None:
    r = client.post(url("/guests/nobody/token"), headers=who(app, ADMIN))
    assert r.status_code == 404


# ------------------------------------------------------------ guest isolation

# Every guest-reachable route, on guest-01's data, called by guest-02.
GUEST_SCOPED: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
    ("GET", "/guests/guest-01", None, None),
    ("GET", "/guests/guest-01/credentials", None, None),
    ("GET", "/guests/guest-01/entitlements", None, None),
    ("GET", "/guests/guest-01/spending-policy", None, None),
    ("PUT", "/guests/guest-01/spending-policy", {"payment_enabled": False}, None),
    ("POST", "/guests/guest-01/broker-login", None, None),
    ("DELETE", "/guests/guest-01/broker-login", None, None),
    ("GET", "/credentials/band-guest-01", None, None),
    ("PATCH", "/credentials/band-guest-01", {"status": "lost"}, None),
    ("POST", "/credentials/phone-guest-01/phone-key", {"phone_jwk": PHONE_JWK}, None),
    ("GET", "/entitlements/ticket-guest-01", None, None),
    ("GET", "/events", None, {"guest_id": "guest-01"}),
    ("GET", "/accounts", None, {"guest_id": "guest-01"}),
    ("GET", "/accounts/wallet-guest-01", None, None),
    ("GET", "/accounts/wallet-guest-01/statement", None, None),
    ("GET", "/transactions", None, {"guest_id": "guest-01"}),
    ("GET", "/transactions", None, {"account_id": "wallet-guest-01"}),
    ("GET", "/transactions", None, {"guest_id": "guest-02", "account_id": "folio-guest-01"}),
    ("GET", "/guests/guest-01/preferences", None, None),
    ("PUT", "/guests/guest-01/preferences", {"language": "en"}, None),
    ("GET", "/guests/guest-01/consent", None, None),
    ("PUT", "/guests/guest-01/consent/offers", {"granted": True}, None),
    ("GET", "/guests/guest-01/export", None, None),
]


def test_every_guest_reachable_route_is_in_the_isolation_list() -> None:
    scoped = {(m, p.split("?")[0]) for m, p, _, _ in GUEST_SCOPED}
    for route in ROUTES:
        if GUEST in route.roles:
            assert (route.method, route.path) in scoped, route


@pytest.mark.parametrize(("method", "path", "body", "params"), GUEST_SCOPED,
                         ids=[f"{m} {p} {q or ''}" for m, p, _, q in GUEST_SCOPED])
def test_a_guest_never_reaches_another_guest_s_data(
        client: TestClient, app: FastAPI, engine: Engine, method: str, path: str,
        body: dict[str, Any] | None, params: dict[str, str] | None) -> None:
    with Session(engine) as session:
        band = session.get(Credential, "band-guest-01")
        policy = session.get(SpendingPolicy, "guest-01")
        before = (band.model_dump() if band else None, policy.model_dump() if policy else None)
    r = client.request(method, url(path), json=body, params=params, headers=who(app, "guest-02"))
    assert r.status_code == 403, r.text
    assert r.json() == {"detail": "a guest may only reach their own data"}
    assert "guest-01" not in r.text and "Charlie" not in r.text
    with Session(engine) as session:
        band = session.get(Credential, "band-guest-01")
        policy = session.get(SpendingPolicy, "guest-01")
        assert (band.model_dump() if band else None,
                policy.model_dump() if policy else None) == before
    assert audit_rows(engine) == []


@pytest.mark.parametrize("path", ["/guests/nobody", "/credentials/nothing", "/accounts/nothing",
                                  "/accounts/nothing/statement", "/entitlements/nothing",
                                  "/accounts/revenue-cafe"])
def test_a_guest_cannot_tell_a_missing_row_from_another_s(client: TestClient, app: FastAPI,
                                                         path: str) -> None:
    r = client.get(url(path), headers=who(app, "guest-02"))
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/credentials/pk-guest-02", None),
    ("GET", "/credentials/04a10000000002", None),  # a UID in any case
    ("PATCH", "/credentials/pk-guest-02", {"status": "lost"}),
    ("POST", "/credentials/pk-guest-02/phone-key", {"phone_jwk": PHONE_JWK}),
])
def test_a_guest_asking_by_identifier_is_told_the_id(client: TestClient, app: FastAPI,
                                                     method: str, path: str,
                                                     body: dict[str, Any] | None) -> None:
    """The identifier (what a reader presents) where the id belongs: 404 naming the id, for
    the guest's own credentials; another guest's identifier is the 403 of a missing row."""
    right = "band-guest-02" if "04a1" in path else "phone-guest-02"
    r = client.request(method, url(path), json=body, headers=who(app, "guest-02"))
    assert r.status_code == 404, r.text
    assert f"use /credentials/{right}" in r.json()["detail"]
    other = path.replace("guest-02", "guest-01").replace("04a10000000002", "04a10000000001")
    r = client.request(method, url(other), json=body, headers=who(app, "guest-02"))
    assert r.status_code == 403, r.text
    assert r.json() == {"detail": "a guest may only reach their own data"}
    # Staff, who may see every credential, are told the id too.
    r = client.get(url(other.removesuffix("/phone-key")), headers=who(app, ADMIN))
    assert r.status_code == 404, r.text
    assert f"use /credentials/{right.replace('02', '01')}" in r.json()["detail"]


@pytest.mark.parametrize(("path", "key"), [("/events", "items"), ("/transactions", None),
                                           ("/accounts", None)])
def test_a_guest_s_lists_hold_their_own_rows_only(client: TestClient, app: FastAPI,
                                                  path: str, key: str | None) -> None:
    def rows(headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
        r = client.get(url(path), params={"limit": 500, **params}, headers=headers)
        assert r.status_code == 200, r.text
        body: list[dict[str, Any]] = r.json()[key] if key else r.json()
        return body

    mine = rows(who(app, "guest-02"))
    assert mine and mine == rows(who(app, "guest-02"), guest_id="guest-02")
    assert mine == rows(who(app, ADMIN), guest_id="guest-02")
    assert len(rows(who(app, ADMIN))) > len(mine)
    assert "guest-01" not in json.dumps(mine)


def test_a_guest_may_only_report_their_credential_lost(client: TestClient, app: FastAPI,
                                                       engine: Engine) -> None:
    me = who(app, "guest-01")
    for body in ({"status": "active"}, {"status": "revoked"}, {"label": "mine"},
                 {"status": "lost", "label": "mine"}, {}):
        r = client.patch(url("/credentials/band-guest-01"), json=body, headers=me)
        assert r.status_code == 403, (body, r.text)
    r = client.patch(url("/credentials/band-guest-01"), json={"status": "lost"}, headers=me)
    assert r.status_code == 200 and r.json()["status"] == "lost"
    # Found again: only staff reactivate it.
    r = client.patch(url("/credentials/band-guest-01"), json={"status": "active"}, headers=me)
    assert r.status_code == 403
    r = client.patch(url("/credentials/band-guest-01"), json={"status": "active"},
                     headers=who(app, STAFF))
    assert r.status_code == 200


def test_a_guest_never_sets_who_pays_for_them(client: TestClient, app: FastAPI) -> None:
    me = who(app, "guest-01")
    r = client.put(url("/guests/guest-01/spending-policy"), headers=me,
                   json={"payer_guest_id": "guest-02"})
    assert r.status_code == 403 and "payer_guest_id" in r.json()["detail"]
    r = client.put(url("/guests/guest-01/spending-policy"), headers=me,
                   json={"payer_guest_id": "guest-01", "daily_limit": 3_000})
    assert r.status_code == 200 and r.json()["payer_guest_id"] == "guest-01"
    # A party member (guest-11, whose lead guest-01 pays) cannot lift the lead's limits.
    r = client.put(url("/guests/guest-11/spending-policy"), headers=who(app, "guest-11"),
                   json={"payment_enabled": True})
    assert r.status_code == 403, r.text
    policy = client.get(url("/guests/guest-11/spending-policy"),
                        headers=who(app, "guest-11")).json()
    assert (policy["payer_guest_id"], policy["daily_limit"]) == ("guest-01", 2_000)
    r = client.put(url("/guests/guest-11/spending-policy"), headers=who(app, STAFF),
                   json={"payer_guest_id": "guest-11"})
    assert r.status_code == 200 and r.json()["payer_guest_id"] == "guest-11"


# --------------------------------------------------------------------- audit


@pytest.mark.parametrize("route", MUTATING, ids=str)
def test_every_change_writes_one_audit_entry(client: TestClient, app: FastAPI, engine: Engine,
                                            template: Template, route: Route) -> None:
    r = call(client, app, template, route, ADMIN)
    assert 200 <= r.status_code < 300, r.text
    [entry] = audit_rows(engine)
    assert route.audit is not None
    action, target = route.audit
    target = target.replace("{charge}", template.charges["guest-01"])
    target = target.replace("{id}", str(r.json().get("id") if r.content else None))
    assert (entry.actor, entry.roles, entry.action, entry.target, entry.source) == (
        "test-admin", ["admin"], action, target, "testclient")
    assert entry.at <= utcnow() and isinstance(entry.detail, dict)
    for name, value in (route.body or {}).items():
        if name not in ("pin", "phone_jwk"):
            assert entry.detail[name] == value, (name, entry.detail)


@pytest.mark.parametrize("route", BY_GUEST, ids=str)
def test_a_guest_s_changes_are_audited_under_their_name(
        client: TestClient, app: FastAPI, engine: Engine, template: Template,
        route: Route) -> None:
    assert 200 <= call(client, app, template, route, GUEST).status_code < 300
    [entry] = audit_rows(engine)
    assert (entry.actor, entry.roles, entry.source) == ("guest:guest-01", ["guest"], "testclient")
    assert route.audit and entry.action == route.audit[0]


def test_the_audit_log_holds_no_secret(client: TestClient, app: FastAPI, engine: Engine) -> None:
    secrets_seen: list[str] = ["demo-admin", PIN]
    r = client.post(url("/auth/token"), json={"username": "admin", "password": "demo-admin"})
    admin = bearer(r.json()["access_token"])
    secrets_seen.append(r.json()["access_token"])
    r = client.post(url("/guests/guest-01/token"), headers=admin)
    secrets_seen.append(r.json()["access_token"])
    r = client.put(url("/guests/guest-01/spending-policy"), headers=admin,
                   json={"pin": PIN, "pin_threshold": 100})
    assert r.status_code == 200 and r.json()["has_pin"]
    r = client.post(url("/credentials/phone-guest-01/phone-key"), headers=admin,
                    json={"phone_jwk": PHONE_JWK})
    assert r.status_code == 201, r.text
    secrets_seen.append(r.json()["token"])
    entries = client.get(url("/audit"), headers=who(app, AUDITOR)).json()
    assert [e["action"] for e in entries] == ["phone_key.issue", "spending_policy.set",
                                              "guest.token", "auth.token"]
    text = json.dumps(entries)
    for secret in secrets_seen:
        assert secret not in text
    for secret in secrets_seen[2:]:  # the tokens: no part of them either
        for part in secret.split("."):
            assert part not in text
    policy = entries[1]["detail"]
    assert "pin" not in policy and policy["pin_changed"] is True
    login = entries[3]
    assert (login["actor"], login["roles"], login["target"]) == ("admin", ["admin"], "user:admin")
    assert set(login["detail"]) == {"jti", "expires_in"}


def test_refused_calls_write_nothing_but_a_failed_log_in(client: TestClient, app: FastAPI,
                                                engine: Engine) -> None:
    calls = [
        ("POST", "/guests", {"name": "X"}, who(app, INTEGRATOR)),        # 403
        ("PATCH", "/zones/park", {"capacity": -1}, who(app, ADMIN)),      # 422
        ("PATCH", "/zones/nowhere", {"capacity": 1}, who(app, ADMIN)),    # 404
        ("POST", "/venues", {"id": VENUE_ID, "name": "Again"}, who(app, ADMIN)),  # 409
        ("POST", "/auth/token", {"username": "admin", "password": "nope"}, {}),   # 401
    ]
    for method, path, body, headers in calls:
        assert client.request(method, url(path), json=body, headers=headers).status_code >= 400
    # Only the failed log-in leaves a trace: a guessing run must be seen.
    assert [(e.action, e.target, e.detail) for e in audit_rows(engine)] == [
        ("auth.failure", "user:admin", {})]


def test_reads_write_nothing(client: TestClient, app: FastAPI, engine: Engine,
                             template: Template) -> None:
    for route in ROUTES:
        if route.method == "GET":
            assert call(client, app, template, route, ADMIN).status_code == 200
    assert audit_rows(engine) == []


def test_taps_payments_and_the_demo_write_no_audit_entry(engine: Engine) -> None:
    # The template was seeded and fed taps and payments: none of that is an API change.
    assert audit_rows(engine) == []


def test_money_movements_name_who_made_them(client: TestClient, app: FastAPI,
                                            template: Template) -> None:
    staff = who(app, STAFF)
    made = [
        client.post(url("/accounts/wallet-guest-02/topups"), headers=staff,
                    json={"amount": 100, "idempotency_key": "t-1"}),
        client.post(url(f"/transactions/{template.charges['guest-02']}/refunds"), headers=staff,
                    json={"idempotency_key": "r-1"}),
        client.post(url("/accounts/folio-guest-02/settle"), headers=staff,
                    json={"idempotency_key": "s-1"}),
    ]
    assert [r.status_code for r in made] == [201, 201, 201], [r.text for r in made]
    assert {r.json()["actor"] for r in made} == {"test-staff"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_nobody_edits_the_audit_log(client: TestClient, app: FastAPI, method: str) -> None:
    r = client.request(method, url("/audit"), json={}, headers=who(app, ADMIN))
    assert r.status_code == 405, r.text


def test_audit_entries_are_append_only_in_the_database(client: TestClient, app: FastAPI,
                                                       engine: Engine) -> None:
    client.patch(url("/zones/park"), json={"capacity": 9}, headers=who(app, ADMIN))
    with Session(engine) as session:
        entry = session.exec(select(AuditEntry)).one()
        entry.actor = "someone-else"
        with pytest.raises(PermissionError):
            session.commit()
        session.rollback()
        session.delete(session.exec(select(AuditEntry)).one())
        with pytest.raises(PermissionError):
            session.commit()
    assert [e.actor for e in audit_rows(engine)] == ["test-admin"]


def test_only_the_audit_writer_touches_the_table() -> None:
    """In the hub's code, AuditEntry rows are built in store.events.record_audit only, and only
    the API's audit helpers, the log-in route, the CLI, the bridge's offline-entry alerts
    and the broker's refused logins (no API caller there) call it."""
    root = Path(hub.__file__).parent
    patterns = {"AuditEntry": r"\bAuditEntry\b", "record_audit": r"\brecord_audit\("}
    users: dict[str, list[str]] = {name: [] for name in patterns}
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for name, pattern in patterns.items():
            if re.search(pattern, text):
                users[name].append(path.relative_to(root).as_posix())
    assert users["AuditEntry"] == ["api/routes/audit.py", "models.py", "store/events.py"]
    assert users["record_audit"] == ["api/deps.py", "api/routes/auth.py", "broker_audit.py",
                                     "cli.py", "offline_entries.py", "store/events.py"]
    store_text = (root / "store" / "events.py").read_text()
    assert store_text.count("AuditEntry(") == 1
    assert not re.search(r"(update|delete)\(\s*AuditEntry", store_text)


def test_the_audit_log_filters_and_pages(client: TestClient, app: FastAPI) -> None:
    staff, admin = who(app, STAFF), who(app, ADMIN)
    for n in range(3):
        client.patch(url("/zones/park"), json={"capacity": 100 + n}, headers=staff)
    client.patch(url("/credentials/band-guest-02"), json={"label": "blue"}, headers=admin)
    client.patch(url("/credentials/band-guest-01"), json={"status": "lost"},
                 headers=who(app, GUEST))
    auditor = who(app, AUDITOR)
    everything = client.get(url("/audit"), headers=auditor).json()
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert len(everything) == 5
    by_staff = client.get(url("/audit"), params={"actor": "test-staff"}, headers=auditor).json()
    assert [e["detail"]["capacity"] for e in by_staff] == [102, 101, 100]
    guest = client.get(url("/audit"), params={"actor": "guest:guest-01"}, headers=auditor).json()
    assert [(e["action"], e["target"]) for e in guest] == [
        ("credential.update", "credential:band-guest-01")]
    updates = client.get(url("/audit"), params={"action": "credential.update"},
                         headers=auditor).json()
    assert {e["target"] for e in updates} == {"credential:band-guest-01",
                                             "credential:band-guest-02"}
    park = client.get(url("/audit"), params={"target": "zone:park", "limit": 2, "offset": 1},
                      headers=auditor).json()
    assert park == by_staff[1:3]
    assert client.get(url("/audit"), params={"limit": 0}, headers=auditor).status_code == 422
    assert client.get(url("/audit"), params={"actor": "nobody"}, headers=auditor).json() == []


# --------------------------------------------------------------- HUB_API_AUTH


def test_with_auth_off_a_caller_without_a_token_is_an_anonymous_admin(
        engine: Engine, tmp_path: Path, signing_keys: list[SigningKey]) -> None:
    app = make_app(engine, tmp_path, signing_keys, api_auth=False)
    with TestClient(app) as c:
        assert c.patch(url("/zones/park"), json={"capacity": 5}).status_code == 200
        assert c.get(url("/audit")).json()[0]["actor"] == "anonymous"
        # A token still counts: a guest's still reaches their own data only.
        guest = bearer(guest_token(app, "guest-02"))
        assert c.get(url("/guests/guest-01"), headers=guest).status_code == 403
        assert c.get(url("/zones"), headers=bearer("garbage")).status_code == 401


def test_auth_is_on_by_default() -> None:
    assert Settings().api_auth is True and Settings().api_token_minutes == 60


def test_api_auth_follows_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_API_AUTH", "false")
    monkeypatch.setenv("HUB_API_TOKEN_MINUTES", "15")
    assert (Settings().api_auth, Settings().api_token_minutes) == (False, 15)


# ---------------------------------------------------- secrets, demo, hub up


def test_the_token_key_is_a_private_32_byte_secret(tmp_path: Path) -> None:
    from hub.secrets import load_or_create

    first = load_or_create(tmp_path)
    path = tmp_path / "secrets" / "api-token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.api_token_key) == 32 and first.api_token_key.hex() not in repr(first)
    assert load_or_create(tmp_path).api_token_key == first.api_token_key


def test_the_demo_has_one_user_per_role_and_seeds_them_once(template: Template) -> None:
    engine = create_db_engine(f"sqlite:///{template.path}")
    try:
        with Session(engine) as session:
            users = {u.username: u for u in session.exec(select(StaffUser)).all()}
        assert {name: u.roles for name, u in users.items()} == {
            r: [r] for r in (ADMIN, STAFF, INTEGRATOR, AUDITOR)}
        for name, user in users.items():
            assert user.active and user.password_hash.startswith("$argon2id$")
            assert security.verify_secret(user.password_hash, f"demo-{name}")
    finally:
        engine.dispose()


def test_seeding_again_keeps_the_users(tmp_path: Path, template: Template) -> None:
    path = tmp_path / "again.db"
    shutil.copyfile(template.path, path)
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            before = {u.username: u.password_hash for u in session.exec(select(StaffUser)).all()}
        summary = seed_demo(engine, utcnow())
        with Session(engine) as session:
            after = {u.username: u.password_hash for u in session.exec(select(StaffUser)).all()}
        assert after == before and summary["created"] == 0
    finally:
        engine.dispose()


def test_hub_up_without_the_demo_creates_no_user(tmp_path: Path) -> None:
    running = Hub(hub_settings(tmp_path), demo=False)
    running.start()
    try:
        assert running.engine is not None and running.secrets is not None
        with Session(running.engine) as session:
            assert session.exec(select(StaffUser)).all() == []
        assert running.app is not None
        assert running.app.state.token_key == running.secrets.api_token_key
    finally:
        running.stop()


def test_the_demo_banner_tells_how_to_get_a_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, http_port=8123)
    summary = {"venue": VENUE_ID, "rooms": 10, "guests": 20, "created": 0,
               "users": [ADMIN, STAFF, INTEGRATOR, AUDITOR]}
    with cli.console.capture() as captured:
        cli._banner(settings, summary)
    text = captured.get()
    assert "admin, staff, integrator, auditor" in text and "demo-<role>" in text
    assert "curl -s -X POST http://127.0.0.1:8123/api/v1/auth/token" in text
    assert '{"username":"admin","password":"demo-admin"}' in text
    assert 'curl -H "Authorization: Bearer $TOKEN"' in text
    with cli.console.capture() as captured:
        cli._banner(settings, None)
    assert "demo-admin" not in captured.get()


def test_the_banner_of_a_hub_on_an_external_tls_broker_says_mqtts_and_where_logins_come_from(
        tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="mqtts://mqtt.venue.example:8883")
    summary = {"venue": VENUE_ID, "rooms": 10, "guests": 20, "created": 0, "users": [ADMIN]}
    with cli.console.capture() as captured:
        cli._banner(settings, summary)
    text = captured.get()
    assert "mqtts://mqtt.venue.example:8883" in text and "mqtt://mqtt" not in text
    sheet = tmp_path / "device-sheet.json"
    assert f"hub provision device-sheet --out {sheet}" in text
    assert f"--provisioning {sheet}" in text and "demo-provisioning.json" not in text


# ------------------------------------------------------------------- hub user


runner = CliRunner()


def test_hub_user_add_then_log_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = runner.invoke(cli.app, ["user", "add", "alice", "--role", "staff", "--role", "auditor",
                                   "--password-stdin", "--data-dir", str(data)],
                         input="correct horse battery\n")
    assert done.exit_code == 0, done.output
    assert "correct horse" not in done.output
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    try:
        app = create_app(engine=engine, settings=Settings(data_dir=data), token_key=KEY)
        with TestClient(app) as c:
            r = c.post(url("/auth/token"),
                       json={"username": "alice", "password": "correct horse battery"})
            assert r.status_code == 200 and r.json()["roles"] == ["auditor", "staff"]
        entry, login = audit_rows(engine)
        assert (login.action, login.actor) == ("auth.token", "alice")
        assert (entry.action, entry.target, entry.source, entry.detail) == (
            "user.add", "user:alice", "cli", {"roles": ["auditor", "staff"]})
        assert entry.actor.startswith("cli:") and "correct" not in json.dumps(entry.detail)
    finally:
        engine.dispose()
    listed = runner.invoke(cli.app, ["user", "list", "--data-dir", str(data)])
    assert listed.exit_code == 0 and "alice" in listed.output
    assert "auditor, staff" in listed.output and "$argon2" not in listed.output


def test_hub_user_add_prompts_without_echo(tmp_path: Path) -> None:
    done = runner.invoke(cli.app, ["user", "add", "bob", "--role", "admin", "--data-dir",
                                   str(tmp_path)], input="s3cret-pass\ns3cret-pass\n")
    assert done.exit_code == 0, done.output
    assert "s3cret-pass" not in done.output and "Password" in done.output


@pytest.mark.parametrize(("args", "stdin", "code"), [
    (["carol", "--role", "root"], "long-enough\n", 2),
    (["carol"], "long-enough\n", 2),                              # no role at all
    (["carol", "--role", "staff"], "short\n", 2),
    (["guest:01", "--role", "staff"], "long-enough\n", 2),        # reads as a guest in the log
    (["", "--role", "staff"], "long-enough\n", 2),
])
def test_hub_user_add_refuses(tmp_path: Path, args: list[str], stdin: str, code: int) -> None:
    done = runner.invoke(cli.app, ["user", "add", *args, "--password-stdin", "--data-dir",
                                   str(tmp_path)], input=stdin)
    assert done.exit_code == code, done.output


def test_hub_user_add_twice_is_refused(tmp_path: Path) -> None:
    args = ["user", "add", "dave", "--role", "staff", "--password-stdin", "--data-dir",
            str(tmp_path)]
    assert runner.invoke(cli.app, args, input="first-password\n").exit_code == 0
    again = runner.invoke(cli.app, args, input="second-password\n")
    assert again.exit_code == 1 and "already exists" in again.output


# --------------------------------------------------------------- the simulator


class Recording(httpx.BaseTransport):
    """Hands requests to the app and remembers them."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.seen = inner, list[httpx.Request]()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.inner.handle_request(request)


def test_the_simulator_logs_in_once_and_sends_the_token(client: TestClient) -> None:
    transport = Recording(client._transport)
    with HubApi("http://testserver", transport=transport, username="integrator",
                password="demo-integrator") as api:
        assert transport.seen == []  # nothing until the first call
        assert api.device("gate-park-in-1").zone_id == "park"
        assert len(api.devices()) > 5 and api.health()["status"]
    paths = [r.url.path for r in transport.seen]
    assert paths == [url("/auth/token"), url("/devices/gate-park-in-1"), url("/devices"),
                     url("/health")]
    assert all(r.headers["authorization"].startswith("Bearer ") for r in transport.seen[1:])


def test_the_simulator_with_a_token_does_not_log_in(client: TestClient, app: FastAPI) -> None:
    transport = Recording(client._transport)
    with HubApi("http://testserver", transport=transport,
                token=staff_token(app, INTEGRATOR)) as api:
        api.devices()
    assert [r.url.path for r in transport.seen] == [url("/devices")]


@pytest.mark.parametrize(("kw", "status"), [
    ({"username": "admin", "password": "wrong"}, 401), ({}, 401),
    ({"username": "auditor", "password": "demo-auditor"}, 403),
])
def test_the_simulator_reports_a_refusal(client: TestClient, kw: dict[str, str],
                                         status: int) -> None:
    with HubApi("http://testserver", transport=client._transport, username=kw.get("username"),
                password=kw.get("password")) as api, pytest.raises(HubApiError) as refused:
        api.create_guest("Nobody")
    assert refused.value.status == status
    if kw.get("password") == "wrong":
        assert "log-in as 'admin' refused" in str(refused.value)


def test_simulators_still_never_import_the_hub() -> None:
    root = Path(__file__).parents[2] / "simulators"
    for path in root.rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+hub\b", path.read_text(), re.MULTILINE), path


def test_guest_ids_in_tokens_round_trip(client: TestClient, app: FastAPI) -> None:
    """A guest whose id looks like a username still gets guest scoping (typ decides)."""
    r = client.post(url("/guests"), json={"id": "admin", "name": "Ad Min"},
                    headers=who(app, STAFF))
    assert r.status_code == 201
    token = client.post(url("/guests/admin/token"), headers=who(app, STAFF)).json()
    headers = bearer(token["access_token"])
    assert client.get(url("/guests/admin"), headers=headers).status_code == 200
    assert client.get(url("/zones"), headers=headers).status_code == 403
    audit = client.get(url("/audit"), headers=who(app, AUDITOR)).json()
    assert audit[0]["target"] == "guest:admin" and audit[0]["actor"] == "test-staff"


def test_expiry_is_enforced_at_the_second(client: TestClient, app: FastAPI) -> None:
    staff_token(app)
    past = datetime.now(UTC) - timedelta(minutes=60, seconds=5)
    token = issue_api_token(KEY, subject="test-admin", roles=["admin"], typ="staff", minutes=60,
                            now=past).token
    assert client.get(url("/zones"), headers=bearer(token)).status_code == 401


def test_a_superseded_phone_key_stays_revoked_for_offline_locks_until_it_expires(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    admin = who(app, ADMIN)
    first = client.post(url("/credentials/phone-guest-01/phone-key"), headers=admin,
                        json={"phone_jwk": PHONE_JWK})
    assert first.status_code == 201, first.text
    listed = client.get(url(f"/venues/{VENUE_ID}/revocations")).json()["revoked"]
    assert first.json()["jti"] not in listed  # the current key opens doors
    second = client.post(url("/credentials/phone-guest-01/phone-key"), headers=admin,
                         json={"phone_jwk": PHONE_JWK})
    assert second.status_code == 201, second.text
    listed = client.get(url(f"/venues/{VENUE_ID}/revocations")).json()["revoked"]
    assert first.json()["jti"] in listed and second.json()["jti"] not in listed
    # Once the superseded key has expired, no lock would accept it anyway: off the list.
    with Session(engine) as session:
        later = datetime.fromisoformat(first.json()["exp"]) + timedelta(seconds=1)
        assert first.json()["jti"] not in guests.revoked_key_ids(session=session, now=later)


@pytest.mark.parametrize(("venue", "zones"), [
    (None, ["carousel", "coaster", "park", "room-101"]),  # where most of the grants are
    ("demo-resort", ["carousel", "coaster", "park", "room-101"]),
    ("demo-spa", ["spa"]),
])
def test_a_phone_key_is_signed_for_one_venue_and_carries_its_zones_only(
        client: TestClient, app: FastAPI, venue: str | None, zones: list[str]) -> None:
    """Guest 01 holds the resort and the spa: a key is one venue's (its iss and aud), so
    it names that venue's zones only, and the spa's gate gets a key it can verify."""
    body: dict[str, Any] = {"phone_jwk": PHONE_JWK} | ({"venue": venue} if venue else {})
    issued = client.post(url("/credentials/phone-guest-01/phone-key"),
                         headers=who(app, "guest-01"), json=body)
    assert issued.status_code == 201, issued.text
    claims = jwt.decode(issued.json()["token"], options={"verify_signature": False})
    expected_venue = venue or "demo-resort"
    assert (claims["aud"], claims["iss"]) == (expected_venue, issuer(expected_venue))
    assert claims["scope"]["zones"] == zones and issued.json()["zones"] == zones


def test_a_phone_key_for_a_venue_the_guest_holds_nothing_at_is_refused(
        client: TestClient, app: FastAPI) -> None:
    refused = client.post(url("/credentials/phone-guest-03/phone-key"),
                          headers=who(app, ADMIN), json={"phone_jwk": PHONE_JWK,
                                                         "venue": "demo-spa"})
    assert refused.status_code == 409, refused.text
    assert "demo-spa" in refused.json()["detail"]


def test_which_check_caught_a_credential_is_for_staff_not_the_guest(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    """The strict spa gate refuses Charlie's bare band UID with a detail for staff; his own
    journey shows the decision and its reason, not which check caught it."""
    ingest.tap(engine, "demo-spa", "gate-spa-in-1", utcnow(), "spa-bare-1",
               uid=wristband_uid(1))
    query = url("/events?guest_id=guest-01&device_id=gate-spa-in-1")
    [staff_view] = client.get(query, headers=who(app, ADMIN)).json()["items"]
    [own_view] = client.get(query, headers=who(app, "guest-01")).json()["items"]
    assert staff_view["reason"] == own_view["reason"] == "insecure_credential"
    assert staff_view["detail"] and own_view["detail"] is None


def test_a_guests_broker_login_opens_their_notifications_only(client: TestClient,
                                                              app: FastAPI) -> None:
    from hub.broker_auth import BrokerAuth, allowed, password_ok
    own = client.post(url("/guests/guest-01/broker-login"), headers=who(app, "guest-01"))
    assert own.status_code == 200, own.text
    login = own.json()
    assert login["username"] == "guest-guest-01"
    auth = BrokerAuth(BROKER_KEY, "venuehub-bridge", "bridge-secret")
    assert password_ok(login["username"], login["password"], auth)
    assert not password_ok("guest-guest-02", login["password"], auth)
    assert allowed(login["username"], "subscribe", login["topic"], bridge_user="venuehub-bridge")
    assert not allowed(login["username"], "subscribe", "venuehub/v1/+/guest/guest-02/#",
                       bridge_user="venuehub-bridge")
    other = client.post(url("/guests/guest-02/broker-login"), headers=who(app, "guest-01"))
    assert other.status_code == 403
    assert own.headers["cache-control"] == "no-store"


# ------------------------------------------------------------ brute force


def test_the_wait_grows_after_a_few_failures_and_stops_growing() -> None:
    from hub.login_throttle import FREE_FAILURES, LONGEST_WAIT, wait_after
    assert [wait_after(n).total_seconds() for n in range(FREE_FAILURES + 1)] == [0.0] * (
        FREE_FAILURES + 1)
    waits = [wait_after(n) for n in range(FREE_FAILURES + 1, FREE_FAILURES + 30)]
    assert waits == sorted(waits) and waits[0].total_seconds() == 1
    assert waits[-1] == LONGEST_WAIT


def test_guessing_a_password_is_slowed_audited_and_cannot_win_while_blocked(
        client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.api.routes import auth as auth_route
    with session_scope(engine) as session:
        session.add(StaffUser(username="victim", roles=["admin"],
                              password_hash=security.hash_secret("right-password")))
    clock = [utcnow()]
    monkeypatch.setattr(auth_route, "utcnow", lambda: clock[0])
    codes = [client.post(url("/auth/token"), json={"username": "victim",
                                                   "password": f"guess-{n}"}).status_code
             for n in range(5)]
    assert codes == [401] * 5
    blocked = client.post(url("/auth/token"), json={"username": "victim",
                                                    "password": "right-password"})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    # Another account from the same address is held up too: one client, one budget.
    assert client.post(url("/auth/token"), json={"username": "admin",
                                                 "password": "demo-admin"}).status_code == 429
    clock[0] += timedelta(seconds=2)
    ok = client.post(url("/auth/token"), json={"username": "victim", "password": "right-password"})
    assert ok.status_code == 200, ok.text
    again = client.post(url("/auth/token"), json={"username": "victim", "password": "nope"})
    assert again.status_code == 401  # the address's wait is over; the account's was cleared
    actions = [row.action for row in audit_rows(engine) if row.target == "user:victim"]
    assert actions.count("auth.failure") == 6 and actions.count("auth.throttled") == 1
    assert "auth.token" in actions


# ------------------------------------------------------------ tokens that stop


def test_a_password_change_or_a_disable_stops_every_token_at_once(
        client: TestClient, engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as session:
        session.add(StaffUser(username="desk", roles=["staff"],
                              password_hash=security.hash_secret("first-password")))
    token = client.post(url("/auth/token"), json={"username": "desk",
                                                  "password": "first-password"}).json()
    headers = bearer(token["access_token"])
    assert client.get(url("/guests"), headers=headers).status_code == 200
    runner = CliRunner()
    changed = runner.invoke(cli.app, ["user", "passwd", "desk", "--password-stdin",
                                      "--data-dir", str(tmp_path)], input="second-password\n")
    assert changed.exit_code == 0, changed.output
    assert client.get(url("/guests"), headers=headers).status_code == 401
    fresh = client.post(url("/auth/token"), json={"username": "desk",
                                                  "password": "second-password"})
    assert fresh.status_code == 200
    headers = bearer(fresh.json()["access_token"])
    assert client.get(url("/guests"), headers=headers).status_code == 200
    assert runner.invoke(cli.app, ["user", "disable", "desk", "--data-dir",
                                   str(tmp_path)]).exit_code == 0
    assert client.get(url("/guests"), headers=headers).status_code == 401
    assert client.post(url("/auth/token"), json={"username": "desk",
                                                 "password": "second-password"}
                       ).status_code == 401
    actions = [(e.action, e.detail) for e in audit_rows(engine) if e.target == "user:desk"]
    assert ("user.change", {"password_changed": True}) in actions
    assert ("user.change", {"active": False}) in actions


def test_an_erased_guest_or_a_lost_phone_stops_the_guests_token(
        client: TestClient, app: FastAPI) -> None:
    for guest, stop in (("guest-02", ("POST", "/guests/guest-02/erase", None)),
                        ("guest-03", ("PATCH", "/credentials/phone-guest-03",
                                      {"status": "lost"}))):
        own = bearer(client.post(url(f"/guests/{guest}/token"),
                                 headers=who(app, STAFF)).json()["access_token"])
        assert client.get(url(f"/guests/{guest}"), headers=own).status_code == 200
        method, path, body = stop
        assert client.request(method, url(path), json=body,
                              headers=who(app, ADMIN)).status_code == 200
        assert client.get(url(f"/guests/{guest}"), headers=own).status_code == 401


def test_a_token_from_before_versions_still_works_until_a_bump(app: FastAPI,
                                                             client: TestClient) -> None:
    staff_token(app, ADMIN, username="old-timer")  # the user
    claims = {"iss": security.TOKEN_ISSUER, "aud": security.TOKEN_AUDIENCE,
              "sub": "old-timer", "roles": ["admin"], "typ": "staff",
              "iat": int(utcnow().timestamp()),
              "exp": int((utcnow() + timedelta(minutes=5)).timestamp()), "jti": "j"}
    old = bearer(jwt.encode(claims, KEY, algorithm="HS256"))
    assert client.get(url("/guests"), headers=old).status_code == 200


def test_an_admin_disables_a_user_through_the_api_and_their_tokens_stop(
        client: TestClient, app: FastAPI) -> None:
    desk = who(app, STAFF)
    assert client.get(url("/guests"), headers=desk).status_code == 200
    users = client.get(url("/users"), headers=who(app, AUDITOR)).json()
    [listed] = [u for u in users if u["username"] == "test-staff"]
    assert (listed["roles"], listed["active"]) == (["staff"], True)
    assert "password_hash" not in json.dumps(users)
    changed = client.patch(url("/users/test-staff"), headers=who(app, ADMIN),
                           json={"active": False})
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert client.get(url("/guests"), headers=desk).status_code == 401
    assert client.patch(url("/users/test-staff"), headers=who(app, ADMIN),
                        json={}).status_code == 422
    assert client.patch(url("/users/nobody"), headers=who(app, ADMIN),
                        json={"active": True}).status_code == 404


@pytest.mark.parametrize("venue_id", ["hub", "Bridge", "guest-x", "venuehub-2"])
def test_a_venue_id_reserved_for_the_hub_is_refused_and_audited(
        client: TestClient, app: FastAPI, engine: Engine, venue_id: str) -> None:
    r = client.post(url("/venues"), json={"id": venue_id, "name": "Mine"},
                    headers=who(app, INTEGRATOR))
    assert r.status_code == 422 and "reserved" in r.json()["detail"]
    assert client.get(url(f"/venues/{venue_id}"), headers=who(app, ADMIN)).status_code == 404
    assert [(e.action, e.target, e.actor, e.detail) for e in audit_rows(engine)] == [
        ("venue.create_refused", f"venue:{venue_id}", "test-integrator", {"why": "reserved"})]
