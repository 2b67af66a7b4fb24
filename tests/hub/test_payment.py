"""decide_payment is pure: each reason, in its order, without a database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from devices.contract import PaymentReason
from hub.models import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    CredentialStatus,
    Device,
    DeviceKind,
    Merchant,
    SpendingPolicy,
)
from hub.payment import (
    TEXTS,
    PaymentContext,
    PaymentLimits,
    decide_payment,
    folio_credit_limit,
)

LIMITS = PaymentLimits(max_amount=50_000, max_pin_failures=5)


def pin_is_1234(_hash: str, pin: str) -> bool:
    return pin == "1234"


def ctx(**kw: object) -> PaymentContext:
    base = PaymentContext(
        device=Device(id="pos-1", venue_id="v", kind=DeviceKind.POS, name="till",
                      merchant_id="cafe"),
        merchant=Merchant(id="cafe", venue_id="v", name="Cafe", currency="USD"),
        credential=Credential(id="c", guest_id="g", kind=CredentialKind.WRISTBAND,
                              identifier="04AA"),
        policy=SpendingPolicy(guest_id="g", payer_guest_id="g"),
        account=Account(id="w", venue_id="v", kind=AccountKind.WALLET, currency="USD",
                        guest_id="g", balance=10_000),
        amount=1_000, currency="USD", pin=None, spent_today=0, limits=LIMITS,
        verify_pin=pin_is_1234,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def policy(**kw: Any) -> SpendingPolicy:
    return SpendingPolicy(guest_id="g", payer_guest_id="g", **kw)


def test_approves_within_balance() -> None:
    decision = decide_payment(ctx())
    assert (decision.approved, decision.reason, decision.text) == (True, PaymentReason.OK,
                                                                   "Approved")


@pytest.mark.parametrize(("context", "reason"), [
    (ctx(device=Device(id="p", venue_id="v", kind=DeviceKind.POS, name="t", merchant_id="cafe",
                       enabled=False)), PaymentReason.DEVICE_DISABLED),
    (ctx(venue_enabled=False), PaymentReason.DEVICE_DISABLED),  # a closed venue
    (ctx(device=Device(id="p", venue_id="v", kind=DeviceKind.GATE, name="t")),
     PaymentReason.DEVICE_NOT_A_TERMINAL),
    (ctx(merchant=None), PaymentReason.UNKNOWN_MERCHANT),
    (ctx(merchant=Merchant(id="bar", venue_id="v", name="Bar", currency="USD")),
     PaymentReason.UNKNOWN_MERCHANT),  # a terminal charges for its own merchant only
    (ctx(credential=None), PaymentReason.UNKNOWN_CREDENTIAL),
    (ctx(credential=Credential(id="c", guest_id="g", kind=CredentialKind.WRISTBAND,
                               identifier="04AA", status=CredentialStatus.LOST)),
     PaymentReason.CREDENTIAL_LOST),
    (ctx(policy=policy(payment_enabled=False)), PaymentReason.PAYMENT_DISABLED),
    (ctx(credential=Credential(id="c", guest_id="g", kind=CredentialKind.WRISTBAND,
                               identifier="04AA", pin_failures=5)), PaymentReason.PIN_LOCKED),
    (ctx(account=None), PaymentReason.NO_ACCOUNT),
    (ctx(currency="EUR"), PaymentReason.CURRENCY_MISMATCH),
    (ctx(amount=50_001), PaymentReason.AMOUNT_TOO_LARGE),
    (ctx(policy=policy(pin_hash="h", pin_threshold=500)), PaymentReason.PIN_REQUIRED),
    (ctx(policy=policy(pin_threshold=500), pin="1234"), PaymentReason.PIN_REQUIRED),
    (ctx(policy=policy(daily_limit=1_500), spent_today=600), PaymentReason.DAILY_LIMIT_EXCEEDED),
    (ctx(amount=10_001), PaymentReason.INSUFFICIENT_FUNDS),
])
def test_declines_with_their_reason(context: PaymentContext, reason: PaymentReason) -> None:
    decision = decide_payment(context)
    assert not decision.approved and decision.reason is reason and decision.text == TEXTS[reason]
    assert not decision.pin_failed and not decision.pin_passed


def test_wrong_pin_counts_and_right_pin_clears() -> None:
    guarded = policy(pin_hash="h", pin_threshold=500)
    wrong = decide_payment(ctx(policy=guarded, pin="0000"))
    assert (wrong.reason, wrong.pin_failed) == (PaymentReason.PIN_WRONG, True)
    right = decide_payment(ctx(policy=guarded, pin="1234"))
    assert right.approved and right.pin_passed
    small = decide_payment(ctx(policy=guarded, amount=500))  # at the threshold: no PIN asked
    assert small.approved and not small.pin_passed


def test_daily_limit_is_inclusive() -> None:
    assert decide_payment(ctx(policy=policy(daily_limit=1_600), spent_today=600)).approved


def test_a_folio_may_run_a_bill_a_wallet_may_not() -> None:
    folio = Account(id="f", venue_id="v", kind=AccountKind.FOLIO, currency="USD", balance=-4_000)
    assert decide_payment(ctx(account=folio, amount=9_000)).approved


def test_a_folio_owes_up_to_its_credit_limit_inclusive() -> None:
    folio = Account(id="f", venue_id="v", kind=AccountKind.FOLIO, currency="USD", balance=-4_000)
    assert decide_payment(ctx(account=folio, amount=6_000, credit_limit=10_000)).approved
    over = decide_payment(ctx(account=folio, amount=6_001, credit_limit=10_000))
    assert over.reason is PaymentReason.CREDIT_LIMIT_EXCEEDED and not over.approved
    assert decide_payment(ctx(account=folio, amount=1, credit_limit=0)).reason \
        is PaymentReason.CREDIT_LIMIT_EXCEEDED
    # A wallet has no credit: its limit is its balance, whatever is passed.
    assert decide_payment(ctx(amount=1_000, credit_limit=0)).approved


def test_a_folio_s_own_limit_wins_over_the_venue_s() -> None:
    folio = Account(id="f", venue_id="v", kind=AccountKind.FOLIO, currency="USD")
    wallet = Account(id="w", venue_id="v", kind=AccountKind.WALLET, currency="USD",
                     credit_limit=5)
    assert folio_credit_limit(folio, 50_000) == 50_000
    assert folio_credit_limit(folio, None) is None
    assert folio_credit_limit(replace_limit(folio, 7_000), 50_000) == 7_000
    assert folio_credit_limit(replace_limit(folio, 0), None) == 0
    assert folio_credit_limit(wallet, 50_000) is None
    assert folio_credit_limit(None, 50_000) is None


def replace_limit(account: Account, limit: int) -> Account:
    return Account(**{**account.model_dump(), "credit_limit": limit})
