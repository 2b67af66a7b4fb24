"""Folio credit limits through the API: the venue's default and a folio's own limit.

The decision and the ledger's atomic check are tested in tests/hub/test_payment.py and
tests/hub/test_money_concurrency.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from hub.db import create_db_engine, init_db
from hub.demo import VENUE_ID, seed_demo
from hub.models import utcnow
from tests.hub.conftest import who
from tests.hub.payments_helpers import pay_message, send

API = "/api/v1"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("folio-limits") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


def charge(engine: Engine, amount: int) -> str:
    decision = send(engine, pay_message(amount, guest=3, account="folio")).decision
    assert decision is not None
    return decision.reason


def test_the_venue_default_and_a_folio_s_own_limit(app: FastAPI, client: TestClient,
                                                   engine: Engine) -> None:
    admin, staff = who(app, "admin"), who(app, "staff")
    venue = client.get(f"{API}/venues/{VENUE_ID}", headers=admin).json()
    assert venue["folio_credit_limit"] is None  # by default a folio has no limit
    r = client.put(f"{API}/venues/{VENUE_ID}/folio-policy", headers=admin,
                   json={"folio_credit_limit": 5_000})
    assert r.status_code == 200 and r.json()["folio_credit_limit"] == 5_000, r.text
    assert charge(engine, 5_001) == "credit_limit_exceeded"
    assert charge(engine, 5_000) == "ok"

    r = client.patch(f"{API}/accounts/folio-guest-03", headers=staff,
                     json={"credit_limit": 20_000})
    assert r.status_code == 200 and r.json()["credit_limit"] == 20_000, r.text
    assert charge(engine, 15_000) == "ok"
    assert charge(engine, 1) == "credit_limit_exceeded"
    # null: the venue's default again (owing 200.00 already, past 50.00: nothing more)
    r = client.patch(f"{API}/accounts/folio-guest-03", headers=staff, json={"credit_limit": None})
    assert r.status_code == 200 and r.json()["credit_limit"] is None, r.text
    assert charge(engine, 1) == "credit_limit_exceeded"
    # an empty PATCH changes nothing
    assert client.patch(f"{API}/accounts/folio-guest-03", headers=staff,
                        json={}).json()["credit_limit"] is None


@pytest.mark.parametrize(("account", "body", "status"), [
    ("wallet-guest-01", {"credit_limit": 1_000}, 422),  # a wallet has no credit
    ("folio-guest-03", {"credit_limit": -1}, 422),
    ("folio-guest-03", {"credit_limit": 2**63}, 422),  # not storable in a BIGINT
    ("folio-guest-03", {"balance": 1}, 422),  # the balance moves through the ledger only
    # Money is an integer of minor units: no true, no "100", no 9.0.
    ("folio-guest-03", {"credit_limit": True}, 422),
    ("folio-guest-03", {"credit_limit": "100"}, 422),
    ("folio-guest-03", {"credit_limit": 9.0}, 422),
    ("no-such-account", {"credit_limit": 1}, 404),
])
def test_what_a_folio_s_limit_may_not_be(app: FastAPI, client: TestClient, account: str,
                                         body: dict[str, object], status: int) -> None:
    r = client.patch(f"{API}/accounts/{account}", headers=who(app, "staff"), json=body)
    assert r.status_code == status, r.text


def test_a_settled_folio_s_limit_is_not_changed(app: FastAPI, client: TestClient) -> None:
    staff = who(app, "staff")
    r = client.post(f"{API}/accounts/folio-guest-02/settle", headers=staff,
                    json={"idempotency_key": "out-2"})
    assert r.status_code == 201, r.text
    r = client.patch(f"{API}/accounts/folio-guest-02", headers=staff, json={"credit_limit": 1})
    assert r.status_code == 409, r.text


def test_a_folio_opened_with_a_limit_and_a_wallet_refused_one(app: FastAPI,
                                                              client: TestClient) -> None:
    staff = who(app, "staff")
    r = client.post(f"{API}/accounts", headers=staff, json={
        "guest_id": "guest-01", "venue_id": VENUE_ID, "kind": "wallet", "credit_limit": 5})
    assert r.status_code == 422, r.text
