"""Merchants: who takes the money a terminal charges."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub import crud
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import Merchant, Venue
from hub.schemas import MerchantCreate, MerchantPublic

router = APIRouter(prefix="/merchants", tags=["payments"])


@router.get("", response_model=list[MerchantPublic])
def list_merchants(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Merchant]:
    return crud.page(session, Merchant, limit=limit, offset=offset)


@router.post("", response_model=MerchantPublic, status_code=status.HTTP_201_CREATED)
def create_merchant(body: MerchantCreate, session: SessionDep) -> Merchant:
    crud.require(session, Venue, body.venue_id, "venue_id")
    return crud.add(session, Merchant.model_validate(body.model_dump()))


@router.get("/{merchant_id}", response_model=MerchantPublic)
def get_merchant(merchant_id: str, session: SessionDep) -> Merchant:
    return crud.get(session, Merchant, merchant_id)
