"""Shared helpers for payment tests: a demo database and a terminal that pays by message."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from devices.contract import (
    ErrorMessage,
    LineItem,
    PaymentDecision,
    PaymentRequest,
    Receipt,
    WristbandCredential,
    encode,
    parse_reply,
)
from devices.topics import Channel, device_topic
from hub.db import session_scope
from hub.demo import VENUE_ID, wristband_uid
from hub.ingest import Outcome, handle_message
from hub.models import Account, utcnow
from tests.utils.demo_db import demo_database

_ids = itertools.count(1)


def demo_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = demo_database(request, request.param, tmp_path)
    yield engine
    engine.dispose()


def pay_message(amount: int, *, guest: int = 1, key: str | None = None, pin: str | None = None,
                merchant: str = "cafe", currency: str = "USD", account: str = "wallet",
                event_id: str | None = None, items: list[LineItem] | None = None) -> bytes:
    n = next(_ids)
    return encode(PaymentRequest(
        event_id=event_id or f"pay-{n}", ts=utcnow(),
        credential=WristbandCredential(uid=wristband_uid(guest)), amount=amount,
        currency=currency, merchant_id=merchant, idempotency_key=key or f"k-{n}", pin=pin,
        account=account, items=items or []))  # type: ignore[arg-type]


def send(engine: Engine, payload: bytes, device: str = "pos-cafe-1") -> Outcome:
    with session_scope(engine) as session:
        return handle_message(session, device_topic(VENUE_ID, device, Channel.EVENTS), payload,
                              utcnow())


def pay(engine: Engine, amount: int, device: str = "pos-cafe-1",
        **kw: object) -> tuple[PaymentDecision, list[Receipt]]:
    outcome = send(engine, pay_message(amount, **kw), device)  # type: ignore[arg-type]
    decision = parse_reply(outcome.replies[0].payload)
    assert isinstance(decision, PaymentDecision), decision
    receipts = [Receipt.model_validate_json(r.payload) for r in outcome.replies[1:]
                if r.topic.endswith("/notifications")]  # not staff alerts
    return decision, receipts


def refused(outcome: Outcome) -> ErrorMessage:
    [reply] = outcome.replies
    message = parse_reply(reply.payload)
    assert isinstance(message, ErrorMessage)
    return message


def balance(engine: Engine, account_id: str) -> int:
    with Session(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account.balance
