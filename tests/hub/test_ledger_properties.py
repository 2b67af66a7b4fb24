"""Property: whatever sequence of top-ups, charges (wallet and folio), refunds (before and
after check-out), check-ins and check-outs, duplicates and concurrent charges happens,
the ledger balances, no wallet goes below zero and no charge is refunded past its amount;
on SQLite and on a throw-away PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devices.contract import PaymentRequest, WristbandCredential, encode
from devices.topics import Channel, device_topic
from hub import cashier
from hub.db import create_db_engine, init_db, session_scope
from hub.ingest import handle_message
from hub.models import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    Device,
    DeviceKind,
    Guest,
    LedgerTransaction,
    Merchant,
    Venue,
    utcnow,
)
from hub.store import errors, money, rows
from tests.conftest import fresh_postgres

GUESTS = ("g1", "g2")


def seed(engine: Engine) -> None:
    """A small venue: two guests with wallets and room folios, two terminals."""
    init_db(engine)
    with session_scope(engine) as session:
        session.add(Venue(id="v", name="V", currency="USD"))
        session.flush()
        session.add(Merchant(id="m", venue_id="v", name="M", currency="USD"))
        session.flush()
        for till in ("t1", "t2"):
            session.add(Device(id=till, venue_id="v", kind=DeviceKind.POS, name=till,
                               merchant_id="m"))
        for n, guest in enumerate(GUESTS):
            session.add(Guest(id=guest, name=guest))
            session.flush()
            session.add(Credential(id=f"c-{guest}", guest_id=guest, kind=CredentialKind.WRISTBAND,
                                   identifier=f"04000000000{n}"))
            session.add(Account(id=f"w-{guest}", venue_id="v", kind=AccountKind.WALLET,
                                currency="USD", guest_id=guest))
            session.add(Account(venue_id="v", kind=AccountKind.FOLIO, currency="USD",
                                guest_id=guest))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The small venue in a SQLite file, copied for every example."""
    path = tmp_path_factory.mktemp("ledger") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    seed(engine)
    engine.dispose()
    yield path


amounts = st.integers(min_value=1, max_value=5_000)
ops = st.lists(st.one_of(
    st.tuples(st.just("topup"), st.sampled_from(GUESTS), amounts),
    st.tuples(st.sampled_from(["charge", "folio_charge"]), st.sampled_from(GUESTS), amounts),
    st.tuples(st.just("duplicate"), st.integers(0, 50), st.just(0)),
    # 0: all that is left; more than is left must be refused
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(0, 5_000)),
    st.tuples(st.sampled_from(["check_out", "check_in"]), st.sampled_from(GUESTS),
              st.just(0)),
    st.tuples(st.just("burst"), st.sampled_from(GUESTS), amounts),
), min_size=1, max_size=25)


def charge(engine: Engine, guest: str, amount: int, key: str, till: str = "t1",
           account: str = "wallet") -> None:
    uid = f"04000000000{GUESTS.index(guest)}"
    request = PaymentRequest(event_id=f"e-{key}", ts=utcnow(), amount=amount, currency="USD",
                             credential=WristbandCredential(uid=uid), merchant_id="m",
                             idempotency_key=key, account=account)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        handle_message(session, device_topic("v", till, Channel.EVENTS), encode(request),
                       utcnow())


def refund(engine: Engine, pick: int, amount: int, key: str) -> None:
    """Refund a charge (amount 0: all that is left), to its folio or, once that is settled,
    to the guest's wallet; refused exactly when it would refund more than is left."""
    with session_scope(engine) as session:
        charges = [t for t in money.transactions(session=session, limit=500)
                   if t.type == "charge" and t.approved]
        if not charges:
            return
        original = charges[pick % len(charges)]
        left = original.amount - money.refunded_so_far(session=session, original_id=original.id)
        try:
            cashier.refund(session, original=original, amount=amount or None, key=key,
                           actor="test", now=utcnow())
            refunded = True
        except errors.Conflict:
            refunded = False
        assert refunded == (0 < (amount or left) <= left), (original.amount, left, amount)


def check_out(engine: Engine, guest: str, key: str) -> None:
    """Settle the guest's open folio, then the same check-out again: the same answer."""
    with session_scope(engine) as session:
        folio = money.folio_of(session=session, guest_id=guest, venue_id="v")
        if folio is None:
            return
        first, _ = cashier.settle(session, folio=folio, key=key, actor="test", now=utcnow())
    with session_scope(engine) as session:
        again, _ = cashier.settle(session, folio=rows.get(session=session, model=Account,
                                                          key=folio.id),
                                  key=key, actor="test", now=utcnow())
        assert again.id == first.id


def check_in(engine: Engine, guest: str) -> None:
    """A new stay: a new open folio, unless the guest has one."""
    with session_scope(engine) as session:
        if money.folio_of(session=session, guest_id=guest, venue_id="v") is None:
            session.add(Account(venue_id="v", kind=AccountKind.FOLIO, currency="USD",
                                guest_id=guest))


def run(engine: Engine, sequence: list[tuple[str, object, int]]) -> None:
    """Play the sequence, then check every invariant of the ledger."""
    keys: list[tuple[str, str, int, str]] = []
    for n, (op, who, amount) in enumerate(sequence):
        if op == "topup":
            with session_scope(engine) as session:
                wallet = rows.get(session=session, model=Account, key=f"w-{who}")
                cashier.top_up(session, wallet=wallet, amount=amount, key=f"top-{n}",
                               actor="test", now=utcnow())
        elif op in ("charge", "folio_charge"):
            account = "folio" if op == "folio_charge" else "wallet"
            keys.append((f"k-{n}", str(who), amount, account))
            charge(engine, str(who), amount, f"k-{n}", account=account)
        elif op == "duplicate" and keys:
            key, guest, value, account = keys[int(str(who)) % len(keys)]
            charge(engine, guest, value, key, account=account)  # same key: no money moves
        elif op == "refund":
            refund(engine, int(str(who)), amount, f"ref-{n}")
        elif op == "check_out":
            check_out(engine, str(who), f"out-{n}")
        elif op == "check_in":
            check_in(engine, str(who))
        elif op == "burst":
            threads = [threading.Thread(target=charge, args=(engine, str(who), amount,
                                                             f"b-{n}-{i}", f"t{i % 2 + 1}"))
                       for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    with Session(engine) as session:
        assert money.verify(session=session) == []  # balanced, cached = postings, no over-refund
        for held in session.exec(select(Account)).all():
            if held.kind is AccountKind.WALLET:
                assert held.balance >= 0
            if held.kind is AccountKind.FOLIO and not held.open:
                assert held.balance == 0  # never closed owing
        # Each key moved money at most once.
        posted = [t for t in money.transactions(session=session, limit=1_000)
                  if t.type == "charge" and t.approved]
        assert len({t.idempotency_key for t in posted}) == len(posted)
        assert all(isinstance(t, LedgerTransaction) for t in posted)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_ledger_always_balances(template: Path, tmp_path: Path,
                                sequence: list[tuple[str, object, int]]) -> None:
    path = tmp_path / f"hub-{id(sequence)}.db"
    shutil.copy(template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        run(engine, sequence)
    finally:
        engine.dispose()


# A new database for every example: fewer of them, to stay well under a minute.
@pytest.mark.postgres
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_ledger_always_balances_on_postgres(postgres_url: str,
                                            sequence: list[tuple[str, object, int]]) -> None:
    engine = fresh_postgres(postgres_url)
    try:
        seed(engine)
        run(engine, sequence)
    finally:
        engine.dispose()
