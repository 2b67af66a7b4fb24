"""Data access: the one way into the database. Keyword-only functions taking a session."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from pydantic_core import to_jsonable_python
from sqlmodel import Session, SQLModel, col, select

from devices.contract import PhoneKeyCredential, WristbandCredential, WristbandSunCredential
from hub.entry import Effect
from hub.models import (
    AuditEntry,
    Credential,
    CredentialKind,
    CredentialStatus,
    DeadLetter,
    Device,
    Entitlement,
    Event,
    Guest,
    IssuedPhoneKey,
    KeyMaterialSeq,
    LoginThrottle,
    Presence,
    StaffUser,
    Telemetry,
    TokenVersion,
    UsedChallenge,
    Venue,
    Zone,
    utcnow,
)
from hub.presented import (
    CredentialProblem,
    Presented,
    Trust,
    problem_of,
    resolve,
    verify_signed_phone_key,
)
from hub.registry import UNCACHED, Registry

T = TypeVar("T", bound=SQLModel)
D = TypeVar("D", Device, Venue)  # what is deleted by marking, not removed
AnyCredential = WristbandCredential | WristbandSunCredential | PhoneKeyCredential


def table_of(model: type[SQLModel]) -> sa.Table:
    """A model's table, for the few hot statements that skip the ORM's machinery."""
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


# The hot path's statements, built once: building a statement costs several times what
# executing it does (its values are bound at execution).
_credentials, _events, _presences, _zones = (table_of(m) for m in (Credential, Event,
                                                                  Presence, Zone))
_P = sa.bindparam
_FIND_EVENT = sa.select(_events.c.id).where(_events.c.device_id == _P("device_id"),
                                            _events.c.event_id == _P("event_id"))
_INSERT_EVENT = sa.insert(_events)
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
_ADVANCE_COUNTER = (sa.update(_credentials)
                    .where(_credentials.c.id == _P("credential_id"),
                           sa.or_(_credentials.c.sun_counter.is_(None),
                                  _credentials.c.sun_counter < _P("counter")))
                    .values(sun_counter=_P("counter"), sun_counter_at=_P("at")))
_PIN_FAILURES = sa.select(sa.func.coalesce(sa.func.sum(_credentials.c.pin_failures), 0)).where(
    _credentials.c.guest_id == _P("guest_id"))
_LOCK_PIN_FAILURES = (sa.select(_credentials.c.pin_failures)
                      .where(_credentials.c.guest_id == _P("guest_id"))
                      .order_by(_credentials.c.id).with_for_update())
_PIN_FAILED = (sa.update(_credentials).where(_credentials.c.id == _P("credential_id"))
               .values(pin_failures=_credentials.c.pin_failures + 1))
_PIN_PASSED = (sa.update(_credentials).where(_credentials.c.guest_id == _P("of_guest"))
               .values(pin_failures=0))


class NotFound(LookupError):
    """A referenced row does not exist."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what, self.key = what, key


class Conflict(ValueError):
    """A write that would break a uniqueness or state rule."""


class Invalid(ValueError):
    """A request that breaks a rule of the domain (answered 422)."""


class InvalidReference(Invalid):
    """A request that names a row that does not exist."""


def require(session: Session, model: type[T], key: str | None, field: str) -> T | None:
    """The row ``key`` names, None for None; InvalidReference when it does not exist."""
    if key is None:
        return None
    row = session.get(model, key)
    if row is None:
        raise InvalidReference(f"{field}: {model.__name__.lower()} {key!r} does not exist")
    if getattr(row, "deleted_at", None) is not None:  # a deleted venue or device
        raise InvalidReference(f"{field}: {model.__name__.lower()} {key!r} was deleted")
    return row


# ---------------------------------------------------------------- generic


def get(session: Session, model: type[T], key: str | int) -> T:
    """Fetch by primary key or raise NotFound."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(model.__name__.lower(), str(key))
    return row


def live(session: Session, model: type[D], key: str) -> D:
    """A device or venue by id, NotFound once deleted (its row stays for the history)."""
    row = get(session, model, key)
    if row.deleted_at is not None:
        raise NotFound(f"{model.__name__.lower()} (deleted)", key)
    return row


def venue_open(venue: Venue | None) -> bool:
    """Whether taps and payments may be decided at ``venue``: it exists, is not closed
    and not deleted."""
    return venue is not None and venue.enabled and venue.deleted_at is None


def add(session: Session, row: T) -> T:
    """Insert a row, turning a unique-constraint violation into Conflict."""
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"{type(row).__name__.lower()} conflicts with an existing one") from exc
    return row


def update(session: Session, row: T, changes: dict[str, Any]) -> T:
    """Apply a dict of field changes to a row."""
    for name, value in changes.items():
        setattr(row, name, value)
    session.add(row)
    session.flush()
    return row


def page(
    session: Session, model: type[T], *, filters: Sequence[Any] = (), limit: int, offset: int
) -> list[T]:
    """A page of rows ordered by primary key."""
    stmt = select(model).where(*filters).offset(offset).limit(limit)
    pk = sa.inspect(model).primary_key[0]
    return list(session.exec(stmt.order_by(pk)).all())


# ----------------------------------------------------------- tap context


def find_credential(session: Session, *, kind: CredentialKind,
                    identifier: str) -> Credential | None:
    """The credential a device presented, if the hub knows it."""
    stmt = select(Credential).where(Credential.kind == kind, Credential.identifier == identifier)
    return session.exec(stmt).first()


def pin_failures_of(session: Session, *, guest_id: str) -> int:
    """Wrong PINs in a row by this guest, on any of their bands and keys, read afresh
    (state, never cached): the lock is the guest's, so a second credential brings no
    fresh guesses."""
    row = session.connection().execute(_PIN_FAILURES, {"guest_id": guest_id}).first()
    return int(row[0]) if row else 0


def lock_pin_failures(session: Session, *, guest_id: str) -> int:
    """The guest's wrong PINs in a row with their credentials' rows locked (in id order)
    until the transaction ends: what a wrong PIN is counted on, so two workers cannot
    both count the fifth. (SQLite's BEGIN IMMEDIATE already serializes writers.)"""
    rows = session.connection().execute(_LOCK_PIN_FAILURES, {"guest_id": guest_id}).all()
    return sum(int(row[0]) for row in rows)


def count_pin_attempt(session: Session, *, credential_id: str, guest_id: str,
                      failed: bool) -> None:
    """One more wrong PIN on the credential used (counted in the database, so two workers
    cannot lose one), or a right one, which ends the guest's run on all of them."""
    if failed:
        session.connection().execute(_PIN_FAILED, {"credential_id": credential_id})
    else:
        clear_pin_failures(session, guest_id=guest_id)


def clear_pin_failures(session: Session, *, guest_id: str) -> None:
    """End the guest's run of wrong PINs on all their bands and keys (a right PIN, or
    staff lifting a lock), in one statement."""
    session.connection().execute(_PIN_PASSED, {"of_guest": guest_id})


def advance_tag_counter(session: Session, *, credential_id: str, counter: int,
                        at: datetime) -> bool:
    """Accept a secure tag's read counter (read at ``at``) only if it is above the last
    accepted one."""
    # The bind takes the column's type (UTC, timezone-aware) from the UPDATE's values.
    moved = session.connection().execute(_ADVANCE_COUNTER, {
        "credential_id": credential_id, "counter": counter, "at": at})
    return bool(moved.rowcount == 1)


def revoked_key_ids(session: Session, *, now: datetime | None = None) -> list[str]:
    """The jti of every signed phone key that must not open a door: the current key of a
    credential no longer active, and every key superseded by a newer one for its
    credential, until it expires (a superseded key is still validly signed)."""
    inactive = select(Credential.key_jti).where(col(Credential.key_jti).is_not(None),
                                                Credential.status != CredentialStatus.ACTIVE)
    superseded = select(IssuedPhoneKey.jti).where(
        col(IssuedPhoneKey.superseded_at).is_not(None),
        IssuedPhoneKey.expires_at > (now or utcnow()))
    return sorted({jti for jti in (*session.exec(inactive).all(),
                                   *session.exec(superseded).all()) if jti})


def key_revoked_at(session: Session, *, jti: str) -> datetime | None:
    """When the signed phone key ``jti`` stopped standing for its credential: superseded
    by a newer key, or its credential no longer active; None while it still does."""
    issued = session.get(IssuedPhoneKey, jti)
    if issued is not None and issued.superseded_at is not None:
        return issued.superseded_at
    credential = session.exec(select(Credential).where(Credential.key_jti == jti)).first()
    if credential is not None and credential.status is not CredentialStatus.ACTIVE:
        return credential.status_changed_at
    return None


def next_key_material_seq(session: Session) -> int:
    """The ``seq`` of the next key-material document: one more than any signed before."""
    table = table_of(KeyMaterialSeq)
    # The row is made once, by whoever signs first; the UPDATE then serialises signers.
    insert_ignoring_duplicates(session, KeyMaterialSeq, id=1, seq=0)
    conn = session.connection()
    conn.execute(sa.update(table).where(table.c.id == 1).values(seq=table.c.seq + 1))
    return int(conn.execute(sa.select(table.c.seq).where(table.c.id == 1)).scalar_one())


def key_material_seq(session: Session) -> int:
    """The ``seq`` of the last key-material document signed (0: none yet)."""
    table = table_of(KeyMaterialSeq)
    seq = session.connection().execute(sa.select(table.c.seq).where(table.c.id == 1))
    return int(seq.scalar_one_or_none() or 0)


def record_phone_key(session: Session, *, credential: Credential, jti: str,
                     expires_at: datetime, now: datetime) -> None:
    """A new signed key for ``credential``: its previous one (if any) is superseded."""
    if credential.key_jti is not None and credential.key_jti != jti:
        previous = session.get(IssuedPhoneKey, credential.key_jti)
        if previous is None:  # issued before keys were recorded: kept for its lifetime
            previous = IssuedPhoneKey(jti=credential.key_jti, credential_id=credential.id,
                                      expires_at=expires_at, issued_at=now)
        previous.superseded_at = now
        session.add(previous)
    session.add(IssuedPhoneKey(jti=jti, credential_id=credential.id, expires_at=expires_at,
                               issued_at=now))
    credential.key_jti = jti
    session.add(credential)
    session.flush()


def use_challenge(session: Session, *, device_id: str, challenge: str, now: datetime) -> bool:
    """Record a lock's challenge as answered; False when it had been answered before."""
    try:
        with session.begin_nested():
            session.add(UsedChallenge(device_id=device_id, challenge=challenge, used_at=now))
            session.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def present(session: Session, *, credential: AnyCredential, trust: Trust, venue_id: str,
            device_id: str, now: datetime) -> Presented:
    """Resolve what a reader presented, verifying its cryptography against ``trust``."""
    if isinstance(credential, PhoneKeyCredential) and credential.token is not None:
        return verify_signed_phone_key(credential, jwks=trust.jwks, venue=venue_id,
                                       lock_id=device_id, revoked=revoked_key_ids(session),
                                       now=now)
    return resolve(credential, master_key=trust.tag_master_key)


def authenticate(session: Session, *, presented: Presented, venue_id: str, device_id: str,
                 now: datetime, registry: Registry = UNCACHED,
                 ) -> tuple[Credential | None, CredentialProblem | None]:
    """The credential a tap presented, and why it must not be trusted (or None).

    With ``registry``, the credential and venue are read through that cache (detached
    copies: for deciding, not for changing).
    """
    credential = None
    if presented.credential_id is not None:
        credential = registry.get(session, Credential, presented.credential_id)
        if credential is not None and credential.key_jti != presented.identifier:
            credential = None  # a key this credential no longer carries
    elif presented.identifier:
        # A forgery that names a known band (a SUN read whose MAC fails) is recorded as an
        # attempt on that guest's band; problem_of refuses it all the same.
        credential = registry.credential(session, kind=presented.kind,
                                         identifier=presented.identifier)
    advanced = bool(credential and presented.counter is not None and advance_tag_counter(
        session, credential_id=credential.id, counter=presented.counter, at=now))
    fresh = presented.challenge is None or use_challenge(
        session, device_id=device_id, challenge=presented.challenge, now=now)
    venue = registry.get(session, Venue, venue_id)
    device = registry.get(session, Device, device_id)
    allow = device.allow_plain_uid if device is not None and device.allow_plain_uid is not None \
        else (venue.allow_plain_uid if venue else False)
    return credential, problem_of(presented, credential, counter_advanced=advanced,
                                  allow_plain_uid=allow, fresh_challenge=fresh)


def entitlements_of(session: Session, *, guest_id: str) -> list[Entitlement]:
    """All entitlements of a guest, any status."""
    return list(session.exec(select(Entitlement).where(Entitlement.guest_id == guest_id)).all())


def venue_timezone(session: Session, *, venue_id: str) -> str:
    """The IANA time zone staff schedules of this venue are written in."""
    venue = session.get(Venue, venue_id)
    return venue.timezone if venue else "UTC"


def insert_ignoring_duplicates(session: Session, table: type[SQLModel], **values: Any) -> None:
    """INSERT a row unless its key exists: one statement, no savepoint, on either engine."""
    session.connection().execute(_insert_ignoring(session.get_bind().dialect.name, table),
                                 values)


@functools.cache
def _insert_ignoring(dialect: str, model: type[SQLModel]) -> sa.Insert:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(table_of(model)).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    return sqlite_insert(table_of(model)).on_conflict_do_nothing()


def presence(session: Session, *, guest_id: str, zone_id: str) -> bool | None:
    """Whether the guest's last accepted tap put them inside the zone; None: never tapped
    there (no row yet)."""
    row = session.connection().execute(_PRESENCE, {"guest_id": guest_id,
                                                   "zone_id": zone_id}).first()
    return None if row is None else bool(row[0])


def is_inside(session: Session, *, guest_id: str, zone_id: str) -> bool:
    """Whether the guest's last accepted tap put them inside the zone."""
    return bool(presence(session, guest_id=guest_id, zone_id=zone_id))


def occupancy_of(session: Session, *, zone_id: str) -> int:
    """How many are inside a zone now (state: never cached)."""
    found = session.connection().execute(_OCCUPANCY, {"zone_id": zone_id}).first()
    return int(found[0]) if found is not None else 0


def apply_effect(
    session: Session, *, guest_id: str, zone_id: str, effect: Effect, now: datetime,
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
        insert_ignoring_duplicates(session, Presence, guest_id=guest_id, zone_id=zone_id,
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


def event_columns(**given: Any) -> dict[str, Any]:
    """An Event row's columns for :func:`insert_event`, those not given None."""
    return {**_EVENT_NULLS, **given}


_EVENT_NULLS: dict[str, Any] = {name: None for name in Event.model_fields if name != "id"}


def insert_event(session: Session, values: dict[str, Any]) -> int:
    """Record a decision (the columns of an Event, without ``id``) with one INSERT, outside
    the unit of work: every tap pays for this line, and building an Event object costs
    more than the statement. Returns the row's id; IntegrityError when the event id is
    taken."""
    key = session.connection().execute(_INSERT_EVENT, values).inserted_primary_key
    assert key is not None  # an INSERT of one row
    return int(key[0])


def find_event(session: Session, *, device_id: str, event_id: str) -> Event | None:
    """A tap already recorded under this (device, event id): the idempotency key."""
    # Nearly every event is new: ask for its id alone first, without the ORM's machinery.
    found = session.connection().execute(_FIND_EVENT, {"device_id": device_id,
                                                       "event_id": event_id}).first()
    if found is None:
        return None
    return session.get(Event, found[0])


def record_device_seen(
    session: Session, *, device_id: str, now: datetime, online: bool | None = None,
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


def record_telemetry(session: Session, *, row: Telemetry) -> bool:
    """Store a reading once; False when its (device, event id) was recorded before."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def recorded_report(session: Session, *, device_id: str,
                    event_id: str) -> tuple[str, str | None] | None:
    """The (kind, content digest) of the report recorded under this (device, event id)."""
    found = session.exec(select(Telemetry.kind, Telemetry.content_digest).where(
        Telemetry.device_id == device_id, Telemetry.event_id == event_id)).first()
    return None if found is None else (found[0], found[1])


# The audit action of an event id a device used again for something else.
EVENT_ID_CONFLICT = "device.event_id_conflict"


def record_event_id_conflict(session: Session, *, device_id: str, event_id: str,
                             detail: dict[str, Any], now: datetime) -> bool:
    """Audit a device's reuse of an event id for other content, once per (device, event
    id): a device repeating the conflict (QoS 1 redelivers it too) adds nothing, so the
    entries stay as few as the events recorded. False when it was audited before."""
    target = f"event:{device_id}/{event_id}"
    seen = session.exec(select(AuditEntry.id).where(AuditEntry.action == EVENT_ID_CONFLICT,
                                                    AuditEntry.target == target)).first()
    if seen is not None:
        return False
    record_audit(session, actor=f"device:{device_id}", roles=[], action=EVENT_ID_CONFLICT,
                 target=target, detail=detail, source="mqtt", at=now)
    return True


# ------------------------------------------------------------------ queries


def list_devices(
    session: Session, *, venue_id: str | None, kind: str | None, zone_id: str | None,
    limit: int, offset: int,
) -> list[Device]:
    filters = [col(Device.deleted_at).is_(None), *(c for c in (
        Device.venue_id == venue_id if venue_id else None,
        Device.kind == kind if kind else None,
        Device.zone_id == zone_id if zone_id else None,
    ) if c is not None)]
    return page(session, Device, filters=filters, limit=limit, offset=offset)


def list_zones(
    session: Session, *, venue_id: str | None, kind: str | None, limit: int, offset: int
) -> list[Zone]:
    filters = [c for c in (
        Zone.venue_id == venue_id if venue_id else None,
        Zone.kind == kind if kind else None,
    ) if c is not None]
    return page(session, Zone, filters=filters, limit=limit, offset=offset)


def list_guests(session: Session, *, q: str | None, limit: int, offset: int) -> list[Guest]:
    filters = []
    if q:
        # Escape LIKE's wildcards: a search for "%" finds a "%", not every guest.
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        filters.append(sa.or_(sa.func.lower(Guest.name).like(like, escape="\\"),
                              sa.func.lower(Guest.display_name).like(like, escape="\\"),
                              sa.func.lower(Guest.email).like(like, escape="\\")))
    return page(session, Guest, filters=filters, limit=limit, offset=offset)


def list_credentials(
    session: Session, *, guest_id: str | None, kind: str | None, identifier: str | None,
    limit: int, offset: int,
) -> list[Credential]:
    filters = [c for c in (
        Credential.guest_id == guest_id if guest_id else None,
        Credential.kind == kind if kind else None,
        Credential.identifier == identifier if identifier else None,
    ) if c is not None]
    return page(session, Credential, filters=filters, limit=limit, offset=offset)


def list_entitlements(
    session: Session, *, guest_id: str | None, kind: str | None, limit: int, offset: int
) -> list[Entitlement]:
    filters = [c for c in (
        Entitlement.guest_id == guest_id if guest_id else None,
        Entitlement.kind == kind if kind else None,
    ) if c is not None]
    return page(session, Entitlement, filters=filters, limit=limit, offset=offset)


def list_venues(session: Session, *, limit: int, offset: int) -> list[Venue]:
    return page(session, Venue, filters=[col(Venue.deleted_at).is_(None)], limit=limit,
                offset=offset)


def list_events(
    session: Session, *, guest_id: str | None = None, device_id: str | None = None,
    zone_id: str | None = None, outcome: str | None = None, reason: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
    before_id: int | None = None, limit: int = 50,
) -> list[Event]:
    """The journey, newest first, with keyset pagination on the event's row id."""
    stmt = select(Event)
    for column, value in ((Event.guest_id, guest_id), (Event.device_id, device_id),
                          (Event.zone_id, zone_id), (Event.outcome, outcome),
                          (Event.reason, reason)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(col(Event.received_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Event.received_at) < until)
    if before_id is not None:
        stmt = stmt.where(col(Event.id) < before_id)
    return list(session.exec(stmt.order_by(col(Event.id).desc()).limit(limit)).all())


def record_dead_letter(session: Session, *, topic: str, payload: bytes, error: str,
                       received_at: datetime, now: datetime, worker: str,
                       keep: int = 10_000) -> DeadLetter:
    """Keep a message the hub could not process, for staff to look at; only the newest
    ``keep`` are kept, so a flood of poison cannot fill the disk."""
    row = DeadLetter(topic=topic[:1024], payload=payload, error=error[:500],
                     received_at=received_at, recorded_at=now, worker=worker[:128])
    session.add(row)
    session.flush()
    if row.id is not None and row.id % 100 == 0:  # now and then, not at every letter
        session.execute(sa.delete(DeadLetter).where(col(DeadLetter.id) <= row.id - keep)
                        .execution_options(synchronize_session=False))
    return row


def list_dead_letters(session: Session, *, before_id: int | None = None,
                      limit: int = 50) -> list[DeadLetter]:
    """Dead letters, newest first, with keyset pagination on the row id."""
    stmt = select(DeadLetter)
    if before_id is not None:
        stmt = stmt.where(col(DeadLetter.id) < before_id)
    return list(session.exec(stmt.order_by(col(DeadLetter.id).desc()).limit(limit)).all())


# ------------------------------------------------------------ staff and audit


def find_staff_user(session: Session, *, username: str) -> StaffUser | None:
    """The staff user of this exact username, active or not."""
    return session.exec(select(StaffUser).where(StaffUser.username == username)).first()


def change_staff_user(session: Session, *, user: StaffUser, active: bool | None = None,
                      password_hash: str | None = None) -> StaffUser:
    """Disable or enable a user, or set their password; each voids their tokens."""
    if active is not None:
        user.active = active
    if password_hash is not None:
        user.password_hash = password_hash
    session.add(user)
    session.flush()
    revoke_tokens(session, subject=token_subject("staff", user.username))
    return user


def add_staff_user(session: Session, *, username: str, password_hash: str,
                   roles: Sequence[str], now: datetime) -> StaffUser:
    """Create a staff user; Conflict when the username is taken."""
    return add(session, StaffUser(username=username, password_hash=password_hash,
                                  roles=sorted(set(roles)), created_at=now))


def list_staff_users(session: Session) -> list[StaffUser]:
    return list(session.exec(select(StaffUser).order_by(col(StaffUser.username))).all())


def token_subject(typ: str, subject: str) -> str:
    """The key of a token's subject in TokenVersion: ``staff:<name>`` or ``guest:<id>``."""
    return f"{typ}:{subject}"


def token_version(session: Session, *, subject: str) -> int:
    row = session.get(TokenVersion, subject)
    return row.version if row else 0


def revoke_tokens(session: Session, *, subject: str) -> None:
    """Void every token of ``subject`` issued so far (one atomic bump, any worker)."""
    table = table_of(TokenVersion)
    insert_ignoring_duplicates(session, TokenVersion, subject=subject, version=0)
    session.connection().execute(sa.update(table).where(table.c.subject == subject)
                                 .values(version=table.c.version + 1))


def login_failures(session: Session, *, keys: Sequence[str]) -> list[LoginThrottle]:
    """The failure counts of these throttle keys (those that have any)."""
    return list(session.exec(select(LoginThrottle).where(col(LoginThrottle.key).in_(keys))))


def count_login_failure(session: Session, *, keys: Sequence[str], now: datetime,
                        forget_before: datetime) -> None:
    """One more failed log-in for each key (counted in the database: workers share it); a
    run whose last failure is older than ``forget_before`` starts again at one."""
    table = table_of(LoginThrottle)
    for key in keys:
        insert_ignoring_duplicates(session, LoginThrottle, key=key, failures=0)
        session.connection().execute(sa.update(table).where(table.c.key == key).values(
            failures=sa.case((table.c.last_failure_at < forget_before, 1),
                             else_=table.c.failures + 1),
            last_failure_at=now))


def clear_login_failures(session: Session, *, keys: Sequence[str]) -> None:
    table = table_of(LoginThrottle)
    session.connection().execute(sa.delete(table).where(table.c.key.in_(list(keys))))


def record_audit(session: Session, *, actor: str, roles: Sequence[str], action: str,
                 target: str, detail: dict[str, Any], source: str, at: datetime) -> AuditEntry:
    """Append one audit entry in the caller's transaction: the only writer of the table."""
    entry = AuditEntry(at=at, actor=actor[:80], roles=sorted(roles), action=action,
                       target=target[:200], detail=to_jsonable_python(detail),
                       source=source[:64])
    session.add(entry)
    session.flush()
    return entry


def list_audit(session: Session, *, actor: str | None, action: str | None, target: str | None,
               limit: int, offset: int) -> list[AuditEntry]:
    """Audit entries, newest first, filtered by exact actor, action and target."""
    stmt = select(AuditEntry)
    for column, value in ((AuditEntry.actor, actor), (AuditEntry.action, action),
                          (AuditEntry.target, target)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = stmt.order_by(col(AuditEntry.id).desc()).offset(offset).limit(limit)
    return list(session.exec(stmt).all())
