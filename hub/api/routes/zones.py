"""Zones: areas behind gates and hotel rooms behind doors, with capacity and occupancy."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub.api.deps import (
    ADMIN,
    INTEGRATOR,
    SETUP_READERS,
    STAFF,
    AuditDep,
    Limit,
    Offset,
    SessionDep,
    require_roles,
)
from hub.models import Venue, Zone, ZoneKind
from hub.schemas import ZoneCreate, ZonePublic, ZoneUpdate
from hub.store import devices, rows

router = APIRouter(prefix="/zones", tags=["zones"])


@router.get("", response_model=list[ZonePublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_zones(session: SessionDep, venue_id: str | None = None, kind: ZoneKind | None = None,
               limit: Limit = 100, offset: Offset = 0) -> list[Zone]:
    return devices.list_zones(session=session, venue_id=venue_id, kind=kind, limit=limit,
                              offset=offset)


@router.post("", response_model=ZonePublic, status_code=status.HTTP_201_CREATED,
             dependencies=[require_roles(ADMIN, INTEGRATOR)])
def create_zone(body: ZoneCreate, session: SessionDep, audit: AuditDep) -> Zone:
    rows.require(session=session, model=Venue, key=body.venue_id, field="venue_id")
    zone = rows.add(session=session, row=Zone.model_validate(body.model_dump()))
    audit.record("zone.create", f"zone:{zone.id}", body.model_dump())
    return zone


@router.get("/{zone_id}", response_model=ZonePublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_zone(zone_id: str, session: SessionDep) -> Zone:
    return rows.get(session=session, model=Zone, key=zone_id)


@router.patch("/{zone_id}", response_model=ZonePublic, dependencies=[require_roles(ADMIN, STAFF)])
def update_zone(zone_id: str, body: ZoneUpdate, session: SessionDep, audit: AuditDep) -> Zone:
    changes = body.model_dump(exclude_unset=True)
    zone = rows.update(session=session, row=rows.get(session=session, model=Zone, key=zone_id),
                       changes=changes)
    audit.record("zone.update", f"zone:{zone_id}", changes)
    return zone
