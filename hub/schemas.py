"""The REST API's request and response models (the tables stay behind the API)."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from devices.topics import ID_PATTERN
from hub.models import (
    ConsentPurpose,
    CredentialKind,
    CredentialStatus,
    DeviceKind,
    Direction,
    EntitlementKind,
    EntitlementStatus,
    ZoneKind,
)


def _within_range(value: datetime) -> datetime:
    if not 1970 <= value.year <= 2999:
        raise ValueError("dates must fall between 1970 and 2999")
    return value


# A timezone-aware instant the database can hold in UTC (year 1 or 9999 cannot shift zones).
Moment = Annotated[AwareDatetime, AfterValidator(_within_range)]
Count = Annotated[int, Field(ge=0, le=1_000_000_000_000)]

Slug = Annotated[str, Field(pattern=f"^{ID_PATTERN}$", description="Also used in MQTT topics")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
# Every id the API hands out has this shape, so a reference of another shape names nothing.
Ref = Annotated[str, Field(pattern=f"^{ID_PATTERN}$", description="The id of an existing row")]
# Names a venue may not take: the hub's own (its bridge's broker login) and the prefix of
# guests' broker logins. A device's login is ``{venue}.{device}``, so no dot in a venue.
RESERVED_VENUE_IDS = frozenset({"hub", "venuehub", "bridge", "broker", "keys", "staff"})


def reserved_venue_id(value: str) -> str | None:
    """Why ``value`` may not be a venue id (it is the hub's or a guest login's), or None."""
    if value.lower() in RESERVED_VENUE_IDS or value.lower().startswith(("guest-", "venuehub")):
        return f"{value!r} is reserved for the hub; choose another venue id"
    return None


# Reserved names are refused by the route (POST /venues), which audits the attempt: an id
# that would collide with the hub's own logins is an attack worth seeing.
VenueId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                               description="Also used in MQTT topics and broker logins: "
                               "letters, digits, '_' and '-', no dot; not hub, venuehub..., "
                               "bridge, broker, keys, staff or guest-...")]
_KEY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # as the wire contract's KeyId


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _unicode_only(cls, data: Any) -> Any:
        # JSON lets a lone surrogate in ("\\ud800"); it cannot be stored or answered as
        # UTF-8, so it is refused here, before anything is written.
        if not _encodable(data):
            raise ValueError("text must be valid Unicode (no lone surrogates)")
        return data


def _encodable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if depth > 50:
        return True  # pydantic refuses what is too deep on its own terms
    if isinstance(value, dict):
        return all(_encodable(k, depth + 1) and _encodable(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_encodable(v, depth + 1) for v in value)
    return True


class _Patch(_In):
    """A partial update: omitted fields stay; ``null`` only where a field may be empty."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self.nullable:
                raise ValueError(f"{name} may not be null")
        return self


# A credit limit, minor units: up to 2^63 - 1 (a BIGINT), zero allowed (no credit at all).
# Strict: money is an integer of minor units, never true, "100" or 9.0.
CreditLimit = Annotated[int, Field(ge=0, le=2**63 - 1, strict=True,
                                   description="Integer minor units")]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -------------------------------------------------------------------- venues


class VenueCreate(_In):
    id: VenueId
    name: Name
    timezone: str = "UTC"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    allow_plain_uid: bool = Field(
        False, description="Accept copyable credentials (a wristband's bare UID, a phone "
        "key's bare id) for entry and payment: for legacy readers only")
    folio_credit_limit: CreditLimit | None = Field(
        None, description="The most a room folio may owe, minor units, unless the folio "
        "sets its own; null: no limit")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class VenueUpdate(_Patch):
    """Rename a venue, move its clock, or close it (``enabled: false``): a closed venue's
    devices are refused at the broker and every tap and payment there is denied."""

    name: Name | None = None
    timezone: str | None = None
    enabled: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else VenueCreate._known_zone(value)


class VenuePublic(_Out):
    id: str
    name: str
    timezone: str
    currency: str
    allow_plain_uid: bool
    enabled: bool
    folio_credit_limit: int | None = None
    created_at: datetime


class VenueFolioPolicy(_In):
    """What a venue's room folios may owe by default."""

    folio_credit_limit: CreditLimit | None = Field(
        description="The most a room folio may owe, minor units, unless the folio sets its "
        "own (PATCH /accounts/{id}); null: no limit")


class VenuePolicy(_In):
    """A venue's security policy."""

    allow_plain_uid: bool = Field(
        description="Accept a wristband's bare UID or a phone key's bare id (copyable); a "
        "secure band's UID or a phone key that has a signed form is refused regardless")


# --------------------------------------------------------------------- zones


class ZoneCreate(_In):
    id: Slug
    venue_id: Ref
    name: Name
    kind: ZoneKind = ZoneKind.AREA
    capacity: Count | None = None
    anti_passback: bool = False


class ZoneUpdate(_Patch):
    nullable = frozenset({"capacity"})
    name: Name | None = None
    capacity: Count | None = None
    anti_passback: bool | None = None
    occupancy: Annotated[Count, Field(description="Manual correction of the count")] | None = None


class ZonePublic(_Out):
    id: str
    venue_id: str
    name: str
    kind: ZoneKind
    capacity: int | None
    anti_passback: bool
    occupancy: int


# ------------------------------------------------------------------- devices


class DeviceCreate(_In):
    id: Slug
    venue_id: Ref
    kind: DeviceKind
    name: Name
    zone_id: Ref | None = None
    direction: Direction | None = None
    merchant_id: Ref | None = None
    enabled: bool = True


class DevicePolicy(_In):
    """One reader's security policy, over its venue's."""

    allow_plain_uid: bool | None = Field(
        description="Accept a wristband's bare UID or a phone key's bare id at this reader "
        "(a legacy reader), refuse them (a strict one), or null: as its venue says")


class DeviceUpdate(_Patch):
    nullable = frozenset({"zone_id", "direction", "merchant_id"})
    name: Name | None = None
    zone_id: Ref | None = None
    direction: Direction | None = None
    merchant_id: Ref | None = None
    enabled: bool | None = None


class DevicePublic(_Out):
    id: str
    venue_id: str
    kind: DeviceKind
    name: str
    zone_id: str | None
    direction: Direction | None
    merchant_id: str | None
    enabled: bool
    allow_plain_uid: bool | None = None
    online: bool
    last_seen: datetime | None
    battery_pct: int | None
    firmware: str | None


# -------------------------------------------------------------------- guests


class GuestCreate(_In):
    id: Slug | None = Field(default=None, description="Generated when absent")
    name: Name
    display_name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None


class GuestUpdate(_Patch):
    nullable = frozenset({"display_name", "email"})
    name: Name | None = None
    display_name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None


class GuestPublic(_Out):
    id: str
    name: str
    display_name: str | None
    email: str | None
    created_at: datetime


# --------------------------------------------------------------- credentials


class CredentialCreate(_In):
    guest_id: Ref
    kind: CredentialKind
    identifier: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    label: Annotated[str, Field(max_length=80)] | None = None

    @model_validator(mode="after")
    def _check_identifier(self) -> Self:
        if self.kind is CredentialKind.PHONE_KEY and self.identifier is not None \
                and not _KEY_ID.fullmatch(self.identifier):
            raise ValueError("a phone key id may hold letters, digits and _ . : - only")
        if self.kind is CredentialKind.WRISTBAND:
            uid = self.identifier or ""
            if not (8 <= len(uid) <= 20 and len(uid) % 2 == 0
                    and all(c in "0123456789abcdefABCDEF" for c in uid)):
                raise ValueError("a wristband needs identifier = its tag UID, 4-10 bytes in hex")
            self.identifier = uid.upper()
        return self


class CredentialUpdate(_Patch):
    nullable = frozenset({"label"})
    status: CredentialStatus | None = None
    label: Annotated[str, Field(max_length=80)] | None = None


class CredentialPublic(_Out):
    id: str
    guest_id: str
    kind: CredentialKind
    identifier: str
    status: CredentialStatus
    label: str | None
    created_at: datetime
    status_changed_at: datetime
    sun: bool = Field(description="A secure (NTAG 424 DNA) band: it must present SUN data")
    key_jti: str | None = Field(description="The signed phone key issued for it, if any")

    @computed_field(  # type: ignore[prop-decorator]
        description="False for a plain-UID band or a bare phone-key id: they can be copied")
    @property
    def secure(self) -> bool:
        return self.sun or self.key_jti is not None


# -------------------------------------------------------------- entitlements


class ScheduleWindow(_In):
    days: Annotated[list[Annotated[int, Field(ge=0, le=6)]], Field(min_length=1)] = Field(
        description="Weekdays, Monday = 0")
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError("a schedule window must end after it starts")
        return self


class EntitlementCreate(_In):
    guest_id: Ref
    kind: EntitlementKind
    zone_ids: Annotated[list[Ref], Field(min_length=1)]
    valid_from: Moment
    valid_until: Moment
    schedule: list[ScheduleWindow] | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.schedule and self.kind is not EntitlementKind.STAFF:
            raise ValueError("only staff entitlements have a weekly schedule")
        return self


class EntitlementUpdate(_Patch):
    status: EntitlementStatus | None = None
    valid_from: Moment | None = None
    valid_until: Moment | None = None


class EntitlementPublic(_Out):
    id: str
    guest_id: str
    kind: EntitlementKind
    zone_ids: list[str]
    valid_from: datetime
    valid_until: datetime
    schedule: list[ScheduleWindow] | None
    status: EntitlementStatus


# -------------------------------------------------------------------- events


class EventPublic(_Out):
    id: int
    device_id: str
    venue_id: str
    event_id: str
    kind: str
    received_at: datetime
    device_ts: datetime | None
    credential_kind: str | None
    credential_ref: str | None
    credential_id: str | None
    guest_id: str | None
    zone_id: str | None
    direction: str | None
    outcome: Literal["allow", "deny"] | str
    reason: str
    text: str
    detail: str | None = Field(
        None, description="Why the credential was not trusted, for staff: the check that "
        "failed, e.g. 'proof_wrong_challenge: ...' (never shown on the reader)")
    decided_at: datetime


class EventPage(BaseModel):
    items: list[EventPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")


class DeadLetterPublic(BaseModel):
    id: int
    topic: str
    error: str
    received_at: datetime
    recorded_at: datetime
    worker: str = Field(description="HUB_WORKER_NAME of the hub process that met it")
    payload_bytes: int
    payload_sha256: str
    payload_preview: str = Field(
        description="The first 4 KiB as text (undecodable bytes escaped, PINs masked)")


class DeadLetterPage(BaseModel):
    items: list[DeadLetterPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")


class WorkerHealth(BaseModel):
    """A tap-deciding process as its last heartbeat told (``hub api``'s health)."""

    name: str  # HUB_WORKER_NAME; not its host nor pid: /health is public
    deciding: bool
    seen_s_ago: float = Field(description="Seconds since its last heartbeat (every 5 s)")
    queue_depth: int
    problems: str


class Health(BaseModel):
    """Are taps being decided? 503 with the reasons when they are not."""

    status: Literal["ok", "degraded"]
    mqtt: str
    mqtt_connected: bool
    database: str
    deciding: bool | None = Field(
        default=None, description="Taps are being decided (null: no bridge in this process)")
    problems: list[str] = Field(default_factory=list, description="Why taps are not decided")
    worker_alive: bool | None = None
    worker_deaths: int | None = None
    queue_depth: int | None = None
    oldest_waiting_ms: float | None = Field(
        default=None, description="Age of the oldest message not yet answered")
    last_decision_ms_ago: float | None = None
    tap_deadline_ms: int | None = None
    dead_letters: int | None = Field(default=None, description="Since this process started")
    workers: list[WorkerHealth] | None = Field(
        default=None, description="hub api: every worker that ever reported, newest state")


# ------------------------------------------------------------------ payments

MinorUnits = Annotated[int, Field(gt=0, le=100_000_000, description="Integer minor units")]
Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
                           description="Idempotency key: the same key never moves money twice")]


class MerchantCreate(_In):
    id: Slug
    venue_id: Ref
    name: Name
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class MerchantPublic(_Out):
    id: str
    venue_id: str
    name: str
    currency: str


class SpendingPolicyUpdate(_In):
    payment_enabled: bool = True
    daily_limit: Count | None = None
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")] | None = Field(
        default=None, description="New PIN (stored as an argon2 hash); omit to keep the old one")
    pin_threshold: Count | None = Field(
        default=None, description="Payments above this amount need the PIN")
    payer_guest_id: Ref | None = Field(
        default=None, description="The party lead who pays for this guest; default: themself")
    reset_pin_lock: bool = Field(default=False, description="Clear wrong-PIN locks")


class SpendingPolicyPublic(_Out):
    guest_id: str
    payer_guest_id: str
    payment_enabled: bool
    daily_limit: int | None
    pin_threshold: int | None
    has_pin: bool
    pin_failures: int = Field(0, description="Wrong PINs in a row, on any of the guest's "
                              "bands and keys")
    pin_locked: bool = Field(False, description="Payments locked until staff lift it")


class AccountCreate(_In):
    guest_id: Ref
    venue_id: Ref
    kind: Literal["wallet", "folio"]
    stay_id: Ref | None = Field(default=None, description="The room entitlement of a folio")
    credit_limit: CreditLimit | None = Field(
        default=None, description="A folio's own credit limit (minor units); null: the "
        "venue's folio_credit_limit")


class AccountUpdate(_Patch):
    """Staff change what a folio may owe; omitted fields stay."""

    nullable: ClassVar[frozenset[str]] = frozenset({"credit_limit"})
    credit_limit: CreditLimit | None = Field(
        default=None, description="The folio's own credit limit (minor units); null: the "
        "venue's folio_credit_limit again")


class AccountPublic(_Out):
    id: str
    venue_id: str
    kind: str
    currency: str
    guest_id: str | None
    merchant_id: str | None
    stay_id: str | None
    balance: int
    credit_limit: int | None = None
    open: bool
    created_at: datetime
    closed_at: datetime | None


class TopUp(_In):
    amount: MinorUnits
    idempotency_key: Key
    method: Literal["card", "cash"] = "card"


class RefundCreate(_In):
    amount: MinorUnits | None = Field(default=None, description="Omit for what is left")
    idempotency_key: Key
    reason: Annotated[str, Field(max_length=200)] | None = None


class Settlement(_In):
    idempotency_key: Key


class TransactionPublic(_Out):
    id: str
    venue_id: str
    type: str
    approved: bool
    reason: str
    text: str
    amount: int
    currency: str
    guest_id: str | None
    account_id: str | None
    merchant_id: str | None
    device_id: str | None
    original_id: str | None
    items: list[dict[str, object]]
    balance_after: int | None
    idempotency_key: str
    actor: str | None
    created_at: datetime


class StatementLine(BaseModel):
    transaction_id: str
    type: str
    at: datetime
    merchant_id: str | None
    amount: int = Field(description="Signed: what this line did to the account")
    balance: int = Field(description="Running balance after the line")


class Statement(BaseModel):
    account: AccountPublic
    lines: list[StatementLine]
    total_charges: int
    total_refunds: int


# ---------------------------------------------------------------- phone keys


class PhoneKeyRequest(_In):
    phone_jwk: dict[str, str] = Field(
        description="The phone's own public key (EC P-256 JWK): the key is bound to it")
    venue: Slug | None = Field(
        default=None,
        description="The venue the key opens doors at (a key is signed for one venue). "
                    "Default: the venue where the guest's current stays and tickets hold "
                    "the most zones")


class PhoneKeyIssued(BaseModel):
    token: str = Field(description="ES256 JWT; present it with a proof for the lock's challenge")
    jti: str
    kid: str
    zones: list[str]
    nbf: datetime
    exp: datetime


# ------------------------------------------------------------------- auth


class StaffUserPublic(_Out):
    username: str
    roles: list[str]
    active: bool
    created_at: datetime


class StaffUserChange(_In):
    """At least one of: enable or disable, a new password. Either voids the user's tokens."""

    active: bool | None = None
    password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.active is None and self.password is None:
            raise ValueError("give active, password or both")
        return self


class TokenRequest(_In):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    # Bounded: argon2 hashes what it is given, and a megabyte password is a denial of service.
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class DeviceBrokerLogin(BaseModel):
    """A device's login to the venue's MQTT broker, re-issued: the previous one stops."""

    username: str
    password: str
    generation: int = Field(description="How many times this login was re-issued")


class BrokerLogin(BaseModel):
    """A guest app's login to the venue's MQTT broker: it reads that guest's
    notifications (receipts, offers, notices) and nothing else."""

    username: str
    password: str
    topic: str = Field(description="The one topic this login may subscribe to")


class TokenIssued(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")
    roles: list[str]


class AuditEntryPublic(_Out):
    id: int
    at: datetime
    actor: str = Field(description="A username, or guest:<id>")
    roles: list[str]
    action: str
    target: str
    detail: dict[str, object]
    source: str = Field(description="The client's address, or cli")


# ------------------------------------------------ personalization and privacy

LightingScene = Literal["warm", "bright", "relax", "off"]
Diet = Literal["vegetarian", "vegan", "pescatarian", "gluten_free", "lactose_free", "halal",
               "kosher", "nut_allergy"]
# BCP 47-ish: a 2-3 letter language, then subtags (region, script, variant), e.g. pt-BR.
_LANGUAGE = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"


class PreferencesUpdate(_In):
    """The guest's whole profile (PUT replaces it: an omitted field is cleared)."""

    room_temperature_c: Annotated[float, Field(ge=16, le=28, allow_inf_nan=False)] | None = None
    lighting_scene: LightingScene | None = None
    language: Annotated[str, Field(max_length=16, pattern=_LANGUAGE)] | None = None
    dietary: Annotated[list[Diet], Field(max_length=16)] = Field(default_factory=list)
    display_name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    heart_rate_threshold: Annotated[int, Field(ge=100, le=220)] | None = Field(
        default=None, description="Beats per minute above which staff are alerted (health)")

    @field_validator("dietary")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class PreferencesPublic(BaseModel):
    guest_id: str
    room_temperature_c: float | None = None
    lighting_scene: str | None = None
    language: str | None = None
    dietary: list[str] = Field(default_factory=list)
    display_name: str | None = None
    heart_rate_threshold: int | None = None
    updated_at: datetime | None = Field(default=None, description="None: never set")


class ConsentUpdate(_In):
    # Strict: consent is an explicit true or false, never "yes", 1 or "on".
    granted: Annotated[bool, Field(strict=True)]


class ConsentPublic(BaseModel):
    purpose: ConsentPurpose
    granted: bool = Field(description="False until the guest says yes")
    changed_at: datetime | None = Field(description="None: never asked")


class ConsentChangePublic(_Out):
    purpose: str
    granted: bool
    at: datetime
    actor: str | None = Field(description="A username, or guest:<id>")


class ConsentState(BaseModel):
    guest_id: str
    consents: list[ConsentPublic] = Field(description="Every purpose, granted or not")
    history: list[ConsentChangePublic] = Field(description="Every change, oldest first")


class JourneyEvent(EventPublic):
    guest_name: str | None
    transaction_id: str | None


class PresencePublic(_Out):
    zone_id: str
    inside: bool
    updated_at: datetime


class DailySpendPublic(_Out):
    day: str
    spent: int


class WearerSet(_In):
    guest_id: Slug = Field(description="The guest who wears the device")


class WearablePublic(BaseModel):
    """A pairing of a wearable with its guest; open while ``unpaired_at`` is null."""

    device_id: str
    guest_id: str
    paired_at: datetime
    unpaired_at: datetime | None = None


class WearableReading(BaseModel):
    device_id: str
    ts: datetime
    received_at: datetime
    data: dict[str, Any]


class AutomationRunRecord(BaseModel):
    rule_id: str
    action: str
    device_id: str | None
    name: str | None
    params: dict[str, Any]
    status: str
    created_at: datetime
    sent_at: datetime | None
    overridden_at: datetime | None


class GuestExport(BaseModel):
    """Everything the hub holds about one guest; never a secret (no PIN hash, no key)."""

    exported_at: datetime
    guest: GuestPublic
    preferences: PreferencesPublic | None
    consent: ConsentState
    spending_policy: SpendingPolicyPublic | None = Field(description="has_pin, never the PIN")
    credentials: list[CredentialPublic]
    entitlements: list[EntitlementPublic]
    accounts: list[AccountPublic] = Field(description="Accounts the guest owns")
    transactions: list[TransactionPublic] = Field(
        description="Where the guest tapped, or one of their accounts paid")
    events: list[JourneyEvent] = Field(description="The journey, oldest first")
    presence: list[PresencePublic]
    daily_spend: list[DailySpendPublic]
    wearables: list[WearablePublic] = Field(
        description="The guest's pairings with wearables (a watch), current and ended")
    wearable_readings: list[WearableReading] = Field(
        description="What the guest's wearables reported while paired to them (health data)")
    automation_runs: list[AutomationRunRecord] = Field(
        description="What automations did for or about the guest, oldest first")


class ErasureReport(BaseModel):
    guest_id: str
    pseudonym: str = Field(description="The guest's name from now on: erased-<pseudonym>")
    credentials_revoked: int
    events_scrubbed: int
    preferences_deleted: bool
    consents_deleted: int
    wearables_unpaired: int = Field(
        0, description="The guest's pairings with wearables (current and ended), removed")
    readings_deleted: int = Field(0, description="Their wearables' readings, deleted")
    automation_runs_scrubbed: int = Field(
        0, description="Kept for the rules' statistics, without the guest or parameters")
