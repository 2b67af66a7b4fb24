"""Devices: readers, locks, terminals and appliances, with their health."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from hub import broker_logins, wearables
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
from hub.broker_auth import can_own_credentials, device_password, device_username
from hub.models import Device, DeviceKind, Guest, Merchant, Venue, Wearable, Zone, utcnow
from hub.schemas import (
    DeviceBrokerLogin,
    DeviceCreate,
    DevicePolicy,
    DevicePublic,
    DeviceUpdate,
    WearablePublic,
    WearerSet,
)
from hub.store import devices, errors, guests, rows

router = APIRouter(prefix="/devices", tags=["devices"])

WEARABLE_KINDS = (DeviceKind.WATCH,)


@router.get("", response_model=list[DevicePublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_devices(session: SessionDep, venue_id: str | None = None, kind: DeviceKind | None = None,
                 zone_id: str | None = None, limit: Limit = 100,
                 offset: Offset = 0) -> list[Device]:
    return devices.list_devices(session=session, venue_id=venue_id, kind=kind, zone_id=zone_id,
                                limit=limit, offset=offset)


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED,
             dependencies=[require_roles(ADMIN, INTEGRATOR)])
def create_device(body: DeviceCreate, session: SessionDep, audit: AuditDep) -> Device:
    rows.require(session=session, model=Venue, key=body.venue_id,
                 field="venue_id")  # refuses a deleted venue too
    if (old := rows.find(session=session, model=Device, key=body.id)) is not None:
        # A deleted one too: its history names it, and a new device would inherit it.
        raise errors.Conflict(f"device {body.id!r} exists already" if old.deleted_at is None
                            else f"device id {body.id!r} belonged to a device deleted at "
                            f"{old.deleted_at.isoformat()}: choose another")
    merchant = rows.require(session=session, model=Merchant, key=body.merchant_id,
                            field="merchant_id")
    if merchant is not None and merchant.venue_id != body.venue_id:
        raise errors.InvalidReference(f"merchant_id: merchant {merchant.id!r} is in another venue")
    zone = rows.require(session=session, model=Zone, key=body.zone_id, field="zone_id")
    if zone is not None and zone.venue_id != body.venue_id:
        raise errors.InvalidReference(f"zone_id: zone {zone.id!r} is in another venue")
    device = rows.add(session=session, row=Device.model_validate(body.model_dump()))
    audit.record("device.create", f"device:{device.id}", body.model_dump())
    return device


@router.get("/{device_id}", response_model=DevicePublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_device(device_id: str, session: SessionDep) -> Device:
    return rows.live(session=session, model=Device, key=device_id)


@router.patch("/{device_id}", response_model=DevicePublic,
              dependencies=[require_roles(ADMIN, STAFF)])
def update_device(device_id: str, body: DeviceUpdate, session: SessionDep,
                  audit: AuditDep) -> Device:
    device = rows.live(session=session, model=Device, key=device_id)
    changes = body.model_dump(exclude_unset=True)
    merchant = rows.require(session=session, model=Merchant, key=changes.get("merchant_id"),
                            field="merchant_id")
    if merchant is not None and merchant.venue_id != device.venue_id:
        raise errors.InvalidReference(f"merchant_id: merchant {merchant.id!r} is in another venue")
    zone = rows.require(session=session, model=Zone, key=changes.get("zone_id"), field="zone_id")
    if zone is not None and zone.venue_id != device.venue_id:
        raise errors.InvalidReference(f"zone_id: zone {zone.id!r} is in another venue")
    updated = rows.update(session=session, row=device, changes=changes)
    audit.record("device.update", f"device:{device_id}", changes)
    return updated


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require_roles(ADMIN, INTEGRATOR)])
def delete_device(device_id: str, session: SessionDep, audit: AuditDep) -> Response:
    """Take a device out of service for good: it is disabled, its broker login revoked (the
    embedded broker cuts it off within a second), any wearer unpaired. Its row stays for the
    journey and telemetry that name it, so its id is never given to another device."""
    device = rows.live(session=session, model=Device, key=device_id)
    now = utcnow()
    rows.update(session=session, row=device, changes={"enabled": False, "online": False,
                                                      "deleted_at": now})
    if can_own_credentials(device.venue_id):
        broker_logins.revoke(session, device_username(device.venue_id, device.id))
    if device.kind in WEARABLE_KINDS:
        wearables.unpair(session, device_id=device_id, now=now)
    audit.record("device.delete", f"device:{device_id}", {})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{device_id}/security-policy", response_model=DevicePublic,
            dependencies=[require_roles(ADMIN)])
def set_device_security_policy(device_id: str, body: DevicePolicy, session: SessionDep,
                               audit: AuditDep) -> Device:
    """Whether this reader accepts copyable credentials, over its venue's policy (admins):
    a legacy reader at a strict venue, or a strict gate at a legacy one; null follows the
    venue. A secure band's UID and a signed key's bare id are refused regardless."""
    device = rows.update(session=session,
                         row=rows.live(session=session, model=Device, key=device_id),
                         changes=body.model_dump())
    audit.record("device.security_policy", f"device:{device_id}", body.model_dump())
    return device


# ---------------------------------------------------------------- broker login


def _username(device: Device) -> str:
    if not can_own_credentials(device.venue_id):
        raise errors.Conflict(f"devices of venue {device.venue_id!r} (an id from before the "
                            f"rules for venue ids) cannot have broker logins")
    return device_username(device.venue_id, device.id)


@router.post("/{device_id}/broker-credentials", response_model=DeviceBrokerLogin,
             dependencies=[require_roles(ADMIN, INTEGRATOR)])
def reissue_broker_login(device_id: str, session: SessionDep, request: Request,
                         audit: AuditDep) -> DeviceBrokerLogin:
    """A new broker password for the device (a lost or leaked one stops working; the
    embedded broker disconnects whoever used it within a second). For Mosquitto, write
    its files again (``hub provision mosquitto``) and reload it."""
    device = rows.live(session=session, model=Device, key=device_id)
    key = request.app.state.broker_key
    if key is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="this hub runs without a broker key: no broker logins")
    username = _username(device)
    generation = broker_logins.reissue(session, username)
    audit.record("device.broker_login.reissue", f"device:{device_id}",
                 {"generation": generation})
    return DeviceBrokerLogin(username=username, password=device_password(
        key, device.venue_id, device.id, generation), generation=generation)


@router.delete("/{device_id}/broker-credentials", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require_roles(ADMIN, INTEGRATOR, STAFF)])
def revoke_broker_login(device_id: str, session: SessionDep, audit: AuditDep) -> Response:
    """No password opens the device's broker login until it is re-issued (a stolen reader,
    a leaked sheet); the embedded broker disconnects it within a second."""
    device = rows.live(session=session, model=Device, key=device_id)
    broker_logins.revoke(session, _username(device))
    audit.record("device.broker_login.revoke", f"device:{device_id}", {})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
    device = rows.get(session=session, model=Device, key=device_id)
    if device.kind not in WEARABLE_KINDS:
        raise errors.Conflict(f"device {device_id!r} is a {device.kind.value}, not a wearable "
                            f"({', '.join(k.value for k in WEARABLE_KINDS)})")
    guest = rows.require(session=session, model=Guest, key=body.guest_id, field="guest_id")
    assert guest is not None
    before = guests.current_wearer(session=session, device_id=device_id)
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
        raise errors.NotFound("wearer of device", device_id)
    audit.record("device.unpair", f"device:{device_id}", {"guest_id": row.guest_id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
