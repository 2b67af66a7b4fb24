"""Devices: readers, locks, terminals and appliances, with their health."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from hub import crud, wearables
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
from hub.models import Device, DeviceKind, Guest, Merchant, Venue, Wearable, Zone, utcnow
from hub.schemas import DeviceCreate, DevicePublic, DeviceUpdate, WearablePublic, WearerSet

router = APIRouter(prefix="/devices", tags=["devices"])

WEARABLE_KINDS = (DeviceKind.WATCH,)


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


# ------------------------------------------------------------------ wearables


@router.put("/{device_id}/wearer", response_model=WearablePublic,
            dependencies=[require_roles(ADMIN, STAFF)],
            responses={409: {"description": "Not a wearable device"}})
def pair_wearable(device_id: str, body: WearerSet, session: SessionDep,
                  audit: AuditDep) -> Wearable:
    """Pair a wearable (a watch) to the guest who wears it: its readings become theirs,
    health data under their consent. Pairing to another guest ends the pairing (what the
    device reported until then stays the earlier wearer's) and starts a new one; pairing
    again to the same guest keeps it."""
    device = crud.get(session, Device, device_id)
    if device.kind not in WEARABLE_KINDS:
        raise crud.Conflict(f"device {device_id!r} is a {device.kind.value}, not a wearable "
                            f"({', '.join(k.value for k in WEARABLE_KINDS)})")
    guest = crud.require(session, Guest, body.guest_id, "guest_id")
    assert guest is not None
    before = wearables.current_wearer(session, device_id)
    row = wearables.pair(session, device_id=device_id, guest_id=guest.id, now=utcnow())
    detail = {"guest_id": guest.id}
    if before is not None and before.guest_id != guest.id:
        detail["unpaired_guest_id"] = before.guest_id
    audit.record("device.pair", f"device:{device_id}", detail)
    return row


@router.delete("/{device_id}/wearer", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require_roles(ADMIN, STAFF)])
def unpair_wearable(device_id: str, session: SessionDep, audit: AuditDep) -> Response:
    """Unpair a wearable (the guest handed it back): its readings are nobody's from now;
    those it reported while paired stay theirs."""
    row = wearables.unpair(session, device_id=device_id, now=utcnow())
    if row is None:
        raise crud.NotFound("wearer of device", device_id)
    audit.record("device.unpair", f"device:{device_id}", {"guest_id": row.guest_id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
