"""Merchants: who takes the money a terminal charges."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub.api.deps import (
    ADMIN,
    INTEGRATOR,
    SETUP_READERS,
    AuditDep,
    Limit,
    Offset,
    SessionDep,
    require_roles,
)
from hub.models import Merchant, Venue
from hub.schemas import MerchantCreate, MerchantPublic
from hub.store import rows

router = APIRouter(prefix="/merchants", tags=["payments"])


@router.get("", response_model=list[MerchantPublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_merchants(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Merchant]:
    return rows.page(session=session, model=Merchant, limit=limit, offset=offset)


@router.post("", response_model=MerchantPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[require_roles(ADMIN, INTEGRATOR)])
def create_merchant(body: MerchantCreate, session: SessionDep, audit: AuditDep) -> Merchant:
    rows.require(session=session, model=Venue, key=body.venue_id, field="venue_id")
    merchant = rows.add(session=session, row=Merchant.model_validate(body.model_dump()))
    audit.record("merchant.create", f"merchant:{merchant.id}", body.model_dump())
    return merchant


@router.get("/{merchant_id}", response_model=MerchantPublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_merchant(merchant_id: str, session: SessionDep) -> Merchant:
    return rows.get(session=session, model=Merchant, key=merchant_id)
