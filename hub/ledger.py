"""The double-entry ledger: accounts, balanced postings, refunds, settlement, verification.

Every movement is a LedgerTransaction whose postings sum to zero. An account's
``balance`` caches the sum of its postings and is changed only by a conditional
UPDATE in the same transaction as the postings, so a wallet can never go below
zero, whichever worker or terminal gets there first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.crud import Conflict
from hub.models import (
    Account,
    AccountKind,
    DailySpend,
    LedgerTransaction,
    Merchant,
    Posting,
    TransactionType,
)


class Overdrawn(Exception):
    """A posting would take a wallet below zero (state moved since it was read)."""


class LimitReached(Exception):
    """A charge would take a guest past their daily limit (state moved since it was read)."""


# ------------------------------------------------------------------ accounts


def wallet_of(session: Session, *, guest_id: str, venue_id: str) -> Account | None:
    """The guest's open wallet at this venue."""
    stmt = select(Account).where(Account.guest_id == guest_id, Account.venue_id == venue_id,
                                 Account.kind == AccountKind.WALLET, col(Account.open).is_(True))
    return session.exec(stmt).first()


def folio_of(session: Session, *, guest_id: str, venue_id: str) -> Account | None:
    """The guest's open room folio at this venue, if they are staying."""
    stmt = select(Account).where(Account.guest_id == guest_id, Account.venue_id == venue_id,
                                 Account.kind == AccountKind.FOLIO, col(Account.open).is_(True))
    return session.exec(stmt.order_by(col(Account.created_at).desc())).first()


def revenue_of(session: Session, *, merchant: Merchant) -> Account:
    """The merchant's takings account, created on first use."""
    stmt = select(Account).where(Account.merchant_id == merchant.id,
                                 Account.kind == AccountKind.REVENUE)
    found = session.exec(stmt).first()
    if found is None:
        found = Account(venue_id=merchant.venue_id, kind=AccountKind.REVENUE,
                        currency=merchant.currency, merchant_id=merchant.id)
        session.add(found)
        session.flush()
    return found


def clearing_of(session: Session, *, venue_id: str, currency: str) -> Account:
    """The venue's clearing account: where top-ups come from and settlements go to."""
    stmt = select(Account).where(Account.venue_id == venue_id, Account.currency == currency,
                                 Account.kind == AccountKind.CLEARING)
    found = session.exec(stmt).first()
    if found is None:
        found = Account(venue_id=venue_id, kind=AccountKind.CLEARING, currency=currency)
        session.add(found)
        session.flush()
    return found


# ------------------------------------------------------------------ postings


def post(session: Session, *, txn: LedgerTransaction, legs: Sequence[tuple[str, int]]) -> None:
    """Write a balanced transaction and move the cached balances, or raise Overdrawn."""
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"unbalanced transaction {txn.id}: {legs}")
    session.add(txn)
    session.flush()
    for account_id, amount in legs:
        moved = session.execute(
            sa.update(Account)
            .where(col(Account.id) == account_id, col(Account.open).is_(True),
                   sa.or_(col(Account.kind) != AccountKind.WALLET,
                          col(Account.balance) + amount >= 0))
            .values(balance=Account.balance + amount)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise Overdrawn(account_id)
        session.add(Posting(transaction_id=txn.id, account_id=account_id, amount=amount))
    session.flush()


def balance_of(session: Session, *, account_id: str) -> int:
    """The cached balance, read afresh from the database."""
    value = session.execute(sa.select(col(Account.balance)).where(col(Account.id) == account_id))
    return int(value.scalar_one())


def add_daily_spend(session: Session, *, guest_id: str, day: str, amount: int,
                    limit: int | None) -> None:
    """Count a charge against the guest's day, or raise LimitReached."""
    if session.get(DailySpend, (guest_id, day)) is None:
        try:
            with session.begin_nested():
                session.add(DailySpend(guest_id=guest_id, day=day, spent=0))
                session.flush()
        except sa.exc.IntegrityError:
            pass  # created by a concurrent charge; the conditional update decides
    stmt = sa.update(DailySpend).where(col(DailySpend.guest_id) == guest_id,
                                       col(DailySpend.day) == day)
    if limit is not None:
        stmt = stmt.where(col(DailySpend.spent) + amount <= limit)
    moved = session.execute(stmt.values(spent=DailySpend.spent + amount)
                            .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise LimitReached(guest_id)


def spent_on(session: Session, *, guest_id: str, day: str) -> int:
    row = session.get(DailySpend, (guest_id, day))
    return row.spent if row else 0


def refunded_so_far(session: Session, *, original_id: str) -> int:
    """The sum of approved refunds of a charge."""
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(col(LedgerTransaction.amount)), 0))
        .where(col(LedgerTransaction.original_id) == original_id,
               col(LedgerTransaction.type) == TransactionType.REFUND,
               col(LedgerTransaction.approved).is_(True)))
    return int(total.scalar_one())


def find_by_key(session: Session, *, scope: str, key: str) -> LedgerTransaction | None:
    """The transaction recorded under an idempotency key."""
    stmt = select(LedgerTransaction).where(LedgerTransaction.idempotency_scope == scope,
                                           LedgerTransaction.idempotency_key == key)
    return session.exec(stmt).first()


def transactions(session: Session, *, guest_id: str | None = None,
                 account_id: str | None = None, limit: int = 100,
                 offset: int = 0) -> list[LedgerTransaction]:
    """Approved and declined transactions, newest first."""
    stmt = select(LedgerTransaction)
    if guest_id is not None:
        payer_accounts = select(Account.id).where(Account.guest_id == guest_id)
        stmt = stmt.where(sa.or_(col(LedgerTransaction.guest_id) == guest_id,
                                 col(LedgerTransaction.account_id).in_(payer_accounts)))
    if account_id is not None:
        stmt = stmt.where(LedgerTransaction.account_id == account_id)
    stmt = stmt.order_by(col(LedgerTransaction.created_at).desc(), col(LedgerTransaction.id))
    return list(session.exec(stmt.offset(offset).limit(limit)).all())


def postings_of(session: Session, *, account_id: str) -> list[Posting]:
    return list(session.exec(select(Posting).where(Posting.account_id == account_id)
                             .order_by(col(Posting.id))).all())


def close(session: Session, *, account: Account, now: datetime) -> None:
    """Close an account (a settled folio); it takes no more postings."""
    if not account.open:
        raise Conflict(f"account {account.id} is already closed")
    account.open = False
    account.closed_at = now
    session.add(account)
    session.flush()


# ------------------------------------------------------------------- verify


def counts(session: Session) -> dict[str, int]:
    """How much the ledger holds, for reports."""
    def count(model: type) -> int:
        return int(session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one())

    return {"transactions": count(LedgerTransaction), "postings": count(Posting),
            "accounts": count(Account)}


def verify(session: Session) -> list[str]:
    """Every ledger invariant that does not hold, in words; empty when all is well."""
    problems: list[str] = []
    unbalanced = session.execute(
        sa.select(col(Posting.transaction_id), sa.func.sum(col(Posting.amount)))
        .group_by(col(Posting.transaction_id))
        .having(sa.func.sum(col(Posting.amount)) != 0))
    problems += [f"transaction {t} does not balance: postings sum to {s}" for t, s in unbalanced]
    derived: dict[str, int] = dict(session.execute(
        sa.select(col(Posting.account_id), sa.func.sum(col(Posting.amount)))
        .group_by(col(Posting.account_id))).all())
    for account in session.exec(select(Account)).all():
        total = int(derived.get(account.id, 0))
        if total != account.balance:
            problems.append(f"account {account.id} ({account.kind}) caches {account.balance} "
                            f"but its postings sum to {total}")
        if account.kind is AccountKind.WALLET and total < 0:
            problems.append(f"wallet {account.id} is below zero: {total}")
    approved_without_postings = session.execute(
        sa.select(col(LedgerTransaction.id)).where(
            col(LedgerTransaction.approved).is_(True),
            ~sa.exists().where(col(Posting.transaction_id) == LedgerTransaction.id)))
    problems += [f"approved transaction {t} has no postings" for (t,) in approved_without_postings]
    declined_with_postings = session.execute(
        sa.select(col(LedgerTransaction.id)).where(
            col(LedgerTransaction.approved).is_(False),
            sa.exists().where(col(Posting.transaction_id) == LedgerTransaction.id)))
    problems += [f"declined transaction {t} moved money" for (t,) in declined_with_postings]
    over_refunded = session.execute(
        sa.select(col(LedgerTransaction.original_id), sa.func.sum(col(LedgerTransaction.amount)))
        .where(col(LedgerTransaction.type) == TransactionType.REFUND,
               col(LedgerTransaction.approved).is_(True))
        .group_by(col(LedgerTransaction.original_id)))
    for original_id, refunded in over_refunded:
        original = session.get(LedgerTransaction, original_id)
        if original is None or refunded > original.amount:
            problems.append(f"charge {original_id} refunded {refunded}, more than it charged")
    return problems
