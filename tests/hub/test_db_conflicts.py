"""Deadlocks and serialization failures retried inside the hub (hub.db.retry_conflicts).

PostgreSQL aborts one of two transactions that wait for each other (40P01) or cannot be
serialized (40001); the hub does the work again instead of answering a 500. The driver's
own exception classes stand in for the database here: the two-worker races that raise
them for real are in tests/hub/test_money_concurrency.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devices.contract import PaymentDecision
from hub import cashier
from hub.db import Contended, create_db_engine, init_db, is_conflict, retry_conflicts
from hub.demo import seed_demo
from hub.models import Account, LedgerTransaction, TransactionType, utcnow
from hub.store import money
from tests.hub.conftest import who
from tests.hub.payments_helpers import pay_message, send


def aborted(cls: type[psycopg.Error]) -> sa.exc.OperationalError:
    """What SQLAlchemy raises when PostgreSQL aborts a statement with ``cls``."""
    return sa.exc.OperationalError("UPDATE account ...", {}, cls("aborted"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conflicts") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


def test_only_deadlocks_and_serialization_failures_are_conflicts() -> None:
    assert is_conflict(aborted(psycopg.errors.DeadlockDetected))
    assert is_conflict(aborted(psycopg.errors.SerializationFailure))
    assert not is_conflict(aborted(psycopg.errors.QueryCanceled))
    assert not is_conflict(sa.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()))
    assert not is_conflict(RuntimeError("boom"))


def test_a_conflict_is_retried_with_growing_jittered_pauses_then_contended(
        engine: Engine) -> None:
    pauses: list[float] = []
    calls = 0

    def always() -> None:
        nonlocal calls
        calls += 1
        raise aborted(psycopg.errors.DeadlockDetected)

    with Session(engine) as session, pytest.raises(Contended) as caught:
        retry_conflicts(session, always, tries=4, sleep=pauses.append)
    assert calls == 4 and len(pauses) == 3
    assert all(0.5 * 0.02 * 2 ** n <= p <= 1.5 * 0.02 * 2 ** n for n, p in enumerate(pauses))
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError)


def test_other_errors_are_not_retried(engine: Engine) -> None:
    calls = 0

    def unique() -> None:
        nonlocal calls
        calls += 1
        raise sa.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup"))

    with Session(engine) as session, pytest.raises(sa.exc.IntegrityError):
        retry_conflicts(session, unique, sleep=lambda _s: None)
    assert calls == 1


def _fails_first(real: Callable[..., Any], times: int) -> Callable[..., Any]:
    """``real``, whose first ``times`` calls do all their writes and then are aborted."""
    left = [times]

    def flaky(session: Session, **kw: Any) -> Any:
        result = real(session, **kw)
        if left[0] > 0:
            left[0] -= 1
            raise aborted(psycopg.errors.DeadlockDetected)
        return result

    return flaky


def _topups(engine: Engine, key: str) -> list[LedgerTransaction]:
    with Session(engine) as s:
        return list(s.exec(select(LedgerTransaction).where(
            LedgerTransaction.idempotency_key == key,
            LedgerTransaction.type == TransactionType.TOPUP)).all())


def test_a_top_up_aborted_for_a_deadlock_is_done_once_not_a_500(
        app: FastAPI, client: TestClient, engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cashier, "top_up", _fails_first(cashier.top_up, 2))
    with Session(engine) as s:
        before = s.get(Account, "wallet-guest-01").balance  # type: ignore[union-attr]
    response = client.post("/api/v1/accounts/wallet-guest-01/topups", headers=who(app, "staff"),
                           json={"amount": 2_500, "idempotency_key": "desk-1"})
    assert response.status_code == 201, response.text
    with Session(engine) as s:
        assert s.get(Account, "wallet-guest-01").balance == before + 2_500  # type: ignore[union-attr]
        assert money.verify(session=s) == []
    assert len(_topups(engine, "desk-1")) == 1


def test_a_refund_that_keeps_deadlocking_is_a_409_with_a_reason_and_moves_nothing(
        app: FastAPI, client: TestClient, engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    staff = who(app, "staff")
    decision = send(engine, pay_message(1_000)).decision
    assert isinstance(decision, PaymentDecision) and decision.transaction_id is not None
    with Session(engine) as s:
        charge = s.get(LedgerTransaction, decision.transaction_id)
    assert charge is not None
    monkeypatch.setattr(cashier, "refund", _fails_first(cashier.refund, 99))
    response = client.post(f"/api/v1/transactions/{charge.id}/refunds", headers=staff,
                           json={"idempotency_key": "r-1"})
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "contended"
    with Session(engine) as s:
        assert money.refunded_so_far(session=s, original_id=charge.id) == 0
        assert money.verify(session=s) == []
