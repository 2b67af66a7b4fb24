"""The read-mostly rows a tap or payment is decided on: cached per process, never stale.

Devices, venues, merchants, guests, credentials and entitlements change rarely and are read on
every tap. Each change to one of them, through any session of any process, bumps one
version row in the same transaction (``before_flush`` below); a decision reads that
version first (one primary-key read) and, when it moved, forgets everything it cached.
So a band marked lost is denied on the very next tap, by every worker, and a decision
never sees a registry older than its own transaction's start.

What changes with every tap (presence, occupancy, tag counters, wrong PINs, a device's
last-seen) is state, not registry: it is never cached and never bumps the version.
Cached rows are detached copies: read them, never add them to a session.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, SQLModel, col, select

from hub.models import (
    Credential,
    CredentialKind,
    Device,
    Entitlement,
    Guest,
    Merchant,
    RegistryVersion,
    Venue,
    Zone,
)

T = TypeVar("T", bound=SQLModel)

# Cached classes, and the columns of theirs that are state: changing only those is no
# change to the registry (a heartbeat must not empty every worker's cache).
_STATE_COLUMNS: dict[type[SQLModel], frozenset[str]] = {
    Device: frozenset({"online", "last_seen", "battery_pct", "firmware"}),
    Credential: frozenset({"sun_counter", "pin_failures"}),
    Venue: frozenset(),
    Zone: frozenset({"occupancy"}),
    Guest: frozenset(),
    Entitlement: frozenset(),
    Merchant: frozenset(),
}

_versions = cast(sa.Table, RegistryVersion.__table__)  # type: ignore[attr-defined]
_VERSION = sa.select(_versions.c.version).where(_versions.c.id == 1)  # built once: hot

# Past this many entries the cache starts again: random unknown UIDs must not grow it.
MAX_ENTRIES = 500_000

_MISSING = object()


def _changes_registry(obj: Any) -> bool:
    state_columns = _STATE_COLUMNS.get(type(obj))
    if state_columns is None:
        return False
    insp = sa.inspect(obj)
    return any(attr.history.has_changes() for attr in insp.attrs
               if attr.key not in state_columns)


@event.listens_for(OrmSession, "before_flush")
def _bump_on_change(session: OrmSession, _ctx: Any, _instances: Any) -> None:
    touched = any(type(obj) in _STATE_COLUMNS for obj in (*session.new, *session.deleted)) \
        or any(_changes_registry(obj) for obj in session.dirty)
    if touched:
        bump(session)


def bump(session: OrmSession) -> None:
    """Tell every process's cache that the registry changed (in this transaction)."""
    session.execute(sa.update(RegistryVersion).where(col(RegistryVersion.id) == 1)
                    .values(version=RegistryVersion.version + 1)
                    .execution_options(synchronize_session=False))


def ensure_version_row(session: Session) -> None:
    """The one version row (created with the tables)."""
    if session.get(RegistryVersion, 1) is None:
        session.add(RegistryVersion(id=1, version=0))
        session.flush()


def _detached(row: T) -> T:
    # A copy that belongs to no session: what one decision read cannot leak into another's
    # transaction, and nobody's flush can write it.
    return type(row).model_validate(row.model_dump())


class Registry:
    """One process's cache of the registry; used by one thread (the bridge's worker).

    ``Registry(caching=False)`` (``UNCACHED``) reads the same rows straight from the
    session, attached, for callers that keep no cache (tools, tests, the API).
    """

    def __init__(self, *, caching: bool = True) -> None:
        self.caching = caching
        self._version: int | None = None
        self._rows: dict[Hashable, Any] = {}
        self._synced_in: object | None = None
        self.hits = 0
        self.misses = 0

    def sync(self, session: Session) -> None:
        """Read the registry's version; forget everything when it moved.

        On SQLite once per transaction: the hub's write transactions hold the database's
        only write lock (BEGIN IMMEDIATE), so no change can commit until this one ends.
        Elsewhere (PostgreSQL, read committed) before every decision.
        """
        if not self.caching:
            return
        transaction = session.get_transaction()
        if transaction is not None and transaction is self._synced_in \
                and session.get_bind().dialect.name == "sqlite":
            return
        found = session.connection().execute(_VERSION).first()
        # Read after the statement: a transaction that began with it is now this one.
        self._synced_in = session.get_transaction()
        version = None if found is None else int(found[0])
        if version is None or version != self._version or len(self._rows) > MAX_ENTRIES:
            self._rows.clear()
            self._version = version

    def _keep(self, row: T | None) -> T | None:
        return _detached(row) if self.caching and row is not None else row

    def _cached(self, key: Hashable, load: Any) -> Any:
        if not self.caching:
            return load()
        found = self._rows.get(key, _MISSING)
        if found is not _MISSING:
            self.hits += 1
            return found
        self.misses += 1
        value = load()
        if self._version is not None:  # no version row: nothing to check staleness by
            self._rows[key] = value
        return value

    def get(self, session: Session, cls: type[T], key: str) -> T | None:
        """A device, venue, merchant, guest or credential by primary key (detached), or None."""
        def load() -> T | None:
            return self._keep(session.get(cls, key))
        result: T | None = self._cached((cls.__name__, key), load)
        return result

    def credential(self, session: Session, *, kind: CredentialKind,
                   identifier: str) -> Credential | None:
        """The credential with this identifier (detached), or None."""
        def load() -> Credential | None:
            return self._keep(session.exec(select(Credential).where(
                Credential.kind == kind, Credential.identifier == identifier)).first())
        result: Credential | None = self._cached(("credential-of", kind.value, identifier),
                                                 load)
        return result

    def entitlements(self, session: Session, *, guest_id: str) -> tuple[Entitlement, ...]:
        """All entitlements of a guest, any status (detached)."""
        def load() -> tuple[Entitlement, ...]:
            rows = session.exec(select(Entitlement).where(Entitlement.guest_id == guest_id))
            return tuple(self._keep(row) for row in rows)  # type: ignore[misc]
        result: tuple[Entitlement, ...] = self._cached(("entitlements", guest_id), load)
        return result


# No cache: every read goes to the session (callers outside the bridge's worker).
UNCACHED = Registry(caching=False)
