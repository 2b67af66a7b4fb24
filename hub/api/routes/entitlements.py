"""Entitlements: tickets, room reservations and staff access groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from hub.api.deps import (
    ADMIN,
    GUEST,
    GUEST_DATA_READERS,
    STAFF,
    AuditDep,
    Limit,
    Offset,
    Principal,
    SessionDep,
    ensure_own,
    require_roles,
)
from hub.models import Entitlement, EntitlementKind, EntitlementStatus, Guest, Zone
from hub.schemas import EntitlementCreate, EntitlementPublic, EntitlementUpdate
from hub.store import errors, guests, rows

router = APIRouter(prefix="/entitlements", tags=["entitlements"])
FrontDesk = require_roles(ADMIN, STAFF)


@router.get("", response_model=list[EntitlementPublic],
            dependencies=[require_roles(*GUEST_DATA_READERS)])
def list_entitlements(session: SessionDep, guest_id: str | None = None,
                      kind: EntitlementKind | None = None, limit: Limit = 100,
                      offset: Offset = 0) -> list[Entitlement]:
    return guests.list_entitlements(session=session, guest_id=guest_id, kind=kind, limit=limit,
                                    offset=offset)


@router.post("", response_model=EntitlementPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[FrontDesk])
def grant_entitlement(body: EntitlementCreate, session: SessionDep,
                      audit: AuditDep) -> Entitlement:
    """Give a guest a ticket, a room reservation or a staff schedule for some zones."""
    rows.require(session=session, model=Guest, key=body.guest_id, field="guest_id")
    for zone_id in body.zone_ids:
        rows.require(session=session, model=Zone, key=zone_id, field="zone_ids")
    data = body.model_dump(mode="json")
    entitlement = rows.add(session=session, row=Entitlement.model_validate(data))
    audit.record("entitlement.create", f"entitlement:{entitlement.id}", data)
    return entitlement


@router.get("/{entitlement_id}", response_model=EntitlementPublic)
def get_entitlement(entitlement_id: str, session: SessionDep,
                    caller: Annotated[Principal, require_roles(*GUEST_DATA_READERS, GUEST)]
                    ) -> Entitlement:
    if caller.typ == "guest":  # 403 for anyone else's, existing or not
        entitlement = rows.find(session=session, model=Entitlement, key=entitlement_id)
        ensure_own(caller, entitlement.guest_id if entitlement else None)
    return rows.get(session=session, model=Entitlement, key=entitlement_id)


@router.patch("/{entitlement_id}", response_model=EntitlementPublic, dependencies=[FrontDesk])
def update_entitlement(entitlement_id: str, body: EntitlementUpdate,
                       session: SessionDep, audit: AuditDep) -> Entitlement:
    entitlement = rows.get(session=session, model=Entitlement, key=entitlement_id)
    changes = body.model_dump(exclude_unset=True)
    start = changes.get("valid_from", entitlement.valid_from)
    end = changes.get("valid_until", entitlement.valid_until)
    if end <= start:
        raise errors.Invalid("valid_until must be after valid_from")
    updated = rows.update(session=session, row=entitlement, changes=changes)
    audit.record("entitlement.update", f"entitlement:{entitlement_id}", changes)
    return updated


@router.delete("/{entitlement_id}", response_model=EntitlementPublic, dependencies=[FrontDesk])
def cancel_entitlement(entitlement_id: str, session: SessionDep,
                       audit: AuditDep) -> Entitlement:
    """Cancel (entitlements are kept for the journey, never deleted)."""
    entitlement = rows.get(session=session, model=Entitlement, key=entitlement_id)
    cancelled = rows.update(session=session, row=entitlement,
                            changes={"status": EntitlementStatus.CANCELLED})
    audit.record("entitlement.cancel", f"entitlement:{entitlement_id}",
                 {"status": EntitlementStatus.CANCELLED})
    return cancelled
