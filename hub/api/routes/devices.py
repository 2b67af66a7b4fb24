"""Devices: readers, locks, terminals and appliances, with their health."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub import crud
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
from hub.models import Device, DeviceKind, Merchant, Venue, Zone
from hub.schemas import DeviceCreate, DevicePublic, DeviceUpdate

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("", response_model=list[DevicePublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_devices(session: SessionDep, venue_id: str | None = None, kind: DeviceKind | None = None,
                 zone_id: str | None = None, limit: Limit = 100,
                 offset: Offset = 0) -> list[Device]:
    return crud.list_devices(session, venue_id=venue_id, kind=kind, zone_id=zone_id,
                             limit=limit, offset=offset)


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED,
             dependencies=[require_roles(ADMIN, INTEGRATOR)])
def create_device(body: DeviceCreate, session: SessionDep, audit: AuditDep) -> Device:
    crud.require(session, Venue, body.venue_id, "venue_id")
    merchant = crud.require(session, Merchant, body.merchant_id, "merchant_id")
    if merchant is not None and merchant.venue_id != body.venue_id:
        raise crud.InvalidReference(f"merchant_id: merchant {merchant.id!r} is in another venue")
    zone = crud.require(session, Zone, body.zone_id, "zone_id")
    if zone is not None and zone.venue_id != body.venue_id:
        raise crud.InvalidReference(f"zone_id: zone {zone.id!r} is in another venue")
    device = crud.add(session, Device.model_validate(body.model_dump()))
    audit.record("device.create", f"device:{device.id}", body.model_dump())
    return device


@router.get("/{device_id}", response_model=DevicePublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_device(device_id: str, session: SessionDep) -> Device:
    return crud.get(session, Device, device_id)


@router.patch("/{device_id}", response_model=DevicePublic,
              dependencies=[require_roles(ADMIN, STAFF)])
def update_device(device_id: str, body: DeviceUpdate, session: SessionDep,
                  audit: AuditDep) -> Device:
    device = crud.get(session, Device, device_id)
    changes = body.model_dump(exclude_unset=True)
    merchant = crud.require(session, Merchant, changes.get("merchant_id"), "merchant_id")
    if merchant is not None and merchant.venue_id != device.venue_id:
        raise crud.InvalidReference(f"merchant_id: merchant {merchant.id!r} is in another venue")
    zone = crud.require(session, Zone, changes.get("zone_id"), "zone_id")
    if zone is not None and zone.venue_id != device.venue_id:
        raise crud.InvalidReference(f"zone_id: zone {zone.id!r} is in another venue")
    updated = crud.update(session, device, changes)
    audit.record("device.update", f"device:{device_id}", changes)
    return updated
