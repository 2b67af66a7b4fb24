"""Entitlements: tickets, room reservations and staff access groups."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub import crud
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import Entitlement, EntitlementKind, EntitlementStatus, Guest, Zone
from hub.schemas import EntitlementCreate, EntitlementPublic, EntitlementUpdate

router = APIRouter(prefix="/entitlements", tags=["entitlements"])


@router.get("", response_model=list[EntitlementPublic])
def list_entitlements(session: SessionDep, guest_id: str | None = None,
                      kind: EntitlementKind | None = None, limit: Limit = 100,
                      offset: Offset = 0) -> list[Entitlement]:
    return crud.list_entitlements(session, guest_id=guest_id, kind=kind, limit=limit,
                                  offset=offset)


@router.post("", response_model=EntitlementPublic, status_code=status.HTTP_201_CREATED)
def grant_entitlement(body: EntitlementCreate, session: SessionDep) -> Entitlement:
    """Give a guest a ticket, a room reservation or a staff schedule for some zones."""
    crud.require(session, Guest, body.guest_id, "guest_id")
    for zone_id in body.zone_ids:
        crud.require(session, Zone, zone_id, "zone_ids")
    return crud.add(session, Entitlement.model_validate(body.model_dump(mode="json")))


@router.get("/{entitlement_id}", response_model=EntitlementPublic)
def get_entitlement(entitlement_id: str, session: SessionDep) -> Entitlement:
    return crud.get(session, Entitlement, entitlement_id)


@router.patch("/{entitlement_id}", response_model=EntitlementPublic)
def update_entitlement(entitlement_id: str, body: EntitlementUpdate,
                       session: SessionDep) -> Entitlement:
    entitlement = crud.get(session, Entitlement, entitlement_id)
    changes = body.model_dump(exclude_unset=True)
    start = changes.get("valid_from", entitlement.valid_from)
    end = changes.get("valid_until", entitlement.valid_until)
    if end <= start:
        raise crud.Invalid("valid_until must be after valid_from")
    return crud.update(session, entitlement, changes)


@router.delete("/{entitlement_id}", response_model=EntitlementPublic)
def cancel_entitlement(entitlement_id: str, session: SessionDep) -> Entitlement:
    """Cancel (entitlements are kept for the journey, never deleted)."""
    entitlement = crud.get(session, Entitlement, entitlement_id)
    return crud.update(session, entitlement, {"status": EntitlementStatus.CANCELLED})
