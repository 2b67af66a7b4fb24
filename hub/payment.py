"""Payment decisions: pure functions of a payment's context; no I/O.

The caller loads the context inside the transaction, calls :func:`decide_payment`,
then applies the returned effects with conditional updates (so two terminals
charging one wallet at once cannot overspend it) and writes the postings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from hub.presented import CredentialProblem

TERMINAL_KINDS = frozenset({DeviceKind.POS, DeviceKind.KIOSK})

TEXTS: dict[PaymentReason, str] = {
    PaymentReason.OK: "Approved",
    PaymentReason.DEVICE_DISABLED: "Terminal out of service",
    PaymentReason.DEVICE_NOT_A_TERMINAL: "Not a payment terminal",
    PaymentReason.UNKNOWN_MERCHANT: "Merchant not set up for this terminal",
    PaymentReason.UNKNOWN_CREDENTIAL: "Band or key not recognised",
    PaymentReason.CREDENTIAL_LOST: "Reported lost - please see staff",
    PaymentReason.CREDENTIAL_SUSPENDED: "Suspended - please see staff",
    PaymentReason.CREDENTIAL_REVOKED: "No longer valid - please see staff",
    PaymentReason.OUTSIDE_VALIDITY: "Key not valid at this time - please see staff",
    PaymentReason.PAYMENT_DISABLED: "Payments are off for this band",
    PaymentReason.NO_ACCOUNT: "No wallet or room account",
    PaymentReason.CURRENCY_MISMATCH: "Currency not accepted",
    PaymentReason.AMOUNT_TOO_LARGE: "Amount over the limit for one payment",
    PaymentReason.PIN_REQUIRED: "Please enter your PIN",
    PaymentReason.PIN_WRONG: "Wrong PIN",
    PaymentReason.PIN_LOCKED: "PIN locked - please see staff",
    PaymentReason.DAILY_LIMIT_EXCEEDED: "Daily spending limit reached",
    PaymentReason.INSUFFICIENT_FUNDS: "Not enough funds",
    PaymentReason.CREDIT_LIMIT_EXCEEDED: "Room account limit reached - please see reception",
    PaymentReason.IDEMPOTENCY_CONFLICT: "Duplicate payment id - not charged",
    PaymentReason.CREDENTIAL_FORGED: "Band not genuine - please see staff",
    PaymentReason.CREDENTIAL_REPLAYED: "Please tap again",
    PaymentReason.INSECURE_CREDENTIAL: "Band not accepted here - please see staff",
}

# A phone key is not a band: its own words where the reason is about the credential.
KEY_TEXTS: dict[PaymentReason, str] = {
    PaymentReason.UNKNOWN_CREDENTIAL: "Key not recognised",
    PaymentReason.CREDENTIAL_LOST: "Phone reported lost - please see staff",
    PaymentReason.CREDENTIAL_SUSPENDED: "Key suspended - please see staff",
    PaymentReason.CREDENTIAL_REVOKED: "Key no longer valid - please see staff",
    PaymentReason.PAYMENT_DISABLED: "Payments are off for this key",
    PaymentReason.CREDENTIAL_FORGED: "Key not genuine - please see staff",
    PaymentReason.CREDENTIAL_REPLAYED: "Please tap your phone again",
    PaymentReason.INSECURE_CREDENTIAL: "Key not accepted here - please see staff",
}

# What a presented credential's problem means at a till: the one way from one to the other.
PROBLEMS: dict[CredentialProblem, PaymentReason] = {
    CredentialProblem.FORGED: PaymentReason.CREDENTIAL_FORGED,
    CredentialProblem.REPLAYED: PaymentReason.CREDENTIAL_REPLAYED,
    CredentialProblem.INSECURE: PaymentReason.INSECURE_CREDENTIAL,
    CredentialProblem.EXPIRED: PaymentReason.OUTSIDE_VALIDITY,
    CredentialProblem.NOT_YET_VALID: PaymentReason.OUTSIDE_VALIDITY,
    CredentialProblem.REVOKED: PaymentReason.CREDENTIAL_REVOKED,
}

_CREDENTIAL_DENIALS = {
    CredentialStatus.LOST: PaymentReason.CREDENTIAL_LOST,
    CredentialStatus.SUSPENDED: PaymentReason.CREDENTIAL_SUSPENDED,
    CredentialStatus.REVOKED: PaymentReason.CREDENTIAL_REVOKED,
}


@dataclass(frozen=True)
class PaymentLimits:
    """The venue-wide payment limits, from the settings."""

    max_amount: int
    max_pin_failures: int


@dataclass(frozen=True)
class PaymentContext:
    """Everything a payment decision depends on, loaded by the caller."""

    device: Device
    merchant: Merchant | None
    credential: Credential | None
    policy: SpendingPolicy | None
    account: Account | None
    amount: int
    currency: str
    pin: str | None
    spent_today: int
    limits: PaymentLimits
    verify_pin: Callable[[str, str], bool]
    credential_problem: CredentialProblem | None = None
    # What was presented (a band or a phone key), for the terminal's words; None: unsaid.
    presented_kind: CredentialKind | None = None
    # Wrong PINs in a row, read afresh by the caller (the credential may be a cached
    # copy); None: the credential's own count.
    pin_failures: int | None = None
    venue_enabled: bool = True  # a closed venue takes no money, whatever its terminals say
    # The most a folio may owe: its own limit, else the venue's; None: no limit.
    credit_limit: int | None = None


@dataclass(frozen=True)
class PaymentDecision:
    """Approve or decline, and what the approval or the wrong PIN changes."""

    approved: bool
    reason: PaymentReason
    text: str
    pin_failed: bool = False  # count one more wrong PIN on the credential
    pin_passed: bool = False  # a right PIN clears the count

    @property
    def outcome(self) -> str:
        return "approve" if self.approved else "decline"


def text_of(reason: PaymentReason, kind: CredentialKind | None = None) -> str:
    """The terminal's words for ``reason``, in terms of what was presented."""
    if kind is CredentialKind.PHONE_KEY and reason in KEY_TEXTS:
        return KEY_TEXTS[reason]
    return TEXTS[reason]


def decline(reason: PaymentReason, *, pin_failed: bool = False, pin_passed: bool = False,
            kind: CredentialKind | None = None) -> PaymentDecision:
    """A declined payment with the terminal's text for ``reason`` (and the credential
    ``kind``)."""
    return PaymentDecision(False, reason, text_of(reason, kind), pin_failed=pin_failed,
                           pin_passed=pin_passed)


def decide_payment(ctx: PaymentContext) -> PaymentDecision:
    """Approve or decline a tap-to-pay, checking in a fixed, documented order."""
    if not (ctx.device.enabled and ctx.venue_enabled):
        return decline(PaymentReason.DEVICE_DISABLED)
    if ctx.device.kind not in TERMINAL_KINDS:
        return decline(PaymentReason.DEVICE_NOT_A_TERMINAL)
    if ctx.merchant is None or ctx.device.merchant_id != ctx.merchant.id:
        return decline(PaymentReason.UNKNOWN_MERCHANT)
    kind = ctx.presented_kind
    if ctx.credential_problem is not None:
        return decline(PROBLEMS[ctx.credential_problem], kind=kind)
    cred = ctx.credential
    if cred is None:
        return decline(PaymentReason.UNKNOWN_CREDENTIAL, kind=kind)
    if cred.status in _CREDENTIAL_DENIALS:
        return decline(_CREDENTIAL_DENIALS[cred.status], kind=kind)
    policy = ctx.policy
    if policy is not None and not policy.payment_enabled:
        return decline(PaymentReason.PAYMENT_DISABLED, kind=kind)
    failures = cred.pin_failures if ctx.pin_failures is None else ctx.pin_failures
    if failures >= ctx.limits.max_pin_failures:
        return decline(PaymentReason.PIN_LOCKED)
    if ctx.account is None:
        return decline(PaymentReason.NO_ACCOUNT)
    if ctx.currency != ctx.account.currency or ctx.currency != ctx.merchant.currency:
        return decline(PaymentReason.CURRENCY_MISMATCH)
    if ctx.amount > ctx.limits.max_amount:
        return decline(PaymentReason.AMOUNT_TOO_LARGE)

    pin_passed = False
    guarded = policy is not None and policy.pin_threshold is not None
    if guarded and policy is not None and ctx.amount > (policy.pin_threshold or 0):
        if policy.pin_hash is None or ctx.pin is None:
            return decline(PaymentReason.PIN_REQUIRED)
        if not ctx.verify_pin(policy.pin_hash, ctx.pin):
            return decline(PaymentReason.PIN_WRONG, pin_failed=True)
        pin_passed = True
    # A right PIN ends the run of wrong ones even when the payment is declined after it.
    if policy is not None and policy.daily_limit is not None \
            and ctx.spent_today + ctx.amount > policy.daily_limit:
        return decline(PaymentReason.DAILY_LIMIT_EXCEEDED, pin_passed=pin_passed)
    if ctx.account.kind is AccountKind.WALLET and ctx.account.balance < ctx.amount:
        return decline(PaymentReason.INSUFFICIENT_FUNDS, pin_passed=pin_passed)
    if ctx.account.kind is AccountKind.FOLIO and ctx.credit_limit is not None \
            and ctx.account.balance - ctx.amount < -ctx.credit_limit:
        return decline(PaymentReason.CREDIT_LIMIT_EXCEEDED, pin_passed=pin_passed)
    return PaymentDecision(True, PaymentReason.OK, TEXTS[PaymentReason.OK], pin_passed=pin_passed)


def folio_credit_limit(account: Account | None, venue_default: int | None) -> int | None:
    """The most ``account`` may owe, when it is a folio: its own limit, else the venue's."""
    if account is None or account.kind is not AccountKind.FOLIO:
        return None
    return account.credit_limit if account.credit_limit is not None else venue_default


def postings_for_charge(*, payer: Account, revenue: Account, amount: int) -> list[tuple[str, int]]:
    """The legs of a charge: the payer's account down, the merchant's takings up."""
    return [(payer.id, -amount), (revenue.id, amount)]


def fingerprint(*, amount: int, currency: str, merchant_id: str | None, payer: str,
                account: str = "auto", items: Sequence[object] = ()) -> str:
    """What an idempotency key promised: the same key must always mean the same payment."""
    what = json.dumps([amount, currency, merchant_id, payer, account, items], sort_keys=True,
                      default=str)
    return hashlib.sha256(what.encode()).hexdigest()
