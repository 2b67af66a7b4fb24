"""Tap-to-pay through the bridge's logic on real databases: exactly once, never overspent."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from devices.contract import (
    ErrorCode,
    LineItem,
    PaymentDecision,
    PaymentRequest,
    PhoneKeyCredential,
    Receipt,
    StaffAlert,
    encode,
    parse_reply,
)
from hub import cashier
from hub.db import session_scope
from hub.models import (
    Account,
    Credential,
    Device,
    LedgerTransaction,
    Merchant,
    Posting,
    SpendingPolicy,
    TransactionType,
    utcnow,
)
from hub.store import errors, guests, money
from tests.hub.payments_helpers import (
    balance,
    demo_engine,
    pay,
    pay_message,
    refused,
    send,
)
from tests.utils.rows import row

WALLET = "wallet-guest-01"  # Charlie: 100.00 in the demo, PIN 1234 above 50.00


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from demo_engine(request, tmp_path)


def verify(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return money.verify(session=session)


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_charge_moves_money_and_sends_a_receipt(engine: Engine) -> None:
    items = [LineItem(name="Latte", quantity=2, unit_amount=450), LineItem(name="Bun",
                                                                           unit_amount=300)]
    decision, [receipt] = pay(engine, 1_200, items=items)
    assert (decision.outcome, decision.reason, decision.account) == ("approve", "ok", "wallet")
    assert decision.balance_after == 8_800 == balance(engine, WALLET)
    assert receipt.guest_id == "guest-01" and receipt.merchant_name == "Cafe"
    assert receipt.items == items and receipt.balance_after == 8_800
    assert receipt.transaction_id == decision.transaction_id
    assert verify(engine) == []


def test_same_key_again_is_the_same_decision_and_no_money(engine: Engine) -> None:
    first, _ = pay(engine, 700, key="till-42")
    again, receipts = pay(engine, 700, key="till-42")  # a new event id, the same payment
    assert again.transaction_id == first.transaction_id and again.outcome == "approve"
    assert receipts == []
    redelivered = send(engine, pay_message(700, key="till-43", event_id="same-event"))
    replay = send(engine, pay_message(700, key="till-43", event_id="same-event"))
    assert replay.replies[0].payload == redelivered.replies[0].payload
    assert balance(engine, WALLET) == 10_000 - 1_400
    conflict, _ = pay(engine, 900, key="till-42")
    assert (conflict.outcome, conflict.reason) == ("decline", "idempotency_conflict")
    other_payer, _ = pay(engine, 700, key="till-42", guest=2)
    assert other_payer.reason == "idempotency_conflict"
    assert balance(engine, WALLET) == 8_600 and verify(engine) == []


def test_a_declined_key_stays_declined(engine: Engine) -> None:
    declined, _ = pay(engine, 20_000, key="big-1", guest=2)
    assert declined.reason == "insufficient_funds"
    again, _ = pay(engine, 20_000, key="big-1", guest=2)
    assert again.reason == "insufficient_funds" and again.transaction_id is None


def test_pin_prompt_wrong_pins_and_lock(engine: Engine) -> None:
    assert pay(engine, 6_000)[0].reason == "pin_required"
    assert pay(engine, 6_000, pin="1234")[0].outcome == "approve"
    reasons = [pay(engine, 500 + 5_000, pin="0000")[0].reason for _ in range(5)]
    assert reasons == ["pin_wrong"] * 5
    assert pay(engine, 100)[0].reason == "pin_locked"  # locked for every amount
    assert pay(engine, 100, guest=2)[0].outcome == "approve"  # other guests unaffected
    assert balance(engine, WALLET) == 4_000


def test_party_member_pays_from_the_lead_within_their_own_limit(engine: Engine) -> None:
    # guest-11 shares Charlie's room; Charlie pays, up to 20.00 a day for guest-11.
    first, receipts = pay(engine, 1_500, guest=11, account="auto")
    assert first.outcome == "approve" and first.account == "folio"
    assert {r.guest_id for r in receipts} == {"guest-11", "guest-01"}
    # What the lead has left is the lead's: only their receipt says it.
    by_guest = {r.guest_id: r for r in receipts}
    assert by_guest["guest-01"].balance_after == -1_500
    assert by_guest["guest-11"].balance_after is None
    assert pay(engine, 600, guest=11)[0].reason == "daily_limit_exceeded"
    from_wallet, receipts = pay(engine, 500, guest=11, account="wallet")
    assert from_wallet.outcome == "approve"
    assert from_wallet.balance_after is None  # the till shows the member no lead's balance
    assert {r.guest_id: r.balance_after for r in receipts} == {"guest-01": 9_500,
                                                                "guest-11": None}
    assert balance(engine, WALLET) == 9_500
    assert balance(engine, "folio-guest-01") == -1_500
    with session_scope(engine) as session:
        child = session.get(SpendingPolicy, "guest-11")
        assert child is not None
        child.payment_enabled = False
    assert pay(engine, 100, guest=11)[0].reason == "payment_disabled"


@pytest.mark.parametrize(("kw", "reason"), [
    ({"currency": "EUR"}, "currency_mismatch"),
    ({"currency": "XXX"}, "currency_mismatch"),
    ({"merchant": "bar"}, "unknown_merchant"),  # pos-cafe-1 charges for the cafe only
    ({"merchant": "nowhere"}, "unknown_merchant"),
])
def test_bad_payments_are_declined_and_post_nothing(engine: Engine, kw: dict[str, object],
                                                     reason: str) -> None:
    assert pay(engine, 100, **kw)[0].reason == reason  # type: ignore[arg-type]
    assert pay(engine, 1_000_001)[0].reason == "amount_too_large"
    assert count(engine, Posting) == 40  # only the demo's 20 top-ups


@pytest.mark.parametrize("body", [
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":0,"currency":"USD",'
    b'"merchant_id":"cafe","idempotency_key":"k"}',
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":-5,"currency":"USD",'
    b'"merchant_id":"cafe","idempotency_key":"k"}',
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":12.5,"currency":"USD",'
    b'"merchant_id":"cafe","idempotency_key":"k"}',
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":"100","currency":"USD",'
    b'"merchant_id":"cafe","idempotency_key":"k"}',
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":100,"currency":"usd",'
    b'"merchant_id":"cafe","idempotency_key":"k"}',
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":100,"currency":"USD",'
    b'"merchant_id":"cafe"}',
    b'{"v":1,"kind":"payment","event_id":"p1","ts":"2026-01-01T00:00:00Z","credential":'
    b'{"type":"wristband","uid":"04A10000000001"},"amount":100,"currency":"USD",'
    b'"merchant_id":"cafe","idempotency_key":"k","items":[{"name":"x","unit_amount":99}]}',
])
def test_malformed_payments_are_refused_with_a_reason(engine: Engine, body: bytes) -> None:
    error = refused(send(engine, body))
    assert error.code is ErrorCode.SCHEMA_VIOLATION and error.event_id == "p1"
    assert count(engine, LedgerTransaction) == 20 and verify(engine) == []


def test_refunds_never_exceed_the_charge(engine: Engine) -> None:
    charge, _ = pay(engine, 2_000)
    with session_scope(engine) as session:
        original = session.get(LedgerTransaction, charge.transaction_id)
        assert original is not None
        part, [(topic, raw)] = cashier.refund(session, original=original, amount=500, key="r1",
                                              actor="staff", now=utcnow())
        receipt = Receipt.model_validate_json(raw)
        assert topic.endswith("/guest/guest-01/notifications")
        assert receipt.type == "refund" and receipt.balance_after == 8_500
        same, again = cashier.refund(session, original=original, amount=500, key="r1",
                                     actor="staff", now=utcnow())
        assert same.id == part.id and again == []
        with pytest.raises(errors.Conflict):
            cashier.refund(session, original=original, amount=1_501, key="r2", actor="staff",
                           now=utcnow())
        rest, _ = cashier.refund(session, original=original, amount=None, key="r3",
                                 actor="staff", now=utcnow())
        assert rest.amount == 1_500
    assert balance(engine, WALLET) == 10_000 and verify(engine) == []


def test_check_out_settles_and_closes_the_folio(engine: Engine) -> None:
    pay(engine, 3_000, account="folio")
    pay(engine, 2_500, device="pos-bar-1", merchant="bar", account="folio")
    with session_scope(engine) as session:
        folio = session.get(Account, "folio-guest-01")
        assert folio is not None
        txn, [(_, raw)] = cashier.settle(session, folio=folio, key="checkout-1", actor="desk",
                                         now=utcnow())
        receipt = Receipt.model_validate_json(raw)
        assert txn.amount == 5_500 and receipt.type == "settlement" and receipt.balance_after == 0
    assert pay(engine, 100, account="folio")[0].reason == "no_account"
    assert verify(engine) == []


def test_two_terminals_cannot_overspend_one_wallet(engine: Engine) -> None:
    """Many charges of 30.00 at once against 100.00: exactly three go through."""
    barrier = threading.Barrier(8)
    reasons: list[str] = []

    def terminal(n: int) -> None:
        barrier.wait()
        device = ("pos-cafe-1", "pos-shop-1")[n % 2]
        merchant = ("cafe", "shop")[n % 2]
        decision, _ = pay(engine, 3_000, device=device, merchant=merchant, key=f"race-{n}")
        reasons.append(decision.reason.value)

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(reasons) == {"ok": 3, "insufficient_funds": 5}
    assert balance(engine, WALLET) == 1_000 and verify(engine) == []


def test_verify_finds_a_corrupted_posting(engine: Engine) -> None:
    pay(engine, 1_000)
    assert verify(engine) == []
    with session_scope(engine) as session:
        session.execute(sa.update(Posting).where(col(Posting.id) == 1)
                        .values(amount=Posting.amount + 1))
    problems = verify(engine)
    assert any("does not balance" in p for p in problems)
    assert any("caches" in p for p in problems)


def test_a_key_reused_by_another_credential_with_a_long_merchant_id_conflicts(
    engine: Engine,
) -> None:
    """The key's promise covers every field, however long the ids (no truncation)."""
    long_merchant = "pool-bar-and-grill-terrace-level-2-" + "x" * 28
    with session_scope(engine) as session:
        session.add(Merchant(id=long_merchant, venue_id="demo-resort", name="Grill",
                             currency="USD"))
        device = session.get(Device, "pos-bar-1")
        assert device is not None
        device.merchant_id = long_merchant
    first, _ = pay(engine, 300, device="pos-bar-1", merchant=long_merchant, key="same", guest=3)
    second, _ = pay(engine, 300, device="pos-bar-1", merchant=long_merchant, key="same", guest=4)
    assert first.outcome == "approve"
    assert (second.outcome, second.reason, second.transaction_id) == (
        "decline", "idempotency_conflict", None)
    assert balance(engine, "wallet-guest-04") == 10_000


def test_an_event_id_used_again_gets_its_first_answer_whatever_the_key(engine: Engine) -> None:
    first = send(engine, pay_message(400, key="a-1", event_id="evt-1"))
    reused = send(engine, pay_message(900, key="a-2", event_id="evt-1"))
    assert reused.replies[0].payload == first.replies[0].payload
    wrong_pin = send(engine, pay_message(6_000, key="a-3", pin="0000", event_id="evt-2"))
    again = send(engine, pay_message(6_000, key="a-3", pin="0000", event_id="evt-2"))
    assert again.replies[0].payload == wrong_pin.replies[0].payload
    with Session(engine) as session:
        charlie = session.get(Credential, "band-guest-01")
        assert charlie is not None and charlie.pin_failures == 1  # counted once
    assert balance(engine, WALLET) == 9_600


def test_postings_lock_accounts_in_the_order_of_their_ids(engine: Engine) -> None:
    """Two workers moving money between the same accounts take their rows in one order, so
    on PostgreSQL one waits for the other instead of both deadlocking."""
    updated: list[str] = []

    def watch(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE ACCOUNT"):
            updated.append(str(params))

    sa.event.listen(engine, "before_cursor_execute", watch)
    try:
        with session_scope(engine) as session:
            wallet = row(session, Account, WALLET)
            clearing = money.clearing_of(session=session, venue_id=wallet.venue_id, currency="USD")
            held_balance = wallet.balance
            legs = sorted([(wallet.id, 500), (clearing.id, -500)], reverse=True)
            txn = LedgerTransaction(venue_id=wallet.venue_id, type=TransactionType.TOPUP,
                                    approved=True, reason="ok", text="Top-up", amount=500,
                                    currency="USD",
                                    account_id=wallet.id, idempotency_scope="api",
                                    idempotency_key="order-test", fingerprint="f",
                                    created_at=utcnow())
            balances = money.post(session=session, txn=txn, legs=legs, balance_after_of=wallet.id)
            # What the session holds agrees with what it wrote, without a refresh.
            assert wallet.balance == balances[wallet.id] == held_balance + 500
            assert txn.balance_after == held_balance + 500
    finally:
        sa.event.remove(engine, "before_cursor_execute", watch)
    order = [next(i for i in (WALLET, clearing.id) if i in p) for p in updated]
    assert order == sorted([WALLET, clearing.id])
    assert balance(engine, WALLET) == held_balance + 500
    assert verify(engine) == []


def test_payments_work_on_a_sqlite_without_returning(engine: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.35 (Debian 11, Ubuntu 20.04) has no UPDATE ... RETURNING."""
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite matter")
    import sqlite3
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: statements.append(statement))
    decision, _ = pay(engine, 1_500)
    assert (decision.outcome, decision.balance_after) == ("approve", 8_500)
    assert balance(engine, WALLET) == 8_500
    assert not any("RETURNING" in s.upper() for s in statements)
    # A posting that would overdraw (a race the decision did not see) is still refused by
    # the conditional UPDATE, without RETURNING to say so.
    with pytest.raises(money.Overdrawn), session_scope(engine) as session:
        wallet = row(session, Account, WALLET)
        clearing = money.clearing_of(session=session, venue_id=wallet.venue_id, currency="USD")
        txn = LedgerTransaction(venue_id=wallet.venue_id, type=TransactionType.CHARGE,
                                approved=True, reason="ok", text="x", amount=9_000,
                                currency="USD", account_id=wallet.id, idempotency_scope="api",
                                idempotency_key="overdraw", fingerprint="f",
                                created_at=utcnow())
        money.post(session=session, txn=txn, legs=[(wallet.id, -9_000), (clearing.id, 9_000)])
    assert balance(engine, WALLET) == 8_500
    assert verify(engine) == []


def settle(engine: Engine, folio_id: str, key: str) -> LedgerTransaction:
    with session_scope(engine) as session:
        folio = session.get(Account, folio_id)
        assert folio is not None
        txn, _ = cashier.settle(session, folio=folio, key=key, actor="desk", now=utcnow())
        return txn


def test_check_out_edges_answer_and_keep_the_ledger_true(engine: Engine) -> None:
    # An empty folio checks out to nothing moved; the ledger still verifies.
    empty = settle(engine, "folio-guest-02", "checkout-empty")
    assert (empty.amount, empty.approved) == (0, True) and verify(engine) == []
    # A folio charge, check-out, then the same check-out again: the same answer.
    decision, _ = pay(engine, 3_000, account="folio")
    first = settle(engine, "folio-guest-01", "checkout-1")
    assert settle(engine, "folio-guest-01", "checkout-1").id == first.id
    # The key for another folio's check-out: a conflict, not a crash.
    with pytest.raises(errors.Conflict):
        settle(engine, "folio-guest-03", "checkout-1")
    # A refund of a settled folio's charge (it was a 500): to the guest's wallet
    # (tests/hub/test_refunds_after_check_out.py).
    with session_scope(engine) as session:
        original = row(session, LedgerTransaction, decision.transaction_id)
        late, _ = cashier.refund(session, original=original, amount=None, key="late-refund",
                                 actor="desk", now=utcnow())
        assert (late.account_id, late.amount) == (WALLET, 3_000)
    assert verify(engine) == []


def pay_by_phone(engine: Engine, amount: int, pin: str | None = None) -> str:
    """Charlie pays with his phone key (its bare id: the demo venue takes them)."""
    n = utcnow().timestamp()
    request = PaymentRequest(event_id=f"phone-{n}", ts=utcnow(), amount=amount, currency="USD",
                             credential=PhoneKeyCredential(key_id="pk-guest-01"),
                             merchant_id="cafe", idempotency_key=f"phone-{n}", pin=pin)
    decision = parse_reply(send(engine, encode(request)).replies[0].payload)
    assert isinstance(decision, PaymentDecision)
    return str(decision.reason.value)


def test_the_pin_lock_is_the_guests_not_one_credentials(engine: Engine) -> None:
    """Five wrong PINs on his band lock Charlie's phone key too: no fresh guesses."""
    for _ in range(3):
        assert pay(engine, 6_000, pin="0000")[0].reason == "pin_wrong"
    for _ in range(2):
        assert pay_by_phone(engine, 6_000, pin="0000") == "pin_wrong"
    assert pay_by_phone(engine, 6_000, pin="1234") == "pin_locked"
    assert pay(engine, 100)[0].reason == "pin_locked"


def test_a_right_pin_ends_the_run_though_the_payment_is_declined(engine: Engine) -> None:
    for _ in range(4):
        assert pay(engine, 6_000, pin="0000")[0].reason == "pin_wrong"
    # Right PIN, but more than the wallet holds: declined, and the run of wrong ones ends.
    assert pay(engine, 60_000, pin="1234")[0].reason == "insufficient_funds"
    assert pay(engine, 6_000, pin="0000")[0].reason == "pin_wrong"  # one, not the fifth
    assert pay(engine, 6_000, pin="1234")[0].outcome == "approve"


def test_a_redelivered_conflict_is_answered_as_the_first_time(engine: Engine) -> None:
    first, _ = pay(engine, 500, key="till-7")
    conflicting = pay_message(700, key="till-7", event_id="conflict-1")
    once = parse_reply(send(engine, conflicting).replies[0].payload)
    again = parse_reply(send(engine, conflicting).replies[0].payload)
    assert isinstance(once, PaymentDecision) and isinstance(again, PaymentDecision)
    assert once.reason == "idempotency_conflict" and once == again
    assert once.decided_at > first.decided_at  # refused when it came, not when the first paid


def test_a_pin_lock_alerts_staff_once_and_shows_in_the_policy(engine: Engine) -> None:
    outcomes = [send(engine, pay_message(6_000, pin="0000")) for _ in range(6)]
    alerts = [[StaffAlert.model_validate_json(r.payload) for r in o.replies
               if r.topic.endswith("/staff/alerts")] for o in outcomes]
    assert [len(a) for a in alerts] == [0, 0, 0, 0, 1, 0]  # at the fifth wrong PIN only
    [alert] = alerts[4]
    assert (alert.guest_id, alert.device_id, alert.reason) == ("guest-01", "pos-cafe-1",
                                                              "pin_locked")
    with Session(engine) as session:
        assert guests.pin_failures_of(session=session, guest_id="guest-01") == 5
