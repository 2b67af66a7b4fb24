"""Automations in the database: stored rules, runs, schedule firings, and what rules count
(entries, rides, visits, denials, heart-rate runs) and look at (guest, room, consents).

Keyword-only functions over a session the caller holds; rows and plain values in and out.
What a rule is (:mod:`hub.automations.rules`) is the services' to know, not this layer's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from hub.models import (
    AutomationRule,
    AutomationRun,
    Consent,
    Device,
    Entitlement,
    EntitlementKind,
    EntitlementStatus,
    Event,
    Guest,
    GuestPreferences,
    RunStatus,
    Telemetry,
    Venue,
    Zone,
    ZoneKind,
)

# The columns of a stored rule a replacement overwrites (all but the id and created_at).
RULE_COLUMNS = ("name", "purpose", "trigger", "filters", "conditions", "actions", "enabled")


# ------------------------------------------------------------------- rules


def rule_rows(*, session: Session) -> list[AutomationRule]:
    """The stored rules in the order they were made."""
    return list(session.exec(select(AutomationRule).order_by(
        col(AutomationRule.created_at), col(AutomationRule.id))).all())


def rule_row(*, session: Session, rule_id: str) -> AutomationRule | None:
    """The stored rule of that id, if any."""
    return session.get(AutomationRule, rule_id)


def save_rule(*, session: Session, values: Mapping[str, Any], now: datetime) -> bool:
    """Create or replace the stored rule ``values["id"]`` (plain data); True when created."""
    row = session.get(AutomationRule, values["id"])
    if row is None:
        session.add(AutomationRule(**{"id": values["id"], **{k: values[k] for k in RULE_COLUMNS}},
                                   created_at=now, updated_at=now))
        session.flush()
        return True
    for key in RULE_COLUMNS:
        setattr(row, key, values[key])
    row.updated_at = now
    session.add(row)
    session.flush()
    return False


def delete_rule(*, session: Session, rule_id: str) -> bool:
    """Remove the stored rule of that id; False when there was none."""
    row = session.get(AutomationRule, rule_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def device_ids(*, session: Session) -> list[str]:
    """Every device id (what an action may target)."""
    return list(session.exec(select(Device.id)).all())


# -------------------------------------------------------------------- runs


def run_counts(*, session: Session) -> list[tuple[str, RunStatus, int]]:
    """How many runs each rule has of each status."""
    rows = session.execute(
        sa.select(col(AutomationRun.rule_id), col(AutomationRun.status), sa.func.count())
        .group_by(col(AutomationRun.rule_id), col(AutomationRun.status))).all()
    return [(rule_id, RunStatus(status), int(count)) for rule_id, status, count in rows]


def overridden_counts(*, session: Session) -> list[tuple[str, int]]:
    """How many of each rule's commands a guest undid by hand."""
    rows = session.execute(
        sa.select(col(AutomationRun.rule_id), sa.func.count())
        .where(col(AutomationRun.overridden_at).is_not(None))
        .group_by(col(AutomationRun.rule_id))).all()
    return [(rule_id, int(count)) for rule_id, count in rows]


def runs(*, session: Session, rule_id: str | None = None, status: RunStatus | None = None,
         device_id: str | None = None, limit: int = 100, offset: int = 0
         ) -> list[AutomationRun]:
    """Runs, newest first, of a rule, a status and a device when given."""
    query = select(AutomationRun)
    if rule_id is not None:
        query = query.where(AutomationRun.rule_id == rule_id)
    if status is not None:
        query = query.where(AutomationRun.status == status)
    if device_id is not None:
        query = query.where(AutomationRun.device_id == device_id)
    return list(session.exec(query.order_by(col(AutomationRun.created_at).desc(),
                                            col(AutomationRun.id).desc())
                             .offset(offset).limit(limit)).all())


def sent_runs_since(*, session: Session, device_id: str | None,
                    since: datetime) -> list[AutomationRun]:
    """The commands sent to a device since ``since``, newest first."""
    return list(session.exec(select(AutomationRun).where(
        AutomationRun.device_id == device_id, AutomationRun.status == RunStatus.SENT,
        col(AutomationRun.sent_at) >= since).order_by(col(AutomationRun.id).desc())).all())


# ------------------------------------------------------- devices and places


def device(*, session: Session, device_id: str) -> Device | None:
    """The device of that id, if any."""
    return session.get(Device, device_id)


def device_for_update(*, session: Session, device_id: str | None) -> Device | None:
    """The device, its row held until the transaction ends (SQLite: the write lock)."""
    return session.exec(select(Device).where(col(Device.id) == device_id)
                        .with_for_update()).first()


def online(*, session: Session, device_ids: Collection[str | None]) -> dict[str, bool]:
    """Whether each of these devices is online, by id (an unknown one is left out)."""
    if not device_ids:
        return {}
    return {d.id: d.online for d in session.exec(
        select(Device).where(col(Device.id).in_(device_ids))).all()}


def devices_in(*, session: Session, zone_id: str) -> list[Device]:
    """The devices of a zone."""
    return list(session.exec(select(Device).where(Device.zone_id == zone_id)).all())


def zone(*, session: Session, zone_id: str) -> Zone | None:
    """The zone of that id, if any."""
    return session.get(Zone, zone_id)


def zone_ids_of(*, session: Session, venue_id: str) -> set[str]:
    """The ids of a venue's zones."""
    return set(session.exec(select(Zone.id).where(Zone.venue_id == venue_id)).all())


def venue_timezones(*, session: Session) -> list[tuple[str, str]]:
    """Every venue as (id, time zone)."""
    return [(v.id, v.timezone) for v in session.exec(select(Venue)).all()]


# ------------------------------------------------------------------ guests


def guest(*, session: Session, guest_id: str) -> Guest | None:
    """The guest of that id, if any."""
    return session.get(Guest, guest_id)


def preferences(*, session: Session, guest_id: str) -> GuestPreferences | None:
    """The guest's preferences, if they set any."""
    return session.get(GuestPreferences, guest_id)


def consent(*, session: Session, guest_id: str, purpose: str) -> Consent | None:
    """The guest's answer for one purpose, if they gave one."""
    return session.get(Consent, (guest_id, purpose))


def granted_purposes(*, session: Session, guest_id: str) -> frozenset[str]:
    """The purposes the guest consents to."""
    return frozenset(session.exec(select(Consent.purpose).where(
        Consent.guest_id == guest_id, col(Consent.granted).is_(True))).all())


def current_entitlements(*, session: Session, guest_id: str, at: datetime,
                         kind: EntitlementKind | None = None) -> list[Entitlement]:
    """The guest's active entitlements valid at ``at`` (of one kind), oldest first."""
    query = select(Entitlement).where(
        Entitlement.guest_id == guest_id, Entitlement.status == EntitlementStatus.ACTIVE,
        col(Entitlement.valid_from) <= at, col(Entitlement.valid_until) > at)
    if kind is not None:
        query = query.where(Entitlement.kind == kind)
    return list(session.exec(query.order_by(col(Entitlement.valid_from))).all())


def room_stays_at(*, session: Session, at: datetime) -> list[Entitlement]:
    """Every room stay whose time covers ``at``."""
    return list(session.exec(select(Entitlement).where(
        Entitlement.kind == EntitlementKind.ROOM, col(Entitlement.valid_from) <= at,
        col(Entitlement.valid_until) > at)).all())


def stays_and_tickets_at(*, session: Session, at: datetime) -> list[Entitlement]:
    """Every active stay or ticket valid at ``at`` (who is on site)."""
    return list(session.exec(select(Entitlement).where(
        col(Entitlement.kind).in_([EntitlementKind.ROOM, EntitlementKind.TICKET]),
        Entitlement.status == EntitlementStatus.ACTIVE,
        col(Entitlement.valid_from) <= at, col(Entitlement.valid_until) > at)).all())


# ---------------------------------------------------------------- counters
#


@dataclass(frozen=True)
class Upto:
    """Where a count of the journey stops: at the occurrence's own row when it has one,
    else at its time (the runner may lag behind the bridge)."""

    row: int | None
    at: datetime

    def clause(self) -> ColumnElement[bool]:
        """The condition on an event row."""
        return col(Event.id) <= self.row if self.row else col(Event.decided_at) <= self.at


def _count(session: Session, *where: ColumnElement[bool]) -> int:
    return int(session.execute(
        sa.select(sa.func.count()).select_from(Event).where(*where)).scalar_one())


def denials_at(*, session: Session, device_id: str, since: datetime, upto: Upto) -> int:
    """Denied taps at a device since ``since``."""
    return _count(session, col(Event.device_id) == device_id, col(Event.outcome) == "deny",
                  col(Event.decided_at) >= since, upto.clause())


def entries(*, session: Session, guest_id: str, zone_id: str, since: datetime,
            upto: Upto) -> int:
    """The guest's allowed entries into a zone since ``since``."""
    return _count(session, col(Event.guest_id) == guest_id, col(Event.zone_id) == zone_id,
                  col(Event.outcome) == "allow", col(Event.decided_at) >= since,
                  upto.clause())


def first_entries(*, session: Session, guest_id: str, zone_id: str, since: datetime,
                  upto: Upto) -> list[int]:
    """The ids of the guest's first two allowed entries into a zone since ``since`` (before
    the occurrence's own row, when it has one): an EXISTS that stops early, not a count."""
    before = [col(Event.id) < upto.row] if upto.row else []
    return list(session.execute(sa.select(col(Event.id)).where(
        col(Event.guest_id) == guest_id, col(Event.zone_id) == zone_id,
        col(Event.outcome) == "allow", col(Event.decided_at) >= since,
        upto.clause(), *before).limit(2)).scalars().all())


def visit_days(*, session: Session, guest_id: str, zone_id: str, upto: Upto) -> int:
    """The distinct days the guest entered a zone."""
    return int(session.execute(
        sa.select(sa.func.count(sa.distinct(sa.func.date(Event.decided_at)))).where(
            col(Event.guest_id) == guest_id, col(Event.zone_id) == zone_id,
            col(Event.outcome) == "allow", upto.clause())).scalar_one())


def rides(*, session: Session, guest_id: str, upto: Upto) -> int:
    """The guest's allowed entries into rides, ever."""
    return int(session.execute(
        sa.select(sa.func.count()).select_from(Event).join(
            Zone, col(Zone.id) == col(Event.zone_id)).where(
            col(Event.guest_id) == guest_id, col(Event.outcome) == "allow",
            col(Zone.kind) == ZoneKind.RIDE, upto.clause())).scalar_one())


def stays_over(*, session: Session, guest_id: str, at: datetime) -> int:
    """The guest's room stays over by ``at`` (not cancelled bookings, not tickets)."""
    return int(session.execute(
        sa.select(sa.func.count()).select_from(Entitlement).where(
            col(Entitlement.guest_id) == guest_id,
            col(Entitlement.kind) == EntitlementKind.ROOM,
            col(Entitlement.status) == EntitlementStatus.ACTIVE,
            col(Entitlement.valid_until) <= at)).scalar_one())


# --------------------------------------------------------------- telemetry


def readings_upto(*, session: Session, device_id: str, at: datetime, upto_id: int | None,
                  since: datetime | None, limit: int) -> list[Telemetry]:
    """A device's telemetry received by ``at`` (up to row ``upto_id``, from ``since``),
    newest first."""
    query = select(Telemetry).where(
        Telemetry.device_id == device_id, Telemetry.kind == "telemetry",
        col(Telemetry.received_at) <= at)
    if upto_id is not None:
        query = query.where(col(Telemetry.id) <= upto_id)
    if since is not None:
        query = query.where(col(Telemetry.received_at) >= since)
    return list(session.exec(query.order_by(col(Telemetry.id).desc()).limit(limit)).all())


def readings_since(*, session: Session, device_id: str, since: datetime,
                   limit: int) -> list[Telemetry]:
    """A device's latest telemetry received since ``since``, newest first."""
    return list(session.exec(select(Telemetry).where(
        Telemetry.device_id == device_id, Telemetry.kind == "telemetry",
        col(Telemetry.received_at) >= since).order_by(col(Telemetry.id).desc())
        .limit(limit)).all())
