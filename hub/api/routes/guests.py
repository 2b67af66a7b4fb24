"""Guests: the one identity behind every band, key, ticket and reservation."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub import crud
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import Credential, Entitlement, Guest, new_id
from hub.schemas import (
    CredentialPublic,
    EntitlementPublic,
    GuestCreate,
    GuestPublic,
    GuestUpdate,
)

router = APIRouter(prefix="/guests", tags=["guests"])


@router.get("", response_model=list[GuestPublic])
def list_guests(session: SessionDep, q: str | None = None, limit: Limit = 100,
                offset: Offset = 0) -> list[Guest]:
    """Guests, optionally searched by name, display name or email."""
    return crud.list_guests(session, q=q, limit=limit, offset=offset)


@router.post("", response_model=GuestPublic, status_code=status.HTTP_201_CREATED)
def create_guest(body: GuestCreate, session: SessionDep) -> Guest:
    data = body.model_dump()
    data["id"] = data["id"] or new_id()
    return crud.add(session, Guest.model_validate(data))


@router.get("/{guest_id}", response_model=GuestPublic)
def get_guest(guest_id: str, session: SessionDep) -> Guest:
    return crud.get(session, Guest, guest_id)


@router.patch("/{guest_id}", response_model=GuestPublic)
def update_guest(guest_id: str, body: GuestUpdate, session: SessionDep) -> Guest:
    guest = crud.get(session, Guest, guest_id)
    return crud.update(session, guest, body.model_dump(exclude_unset=True))


@router.get("/{guest_id}/credentials", response_model=list[CredentialPublic])
def guest_credentials(guest_id: str, session: SessionDep, limit: Limit = 100,
                      offset: Offset = 0) -> list[Credential]:
    crud.get(session, Guest, guest_id)
    return crud.list_credentials(session, guest_id=guest_id, kind=None, identifier=None,
                                 limit=limit, offset=offset)


@router.get("/{guest_id}/entitlements", response_model=list[EntitlementPublic])
def guest_entitlements(guest_id: str, session: SessionDep, limit: Limit = 100,
                       offset: Offset = 0) -> list[Entitlement]:
    crud.get(session, Guest, guest_id)
    return crud.list_entitlements(session, guest_id=guest_id, kind=None, limit=limit,
                                  offset=offset)
