"""Wallets and room folios: balances, statements, top-ups and check-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, status
from sqlmodel import Session

from hub import cashier
from hub.api.deps import (
    ADMIN,
    GUEST,
    GUEST_DATA_READERS,
    STAFF,
    AuditDep,
    Limit,
    Offset,
    Principal,
    PublisherDep,
    SessionDep,
    ensure_own,
    own_guest_filter,
    publish_after_commit,
    require_roles,
)
from hub.db import retry_conflicts
from hub.models import (
    Account,
    AccountKind,
    Entitlement,
    EntitlementKind,
    Guest,
    LedgerTransaction,
    TransactionType,
    Venue,
    utcnow,
)
from hub.schemas import (
    AccountCreate,
    AccountPublic,
    AccountUpdate,
    Settlement,
    Statement,
    StatementLine,
    TopUp,
    TransactionPublic,
)
from hub.store import errors, money, rows

router = APIRouter(prefix="/accounts", tags=["payments"])
# The front desk, and the guest themself for their own accounts.
OwnReader = Annotated[Principal, require_roles(*GUEST_DATA_READERS, GUEST)]
FrontDesk = require_roles(ADMIN, STAFF)


def _own_account(session: Session, caller: Principal, account_id: str) -> Account:
    """The account; for a guest, 403 unless it is theirs (existing or not: no oracle)."""
    if caller.typ == "guest":
        account = rows.find(session=session, model=Account, key=account_id)
        ensure_own(caller, account.guest_id if account else None)
    return rows.get(session=session, model=Account, key=account_id)


@router.get("", response_model=list[AccountPublic])
def list_accounts(session: SessionDep, caller: OwnReader, guest_id: str | None = None,
                  limit: Limit = 100, offset: Offset = 0) -> list[Account]:
    """Accounts, by guest; a guest sees their own only."""
    guest_id = own_guest_filter(caller, guest_id)
    filters = [Account.guest_id == guest_id] if guest_id else []
    return rows.page(session=session, model=Account, filters=filters, limit=limit, offset=offset)


@router.post("", response_model=AccountPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[FrontDesk])
def open_account(body: AccountCreate, session: SessionDep, audit: AuditDep) -> Account:
    """Open a guest's wallet, or the folio of one of their stays."""
    rows.require(session=session, model=Guest, key=body.guest_id, field="guest_id")
    venue = rows.require(session=session, model=Venue, key=body.venue_id, field="venue_id")
    assert venue is not None
    if body.kind == "wallet":
        if body.stay_id is not None:
            raise errors.InvalidReference("stay_id: a wallet belongs to no stay")
        if body.credit_limit is not None:
            raise errors.InvalidReference("credit_limit: only a folio has one")
        if money.wallet_of(session=session, guest_id=body.guest_id, venue_id=venue.id):
            raise errors.Conflict(f"guest {body.guest_id!r} already has an open wallet here")
    else:
        stay = rows.require(session=session, model=Entitlement, key=body.stay_id, field="stay_id")
        if stay is None or stay.kind is not EntitlementKind.ROOM or stay.guest_id != body.guest_id:
            raise errors.InvalidReference("stay_id: a folio needs one of the guest's room stays")
    account = Account(venue_id=venue.id, kind=AccountKind(body.kind), currency=venue.currency,
                      guest_id=body.guest_id, stay_id=body.stay_id,
                      credit_limit=body.credit_limit)
    opened = rows.add(session=session, row=account)
    audit.record("account.open", f"account:{opened.id}", body.model_dump())
    return opened


@router.get("/{account_id}", response_model=AccountPublic)
def get_account(account_id: str, session: SessionDep, caller: OwnReader) -> Account:
    return _own_account(session, caller, account_id)


@router.patch("/{account_id}", response_model=AccountPublic, dependencies=[FrontDesk],
              responses={409: {"description": "The folio is closed"},
                         422: {"description": "Not a folio"}})
def update_account(account_id: str, body: AccountUpdate, session: SessionDep,
                   audit: AuditDep) -> Account:
    """Staff set what a folio may owe (its credit limit over the venue's default)."""
    changes = body.model_dump(exclude_unset=True)
    account = rows.get(session=session, model=Account, key=account_id)
    if "credit_limit" in changes:
        money.set_credit_limit(session=session, folio=account, limit=changes["credit_limit"])
    audit.record("account.update", f"account:{account_id}", changes)
    return account


@router.get("/{account_id}/statement", response_model=Statement)
def statement(account_id: str, session: SessionDep, caller: OwnReader) -> Statement:
    """Every posting of the account with its running balance (a folio's bill)."""
    account = _own_account(session, caller, account_id)
    lines, running = [], 0
    charges = refunds = 0
    for posting in money.postings_of(session=session, account_id=account_id):
        txn = rows.get(session=session, model=LedgerTransaction, key=posting.transaction_id)
        running += posting.amount
        charges += txn.amount if txn.type is TransactionType.CHARGE else 0
        refunds += txn.amount if txn.type is TransactionType.REFUND else 0
        lines.append(StatementLine(transaction_id=txn.id, type=txn.type.value,
                                   at=txn.created_at, merchant_id=txn.merchant_id,
                                   amount=posting.amount, balance=running))
    return Statement(account=AccountPublic.model_validate(account), lines=lines,
                     total_charges=charges, total_refunds=refunds)


@router.post("/{account_id}/topups", response_model=TransactionPublic,
             status_code=status.HTTP_201_CREATED, dependencies=[FrontDesk])
def top_up(account_id: str, body: TopUp, session: SessionDep, publisher: PublisherDep,
           tasks: BackgroundTasks, audit: AuditDep) -> LedgerTransaction:
    """Add money to a wallet (card at a kiosk, cash at a desk); once per idempotency key."""
    def work() -> tuple[LedgerTransaction, list[tuple[str, bytes]]]:
        wallet = rows.get(session=session, model=Account, key=account_id)
        return cashier.top_up(session, wallet=wallet, amount=body.amount,
                              key=body.idempotency_key, actor=audit.principal.name,
                              now=utcnow())

    txn, receipts = retry_conflicts(session, work)
    audit.record("account.topup", f"account:{account_id}",
                 {**body.model_dump(), "transaction_id": txn.id})
    publish_after_commit(tasks, publisher, receipts)
    return txn


@router.post("/{account_id}/settle", response_model=TransactionPublic,
             status_code=status.HTTP_201_CREATED, dependencies=[FrontDesk])
def settle(account_id: str, body: Settlement, session: SessionDep, publisher: PublisherDep,
           tasks: BackgroundTasks, audit: AuditDep) -> LedgerTransaction:
    """Check-out: pay the folio's balance and close it."""
    def work() -> tuple[LedgerTransaction, list[tuple[str, bytes]]]:
        folio = rows.get(session=session, model=Account, key=account_id)
        return cashier.settle(session, folio=folio, key=body.idempotency_key,
                              actor=audit.principal.name, now=utcnow())

    txn, receipts = retry_conflicts(session, work)
    audit.record("account.settle", f"account:{account_id}",
                 {**body.model_dump(), "transaction_id": txn.id, "amount": txn.amount})
    publish_after_commit(tasks, publisher, receipts)
    return txn
