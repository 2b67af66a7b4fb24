"""Property: whatever sequence of top-ups, charges, refunds, duplicates and concurrent
charges happens, the ledger balances and no wallet goes below zero."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from devices.contract import PaymentRequest, WristbandCredential, encode
from devices.topics import Channel, device_topic
from hub import cashier, crud, ledger
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

GUESTS = ("g1", "g2")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small venue: two guests with wallets, two terminals; copied for every example."""
    path = tmp_path_factory.mktemp("ledger") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
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
    engine.dispose()
    yield path


amounts = st.integers(min_value=1, max_value=5_000)
ops = st.lists(st.one_of(
    st.tuples(st.just("topup"), st.sampled_from(GUESTS), amounts),
    st.tuples(st.just("charge"), st.sampled_from(GUESTS), amounts),
    st.tuples(st.just("duplicate"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(0, 5_000)),
    st.tuples(st.just("burst"), st.sampled_from(GUESTS), amounts),
), min_size=1, max_size=25)


def charge(engine: Engine, guest: str, amount: int, key: str, till: str = "t1") -> None:
    uid = f"04000000000{GUESTS.index(guest)}"
    request = PaymentRequest(event_id=f"e-{key}", ts=utcnow(), amount=amount, currency="USD",
                             credential=WristbandCredential(uid=uid), merchant_id="m",
                             idempotency_key=key, account="wallet")
    with session_scope(engine) as session:
        handle_message(session, device_topic("v", till, Channel.EVENTS), encode(request),
                       utcnow())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_ledger_always_balances(template: Path, tmp_path: Path,
                                sequence: list[tuple[str, object, int]]) -> None:
    path = tmp_path / f"hub-{id(sequence)}.db"
    shutil.copy(template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    keys: list[tuple[str, str, int]] = []
    try:
        for n, (op, who, amount) in enumerate(sequence):
            if op == "topup":
                with session_scope(engine) as session:
                    wallet = crud.get(session, Account, f"w-{who}")
                    cashier.top_up(session, wallet=wallet, amount=amount, key=f"top-{n}",
                                   actor="test", now=utcnow())
            elif op == "charge":
                keys.append((f"k-{n}", str(who), amount))
                charge(engine, str(who), amount, f"k-{n}")
            elif op == "duplicate" and keys:
                key, guest, value = keys[int(str(who)) % len(keys)]
                charge(engine, guest, value, key)  # same key again: no money may move
            elif op == "refund":
                with session_scope(engine) as session:
                    charges = [t for t in ledger.transactions(session, limit=500)
                               if t.type == "charge" and t.approved]
                    if charges:
                        original = charges[int(str(who)) % len(charges)]
                        left = original.amount - ledger.refunded_so_far(
                            session, original_id=original.id)
                        if 0 < amount <= left:
                            cashier.refund(session, original=original, amount=amount,
                                           key=f"ref-{n}", actor="test", now=utcnow())
            elif op == "burst":
                threads = [threading.Thread(target=charge, args=(engine, str(who), amount,
                                                                 f"b-{n}-{i}", f"t{i % 2 + 1}"))
                           for i in range(3)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        with Session(engine) as session:
            assert ledger.verify(session) == []
            for guest in GUESTS:
                wallet = session.get(Account, f"w-{guest}")
                assert wallet is not None and wallet.balance >= 0
            # Each key moved money at most once.
            posted = [t for t in ledger.transactions(session, limit=1_000)
                      if t.type == "charge" and t.approved]
            assert len({t.idempotency_key for t in posted}) == len(posted)
            assert all(isinstance(t, LedgerTransaction) for t in posted)
    finally:
        engine.dispose()
