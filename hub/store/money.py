"""The double-entry ledger: accounts, balanced postings, refunds, settlement, verification.

Every movement is a LedgerTransaction whose postings sum to zero. An account's
``balance`` caches the sum of its postings and is changed only by a conditional
UPDATE in the same transaction as the postings, so a wallet can never go below
zero, whichever worker or terminal gets there first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select

from hub.models import (
    Account,
    AccountKind,
    DailySpend,
    LedgerTransaction,
    Merchant,
    Posting,
    TransactionType,
    Venue,
)
from hub.store.errors import Conflict, Invalid
from hub.store.rows import insert_ignoring_duplicates, table_of


class Overdrawn(Exception):
    """A posting would take a wallet below zero or a folio past its credit limit (state
    moved since it was read)."""


class LimitReached(Exception):
    """A charge would take a guest past their daily limit (state moved since it was read)."""


# The hot path's statements, built once (building costs more than executing).
_accounts, _spends, _txns, _venues = (table_of(m) for m in (Account, DailySpend,
                                                             LedgerTransaction, Venue))
_P = sa.bindparam
# What a folio may owe: its own limit, else its venue's default; NULL: no limit.
_CREDIT_LIMIT = sa.func.coalesce(
    _accounts.c.credit_limit,
    sa.select(_venues.c.folio_credit_limit).where(_venues.c.id == _accounts.c.venue_id)
    .scalar_subquery())
_MOVE_BALANCE_ONLY = (sa.update(_accounts)
                      .where(_accounts.c.id == _P("account_id"), _accounts.c.open.is_(True),
                             sa.or_(_accounts.c.kind != AccountKind.WALLET,
                                    _accounts.c.balance + _P("amount") >= 0),
                             # A folio's charge stays within its credit limit, in the same
                             # statement: two workers cannot both pass it.
                             sa.or_(_accounts.c.kind != AccountKind.FOLIO,
                                    _P("amount") >= 0, _CREDIT_LIMIT.is_(None),
                                    _accounts.c.balance + _P("amount") >= -_CREDIT_LIMIT))
                      .values(balance=_accounts.c.balance + _P("amount")))
_MOVE_BALANCE = _MOVE_BALANCE_ONLY.returning(_accounts.c.balance)
_BALANCE = sa.select(_accounts.c.balance).where(_accounts.c.id == _P("account_id"))
_INSERT_TXN = sa.insert(_txns)
_INSERT_POSTINGS = sa.insert(table_of(Posting))
_SPENT = sa.select(_spends.c.spent).where(_spends.c.guest_id == _P("guest_id"),
                                          _spends.c.day == _P("day"))
_SPEND = (sa.update(_spends).where(_spends.c.guest_id == _P("who"),
                                   _spends.c.day == _P("on_day"))
          .values(spent=_spends.c.spent + _P("amount")))
_SPEND_WITHIN = _SPEND.where(_spends.c.spent + _P("amount") <= _P("limit"))
_TXN_BY_KEY = sa.select(_txns.c.id).where(_txns.c.idempotency_scope == _P("scope"),
                                          _txns.c.idempotency_key == _P("key"))


# ------------------------------------------------------------------ accounts


def wallet_of(*, session: Session, guest_id: str, venue_id: str) -> Account | None:
    """The guest's open wallet at this venue."""
    return _open_accounts(session=session, guest_id=guest_id,
                          venue_id=venue_id).get(AccountKind.WALLET)


def folio_of(*, session: Session, guest_id: str, venue_id: str) -> Account | None:
    """The guest's open room folio at this venue, if they are staying."""
    return _open_accounts(session=session, guest_id=guest_id,
                          venue_id=venue_id).get(AccountKind.FOLIO)


def account_to_charge(*, session: Session, choice: str, guest_id: str,
                      venue_id: str) -> Account | None:
    """The account a payment asked for: ``wallet``, ``folio``, or (``auto``) the folio of
    a staying guest, else the wallet. One query for either."""
    held = _open_accounts(session=session, guest_id=guest_id, venue_id=venue_id)
    if choice == "wallet":
        return held.get(AccountKind.WALLET)
    if choice == "folio":
        return held.get(AccountKind.FOLIO)
    return held.get(AccountKind.FOLIO) or held.get(AccountKind.WALLET)


def _open_accounts(*, session: Session, guest_id: str,
                   venue_id: str) -> dict[AccountKind, Account]:
    """The guest's open wallet and newest open folio at this venue, by kind."""
    stmt = select(Account).where(
        Account.guest_id == guest_id, Account.venue_id == venue_id,
        col(Account.kind).in_((AccountKind.WALLET, AccountKind.FOLIO)),
        col(Account.open).is_(True)).order_by(col(Account.created_at))
    return {row.kind: row for row in session.exec(stmt).all()}  # the newest of a kind wins


def revenue_of(*, session: Session, merchant: Merchant) -> Account:
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


def lock_revenues(*, session: Session, merchant_ids: Sequence[str]) -> None:
    """Lock the merchants' revenue accounts now, in the order of their ids.

    A batch of payments takes these first: they are the accounts every worker's batch
    shares, and taken in one global order up front no two batches can each hold one
    the other waits for. (SQLite's BEGIN IMMEDIATE already serializes writers.)
    """
    if not merchant_ids or session.get_bind().dialect.name == "sqlite":
        return
    session.connection().execute(
        sa.select(_accounts.c.id)
        .where(_accounts.c.kind == AccountKind.REVENUE,
               _accounts.c.merchant_id.in_(sorted(set(merchant_ids))))
        .order_by(_accounts.c.id).with_for_update()).all()


def clearing_of(*, session: Session, venue_id: str, currency: str) -> Account:
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


def post(*, session: Session, txn: LedgerTransaction, legs: Sequence[tuple[str, int]],
         balance_after_of: str | None = None) -> dict[str, int]:
    """Write a balanced transaction and move the cached balances, or raise Overdrawn.

    The balances move first, one conditional UPDATE per account in the order of their
    ids (so two single postings over the same accounts lock them in one order; a batch
    of several takes its merchants' revenue accounts up front, :func:`lock_revenues`,
    and should two batches still close a cycle through one guest's rows, PostgreSQL
    breaks it with a deadlock error and the bridge decides the batch again); then
    the transaction, with ``balance_after`` of ``balance_after_of``, and its postings.
    Returns every leg's new balance; Account rows this session holds see it too.
    """
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"unbalanced transaction {txn.id}: {legs}")
    connection = session.connection()
    balances: dict[str, int] = {}
    for account_id, amount in sorted(legs):
        moved = _move_balance(connection, account_id, amount)
        if moved is None:
            raise Overdrawn(account_id)
        balances[account_id] = int(moved[0])
        held = session.identity_map.get(identity_key(Account, account_id))
        if held is not None:  # what this session holds must not contradict what it wrote
            set_committed_value(held, "balance", balances[account_id])
    if balance_after_of is not None:
        txn.balance_after = balances[balance_after_of]
    record(session=session, txn=txn)
    connection.execute(_INSERT_POSTINGS,
                       [{"transaction_id": txn.id, "account_id": account_id, "amount": amount}
                        for account_id, amount in legs])
    return balances


def _move_balance(connection: sa.Connection, account_id: str,
                  amount: int) -> sa.Row[Any] | None:
    """The conditional UPDATE of one balance; the new balance, or None when refused."""
    if connection.dialect.name != "sqlite" or sqlite3.sqlite_version_info >= (3, 35):
        return connection.execute(_MOVE_BALANCE, {"account_id": account_id,
                                                  "amount": amount}).first()
    # SQLite before 3.35 (Debian 11, Ubuntu 20.04) has no RETURNING: the same UPDATE,
    # then a read inside the same write transaction (BEGIN IMMEDIATE: nobody in between).
    moved = connection.execute(_MOVE_BALANCE_ONLY, {"account_id": account_id,
                                                    "amount": amount})
    if moved.rowcount != 1:
        return None
    return connection.execute(_BALANCE, {"account_id": account_id}).first()


def record(*, session: Session, txn: LedgerTransaction) -> None:
    """INSERT a transaction (approved or declined) with one statement, outside the unit
    of work: the row stays transient in the session. IntegrityError when its
    idempotency key is taken."""
    session.connection().execute(_INSERT_TXN, txn.model_dump())


def add_daily_spend(*, session: Session, guest_id: str, day: str, amount: int,
                    limit: int | None, row_exists: bool = False) -> None:
    """Count a charge against the guest's day, or raise LimitReached.

    ``row_exists``: the day's row was read in this transaction (no INSERT needed).
    """
    if not row_exists:
        # Created by a concurrent charge meanwhile? Then this is a no-op and the
        # conditional update below decides.
        insert_ignoring_duplicates(session=session, table=DailySpend, guest_id=guest_id, day=day,
                                   spent=0)
    moved = session.connection().execute(
        _SPEND if limit is None else _SPEND_WITHIN,
        {"who": guest_id, "on_day": day, "amount": amount, "limit": limit})
    if moved.rowcount != 1:
        raise LimitReached(guest_id)


def spent_on(*, session: Session, guest_id: str, day: str) -> int | None:
    """What the guest spent on ``day``; None when nothing was (no row yet)."""
    row = session.connection().execute(_SPENT, {"guest_id": guest_id, "day": day}).first()
    return None if row is None else int(row[0])


def refunded_so_far(*, session: Session, original_id: str) -> int:
    """The sum of approved refunds of a charge."""
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(col(LedgerTransaction.amount)), 0))
        .where(col(LedgerTransaction.original_id) == original_id,
               col(LedgerTransaction.type) == TransactionType.REFUND,
               col(LedgerTransaction.approved).is_(True)))
    return int(total.scalar_one())


def find_by_key(*, session: Session, scope: str, key: str) -> LedgerTransaction | None:
    """The transaction recorded under an idempotency key."""
    # Nearly every key is new: ask for the id alone first, without the ORM's machinery.
    found = session.connection().execute(_TXN_BY_KEY, {"scope": scope, "key": key}).first()
    return None if found is None else session.get(LedgerTransaction, found[0])


def transactions(*, session: Session, guest_id: str | None = None,
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


def postings_of(*, session: Session, account_id: str) -> list[Posting]:
    """The account's postings, oldest first."""
    return list(session.exec(select(Posting).where(Posting.account_id == account_id)
                             .order_by(col(Posting.id))).all())


def set_credit_limit(*, session: Session, folio: Account, limit: int | None) -> None:
    """Set what an open folio may owe (None: the venue's default again).

    Locked first: a charge posting meanwhile is waited for, the next one sees the new
    limit. A lower limit than what is owed already declines further charges only.
    """
    if folio.kind is not AccountKind.FOLIO:
        raise Invalid(f"credit_limit: account {folio.id} is a {folio.kind.value}, not a folio")
    session.refresh(folio, with_for_update=True)
    if not folio.open:
        raise Conflict(f"folio {folio.id} is closed (settled at check-out)")
    folio.credit_limit = limit
    session.add(folio)
    session.flush()


def close(*, session: Session, account: Account, now: datetime) -> None:
    """Close an account (a settled folio); it takes no more postings."""
    if not account.open:
        raise Conflict(f"account {account.id} is already closed")
    account.open = False
    account.closed_at = now
    session.add(account)
    session.flush()


# ------------------------------------------------------------------- verify


def counts(*, session: Session) -> dict[str, int]:
    """How much the ledger holds, for reports."""
    def count(model: type) -> int:
        return int(session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one())

    return {"transactions": count(LedgerTransaction), "postings": count(Posting),
            "accounts": count(Account)}


def verify(*, session: Session) -> list[str]:
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
            col(LedgerTransaction.amount) != 0,  # an empty folio's check-out moves nothing
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
