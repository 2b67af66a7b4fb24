"""A folio's charge refunded after check-out: to the guest's wallet, on the ledger.

Through the real API on SQLite and PostgreSQL: balanced postings, the same answer for
the same key, never more than what is left of the charge, audited, a receipt to the
guest; a 409 with a reason when the guest has no wallet to take it.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devices.contract import Receipt
from devices.topics import guest_topic
from hub import cashier
from hub.api.main import create_app
from hub.config import Settings
from hub.db import session_scope
from hub.demo import VENUE_ID
from hub.models import Account, AuditEntry, LedgerTransaction, Merchant, Posting, utcnow
from hub.store import errors, money, rows
from tests.hub.conftest import who
from tests.hub.payments_helpers import balance, demo_engine, pay

API = "/api/v1"
WALLET, FOLIO = "wallet-guest-01", "folio-guest-01"  # Charlie: 100.00 in his wallet


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from demo_engine(request, tmp_path)


class Outbox(list[tuple[str, bytes]]):
    """What the API handed the bridge to publish."""

    def publish(self, topic: str, payload: bytes) -> None:
        self.append((topic, payload))


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def client(engine: Engine, tmp_path: Path, outbox: Outbox) -> Iterator[TestClient]:
    app = create_app(engine=engine, settings=Settings(data_dir=tmp_path, broker_url=None),
                     bridge=outbox, token_key=secrets.token_bytes(32), reader=engine)
    with TestClient(app, headers=who(app, "staff")) as c:
        yield c


def folio_charge_then_check_out(engine: Engine, client: TestClient, amount: int,
                                guest: int = 1) -> str:
    decision, _ = pay(engine, amount, guest=guest, account="folio")
    assert decision.reason == "ok" and decision.account == "folio", decision
    r = client.post(f"{API}/accounts/{FOLIO}/settle", json={"idempotency_key": "checkout"})
    assert r.status_code in (200, 201), r.text
    return str(decision.transaction_id)


def refund(client: TestClient, charge: str, key: str, amount: int | None = None) -> object:
    return client.post(f"{API}/transactions/{charge}/refunds",
                       json={"idempotency_key": key, "amount": amount})


def verify(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return money.verify(session=s)


def test_a_refund_after_check_out_goes_to_the_guest_s_wallet(
        engine: Engine, client: TestClient, outbox: Outbox) -> None:
    charge = folio_charge_then_check_out(engine, client, 3_000)
    outbox.clear()  # the check-out's receipt

    r = refund(client, charge, "late-1", 1_200)
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    part = r.json()  # type: ignore[attr-defined]
    assert (part["type"], part["amount"], part["account_id"], part["original_id"]) \
        == ("refund", 1_200, WALLET, charge)
    assert part["balance_after"] == 11_200 == balance(engine, WALLET)
    assert balance(engine, FOLIO) == 0  # the settled folio is not touched
    with Session(engine) as s:
        postings = {p.account_id: p.amount for p in s.exec(
            select(Posting).where(Posting.transaction_id == part["id"])).all()}
        revenue = money.revenue_of(session=s, merchant=rows.get(session=s, model=Merchant,
                                                                key="cafe")).id
    assert postings == {WALLET: 1_200, revenue: -1_200}
    # The receipt: Charlie's, from his wallet, with its new balance.
    [(topic, raw)] = outbox
    receipt = Receipt.model_validate_json(raw)
    assert topic == guest_topic(VENUE_ID, "guest-01")
    assert (receipt.type, receipt.amount, receipt.account, receipt.balance_after) \
        == ("refund", 1_200, "wallet", 11_200)

    # The same key again: the first answer, no money; another amount under it: 409.
    again = refund(client, charge, "late-1", 1_200)
    assert again.status_code == 201 and again.json()["id"] == part["id"]  # type: ignore[attr-defined]
    assert refund(client, charge, "late-1", 500).status_code == 409  # type: ignore[attr-defined]
    # Never more than what is left of the charge (18.00), then all of it.
    over = refund(client, charge, "late-2", 1_801)
    assert over.status_code == 409 and "exceeds" in over.json()["detail"]  # type: ignore[attr-defined]
    rest = refund(client, charge, "late-3")
    assert rest.status_code == 201 and rest.json()["amount"] == 1_800  # type: ignore[attr-defined]
    assert refund(client, charge, "late-4", 1).status_code == 409  # type: ignore[attr-defined]
    assert balance(engine, WALLET) == 13_000

    with Session(engine) as s:
        audited = s.exec(select(AuditEntry).where(
            AuditEntry.action == "transaction.refund")).all()
        refunds = s.exec(select(LedgerTransaction).where(
            LedgerTransaction.original_id == charge)).all()
    # Audited, naming where the money went (the replay of late-1 too).
    assert {(a.detail["refund_id"], a.detail["account_id"]) for a in audited} \
        == {(part["id"], WALLET), (rest.json()["id"], WALLET)}  # type: ignore[attr-defined]
    assert sorted(t.amount for t in refunds) == [1_200, 1_800]
    assert verify(engine) == []


def test_a_party_member_s_charge_is_refunded_to_the_payer_s_wallet(
        engine: Engine, client: TestClient, outbox: Outbox) -> None:
    """guest-11 shares Charlie's room and spends on his folio: the money was Charlie's."""
    charge = folio_charge_then_check_out(engine, client, 1_500, guest=11)
    outbox.clear()
    r = refund(client, charge, "party-late")
    assert r.status_code == 201 and r.json()["account_id"] == WALLET, r.text  # type: ignore[attr-defined]
    assert balance(engine, WALLET) == 11_500 and balance(engine, "wallet-guest-11") == 10_000
    assert sorted(t for t, _ in outbox) == sorted(
        guest_topic(VENUE_ID, g) for g in ("guest-01", "guest-11"))
    assert verify(engine) == []


def test_no_wallet_to_take_it_is_a_409_with_a_reason_and_nothing_moves(
        engine: Engine, client: TestClient, outbox: Outbox) -> None:
    charge = folio_charge_then_check_out(engine, client, 2_000)
    with session_scope(engine) as s:  # Charlie's wallet is closed too: no wallet is made
        wallet = s.get(Account, WALLET)
        assert wallet is not None
        wallet.open = False
    outbox.clear()
    r = refund(client, charge, "nowhere")
    assert r.status_code == 409, r.text  # type: ignore[attr-defined]
    assert "no open USD wallet" in r.json()["detail"]  # type: ignore[attr-defined]
    with Session(engine) as s:
        assert money.refunded_so_far(session=s, original_id=charge) == 0
        wallets = s.exec(select(Account).where(Account.guest_id == "guest-01",
                                               Account.kind == "wallet")).all()
    assert len(wallets) == 1 and outbox == []
    assert verify(engine) == []


def test_ten_concurrent_refunds_after_check_out_credit_the_wallet_once(
        engine: Engine, client: TestClient) -> None:
    """Ten desks refund all of one settled folio charge at once, each with its own key:
    one refund, one credit to the wallet; the others are told nothing is left."""
    charge = folio_charge_then_check_out(engine, client, 2_500)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def desk(n: int) -> None:
        start.wait(10)
        try:
            with session_scope(engine) as s:
                original = rows.get(session=s, model=LedgerTransaction, key=charge)
                cashier.refund(s, original=original, amount=None, key=f"desk-{n}",
                               actor="staff", now=utcnow())
            outcome = "refunded"
        except errors.Conflict:
            outcome = "conflict"
        except Exception as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=desk, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(outcomes) == {"refunded": 1, "conflict": 9}, outcomes
    assert balance(engine, WALLET) == 12_500
    assert verify(engine) == []
