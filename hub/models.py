"""The hub's tables: venues, zones, devices, guests, credentials, entitlements, the journey.

Every piece of state a decision depends on (presence for anti-passback, zone
occupancy, the idempotency of events) lives here, behind transactions and
unique constraints, so several hub workers can share one database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh opaque id."""
    return uuid.uuid4().hex


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _json(**kw: Any) -> Any:
    return Field(sa_type=sa.JSON, **kw)


class DeviceKind(StrEnum):
    GATE = "gate"
    DOOR_LOCK = "door_lock"
    POS = "pos"
    KIOSK = "kiosk"
    THERMOSTAT = "thermostat"
    LIGHT = "light"
    DISPLAY = "display"
    FRIDGE_DISPLAY = "fridge_display"
    WATCH = "watch"


class ZoneKind(StrEnum):
    AREA = "area"
    ROOM = "room"
    RIDE = "ride"  # an attraction inside a park: entries count as rides


class CredentialKind(StrEnum):
    WRISTBAND = "wristband"
    PHONE_KEY = "phone_key"


class CredentialStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    LOST = "lost"
    REVOKED = "revoked"


class EntitlementKind(StrEnum):
    TICKET = "ticket"
    ROOM = "room"
    STAFF = "staff"


class EntitlementStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


# What a guest may consent to; nothing of a purpose runs without their yes.
ConsentPurpose = Literal["personalization", "offers", "health", "analytics"]


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Effect(StrEnum):
    """What an allowed entry changes in the zone's state (decided by hub.entry, applied by
    the store)."""

    NONE = "none"
    ENTER = "enter"
    EXIT = "exit"


class AccountKind(StrEnum):
    WALLET = "wallet"  # stored value a guest topped up; never below zero
    FOLIO = "folio"  # a stay's running bill; below zero means owed, settled at check-out
    REVENUE = "revenue"  # a merchant's takings
    CLEARING = "clearing"  # money in and out of the venue (card top-ups, settlements)


class TransactionType(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    TOPUP = "topup"
    SETTLEMENT = "settlement"


class Venue(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    currency: str = Field(default="USD", max_length=3)
    # Plain-UID wristbands can be cloned with a phone; a venue may still accept them.
    allow_plain_uid: bool = True
    # The most a room folio may owe (minor units) unless the folio sets its own; None:
    # no limit (the default: a folio is the hotel's own credit, settled at check-out).
    folio_credit_limit: int | None = Field(default=None, ge=0, sa_type=sa.BigInteger)
    created_at: datetime = _ts(default_factory=utcnow)
    # A closed venue decides nothing: its devices are refused at the broker and every tap or
    # payment there is denied device_disabled, until it is opened again.
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    # Deleted venues keep their row (ledger and journey rows point at it) and their id.
    deleted_at: datetime | None = _ts(default=None)


class Zone(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    venue_id: str = Field(foreign_key="venue.id", index=True)
    name: str = Field(max_length=200)
    kind: ZoneKind = ZoneKind.AREA
    capacity: int | None = Field(default=None, ge=0)
    anti_passback: bool = False
    # Updated only by conditional UPDATEs, so concurrent workers can never overfill a zone.
    occupancy: int = Field(default=0, ge=0)


class Device(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    venue_id: str = Field(foreign_key="venue.id", index=True)
    kind: DeviceKind
    name: str = Field(max_length=200)
    zone_id: str | None = Field(default=None, foreign_key="zone.id", index=True)
    direction: Direction | None = None
    # A point-of-sale terminal takes payments for this merchant only.
    merchant_id: str | None = Field(default=None, foreign_key="merchant.id")
    enabled: bool = True
    online: bool = False
    last_seen: datetime | None = _ts(default=None)
    battery_pct: int | None = None
    firmware: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    # The venue's security policy for this reader alone (a legacy reader at a strict venue,
    # or a strict one at a legacy venue); None: the venue's.
    allow_plain_uid: bool | None = None
    # A deleted device is disabled for good, its broker login revoked; its row stays for the
    # journey and telemetry that name it, and so its id is never handed to another device.
    deleted_at: datetime | None = _ts(default=None)


class Guest(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    display_name: str | None = Field(default=None, max_length=80)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = _ts(default_factory=utcnow)


class Credential(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("kind", "identifier", name="uq_credential_identifier"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    guest_id: str = Field(foreign_key="guest.id", index=True)
    kind: CredentialKind
    # Upper-case hex UID of a wristband, or the key id of a phone key.
    identifier: str = Field(max_length=128)
    status: CredentialStatus = CredentialStatus.ACTIVE
    label: str | None = Field(default=None, max_length=80)
    # Wrong PINs in a row; payment on this credential locks at the configured maximum.
    pin_failures: int = Field(default=0, ge=0)
    # An NTAG 424 DNA band: it must present SUN data; its plain UID alone is a clone.
    sun: bool = False
    # The read counter of its last accepted SUN tap: a counter not above it is a replay.
    sun_counter: int | None = None
    # When that read happened: reads are ordered in time as their counters are, so an
    # offline entry whose counter and time disagree with it is forged evidence.
    sun_counter_at: datetime | None = _ts(default=None)
    # The jti of the signed phone key issued for this credential (revoked with it).
    key_jti: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = _ts(default_factory=utcnow)
    status_changed_at: datetime = _ts(default_factory=utcnow)


class IssuedPhoneKey(SQLModel, table=True):
    """Every signed phone key the hub issued, until it expires: a key superseded by a newer
    one for its credential stays on the revocation list offline locks read until then."""

    jti: str = Field(primary_key=True, max_length=64)
    credential_id: str = Field(foreign_key="credential.id", index=True)
    expires_at: datetime = _ts(index=True)
    issued_at: datetime = _ts()
    superseded_at: datetime | None = _ts(default=None)


class Entitlement(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    guest_id: str = Field(foreign_key="guest.id", index=True)
    kind: EntitlementKind
    zone_ids: list[str] = _json(default_factory=list)
    valid_from: datetime = _ts()
    valid_until: datetime = _ts()
    # Weekly windows in the venue's time zone: [{"days": [0-6], "start": "HH:MM", "end": "HH:MM"}].
    schedule: list[dict[str, Any]] | None = _json(default=None)
    status: EntitlementStatus = EntitlementStatus.ACTIVE
    created_at: datetime = _ts(default_factory=utcnow)


class UsedChallenge(SQLModel, table=True):
    """A lock's challenge that a phone key already answered: answering it again is a replay."""

    device_id: str = Field(primary_key=True, max_length=64)
    challenge: str = Field(primary_key=True, max_length=64)
    used_at: datetime = _ts(default_factory=utcnow)


class Presence(SQLModel, table=True):
    """Whether a guest is inside a zone: the state behind anti-passback."""

    guest_id: str = Field(foreign_key="guest.id", primary_key=True)
    zone_id: str = Field(foreign_key="zone.id", primary_key=True)
    inside: bool = False
    updated_at: datetime = _ts(default_factory=utcnow)


class Event(SQLModel, table=True):
    """One tap and its decision: the guest's journey. Recorded once per (device, event_id)."""

    __table_args__ = (sa.UniqueConstraint("device_id", "event_id", name="uq_event_device_event"),)

    id: int | None = Field(default=None, primary_key=True)
    # Not a foreign key: taps from unknown devices are recorded too, for the audit.
    device_id: str = Field(max_length=64, index=True)
    venue_id: str = Field(max_length=64)
    event_id: str = Field(max_length=64)
    kind: str = Field(default="tap", max_length=16)
    received_at: datetime = _ts(index=True)
    device_ts: datetime | None = _ts(default=None)
    credential_kind: str | None = Field(default=None, max_length=16)
    credential_ref: str | None = Field(default=None, max_length=128)
    credential_id: str | None = Field(default=None, index=True)
    guest_id: str | None = Field(default=None, index=True)
    zone_id: str | None = Field(default=None, index=True)
    direction: str | None = Field(default=None, max_length=8)
    outcome: str = Field(max_length=16, index=True)
    reason: str = Field(max_length=40)
    text: str = Field(max_length=80)
    guest_name: str | None = Field(default=None, max_length=80)
    transaction_id: str | None = Field(default=None, max_length=64)  # payments
    decided_at: datetime = _ts()
    # What the tap said (its credential as presented and direction), as a digest: the same
    # event id saying something else is a conflict, not a redelivery. None: not kept
    # (payments and offline entries have their own checks; rows from before).
    content_digest: str | None = Field(default=None, max_length=64)
    # Why the presented credential was not trusted, for staff (hub/journey_detail.py):
    # which check failed. Never sent to the reader.
    detail: str | None = Field(default=None, max_length=200)


class Telemetry(SQLModel, table=True):
    """Raw readings and heartbeats of devices, kept for the retention period."""

    __table_args__ = (sa.UniqueConstraint("device_id", "event_id", name="uq_telemetry_event"),)

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    event_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    ts: datetime = _ts()
    received_at: datetime = _ts(index=True)
    data: dict[str, Any] = _json(default_factory=dict)
    # What the report said, as a digest (see Event.content_digest); None: not kept.
    content_digest: str | None = Field(default=None, max_length=64)


# ---------------------------------------------------------------- payments


class Merchant(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    venue_id: str = Field(foreign_key="venue.id", index=True)
    name: str = Field(max_length=200)
    currency: str = Field(max_length=3)


class SpendingPolicy(SQLModel, table=True):
    """How a guest may pay: who pays (a party's lead), PIN, limits, on/off."""

    guest_id: str = Field(foreign_key="guest.id", primary_key=True)
    # The guest whose wallet or folio is charged: the guest, or the lead of their party.
    payer_guest_id: str = Field(foreign_key="guest.id", index=True)
    payment_enabled: bool = True
    daily_limit: int | None = Field(default=None, ge=0, sa_type=sa.BigInteger)
    pin_hash: str | None = Field(default=None, max_length=200)
    pin_threshold: int | None = Field(default=None, ge=0, sa_type=sa.BigInteger)


class Account(SQLModel, table=True):
    """A ledger account. ``balance`` caches the sum of its postings, in minor units."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    venue_id: str = Field(foreign_key="venue.id", index=True)
    kind: AccountKind
    currency: str = Field(max_length=3)
    guest_id: str | None = Field(default=None, foreign_key="guest.id", index=True)
    merchant_id: str | None = Field(default=None, foreign_key="merchant.id", index=True)
    stay_id: str | None = Field(default=None, foreign_key="entitlement.id", unique=True)
    # Changed only by conditional UPDATEs together with the postings that explain it.
    balance: int = Field(default=0, sa_type=sa.BigInteger)
    # A folio's own credit limit (minor units), over the venue's folio_credit_limit;
    # None: the venue's. Checked by the same conditional UPDATE that moves the balance.
    credit_limit: int | None = Field(default=None, ge=0, sa_type=sa.BigInteger)
    open: bool = True
    created_at: datetime = _ts(default_factory=utcnow)
    closed_at: datetime | None = _ts(default=None)


class DailySpend(SQLModel, table=True):
    """What a guest spent on one venue-local day: the state behind daily limits."""

    guest_id: str = Field(foreign_key="guest.id", primary_key=True)
    day: str = Field(primary_key=True, max_length=10)
    spent: int = Field(default=0, sa_type=sa.BigInteger)


class LedgerTransaction(SQLModel, table=True):
    """One money movement (or a declined attempt), keyed by its idempotency key."""

    __table_args__ = (sa.UniqueConstraint("idempotency_scope", "idempotency_key",
                                          name="uq_transaction_idempotency"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    venue_id: str = Field(foreign_key="venue.id", index=True)
    type: TransactionType
    approved: bool
    reason: str = Field(max_length=40)
    text: str = Field(max_length=80)
    amount: int = Field(sa_type=sa.BigInteger)  # minor units: 64-bit on every engine
    currency: str = Field(max_length=3)
    guest_id: str | None = Field(default=None, index=True)  # who tapped
    account_id: str | None = Field(default=None, foreign_key="account.id", index=True)
    merchant_id: str | None = Field(default=None, index=True)
    credential_id: str | None = None
    device_id: str | None = None
    event_id: str | None = None
    original_id: str | None = Field(default=None, foreign_key="ledgertransaction.id", index=True)
    items: list[dict[str, Any]] = _json(default_factory=list)
    balance_after: int | None = Field(default=None, sa_type=sa.BigInteger)
    # The terminal (device id) or "api" that owns the key, and what was asked under it.
    idempotency_scope: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=64)
    fingerprint: str = Field(max_length=64)
    actor: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(index=True)


class Posting(SQLModel, table=True):
    """One leg of a transaction; the legs of a transaction sum to zero."""

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: str = Field(foreign_key="ledgertransaction.id", index=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    amount: int = Field(sa_type=sa.BigInteger)  # minor units: 64-bit on every engine


class RegistryVersion(SQLModel, table=True):
    """One row, bumped by every change to the registry (devices, venues, guests,
    credentials, entitlements), so each process knows when its cache of them is stale."""

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_type=sa.BigInteger)


class KeyMaterialSeq(SQLModel, table=True):
    """One row: the ``seq`` of the last key-material document the hub signed (the JWKS and
    revocation list offline locks read), so every process signs a newer one than any
    before it and a lock can refuse an older list replayed to it (rollback)."""

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_type=sa.BigInteger)


class DeadLetter(SQLModel, table=True):
    """A device message the hub could not process: answered ``internal``, acknowledged and
    kept here (bytes and topic) for staff, instead of being redelivered for ever."""

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=1024)
    payload: bytes = Field(sa_type=sa.LargeBinary)
    error: str = Field(max_length=500)  # the exception's type and message, never a traceback
    received_at: datetime = _ts(index=True)
    recorded_at: datetime = _ts()
    worker: str = Field(max_length=128)  # the bridge's client id: which hub process met it


# ------------------------------------------------------------- staff and audit


class StaffRole(StrEnum):
    ADMIN = "admin"  # everything
    STAFF = "staff"  # the front desk: guests, credentials, entitlements, money
    INTEGRATOR = "integrator"  # installs venues, zones, devices and merchants
    AUDITOR = "auditor"  # reads everything, the audit log included, changes nothing


class TokenVersion(SQLModel, table=True):
    """The version every API token of a subject (``staff:<name>``, ``guest:<id>``) must
    carry: bumped by a password change, a disable, an erasure or a lost phone, so every
    older token stops at once, in every API process."""

    subject: str = Field(primary_key=True, max_length=200)
    version: int = 0


class BrokerCredential(SQLModel, table=True):
    """A broker login that was re-issued or revoked (devices' ``{venue}.{id}``, guests'
    apps' ``guest-{id}``); logins without a row are at generation 0, as first derived.
    The embedded broker follows this table; Mosquitto's files are written from it."""

    username: str = Field(primary_key=True, max_length=200)
    generation: int = 0  # part of the derived password: re-issuing stops the old one
    revoked: bool = False
    changed_at: datetime = _ts(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Failed log-ins in a row, per account (``user:<name>``) and per client address
    (``addr:<ip>``): the state behind the growing wait before the next attempt, shared by
    every API process through the database."""

    key: str = Field(primary_key=True, max_length=200)
    failures: int = 0
    last_failure_at: datetime | None = _ts(default=None)


class StaffUser(SQLModel, table=True):
    """Someone who logs in to the REST API; guests get tokens from staff instead."""

    __table_args__ = (sa.UniqueConstraint("username", name="uq_staffuser_username"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    username: str = Field(max_length=64, index=True)
    password_hash: str = Field(max_length=200)  # argon2id, see hub.security
    roles: list[str] = _json(default_factory=list)
    active: bool = True
    created_at: datetime = _ts(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """Who changed what through the API, and from where. Append-only.

    ``detail`` holds the changed fields, never secrets (no PINs, passwords or tokens).
    """

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    actor: str = Field(max_length=80, index=True)  # a username, or "guest:<id>"
    roles: list[str] = _json(default_factory=list)
    action: str = Field(max_length=64, index=True)  # e.g. "credential.update"
    target: str = Field(max_length=200, index=True)  # e.g. "credential:band-guest-01"
    detail: dict[str, Any] = _json(default_factory=dict)
    source: str = Field(max_length=64)  # the client's address, or "cli"


@sa.event.listens_for(AuditEntry, "before_update")
@sa.event.listens_for(AuditEntry, "before_delete")
def _audit_is_append_only(_mapper: Any, _conn: Any, target: AuditEntry) -> None:
    # The ORM is the hub's only way to the table: refuse edits here, whoever asks.
    raise PermissionError(f"audit entry {target.id} is append-only")


# ---------------------------------------------------------- personalization


class GuestPreferences(SQLModel, table=True):
    """What a guest likes: the room sets itself to it (with their consent)."""

    guest_id: str = Field(foreign_key="guest.id", primary_key=True)
    room_temperature_c: float | None = Field(default=None, ge=16, le=28)
    lighting_scene: str | None = Field(default=None, max_length=16)
    language: str | None = Field(default=None, max_length=16)
    dietary: list[str] = _json(default_factory=list)
    display_name: str | None = Field(default=None, max_length=80)
    heart_rate_threshold: int | None = Field(default=None, ge=100, le=220)
    updated_at: datetime = _ts(default_factory=utcnow)


class Consent(SQLModel, table=True):
    """A guest's current yes or no to one purpose; nothing of that purpose runs without yes."""

    guest_id: str = Field(foreign_key="guest.id", primary_key=True)
    purpose: str = Field(primary_key=True, max_length=20)
    granted: bool = False
    changed_at: datetime = _ts(default_factory=utcnow)


class ConsentChange(SQLModel, table=True):
    """Every change of a consent, kept for the guest to see."""

    id: int | None = Field(default=None, primary_key=True)
    guest_id: str = Field(foreign_key="guest.id", index=True)
    purpose: str = Field(max_length=20)
    granted: bool
    at: datetime = _ts(default_factory=utcnow)
    actor: str | None = Field(default=None, max_length=64)


# ---------------------------------------------------------------- automations


class AutomationRule(SQLModel, table=True):
    """An automation staff defined or changed; one with a shipped rule's id replaces it.

    ``actions`` is a list of ``{kind, target, name, params}``; see :mod:`hub.automations`.
    """

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    purpose: str = Field(max_length=20)
    trigger: str = Field(max_length=32)
    filters: dict[str, Any] = _json(default_factory=dict)
    conditions: list[dict[str, Any]] = _json(default_factory=list)
    actions: list[dict[str, Any]] = _json(default_factory=list)
    enabled: bool = True
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Wearable(SQLModel, table=True):
    """One pairing of a device a guest wears (a watch) with that guest: what the device
    reports within the pairing's window (``paired_at`` up to ``unpaired_at``, or now while
    it is open) is theirs, and health data.

    Closed pairings stay, so every reading keeps its wearer after the watch changes hands.
    A device has at most one open pairing (``unpaired_at`` null): its current wearer.
    """

    __table_args__ = (
        sa.Index("uq_wearable_open_device", "device_id", unique=True,
                 sqlite_where=sa.text("unpaired_at IS NULL"),
                 postgresql_where=sa.text("unpaired_at IS NULL")),
        sa.CheckConstraint("unpaired_at IS NULL OR unpaired_at >= paired_at",
                           name="ck_wearable_window"),
    )

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(foreign_key="device.id", index=True, max_length=64)
    guest_id: str = Field(foreign_key="guest.id", index=True)
    paired_at: datetime = _ts(default_factory=utcnow)
    unpaired_at: datetime | None = _ts(default=None)


class RunStatus(StrEnum):
    SENT = "sent"  # published to the broker
    QUEUED = "queued"  # the device was offline: sent when it comes back
    FAILED = "failed"  # could not be published after every attempt
    EXPIRED = "expired"  # queued, and stale before the device came back


class AutomationRun(SQLModel, table=True):
    """One action an automation took (or tried), kept so every worker's stats add up.

    ``overridden_at`` is set when the guest undid a command by hand within ten minutes.
    """

    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=64, index=True)
    action: str = Field(max_length=16)
    guest_id: str | None = Field(default=None, index=True)
    device_id: str | None = Field(default=None, max_length=64, index=True)
    command_id: str | None = Field(default=None, max_length=64, unique=True)
    name: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] = _json(default_factory=dict)
    # The guest's consents it was planned under; a queued command needs them still to go.
    purposes: list[str] = _json(default_factory=list)
    status: RunStatus = RunStatus.SENT
    detail: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(default_factory=utcnow)
    sent_at: datetime | None = _ts(default=None)
    overridden_at: datetime | None = _ts(default=None)


class ScheduleFiring(SQLModel, table=True):
    """A scheduled automation fired for a venue on a (venue-local) day: once, whichever
    hub worker gets there first (the primary key decides)."""

    rule_id: str = Field(primary_key=True, max_length=64)
    venue_id: str = Field(primary_key=True, max_length=64)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD, venue time
    fired_at: datetime = _ts(default_factory=utcnow)
    guests: int = 0


class JobLease(SQLModel, table=True):
    """Who runs a fleet-wide background job (retention, schedules, the command-queue
    sweep) this period: taken only once the last taker's lease has expired
    (:mod:`hub.leases`), so however many hub processes check, one of them runs it."""

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=160)
    taken_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()


class WorkerBeat(SQLModel, table=True):
    """The last word of each hub process that decides taps (``hub worker``, ``hub up``),
    every few seconds (:mod:`hub.heartbeat`): so ``hub api``, which decides none, can say
    whether the fleet is deciding."""

    name: str = Field(primary_key=True, max_length=64)  # HUB_WORKER_NAME
    host: str = Field(max_length=160)
    pid: int
    seen_at: datetime = _ts(default_factory=utcnow)
    deciding: bool
    queue_depth: int = 0
    problems: str = Field(default="", max_length=500)
