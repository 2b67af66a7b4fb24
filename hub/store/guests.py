"""Guests and what they carry: credentials (bands, phone keys), their runs of wrong PINs,
secure tags' counters, signed phone keys and their revocations, entitlements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.models import (
    Credential,
    CredentialKind,
    CredentialStatus,
    Entitlement,
    EntitlementKind,
    EntitlementStatus,
    Guest,
    IssuedPhoneKey,
    KeyMaterialSeq,
    SpendingPolicy,
    Telemetry,
    UsedChallenge,
    Wearable,
    utcnow,
)
from hub.store.rows import insert_ignoring_duplicates, page, table_of

# The hot path's statements, built once: building a statement costs several times what
# executing it does (its values are bound at execution).
_credentials = table_of(Credential)
_P = sa.bindparam
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


def find_credential(*, session: Session, kind: CredentialKind,
                    identifier: str) -> Credential | None:
    """The credential a device presented, if the hub knows it."""
    stmt = select(Credential).where(Credential.kind == kind, Credential.identifier == identifier)
    return session.exec(stmt).first()


def pin_failures_of(*, session: Session, guest_id: str) -> int:
    """Wrong PINs in a row by this guest, on any of their bands and keys, read afresh
    (state, never cached): the lock is the guest's, so a second credential brings no
    fresh guesses."""
    row = session.connection().execute(_PIN_FAILURES, {"guest_id": guest_id}).first()
    return int(row[0]) if row else 0


def lock_pin_failures(*, session: Session, guest_id: str) -> int:
    """The guest's wrong PINs in a row with their credentials' rows locked (in id order)
    until the transaction ends: what a wrong PIN is counted on, so two workers cannot
    both count the fifth. (SQLite's BEGIN IMMEDIATE already serializes writers.)"""
    rows = session.connection().execute(_LOCK_PIN_FAILURES, {"guest_id": guest_id}).all()
    return sum(int(row[0]) for row in rows)


def count_pin_attempt(*, session: Session, credential_id: str, guest_id: str,
                      failed: bool) -> None:
    """One more wrong PIN on the credential used (counted in the database, so two workers
    cannot lose one), or a right one, which ends the guest's run on all of them."""
    if failed:
        session.connection().execute(_PIN_FAILED, {"credential_id": credential_id})
    else:
        clear_pin_failures(session=session, guest_id=guest_id)


def clear_pin_failures(*, session: Session, guest_id: str) -> None:
    """End the guest's run of wrong PINs on all their bands and keys (a right PIN, or
    staff lifting a lock), in one statement."""
    session.connection().execute(_PIN_PASSED, {"of_guest": guest_id})


def advance_tag_counter(*, session: Session, credential_id: str, counter: int,
                        at: datetime) -> bool:
    """Accept a secure tag's read counter (read at ``at``) only if it is above the last
    accepted one."""
    # The bind takes the column's type (UTC, timezone-aware) from the UPDATE's values.
    moved = session.connection().execute(_ADVANCE_COUNTER, {
        "credential_id": credential_id, "counter": counter, "at": at})
    return bool(moved.rowcount == 1)


def revoked_key_ids(*, session: Session, now: datetime | None = None) -> list[str]:
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


def key_revoked_at(*, session: Session, jti: str) -> datetime | None:
    """When the signed phone key ``jti`` stopped standing for its credential: superseded
    by a newer key, or its credential no longer active; None while it still does."""
    issued = session.get(IssuedPhoneKey, jti)
    if issued is not None and issued.superseded_at is not None:
        return issued.superseded_at
    credential = session.exec(select(Credential).where(Credential.key_jti == jti)).first()
    if credential is not None and credential.status is not CredentialStatus.ACTIVE:
        return credential.status_changed_at
    return None


def next_key_material_seq(*, session: Session) -> int:
    """The ``seq`` of the next key-material document: one more than any signed before."""
    table = table_of(KeyMaterialSeq)
    # The row is made once, by whoever signs first; the UPDATE then serialises signers.
    insert_ignoring_duplicates(session=session, table=KeyMaterialSeq, id=1, seq=0)
    conn = session.connection()
    conn.execute(sa.update(table).where(table.c.id == 1).values(seq=table.c.seq + 1))
    return int(conn.execute(sa.select(table.c.seq).where(table.c.id == 1)).scalar_one())


def key_material_seq(*, session: Session) -> int:
    """The ``seq`` of the last key-material document signed (0: none yet)."""
    table = table_of(KeyMaterialSeq)
    seq = session.connection().execute(sa.select(table.c.seq).where(table.c.id == 1))
    return int(seq.scalar_one_or_none() or 0)


def record_phone_key(*, session: Session, credential: Credential, jti: str,
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


def use_challenge(*, session: Session, device_id: str, challenge: str, now: datetime) -> bool:
    """Record a lock's challenge as answered; False when it had been answered before."""
    try:
        with session.begin_nested():
            session.add(UsedChallenge(device_id=device_id, challenge=challenge, used_at=now))
            session.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def entitlements_of(*, session: Session, guest_id: str) -> list[Entitlement]:
    """All entitlements of a guest, any status."""
    return list(session.exec(select(Entitlement).where(Entitlement.guest_id == guest_id)).all())


def list_guests(*, session: Session, q: str | None, limit: int, offset: int) -> list[Guest]:
    """A page of guests whose name, display name or email contains ``q``."""
    filters = []
    if q:
        # Escape LIKE's wildcards: a search for "%" finds a "%", not every guest.
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        filters.append(sa.or_(sa.func.lower(Guest.name).like(like, escape="\\"),
                              sa.func.lower(Guest.display_name).like(like, escape="\\"),
                              sa.func.lower(Guest.email).like(like, escape="\\")))
    return page(session=session, model=Guest, filters=filters, limit=limit, offset=offset)


def list_credentials(
    *, session: Session, guest_id: str | None, kind: str | None, identifier: str | None,
    limit: int, offset: int,
) -> list[Credential]:
    """A page of credentials, filtered by guest, kind and identifier."""
    filters = [c for c in (
        Credential.guest_id == guest_id if guest_id else None,
        Credential.kind == kind if kind else None,
        Credential.identifier == identifier if identifier else None,
    ) if c is not None]
    return page(session=session, model=Credential, filters=filters, limit=limit, offset=offset)


def list_entitlements(
    *, session: Session, guest_id: str | None, kind: str | None, limit: int, offset: int
) -> list[Entitlement]:
    """A page of entitlements, filtered by guest and kind."""
    filters = [c for c in (
        Entitlement.guest_id == guest_id if guest_id else None,
        Entitlement.kind == kind if kind else None,
    ) if c is not None]
    return page(session=session, model=Entitlement, filters=filters, limit=limit, offset=offset)


# ------------------------------------------------------------------ wearables


def current_wearer(*, session: Session, device_id: str) -> Wearable | None:
    """The open pairing of ``device_id`` (who wears it now); None when nobody does."""
    return session.exec(select(Wearable).where(
        Wearable.device_id == device_id, col(Wearable.unpaired_at).is_(None))).first()


def pairings_of(*, session: Session, guest_id: str) -> list[Wearable]:
    """Every pairing of the guest, open and closed, oldest first."""
    return list(session.exec(select(Wearable).where(Wearable.guest_id == guest_id)
                             .order_by(col(Wearable.paired_at), col(Wearable.id))).all())


def readings_clause(pairings: Sequence[Wearable]) -> sa.ColumnElement[bool]:
    """A condition on Telemetry: received from a pairing's device within its window."""
    windows = []
    for p in pairings:
        window = [col(Telemetry.device_id) == p.device_id,
                  col(Telemetry.received_at) >= p.paired_at]
        if p.unpaired_at is not None:
            window.append(col(Telemetry.received_at) < p.unpaired_at)
        windows.append(sa.and_(*window))
    return sa.or_(*windows) if windows else sa.false()


def readings_of(*, session: Session, pairings: Sequence[Wearable]) -> list[Telemetry]:
    """What the devices reported within the pairings' windows, in the order received."""
    if not pairings:
        return []
    return list(session.exec(select(Telemetry).where(readings_clause(pairings))
                             .order_by(col(Telemetry.id))).all())


def delete_readings(*, session: Session, pairings: Sequence[Wearable]) -> int:
    """Delete what the devices reported within the pairings' windows; how many went."""
    if not pairings:
        return 0
    gone = session.execute(sa.delete(Telemetry).where(readings_clause(pairings))
                           .execution_options(synchronize_session=False))
    return int(gone.rowcount)  # type: ignore[attr-defined]


def close_pairing(*, session: Session, pairing_id: int | None, at: datetime) -> bool:
    """End an open pairing at ``at``; False when it was closed meanwhile."""
    # Conditional, so two workers never both close (and both reopen) one pairing.
    closed = session.execute(sa.update(Wearable).where(
        col(Wearable.id) == pairing_id, col(Wearable.unpaired_at).is_(None))
        .values(unpaired_at=at).execution_options(synchronize_session=False))
    return bool(closed.rowcount == 1)  # type: ignore[attr-defined]


def last_unpaired_at(*, session: Session, device_id: str) -> datetime | None:
    """When the device's last closed pairing ended; None when none did."""
    return session.exec(select(sa.func.max(Wearable.unpaired_at))
                        .where(Wearable.device_id == device_id)).one()


def spending_policy_of(*, session: Session, guest_id: str) -> SpendingPolicy | None:
    """The guest's spending policy (who pays, limits, PIN); None when never set."""
    return session.get(SpendingPolicy, guest_id)


def room_stays_at(*, session: Session, guest_id: str, at: datetime) -> list[Entitlement]:
    """The guest's active room entitlements valid at ``at``."""
    return list(session.exec(select(Entitlement).where(
        Entitlement.guest_id == guest_id, Entitlement.kind == EntitlementKind.ROOM,
        Entitlement.status == EntitlementStatus.ACTIVE,
        col(Entitlement.valid_from) <= at, col(Entitlement.valid_until) > at)).all())


def guest_ids(*, session: Session, limit: int | None = None) -> list[str]:
    """Guests' ids in order, the first ``limit`` of them (None: all)."""
    return list(session.exec(select(Guest.id).order_by(col(Guest.id)).limit(limit)).all())


def secure_band_uids(*, session: Session) -> list[str]:
    """The UIDs of every secure (SUN) wristband in the registry."""
    stmt = select(Credential.identifier).where(Credential.kind == CredentialKind.WRISTBAND,
                                               col(Credential.sun).is_(True))
    return list(session.exec(stmt).all())
