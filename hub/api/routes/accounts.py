"""Wallets and room folios: balances, statements, top-ups and check-out."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, status

from hub import cashier, crud, ledger
from hub.api.deps import BridgeDep, Limit, Offset, SessionDep, publish_after_commit
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
    Settlement,
    Statement,
    StatementLine,
    TopUp,
    TransactionPublic,
)

router = APIRouter(prefix="/accounts", tags=["payments"])


@router.get("", response_model=list[AccountPublic])
def list_accounts(session: SessionDep, guest_id: str | None = None, limit: Limit = 100,
                  offset: Offset = 0) -> list[Account]:
    filters = [Account.guest_id == guest_id] if guest_id else []
    return crud.page(session, Account, filters=filters, limit=limit, offset=offset)


@router.post("", response_model=AccountPublic, status_code=status.HTTP_201_CREATED)
def open_account(body: AccountCreate, session: SessionDep) -> Account:
    """Open a guest's wallet, or the folio of one of their stays."""
    crud.require(session, Guest, body.guest_id, "guest_id")
    venue = crud.require(session, Venue, body.venue_id, "venue_id")
    assert venue is not None
    if body.kind == "wallet":
        if body.stay_id is not None:
            raise crud.InvalidReference("stay_id: a wallet belongs to no stay")
        if ledger.wallet_of(session, guest_id=body.guest_id, venue_id=venue.id):
            raise crud.Conflict(f"guest {body.guest_id!r} already has an open wallet here")
    else:
        stay = crud.require(session, Entitlement, body.stay_id, "stay_id")
        if stay is None or stay.kind is not EntitlementKind.ROOM or stay.guest_id != body.guest_id:
            raise crud.InvalidReference("stay_id: a folio needs one of the guest's room stays")
    account = Account(venue_id=venue.id, kind=AccountKind(body.kind), currency=venue.currency,
                      guest_id=body.guest_id, stay_id=body.stay_id)
    return crud.add(session, account)


@router.get("/{account_id}", response_model=AccountPublic)
def get_account(account_id: str, session: SessionDep) -> Account:
    return crud.get(session, Account, account_id)


@router.get("/{account_id}/statement", response_model=Statement)
def statement(account_id: str, session: SessionDep) -> Statement:
    """Every posting of the account with its running balance (a folio's bill)."""
    account = crud.get(session, Account, account_id)
    lines, running = [], 0
    charges = refunds = 0
    for posting in ledger.postings_of(session, account_id=account_id):
        txn = crud.get(session, LedgerTransaction, posting.transaction_id)
        running += posting.amount
        charges += txn.amount if txn.type is TransactionType.CHARGE else 0
        refunds += txn.amount if txn.type is TransactionType.REFUND else 0
        lines.append(StatementLine(transaction_id=txn.id, type=txn.type.value,
                                   at=txn.created_at, merchant_id=txn.merchant_id,
                                   amount=posting.amount, balance=running))
    return Statement(account=AccountPublic.model_validate(account), lines=lines,
                     total_charges=charges, total_refunds=refunds)


@router.post("/{account_id}/topups", response_model=TransactionPublic,
             status_code=status.HTTP_201_CREATED)
def top_up(account_id: str, body: TopUp, session: SessionDep, bridge: BridgeDep,
           tasks: BackgroundTasks) -> LedgerTransaction:
    """Add money to a wallet (card at a kiosk, cash at a desk); once per idempotency key."""
    wallet = crud.get(session, Account, account_id)
    txn, receipts = cashier.top_up(session, wallet=wallet, amount=body.amount,
                                   key=body.idempotency_key, actor="api", now=utcnow())
    publish_after_commit(tasks, bridge, receipts)
    return txn


@router.post("/{account_id}/settle", response_model=TransactionPublic,
             status_code=status.HTTP_201_CREATED)
def settle(account_id: str, body: Settlement, session: SessionDep, bridge: BridgeDep,
           tasks: BackgroundTasks) -> LedgerTransaction:
    """Check-out: pay the folio's balance and close it."""
    folio = crud.get(session, Account, account_id)
    txn, receipts = cashier.settle(session, folio=folio, key=body.idempotency_key, actor="api",
                                   now=utcnow())
    publish_after_commit(tasks, bridge, receipts)
    return txn
