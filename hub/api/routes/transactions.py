"""Transactions: every charge, refund, top-up and settlement; refunds by staff."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, status

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
from hub.models import Account, LedgerTransaction, utcnow
from hub.schemas import RefundCreate, TransactionPublic
from hub.store import money, rows

router = APIRouter(prefix="/transactions", tags=["payments"])


@router.get("", response_model=list[TransactionPublic])
def list_transactions(session: SessionDep,
                      caller: Annotated[Principal, require_roles(*GUEST_DATA_READERS, GUEST)],
                      guest_id: str | None = None, account_id: str | None = None,
                      limit: Limit = 100, offset: Offset = 0) -> list[LedgerTransaction]:
    """Newest first; a guest's include what others (a party lead) paid for them and vice versa.

    A guest sees their own only: ``guest_id`` is forced to theirs, ``account_id`` must be theirs.
    """
    guest_id = own_guest_filter(caller, guest_id)
    if caller.typ == "guest" and account_id is not None:
        account = rows.find(session=session, model=Account, key=account_id)
        ensure_own(caller, account.guest_id if account else None)
    return money.transactions(session=session, guest_id=guest_id, account_id=account_id,
                              limit=limit,
                              offset=offset)


@router.get("/{transaction_id}", response_model=TransactionPublic,
            dependencies=[require_roles(*GUEST_DATA_READERS)])
def get_transaction(transaction_id: str, session: SessionDep) -> LedgerTransaction:
    return rows.get(session=session, model=LedgerTransaction, key=transaction_id)


@router.post("/{transaction_id}/refunds", response_model=TransactionPublic,
             status_code=status.HTTP_201_CREATED, dependencies=[require_roles(ADMIN, STAFF)])
def refund(transaction_id: str, body: RefundCreate, session: SessionDep, publisher: PublisherDep,
           tasks: BackgroundTasks, audit: AuditDep) -> LedgerTransaction:
    """Refund all (no amount) or part of a charge; never more than what is left of it.

    A folio's charge refunded after check-out goes to the guest's wallet; 409 when they
    have none there.
    """
    def work() -> tuple[LedgerTransaction, list[tuple[str, bytes]]]:
        original = rows.get(session=session, model=LedgerTransaction, key=transaction_id)
        return cashier.refund(session, original=original, amount=body.amount,
                              key=body.idempotency_key, actor=audit.principal.name,
                              now=utcnow())

    # A deadlock or serialization failure is retried here (bounded): never a 500.
    txn, receipts = retry_conflicts(session, work)
    audit.record("transaction.refund", f"transaction:{transaction_id}",
                 {**body.model_dump(), "amount": txn.amount, "refund_id": txn.id,
                  "account_id": txn.account_id})
    publish_after_commit(tasks, publisher, receipts)
    return txn
