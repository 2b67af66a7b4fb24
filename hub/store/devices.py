"""Venues, zones (who is inside, how many) and devices (their health)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.models import BrokerCredential, Device, Effect, Presence, Venue, Zone
from hub.store.rows import insert_ignoring_duplicates, page, table_of

# The hot path's statements, built once: building a statement costs several times what
# executing it does (its values are bound at execution).
_presences, _zones = table_of(Presence), table_of(Zone)
_P = sa.bindparam
_PRESENCE = sa.select(_presences.c.inside).where(_presences.c.guest_id == _P("guest_id"),
                                                 _presences.c.zone_id == _P("zone_id"))
_MOVE_PRESENCE = (sa.update(_presences)
                  .where(_presences.c.guest_id == _P("who"),
                         _presences.c.zone_id == _P("where"),
                         _presences.c.inside == _P("was_inside"))
                  .values(inside=_P("is_inside"), updated_at=_P("now")))
_OCCUPANCY = sa.select(_zones.c.occupancy).where(_zones.c.id == _P("zone_id"))
_ZONE_ENTER = (sa.update(_zones)
               .where(_zones.c.id == _P("zone_id"),
                      sa.or_(_zones.c.capacity.is_(None), _zones.c.occupancy < _zones.c.capacity))
               .values(occupancy=_zones.c.occupancy + 1))
_ZONE_LEAVE = (sa.update(_zones).where(_zones.c.id == _P("zone_id"), _zones.c.occupancy > 0)
               .values(occupancy=_zones.c.occupancy - 1))


def venue_open(venue: Venue | None) -> bool:
    """Whether taps and payments may be decided at ``venue``: it exists, is not closed
    and not deleted."""
    return venue is not None and venue.enabled and venue.deleted_at is None


def venue_timezone(*, session: Session, venue_id: str) -> str:
    """The IANA time zone staff schedules of this venue are written in."""
    venue = session.get(Venue, venue_id)
    return venue.timezone if venue else "UTC"


def presence(*, session: Session, guest_id: str, zone_id: str) -> bool | None:
    """Whether the guest's last accepted tap put them inside the zone; None: never tapped
    there (no row yet)."""
    row = session.connection().execute(_PRESENCE, {"guest_id": guest_id,
                                                   "zone_id": zone_id}).first()
    return None if row is None else bool(row[0])


def is_inside(*, session: Session, guest_id: str, zone_id: str) -> bool:
    """Whether the guest's last accepted tap put them inside the zone."""
    return bool(presence(session=session, guest_id=guest_id, zone_id=zone_id))


def occupancy_of(*, session: Session, zone_id: str) -> int:
    """How many are inside a zone now (state: never cached)."""
    found = session.connection().execute(_OCCUPANCY, {"zone_id": zone_id}).first()
    return int(found[0]) if found is not None else 0


def apply_effect(
    *, session: Session, guest_id: str, zone_id: str, effect: Effect, now: datetime,
    presence_row: bool = False,
) -> bool:
    """Move a guest in or out of a zone; False when the state changed since it was read.

    Conditional UPDATEs make this safe with several workers: a zone is never
    filled past its capacity and a guest never counted inside twice.
    """
    if effect is Effect.NONE:
        return True
    entering = effect is Effect.ENTER
    if not presence_row:
        # Not there a moment ago (``presence`` said None): create it, unless another
        # worker just did (the conditional update below decides either way).
        insert_ignoring_duplicates(session=session, table=Presence, guest_id=guest_id,
                                   zone_id=zone_id,
                                   inside=False, updated_at=now)
    connection = session.connection()
    moved = connection.execute(_MOVE_PRESENCE, {"who": guest_id, "where": zone_id,
                                                "was_inside": not entering,
                                                "is_inside": entering, "now": now})
    if moved.rowcount != 1:
        return False
    if not entering:
        # An exit with the count already at 0 (say, after a manual reset) is still an exit.
        connection.execute(_ZONE_LEAVE, {"zone_id": zone_id})
        return True
    counted = connection.execute(_ZONE_ENTER, {"zone_id": zone_id})
    return bool(counted.rowcount == 1)


def record_device_seen(
    *, session: Session, device_id: str, now: datetime, online: bool | None = None,
    battery_pct: int | None = None, firmware: str | None = None,
) -> None:
    """Update a device's health from a heartbeat or a status message."""
    values: dict[str, Any] = {"last_seen": now}
    if online is not None:
        values["online"] = online
    if battery_pct is not None:
        values["battery_pct"] = battery_pct
    if firmware is not None:
        values["firmware"] = firmware
    session.execute(
        sa.update(Device).where(col(Device.id) == device_id).values(**values)
        .execution_options(synchronize_session=False)
    )


def list_devices(
    *, session: Session, venue_id: str | None, kind: str | None, zone_id: str | None,
    limit: int, offset: int,
) -> list[Device]:
    """A page of devices not deleted, filtered by venue, kind and zone."""
    filters = [col(Device.deleted_at).is_(None), *(c for c in (
        Device.venue_id == venue_id if venue_id else None,
        Device.kind == kind if kind else None,
        Device.zone_id == zone_id if zone_id else None,
    ) if c is not None)]
    return page(session=session, model=Device, filters=filters, limit=limit, offset=offset)


def list_zones(
    *, session: Session, venue_id: str | None, kind: str | None, limit: int, offset: int
) -> list[Zone]:
    """A page of zones, filtered by venue and kind."""
    filters = [c for c in (
        Zone.venue_id == venue_id if venue_id else None,
        Zone.kind == kind if kind else None,
    ) if c is not None]
    return page(session=session, model=Zone, filters=filters, limit=limit, offset=offset)


def list_venues(*, session: Session, limit: int, offset: int) -> list[Venue]:
    """A page of venues not deleted."""
    return page(session=session, model=Venue, filters=[col(Venue.deleted_at).is_(None)],
                limit=limit,
                offset=offset)



def live_venue_ids(*, session: Session) -> list[str]:
    """The id of every venue not deleted."""
    return list(session.exec(select(Venue.id).where(col(Venue.deleted_at).is_(None))).all())


def live_devices(*, session: Session) -> list[Device]:
    """Every device not deleted, by id."""
    return list(session.exec(select(Device).where(col(Device.deleted_at).is_(None))
                             .order_by(col(Device.id))).all())


def count_live_devices(*, session: Session, venue_id: str) -> int:
    """How many devices of the venue are not deleted."""
    return int(session.exec(select(sa.func.count()).select_from(Device).where(
        col(Device.venue_id) == venue_id, col(Device.deleted_at).is_(None))).one())


# ------------------------------------------------------------- broker logins


def broker_credentials(*, session: Session) -> list[BrokerCredential]:
    """Every broker login that was re-issued or revoked."""
    return list(session.exec(select(BrokerCredential)).all())


def devices_of_closed_venues(*, session: Session) -> list[tuple[str, str]]:
    """(venue id, device id) of every device whose venue is closed or deleted."""
    closed = session.exec(
        select(Device.venue_id, Device.id).join(Venue, col(Venue.id) == col(Device.venue_id))
        .where(sa.or_(col(Venue.enabled).is_(False), col(Venue.deleted_at).is_not(None)))).all()
    return [(venue_id, device_id) for venue_id, device_id in closed]


def lock_broker_credential(*, session: Session, username: str) -> BrokerCredential | None:
    """The login's row, locked until the transaction ends; None when it has none yet."""
    # FOR UPDATE: two desks re-issuing at once must not hand out the same generation.
    stmt = select(BrokerCredential).where(col(BrokerCredential.username) == username) \
        .with_for_update()
    return session.exec(stmt).first()
