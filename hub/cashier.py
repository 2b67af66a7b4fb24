"""Money movements at the edges: tap-to-pay from a terminal, top-ups, refunds, check-out.

Each function runs inside the caller's transaction and returns what to publish
(the terminal's decision, the guests' receipts) once that transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from devices.contract import (
    LineItem,
    PaymentDecision,
    PaymentReason,
    PaymentRequest,
    Receipt,
    encode,
)
from devices.topics import Channel, device_topic, guest_topic, staff_topic
from hub import credential_checks, journey_detail
from hub.models import (
    Account,
    AccountKind,
    Credential,
    Device,
    Event,
    LedgerTransaction,
    Merchant,
    SpendingPolicy,
    TransactionType,
    Venue,
)
from hub.notices import staff_alert
from hub.payment import (
    PaymentContext,
    PaymentLimits,
    decide_payment,
    fingerprint,
    folio_credit_limit,
    postings_for_charge,
)
from hub.payment import PaymentDecision as Verdict
from hub.presented import Presented, Trust
from hub.security import verify_secret
from hub.store import devices, errors, events, guests, money, rows
from hub.store.registry import UNCACHED, Registry

_MAX_ATTEMPTS = 5


@dataclass
class Published:
    """Messages to publish after the commit: (topic, payload) pairs."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    decision: PaymentDecision | None = None
    # Who was charged by a fresh approval (not a replay): automations may react to it.
    charged_guest_id: str | None = None


class _Retry(Exception):
    """Balances or limits moved between read and write: decide again."""


class EventIdReused(Exception):
    """The terminal used this event id before for another kind of message."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"event id used for a {kind} already")
        self.kind = kind


def receipt_of(txn: LedgerTransaction, *, account: Account, guest_id: str,
               merchant_name: str | None) -> Receipt:
    """The guest's receipt of a posted transaction; the balance only for the account's own
    guest (a party member spends on the lead's account, not into its balance)."""
    return Receipt(
        transaction_id=txn.id, type=txn.type.value, guest_id=guest_id,
        spent_by=txn.guest_id if txn.guest_id != guest_id else None,
        merchant_id=txn.merchant_id, merchant_name=merchant_name,
        items=[LineItem.model_validate(i) for i in txn.items], amount=txn.amount,
        currency=txn.currency, account=account.kind.value,  # type: ignore[arg-type]
        balance_after=(txn.balance_after if txn.balance_after is not None else account.balance)
        if guest_id == account.guest_id else None,
        at=txn.created_at,
    )


def receipts_for(txn: LedgerTransaction, account: Account, venue_id: str,
                 merchant_name: str | None) -> list[tuple[str, bytes]]:
    """A receipt to the guest who tapped and, when someone else pays, to the payer too."""
    guests = [g for g in dict.fromkeys((txn.guest_id, account.guest_id)) if g]
    return [(guest_topic(venue_id, g),
             encode(receipt_of(txn, account=account, guest_id=g, merchant_name=merchant_name)))
            for g in guests]


def _decision_of(txn: LedgerTransaction, event_id: str, key: str, reason: PaymentReason | None
                 = None, text: str | None = None, account: Account | None = None,
                 asked: PaymentRequest | None = None,
                 decided_at: datetime | None = None) -> PaymentDecision:
    approved = txn.approved and reason is None
    kind = account.kind.value if account else None
    # The till's display shows a wallet's balance to its own guest only: a party member
    # paying from the lead's wallet is not shown what the lead has left.
    shown = approved and kind == "wallet" and account is not None \
        and account.guest_id == txn.guest_id
    return PaymentDecision(
        event_id=event_id, idempotency_key=key, outcome="approve" if approved else "decline",
        reason=reason or PaymentReason(txn.reason), text=text or txn.text,
        amount=asked.amount if asked else txn.amount,
        currency=asked.currency if asked else txn.currency,
        transaction_id=txn.id if approved else None,
        account=kind if approved else None,  # type: ignore[arg-type]
        balance_after=txn.balance_after if shown else None,
        decided_at=decided_at or txn.created_at)


def handle_payment(session: Session, *, venue: str, device: Device, req: PaymentRequest,
                   now: datetime, limits: PaymentLimits, trust: Trust,
                   late: bool = False,
                   verify_pin: Callable[[str, str], bool] = verify_secret,
                   received_at: datetime | None = None,
                   registry: Registry = UNCACHED) -> Published:
    """Decide a tap-to-pay and move the money, exactly once per idempotency key.

    A ``late`` request (past the hub's deadline, the terminal has shown "failed") that
    was not decided before is declined ``too_late`` under its key and moves nothing; the
    terminal's retry under a new key gets a fresh decision. With ``registry``, the
    credential, merchant and venue are read through that cache (the credential's count
    of wrong PINs, which is state, always afresh).
    """
    for _attempt in range(_MAX_ATTEMPTS):
        try:
            with session.begin_nested():
                return _try_payment(session, venue, device, req, now, limits, trust, late,
                                    verify_pin, received_at or now, registry)
        except (_Retry, money.Overdrawn, money.LimitReached, sa.exc.IntegrityError):
            continue  # state moved under us (another terminal, another worker): decide again
    raise RuntimeError(f"payment {req.idempotency_key} kept losing races")


def _record_event(session: Session, *, venue: str, device: Device, req: PaymentRequest,
                  presented: Presented, credential: Credential | None,
                  decision: PaymentDecision, now: datetime,
                  received_at: datetime | None = None, detail: str | None = None) -> None:
    events.insert_event(session=session, values=events.event_columns(
        device_id=device.id, venue_id=venue, event_id=req.event_id, kind="payment",
        received_at=received_at or now, device_ts=req.ts, credential_kind=presented.kind.value,
        credential_ref=presented.identifier or None,
        credential_id=credential.id if credential else None,
        guest_id=credential.guest_id if credential else None, zone_id=device.zone_id,
        outcome=decision.outcome, reason=decision.reason.value, text=decision.text,
        # What the terminal was told, so a redelivery is answered with the same time.
        transaction_id=decision.transaction_id, decided_at=decision.decided_at, detail=detail))


def _replay(session: Session, seen: Event, req: PaymentRequest) -> PaymentDecision:
    """The decision already given to an event id, rebuilt from what was recorded."""
    txn = rows.find(session=session, model=LedgerTransaction,
                    key=seen.transaction_id) if seen.transaction_id else None
    if txn is not None:
        account = rows.find(session=session, model=Account,
                            key=txn.account_id) if txn.account_id else None
        return _decision_of(txn, seen.event_id, txn.idempotency_key, account=account)
    return PaymentDecision(
        event_id=seen.event_id, idempotency_key=req.idempotency_key, outcome="decline",
        reason=PaymentReason(seen.reason), text=seen.text, amount=req.amount,
        currency=req.currency, decided_at=seen.decided_at)


def _try_payment(session: Session, venue: str, device: Device, req: PaymentRequest,
                 now: datetime, limits: PaymentLimits, trust: Trust, late: bool,
                 verify_pin: Callable[[str, str], bool], received_at: datetime,
                 registry: Registry) -> Published:
    session.expire_all()
    reply_topic = device_topic(venue, device.id, Channel.DECISIONS)
    presented = credential_checks.present(session, credential=req.credential, trust=trust,
                                          venue_id=venue, device_id=device.id, now=now)
    # The payer in the key's promise is what was presented (SUN data differs per read, the
    # identifier it proves does not).
    print_ = fingerprint(amount=req.amount, currency=req.currency, merchant_id=req.merchant_id,
                         payer=f"{presented.kind.value}:{presented.identifier}",
                         account=req.account,
                         items=[i.model_dump() for i in req.items])

    seen = events.find_event(session=session, device_id=device.id, event_id=req.event_id)
    if seen is not None and seen.kind != "payment":
        raise EventIdReused(seen.kind)  # its decision answers another question
    if seen is not None:  # this event id again (QoS 1 redelivery): the same answer, always
        decision = _replay(session, seen, req)
        return Published([(reply_topic, encode(decision))], decision)
    earlier = money.find_by_key(session=session, scope=device.id, key=req.idempotency_key)
    if earlier is not None:
        # A decided key is answered from the ledger; the tag's counter is not consumed
        # by it, so the credential is looked up without authenticating it again.
        credential = guests.find_credential(session=session, kind=presented.kind,
                                            identifier=presented.identifier)
        account = rows.find(session=session, model=Account,
                            key=earlier.account_id) if earlier.account_id else None
        if earlier.fingerprint == print_:
            decision = _decision_of(earlier, req.event_id, req.idempotency_key, account=account)
        else:
            decision = _decision_of(earlier, req.event_id, req.idempotency_key,
                                    reason=PaymentReason.IDEMPOTENCY_CONFLICT,
                                    text="Duplicate payment id - not charged", asked=req,
                                    decided_at=now)  # a new decision: refused now
        _record_event(session, venue=venue, device=device, req=req, presented=presented,
                      credential=credential, decision=decision, now=now,
                      received_at=received_at)
        return Published([(reply_topic, encode(decision))], decision)

    if late:
        return _too_late(session, venue, device, req, presented, print_, now, received_at)

    credential, problem = credential_checks.authenticate(
        session, presented=presented, venue_id=venue, device_id=device.id, now=now,
        registry=registry)
    pin_failures = guests.pin_failures_of(session=session, guest_id=credential.guest_id) \
        if credential else 0
    merchant = registry.get(session, Merchant, req.merchant_id)
    if merchant is not None and merchant.venue_id != venue:
        merchant = None
    policy = rows.find(session=session, model=SpendingPolicy,
                       key=credential.guest_id) if credential else None
    payer = (policy.payer_guest_id if policy else credential.guest_id) if credential else None
    account = money.account_to_charge(session=session, choice=req.account, guest_id=payer,
                                      venue_id=venue) if payer else None
    venue_row = registry.get(session, Venue, venue)
    day = now.astimezone(ZoneInfo(venue_row.timezone if venue_row else "UTC")).date().isoformat()
    spent = money.spent_on(session=session, guest_id=credential.guest_id, day=day) if credential \
        else None
    ctx = PaymentContext(
        device=device, merchant=merchant, credential=credential, policy=policy, account=account,
        amount=req.amount, currency=req.currency, pin=req.pin, spent_today=spent or 0,
        limits=limits, verify_pin=verify_pin,
        credential_problem=problem, presented_kind=presented.kind,
        pin_failures=pin_failures, venue_enabled=devices.venue_open(venue_row),
        credit_limit=folio_credit_limit(account, venue_row.folio_credit_limit
                                        if venue_row else None))
    verdict: Verdict = decide_payment(ctx)
    if credential is not None and verdict.pin_failed:
        # A wrong PIN is counted on the count read under the guest's lock: another worker
        # may have counted one since the read above (the fifth, even), so decide on that.
        locked = guests.lock_pin_failures(session=session, guest_id=credential.guest_id)
        if locked != pin_failures:
            pin_failures = locked
            verdict = decide_payment(replace(ctx, pin_failures=locked))

    txn = LedgerTransaction(
        venue_id=venue, type=TransactionType.CHARGE, approved=verdict.approved,
        reason=verdict.reason.value, text=verdict.text, amount=req.amount, currency=req.currency,
        guest_id=credential.guest_id if credential else None,
        account_id=account.id if account else None, merchant_id=req.merchant_id,
        credential_id=credential.id if credential else None, device_id=device.id,
        event_id=req.event_id, items=[i.model_dump() for i in req.items],
        idempotency_scope=device.id, idempotency_key=req.idempotency_key, fingerprint=print_,
        created_at=now)
    messages: list[tuple[str, bytes]] = []
    if credential is not None and (verdict.pin_failed or verdict.pin_passed):
        guests.count_pin_attempt(session=session, credential_id=credential.id,
                                 guest_id=credential.guest_id, failed=verdict.pin_failed)
        if verdict.pin_failed and pin_failures + 1 == limits.max_pin_failures:
            # The guest will be told "please see staff": the front desk hears it first.
            messages.append((staff_topic(venue), encode(staff_alert(
                "pin-lock", now, {
                    "text": f"Payments locked for {credential.guest_id} after "
                            f"{limits.max_pin_failures} wrong PINs (last at {device.id})",
                    "severity": "warning", "guest_id": credential.guest_id,
                    "device_id": device.id, "reason": PaymentReason.PIN_LOCKED.value}))))
    if verdict.approved:
        assert account is not None and merchant is not None and credential is not None
        money.add_daily_spend(session=session, guest_id=credential.guest_id, day=day,
                              amount=req.amount,
                              limit=policy.daily_limit if policy else None,
                              row_exists=spent is not None)
        revenue = money.revenue_of(session=session, merchant=merchant)
        money.post(session=session, txn=txn,
                   legs=postings_for_charge(payer=account, revenue=revenue, amount=req.amount),
                   balance_after_of=account.id)
        messages += receipts_for(txn, account, venue, merchant.name)
    else:
        money.record(session=session, txn=txn)
    decision = _decision_of(txn, req.event_id, req.idempotency_key, account=account)
    detail = journey_detail.detail_of(presented, problem, known=credential is not None)
    if problem is not None:
        journey_detail.log_refused(problem, detail, device_id=device.id, event_id=req.event_id,
                                   kind=presented.kind.value)
    _record_event(session, venue=venue, device=device, req=req, presented=presented,
                  credential=credential, decision=decision, now=now,
                  received_at=received_at, detail=detail)
    return Published([(reply_topic, encode(decision)), *messages], decision,
                     charged_guest_id=credential.guest_id if verdict.approved and credential
                     else None)


def _too_late(session: Session, venue: str, device: Device, req: PaymentRequest,
              presented: Presented, print_: str, now: datetime,
              received_at: datetime) -> Published:
    """Decline a request that waited past its deadline, under its key; nothing moves.

    The credential is not authenticated: a band's tag counter and the PIN's count of
    wrong tries stay as they were.
    """
    txn = LedgerTransaction(
        venue_id=venue, type=TransactionType.CHARGE, approved=False,
        reason=PaymentReason.TOO_LATE.value, text="Too late - not charged, tap again",
        amount=req.amount, currency=req.currency, merchant_id=req.merchant_id,
        device_id=device.id, event_id=req.event_id, items=[i.model_dump() for i in req.items],
        idempotency_scope=device.id, idempotency_key=req.idempotency_key, fingerprint=print_,
        created_at=now)
    money.record(session=session, txn=txn)
    decision = _decision_of(txn, req.event_id, req.idempotency_key)
    _record_event(session, venue=venue, device=device, req=req, presented=presented,
                  credential=None, decision=decision, now=now, received_at=received_at)
    reply_topic = device_topic(venue, device.id, Channel.DECISIONS)
    return Published([(reply_topic, encode(decision))], decision)


def pin_hash_for(session: Session, *, venue: str, device_id: str, req: PaymentRequest,
                 trust: Trust, now: datetime) -> str | None:
    """The PIN hash a payment's PIN will be checked against, read without changing
    anything (no tag counter, no challenge used): for checking the PIN ahead."""
    presented = credential_checks.present(session, credential=req.credential, trust=trust,
                                          venue_id=venue, device_id=device_id, now=now)
    if presented.forged:
        return None
    credential = rows.find(session=session, model=Credential, key=presented.credential_id) \
        if presented.credential_id is not None \
        else guests.find_credential(session=session, kind=presented.kind,
                                    identifier=presented.identifier)
    policy = rows.find(session=session, model=SpendingPolicy,
                       key=credential.guest_id) if credential else None
    return policy.pin_hash if policy else None


# -------------------------------------------------------- staff and kiosks


def top_up(session: Session, *, wallet: Account, amount: int, key: str, actor: str,
           now: datetime) -> tuple[LedgerTransaction, list[tuple[str, bytes]]]:
    """Add money to a wallet (card at a kiosk, cash at a desk), once per key."""
    if wallet.kind is not AccountKind.WALLET:
        raise errors.Conflict(f"account {wallet.id} is a {wallet.kind.value}, not a wallet")
    earlier = money.find_by_key(session=session, scope="api", key=key)
    if earlier is not None:
        if earlier.type is not TransactionType.TOPUP or earlier.account_id != wallet.id \
                or earlier.amount != amount:
            raise errors.Conflict(f"idempotency key {key!r} was used for another request")
        return earlier, []
    clearing = money.clearing_of(session=session, venue_id=wallet.venue_id,
                                 currency=wallet.currency)
    txn = LedgerTransaction(
        venue_id=wallet.venue_id, type=TransactionType.TOPUP, approved=True, reason="ok",
        text="Top-up", amount=amount, currency=wallet.currency, guest_id=wallet.guest_id,
        account_id=wallet.id, idempotency_scope="api", idempotency_key=key,
        fingerprint=f"topup:{wallet.id}:{amount}", actor=actor, created_at=now)
    money.post(session=session, txn=txn, legs=[(wallet.id, amount), (clearing.id, -amount)],
               balance_after_of=wallet.id)
    return txn, receipts_for(txn, wallet, wallet.venue_id, None)


def refund(session: Session, *, original: LedgerTransaction, amount: int | None, key: str,
           actor: str, now: datetime) -> tuple[LedgerTransaction, list[tuple[str, bytes]]]:
    """Give back all or part of a charge; never more than what is left of it.

    The money goes back to the account charged; a folio's charge refunded after
    check-out goes to the guest's wallet (see :func:`_refund_to`).
    """
    if original.type is not TransactionType.CHARGE or not original.approved:
        raise errors.Conflict(f"transaction {original.id} is not an approved charge")
    earlier = money.find_by_key(session=session, scope="api", key=key)
    if earlier is not None:
        if earlier.original_id != original.id or (amount is not None and earlier.amount != amount):
            raise errors.Conflict(f"idempotency key {key!r} was used for another request")
        return earlier, []
    # The charge's row is locked first, so two desks refunding it at once take turns and
    # the second sees the first's refund (PostgreSQL's read committed does not serialize
    # a read-then-write by itself; SQLite's BEGIN IMMEDIATE already did).
    session.refresh(original, with_for_update=True)
    left = original.amount - money.refunded_so_far(session=session, original_id=original.id)
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise errors.Conflict(f"refund of {amount} exceeds what is left of the charge ({left})")
    account = _refund_to(session, charged=rows.get(session=session, model=Account,
                                                   key=original.account_id or ""),
                         currency=original.currency)
    merchant = rows.find(session=session, model=Merchant,
                         key=original.merchant_id) if original.merchant_id else None
    if merchant is None:
        raise errors.Conflict(f"charge {original.id} has no merchant to refund from")
    revenue = money.revenue_of(session=session, merchant=merchant)
    txn = LedgerTransaction(
        venue_id=original.venue_id, type=TransactionType.REFUND, approved=True, reason="ok",
        text="Refund", amount=amount, currency=original.currency, guest_id=original.guest_id,
        account_id=account.id, merchant_id=original.merchant_id, original_id=original.id,
        idempotency_scope="api", idempotency_key=key,
        fingerprint=f"refund:{original.id}:{amount}", actor=actor, created_at=now)
    money.post(session=session, txn=txn, legs=[(account.id, amount), (revenue.id, -amount)],
               balance_after_of=account.id)
    return txn, receipts_for(txn, account, account.venue_id, merchant.name)


def _refund_to(session: Session, *, charged: Account, currency: str) -> Account:
    """Where a refund goes: the account charged, or once that is closed (a folio settled
    at check-out) its guest's open wallet at the venue in the charge's currency.

    No wallet is created for it: a guest without one is refunded another way (409).
    """
    if charged.open:
        return charged
    wallet = money.wallet_of(session=session, guest_id=charged.guest_id,
                             venue_id=charged.venue_id) \
        if charged.guest_id else None
    if wallet is None or wallet.currency != currency:
        raise errors.Conflict(f"account {charged.id} is closed (settled at check-out) and its "
                            f"guest has no open {currency} wallet at {charged.venue_id}: "
                            "refund the guest another way")
    return wallet


def settle(session: Session, *, folio: Account, key: str, actor: str,
           now: datetime) -> tuple[LedgerTransaction, list[tuple[str, bytes]]]:
    """Check-out: the folio's balance is paid (or paid back) and the folio closes."""
    if folio.kind is not AccountKind.FOLIO:
        raise errors.Conflict(f"account {folio.id} is a {folio.kind.value}, not a folio")
    earlier = money.find_by_key(session=session, scope="api", key=key)
    if earlier is not None:  # the same check-out again (a retried request): the same answer
        if earlier.type is not TransactionType.SETTLEMENT or earlier.account_id != folio.id:
            raise errors.Conflict(f"idempotency key {key!r} was used for another request")
        return earlier, []
    if not folio.open:
        raise errors.Conflict(f"folio {folio.id} is already settled")
    # Locked before it is read: a charge committing meanwhile is waited for and counted,
    # and one arriving later finds the folio closed.
    session.refresh(folio, with_for_update=True)
    if not folio.open:
        raise errors.Conflict(f"folio {folio.id} is already settled")
    owed = -folio.balance
    clearing = money.clearing_of(session=session, venue_id=folio.venue_id, currency=folio.currency)
    txn = LedgerTransaction(
        venue_id=folio.venue_id, type=TransactionType.SETTLEMENT, approved=True, reason="ok",
        text="Check-out", amount=owed, currency=folio.currency, guest_id=folio.guest_id,
        account_id=folio.id, idempotency_scope="api", idempotency_key=key,
        fingerprint=f"settle:{folio.id}", actor=actor, created_at=now)
    if owed != 0:
        moved = money.post(session=session, txn=txn, legs=[(folio.id, owed), (clearing.id, -owed)],
                           balance_after_of=folio.id)
        if moved[folio.id] != 0:  # cannot happen with the lock; never close a folio owing
            raise errors.Conflict(f"folio {folio.id} changed during check-out: try again")
    else:
        txn.balance_after = 0
        money.record(session=session, txn=txn)
    result = txn, receipts_for(txn, folio, folio.venue_id, None)
    money.close(session=session, account=folio, now=now)
    return result
