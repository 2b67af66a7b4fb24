"""Transactions: every charge, refund, top-up and settlement; refunds by staff."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, status

from hub import cashier, crud, ledger
from hub.api.deps import BridgeDep, Limit, Offset, SessionDep, publish_after_commit
from hub.models import LedgerTransaction, utcnow
from hub.schemas import RefundCreate, TransactionPublic

router = APIRouter(prefix="/transactions", tags=["payments"])


@router.get("", response_model=list[TransactionPublic])
def list_transactions(session: SessionDep, guest_id: str | None = None,
                      account_id: str | None = None, limit: Limit = 100,
                      offset: Offset = 0) -> list[LedgerTransaction]:
    """Newest first; a guest's include what others (a party lead) paid for them and vice versa."""
    return ledger.transactions(session, guest_id=guest_id, account_id=account_id, limit=limit,
                               offset=offset)


@router.get("/{transaction_id}", response_model=TransactionPublic)
def get_transaction(transaction_id: str, session: SessionDep) -> LedgerTransaction:
    return crud.get(session, LedgerTransaction, transaction_id)


@router.post("/{transaction_id}/refunds", response_model=TransactionPublic,
             status_code=status.HTTP_201_CREATED)
def refund(transaction_id: str, body: RefundCreate, session: SessionDep, bridge: BridgeDep,
           tasks: BackgroundTasks) -> LedgerTransaction:
    """Refund all (no amount) or part of a charge; never more than what is left of it."""
    original = crud.get(session, LedgerTransaction, transaction_id)
    txn, receipts = cashier.refund(session, original=original, amount=body.amount,
                                   key=body.idempotency_key, actor="api", now=utcnow())
    publish_after_commit(tasks, bridge, receipts)
    return txn
