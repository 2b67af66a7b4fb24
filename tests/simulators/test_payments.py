"""Tap-to-pay pieces of the simulators without a broker: items, requests, receipt
matching and the guest app's collection of receipts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from devices.contract import GuestNotice, LineItem, Receipt, WristbandCredential, encode
from devices.topics import guest_topic
from simulators.readers import (
    ArrivedReceipt,
    Broker,
    ExpectedReceipt,
    GuestApp,
    items_total,
    parse_item,
    payment_request,
    take_receipt,
)

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BAND = WristbandCredential(uid="04A10000000001")
NOTICE = GuestNotice(kind="offer", notice_id="n1", rule="ride-reward", at=AT,
                     text="A free drink", offer_id="ride-reward", merchant_id="cafe")


# ---------------------------------------------------------------------- items


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("Flat white:2:450", LineItem(name="Flat white", quantity=2, unit_amount=450)),
        (" Croissant : 1 : 300 ", LineItem(name="Croissant", quantity=1, unit_amount=300)),
        ("Menu: kids:1:750", LineItem(name="Menu: kids", quantity=1, unit_amount=750)),
        ("Water:3:0", LineItem(name="Water", quantity=3, unit_amount=0)),
    ],
)
def test_parse_item(text: str, item: LineItem) -> None:
    assert parse_item(text) == item


@pytest.mark.parametrize(
    "text",
    ["Flat white:2", "Flat white", ":1:300", "  :1:300", "Tea:0:300", "Tea:1000:1", "Tea:-1:300",
     "Tea:1:-300", "Tea:1:2.50", "Tea:two:300", "Tea:1:", "x" * 81 + ":1:1"],
)
def test_parse_item_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_item(text)


def test_items_total() -> None:
    items = [parse_item("Flat white:2:450"), parse_item("Croissant:1:300")]
    assert items_total(items) == 1200
    assert items_total([]) == 0


def test_payment_request_gets_fresh_ids_and_keeps_the_contract() -> None:
    one = payment_request(BAND, amount=1200, currency="USD", merchant_id="cafe",
                          items=[parse_item("Flat white:2:450"), parse_item("Croissant:1:300")])
    two = payment_request(BAND, amount=1200, currency="USD", merchant_id="cafe")
    assert one.event_id != two.event_id
    assert one.idempotency_key != two.idempotency_key  # a new attempt, a new key
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", one.idempotency_key)
    assert (one.account, one.pin) == ("auto", None)
    again = payment_request(BAND, amount=1200, currency="USD", merchant_id="cafe",
                            idempotency_key=one.idempotency_key, pin="4321", account="wallet")
    assert (again.idempotency_key, again.pin, again.account) == (one.idempotency_key, "4321",
                                                                 "wallet")
    with pytest.raises(ValidationError, match="do not add up"):
        payment_request(BAND, amount=1000, currency="USD", merchant_id="cafe",
                        items=[parse_item("Tea:1:300")])


@dataclass
class Msg:
    topic: str
    payload: bytes


# ------------------------------------------------------------------- receipts


def receipt(guest: str = "lead", **kw: object) -> Receipt:
    fields: dict[str, object] = {
        "transaction_id": "t1", "type": "charge", "guest_id": guest, "merchant_id": "cafe",
        "merchant_name": "Cafe", "items": [LineItem(name="Tea", quantity=2, unit_amount=600)],
        "amount": 1200, "currency": "USD", "account": "wallet", "balance_after": 8800, "at": AT,
    }
    fields.update(kw)
    return Receipt(**fields)  # type: ignore[arg-type]


def arrived(guest: str = "lead", at: float = 0.0, **kw: object) -> ArrivedReceipt:
    return ArrivedReceipt(guest, receipt(kw.pop("on", guest), **kw), at)  # type: ignore[arg-type]


CHARGE = ExpectedReceipt("lead", "charge", "t1", amount=1200, currency="USD", account="wallet",
                         balance_after=8800, merchant_name="Cafe",
                         items=(LineItem(name="Tea", quantity=2, unit_amount=600),))
FOR_KID = ExpectedReceipt("lead", "charge", "t1", spent_by="kid2")


def test_expected_receipt_matches() -> None:
    assert CHARGE.identifies(arrived())
    assert CHARGE.differences(arrived()) == []


@pytest.mark.parametrize(
    ("other", "why"),
    [
        (arrived(balance_after=8700), "balance_after 8700, expected 8800"),
        (arrived(amount=1300), "amount 1300, expected 1200"),
        (arrived(account="folio"), "account 'folio', expected 'wallet'"),
        (arrived(merchant_name=None), "merchant_name None, expected 'Cafe'"),
        (arrived(items=[]), "items [], expected [2xTea@600]"),
        (arrived(on="child"), "guest_id child on lead's topic"),
        (arrived(spent_by="kid"), "spent_by 'kid', expected 'kid2'"),
    ],
)
def test_expected_receipt_names_each_difference(other: ArrivedReceipt, why: str) -> None:
    expected = FOR_KID if "spent_by" in why else CHARGE
    assert expected.identifies(other)  # the right receipt, with the wrong content
    assert expected.differences(other) == [why]


def test_unset_fields_are_not_checked() -> None:
    loose = ExpectedReceipt("lead", "charge", "t1")
    assert loose.differences(arrived(balance_after=1, amount=5, items=[])) == []


@pytest.mark.parametrize(
    "other",
    [arrived("child"), arrived(type="refund"), arrived(transaction_id="t2")],
)
def test_expected_receipt_identifies_by_guest_type_and_transaction(other: ArrivedReceipt) -> None:
    assert not CHARGE.identifies(other)


def test_take_receipt_takes_the_first_match_and_keeps_the_rest() -> None:
    child, refund = arrived("child"), arrived(type="refund", transaction_id="t9")
    first, second = arrived(at=1.0), arrived(at=2.0)
    backlog = [child, first, refund, second]
    assert take_receipt(backlog, CHARGE) is first
    assert backlog == [child, refund, second]
    assert take_receipt(backlog, CHARGE) is second
    assert take_receipt(backlog, CHARGE) is None
    assert backlog == [child, refund]


def test_expected_receipt_reads_well() -> None:
    assert str(CHARGE) == "charge 1200, wallet, balance 8800, 'Cafe', 1 item"
    assert str(ExpectedReceipt("g", "topup")) == "topup"


def test_guest_app_files_receipts_by_topic_and_keeps_the_unexpected() -> None:
    app = GuestApp("demo", Broker("127.0.0.1", 1))  # never connected: messages fed by hand
    lead_topic, child_topic = guest_topic("demo", "lead"), guest_topic("demo", "child")
    app._topics.update({lead_topic: "lead", child_topic: "child"})
    for topic, payload in [
        (child_topic, encode(receipt("child"))),
        (lead_topic, b'{"v":1,"kind":"receipt"}'),  # not a receipt: kept as invalid
        (child_topic, encode(NOTICE)),  # an offer shares the topic: kept apart, not invalid
        (guest_topic("demo", "x"), encode(receipt("x"))),  # nobody follows x
        (lead_topic, encode(receipt("lead"))),
    ]:
        app._on_message(None, None, Msg(topic, payload))  # type: ignore[arg-type]

    got = app.wait_for(CHARGE, timeout=0.05)
    assert got is not None and got.guest_id == "lead" and got.receipt == receipt("lead")
    assert app.wait_for(CHARGE, timeout=0.01) is None  # taken once only
    assert [(r.guest_id, r.receipt.guest_id) for r in app.leftovers()] == [("child", "child")]
    assert app.leftovers() == []
    assert [topic for topic, _, _ in app.invalid] == [lead_topic]
    assert app.notices == [("child", NOTICE)]
