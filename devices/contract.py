"""The wire contract: one strict, versioned model per message kind.

Payloads are UTF-8 JSON objects with ``v`` (the contract version) and a
discriminating ``kind``. Correlation lives in the payload (``event_id``), not
in MQTT 5 properties, so the contract works over MQTT 3.1.1 as well as 5.

:func:`parse_event` is the only way a device message enters the hub; the
device side reads the hub's messages with :func:`parse_reply`, a guest's app
its notifications with :func:`parse_notification` and a staff console its
alerts with :func:`parse_staff_alert`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

VERSION: Final = 1
JsonDict = dict[str, Any]  # a JSON Schema, as pydantic's json_schema_extra hooks get one
MAX_PAYLOAD_BYTES = 64 * 1024
# The deepest message a device sends (a payment's line items) nests three levels; far
# deeper is an attack on the parser's stack, refused before pydantic sees it.
MAX_DEPTH: Final = 32
MAX_DETAIL_CHARS: Final = 500

_EVENT_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
EventId = Annotated[str, Field(pattern=f"^{_EVENT_ID}$")]
# Every integer the parser reads is a signed 64-bit one (I-JSON); a longer one is refused
# before any model sees it. The bounds are here too so the JSON Schema says so.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
# Free text from a device: the parser refuses a NUL character in any string (no text of the
# contract holds one, and PostgreSQL cannot store it); the pattern says so in the schema.
NO_NUL: Final = r"^[^\x00]*$"
# Devices' clocks: any offset, but a moment this side of the year 2200 and after 2000,
# so converting it to UTC, storing it and comparing it can never overflow.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None
    if not EARLIEST <= in_utc < LATEST:
        raise ValueError(f"time out of range: {EARLIEST.year} to {LATEST.year - 1} only")
    return value


def _timestamp_pattern() -> str:
    """RFC 3339 with an offset, from 2000-01-01T00:00:00Z up to (not including) 2200 UTC.

    The schema's way of saying what ``_plausible`` checks: the years between are any
    offset; the first day of 2000 and the last of 2199 only with offsets that stay inside.
    "T" and "Z" may be lower case (RFC 3339, 5.6), as the parser takes them.
    """
    day, month = r"(?:0[1-9]|[12][0-9]|3[01])", r"(?:0[1-9]|1[0-2])"
    time = r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    numeric = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    offset = rf"(?:[Zz]|[+-]{numeric})"
    years = r"(?:200[1-9]|20[1-9][0-9]|21[0-8][0-9]|219[0-8])"
    forms = (
        rf"{years}-{month}-{day}{time}{offset}",
        rf"2000-(?:0[2-9]|1[0-2])-{day}{time}{offset}",
        rf"2000-01-(?:0[2-9]|[12][0-9]|3[01]){time}{offset}",
        rf"2000-01-01{time}(?:[Zz]|-{numeric}|\+00:00)",  # not before 2000 in UTC
        rf"2199-(?:0[1-9]|1[01])-{day}{time}{offset}",
        rf"2199-12-(?:0[1-9]|[12][0-9]|30){time}{offset}",
        rf"2199-12-31{time}(?:[Zz]|\+{numeric}|-00:00)",  # not 2200 in UTC
    )
    return "^(?:" + "|".join(forms) + ")$"


TIMESTAMP_PATTERN: Final = _timestamp_pattern()
# The schema is stricter than the parser in form (pydantic also takes a space for the
# "T", "+0200"), never in range: what the schema accepts, the parser accepts.
DeviceTime = Annotated[
    AwareDatetime, AfterValidator(_plausible),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
Uid = Annotated[str, Field(pattern=r"^(?:[0-9A-Fa-f]{2}){4,10}$", description="NFC tag UID, hex")]
KeyId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _required_on_the_wire(name: str) -> Callable[[JsonDict, type], None]:
    """A JSON Schema hook: ``name`` is required in JSON, though Python may leave it out."""
    def hook(schema: JsonDict, _cls: type) -> None:
        required = schema.get("required")
        names = list(required) if isinstance(required, list) else []
        schema["required"] = [name, *(n for n in names if n != name)]
    return hook


def _present_in_json(model: BaseModel, info: ValidationInfo, name: str) -> None:
    # Only JSON from the wire: the models default it, so code may leave it out. After
    # validation, not before: a "before" hook would hand strict mode Python values, and
    # strict mode takes a string for a datetime only from JSON.
    if info.mode == "json" and name not in model.model_fields_set:
        raise ValueError(f"{name!r} is required")


class _Message(BaseModel):
    # Strict: "50" is not 50 and a number is not a timestamp; devices get told, not guessed at.
    # ``kind`` tells the messages apart: every reader picks the model by it, so JSON must
    # carry it (a Python caller may leave it to the default).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              json_schema_extra=_required_on_the_wire("kind"))

    v: Literal[1] = VERSION

    @field_validator("v", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: object) -> object:
        # JSON true equals 1 in Python, and Literal[1] takes it; 1.0 too. Neither is version 1.
        if type(value) is not int:
            raise ValueError(f"the contract version is the number {VERSION}")
        return value

    @model_validator(mode="after")
    def _kind_in_json(self, info: ValidationInfo) -> _Message:
        _present_in_json(self, info, "kind")
        return self


class _Credential(BaseModel):
    # As ``kind`` for messages: ``type`` picks the credential, so JSON must carry it.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              json_schema_extra=_required_on_the_wire("type"))

    @model_validator(mode="after")
    def _type_in_json(self, info: ValidationInfo) -> _Credential:
        _present_in_json(self, info, "type")
        return self


# ---------------------------------------------------------------- credentials


class WristbandCredential(_Credential):
    """A wristband (or card) read by NFC: the tag's UID."""

    type: Literal["wristband"] = "wristband"
    uid: Uid


def _phone_key_forms(schema: JsonDict, cls: type) -> None:
    """The schema of ``_one_form``: a key id and no token, or a token with its challenge."""
    _required_on_the_wire("type")(schema, cls)
    schema["oneOf"] = [
        {"required": ["key_id"], "properties": {"key_id": {"type": "string"},
                                                "token": {"type": "null"}}},
        {"required": ["token", "challenge"],
         "properties": {"token": {"type": "string"}, "challenge": {"type": "string"},
                        "key_id": {"type": "null"}}},
    ]


class PhoneKeyCredential(_Credential):
    """A phone key presented over BLE.

    Signed form: ``token`` (the hub-issued ES256 JWT), ``challenge`` (the fresh nonce
    the lock gave the phone) and ``proof`` (a JWS by the phone's own key over that
    challenge, this lock and the key's jti; see devices/phone_key.py). Legacy form:
    a bare ``key_id``, accepted only where the venue allows insecure credentials.
    """

    model_config = ConfigDict(json_schema_extra=_phone_key_forms)
    type: Literal["phone_key"] = "phone_key"
    key_id: KeyId | None = None
    token: Annotated[str, Field(min_length=1, max_length=8192, pattern=NO_NUL)] | None = None
    challenge: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")] | None = None
    # Optional in the signed form: a token and challenge without a proof is judged (forged,
    # and recorded against the key it names), not refused as malformed.
    proof: Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_NUL)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PhoneKeyCredential:
        if (self.key_id is None) == (self.token is None):
            raise ValueError("a phone key carries either key_id or token (with its proof)")
        if self.token is not None and self.challenge is None:
            raise ValueError("a signed phone key needs the lock's challenge")
        return self


class WristbandSunCredential(_Credential):
    """A secure wristband (NTAG 424 DNA): the SUN data the tag emitted on this read.

    ``picc`` is the encrypted PICC data (UID and read counter), ``cmac`` the
    truncated AES-CMAC over it (NXP AN12196); the hub decrypts and verifies both.
    """

    type: Literal["wristband_sun"] = "wristband_sun"
    picc: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{32}$")]
    cmac: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{16}$")]


Credential = Annotated[WristbandCredential | WristbandSunCredential | PhoneKeyCredential,
                       Field(discriminator="type")]


# ------------------------------------------------------------ device -> hub


class TapEvent(_Message):
    """A credential presented at a reader (gate, door lock, POS, kiosk)."""

    kind: Literal["tap"] = "tap"
    event_id: EventId
    ts: DeviceTime
    credential: Credential
    direction: Literal["in", "out"] | None = Field(
        default=None, description="For readers that serve both ways; else the device's own."
    )


class HeartbeatEvent(_Message):
    """A device saying it is alive, with its health."""

    kind: Literal["heartbeat"] = "heartbeat"
    event_id: EventId
    ts: DeviceTime
    battery_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    firmware: Annotated[str, Field(max_length=64, pattern=NO_NUL)] | None = None
    interval_s: Annotated[int, Field(ge=1, le=86_400)] | None = None


# A number (an integer of at most 64 bits), a string or a boolean. JSON Schema cannot tell
# 1e20 from 100000000000000000000 (the parser takes the first, a float, and refuses the
# second, an integer past 64 bits): the schema bounds every number, a little stricter.
_READING_SCHEMA: Final[JsonDict] = {"anyOf": [
    {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX},
    {"type": "string", "pattern": NO_NUL},
    {"type": "boolean"},
]}
Reading = Annotated[float | int | str | bool, WithJsonSchema(_READING_SCHEMA)]


class TelemetryEvent(_Message):
    """Readings of an appliance (thermostat, light, watch ...)."""

    kind: Literal["telemetry"] = "telemetry"
    event_id: EventId
    ts: DeviceTime
    # The schema by hand: pydantic writes a key pattern as patternProperties, which lets
    # any other key through unchecked.
    readings: Annotated[dict[Annotated[str, Field(max_length=64)], Reading],
                        Field(max_length=64),
                        WithJsonSchema({"type": "object", "maxProperties": 64,
                                        "propertyNames": {"maxLength": 64, "pattern": NO_NUL},
                                        "additionalProperties": _READING_SCHEMA})]


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
RuleId = Annotated[str, Field(min_length=1, max_length=64, description="The automation's id")]
ShortId = Annotated[str, Field(min_length=1, max_length=64)]
MinorUnits = Annotated[int, Field(gt=0, le=INT64_MAX,
                                   description="Integer minor units (cents), never floats")]
IdempotencyKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class LineItem(BaseModel):
    """One line of a purchase, for the receipt."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    sku: Annotated[str, Field(max_length=64, pattern=NO_NUL)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=80, pattern=NO_NUL)]
    quantity: Annotated[int, Field(ge=1, le=999)] = 1
    unit_amount: Annotated[int, Field(ge=0, le=INT64_MAX)]


class PaymentRequest(_Message):
    """A point-of-sale terminal asking to charge the tapped credential.

    ``idempotency_key`` is the terminal's: the same key always gets the same
    decision and moves money at most once, whatever the network redelivers.
    """

    kind: Literal["payment"] = "payment"
    event_id: EventId
    ts: DeviceTime
    credential: Credential
    amount: MinorUnits
    currency: Currency
    merchant_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    idempotency_key: IdempotencyKey
    items: Annotated[list[LineItem], Field(max_length=100)] = Field(default_factory=list)
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")] | None = None
    account: Literal["auto", "wallet", "folio"] = "auto"

    @model_validator(mode="after")
    def _items_add_up(self) -> PaymentRequest:
        if self.items and sum(i.quantity * i.unit_amount for i in self.items) != self.amount:
            raise ValueError("the line items do not add up to the amount")
        return self


def _evidence_schema(schema: JsonDict, cls: type) -> None:
    """The schema of ``_evidence_of_its_kind``: the credential's type fits credential_kind."""
    _required_on_the_wire("kind")(schema, cls)

    def of(kind: str, types: list[str]) -> JsonDict:
        return {"properties": {"credential_kind": {"const": kind}, "credential": {"anyOf": [
            {"type": "null"}, {"properties": {"type": {"enum": types}}}]}}}

    schema["anyOf"] = [of("phone_key", ["phone_key"]),
                       of("wristband", ["wristband", "wristband_sun"])]


class OfflineEntry(_Message):
    """A lock's record of a tap it decided alone while the hub was out of reach.

    Uploaded when the connection returns, under the tap's own ``event_id``, so a
    record sent twice is merged into the journey once. Evidence, not an order: the
    hub names a guest only from ``credential``, the proof the lock saw, verified again.
    """

    model_config = ConfigDict(json_schema_extra=_evidence_schema)
    kind: Literal["offline_entry"] = "offline_entry"
    event_id: EventId
    ts: DeviceTime = Field(description="When the lock decided")
    credential_kind: Literal["phone_key", "wristband"]
    credential_ref: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)] = Field(
        description="The phone key's jti, or the wristband's UID")
    credential_id: Annotated[str, Field(max_length=64, pattern=NO_NUL)] | None = None
    guest_id: Annotated[str, Field(max_length=64, pattern=NO_NUL)] | None = None
    outcome: Literal["allow", "deny"]
    reason: Annotated[str, Field(min_length=1, max_length=40, pattern=NO_NUL)]
    credential: Credential | None = Field(
        default=None,
        description="The credential as the lock saw it: the signed phone key with the "
                    "lock's challenge and the phone's proof, or the band's SUN data. "
                    "Without it the entry is the lock's word alone, and names no guest")

    @model_validator(mode="after")
    def _evidence_of_its_kind(self) -> OfflineEntry:
        if self.credential is not None and \
                self.credential.type.startswith("wristband") != (
                    self.credential_kind == "wristband"):
            raise ValueError(f"a {self.credential.type} credential in a "
                             f"{self.credential_kind} entry")
        return self


DeviceEvent = Annotated[TapEvent | HeartbeatEvent | TelemetryEvent | PaymentRequest | OfflineEntry,
                        Field(discriminator="kind")]


class DeviceStatus(_Message):
    """Retained on the status topic; the device's last will publishes ``offline``."""

    kind: Literal["status"] = "status"
    state: Literal["online", "offline"]


# ------------------------------------------------------------ hub -> device


class EntryReason(StrEnum):
    """Why an entry was allowed or denied; stable, machine-readable."""

    OK = "ok"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_DISABLED = "device_disabled"
    DEVICE_NOT_A_READER = "device_not_a_reader"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CREDENTIAL_LOST = "credential_lost"
    CREDENTIAL_SUSPENDED = "credential_suspended"
    CREDENTIAL_REVOKED = "credential_revoked"
    NO_ENTITLEMENT = "no_entitlement"
    WRONG_ZONE = "wrong_zone"
    OUTSIDE_VALIDITY = "outside_validity"
    OUTSIDE_SCHEDULE = "outside_schedule"
    ANTI_PASSBACK = "anti_passback"
    ZONE_FULL = "zone_full"
    CREDENTIAL_FORGED = "credential_forged"
    CREDENTIAL_REPLAYED = "credential_replayed"
    INSECURE_CREDENTIAL = "insecure_credential"
    # The tap waited past the hub's deadline: nothing moved, the reader asks to tap again.
    TOO_LATE = "too_late"


class Decision(_Message):
    """The hub's answer to a tap, sent to the device's decisions topic."""

    kind: Literal["decision"] = "decision"
    event_id: EventId
    action: Literal["entry"] = "entry"
    outcome: Literal["allow", "deny"]
    reason: EntryReason
    text: Annotated[str, Field(max_length=80, description="Short text for the reader's display")]
    guest_name: str | None = None
    zone_id: str | None = None
    decided_at: AwareDatetime


class PaymentReason(StrEnum):
    """Why a payment was approved or declined; stable, machine-readable."""

    OK = "ok"
    DEVICE_DISABLED = "device_disabled"
    DEVICE_NOT_A_TERMINAL = "device_not_a_terminal"
    UNKNOWN_MERCHANT = "unknown_merchant"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CREDENTIAL_FORGED = "credential_forged"
    CREDENTIAL_REPLAYED = "credential_replayed"
    INSECURE_CREDENTIAL = "insecure_credential"
    CREDENTIAL_LOST = "credential_lost"
    CREDENTIAL_SUSPENDED = "credential_suspended"
    CREDENTIAL_REVOKED = "credential_revoked"
    # A signed phone key presented before its start or after its end.
    OUTSIDE_VALIDITY = "outside_validity"
    PAYMENT_DISABLED = "payment_disabled"
    NO_ACCOUNT = "no_account"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_TOO_LARGE = "amount_too_large"
    PIN_REQUIRED = "pin_required"
    PIN_WRONG = "pin_wrong"
    PIN_LOCKED = "pin_locked"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    # A room folio would owe more than its credit limit (the stay's, else the venue's).
    CREDIT_LIMIT_EXCEEDED = "credit_limit_exceeded"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    # The request waited past the hub's deadline: nothing was charged; retry with a new key.
    TOO_LATE = "too_late"


class PaymentDecision(_Message):
    """The hub's answer to a payment request, sent only once the money movement is durable."""

    kind: Literal["payment_decision"] = "payment_decision"
    event_id: EventId
    idempotency_key: IdempotencyKey
    outcome: Literal["approve", "decline"]
    reason: PaymentReason
    text: Annotated[str, Field(max_length=80)]
    amount: Int64
    currency: Currency
    transaction_id: str | None = None
    account: Literal["wallet", "folio"] | None = None
    balance_after: Int64 | None = Field(
        default=None, description="Wallet balance, minor units: only when the wallet's own "
        "guest paid (never the party lead's balance, shown to a member)")
    decided_at: AwareDatetime


class Receipt(_Message):
    """Sent to the guest's notifications topic the moment money moves."""

    kind: Literal["receipt"] = "receipt"
    transaction_id: str
    type: Literal["charge", "refund", "topup", "settlement"]
    guest_id: str = Field(description="The guest this receipt is addressed to")
    spent_by: str | None = Field(default=None, description="The guest who tapped, if another")
    merchant_id: str | None = None
    merchant_name: str | None = None
    items: list[LineItem] = Field(default_factory=list)
    amount: Int64
    currency: Currency
    account: Literal["wallet", "folio"]
    balance_after: Int64 | None = Field(
        default=None, description="The account's balance afterwards, minor units; only on "
        "the receipt of the account's own guest (a party member's omits the lead's)")
    at: AwareDatetime


class GuestNotice(_Message):
    """News for one guest from an automation, on the guest's notifications topic.

    ``kind`` is ``offer`` (an automation's offer) or ``notice`` (any other news for
    the guest). Whatever else the automation's action gave goes to ``details``.
    """

    kind: Literal["offer", "notice"] = "notice"
    notice_id: EventId = Field(description="A fresh id per notice: show a notice_id once")
    rule: RuleId
    at: AwareDatetime
    text: Annotated[str, Field(min_length=1, max_length=500)]
    offer_id: ShortId | None = None
    merchant_id: ShortId | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="The action's other parameters, as JSON")


GuestNotification = Annotated[Receipt | GuestNotice, Field(discriminator="kind")]


class Command(_Message):
    """An instruction to a device (set a thermostat, show a greeting ...)."""

    kind: Literal["command"] = "command"
    command_id: EventId
    name: Annotated[str, Field(min_length=1, max_length=64)]
    params: dict[str, Any] = Field(default_factory=dict)
    issued_at: AwareDatetime


class ErrorCode(StrEnum):
    """Why the hub refused a message; sent on the device's errors topic."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_VERSION = "unsupported_version"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TOPIC = "unknown_topic"
    # The device used this event id before for another kind of message, or for a tap or
    # report that said something else (another credential or direction, other readings).
    EVENT_ID_CONFLICT = "event_id_conflict"
    # An offline entry the device could not have decided: not a door lock with a zone,
    # a time ahead of the hub's clock, or a credential that does not match its reference.
    OFFLINE_ENTRY_REFUSED = "offline_entry_refused"
    INTERNAL = "internal"


class ErrorMessage(_Message):
    """A refusal of a device message, with the event id when it could be read.

    Its text is made encodable on the way in (lone surrogates escaped, the detail cut to
    500 characters): a refusal echoes what the device sent, and must go out whatever that was.
    """

    kind: Literal["error"] = "error"
    code: ErrorCode
    detail: Annotated[str, Field(max_length=MAX_DETAIL_CHARS)]
    event_id: str | None = None
    topic: str

    @field_validator("detail", mode="before")
    @classmethod
    def _short_detail(cls, value: object) -> object:
        return _encodable(value)[:MAX_DETAIL_CHARS] if isinstance(value, str) else value

    @field_validator("event_id", "topic", mode="before")
    @classmethod
    def _encodable_text(cls, value: object) -> object:
        return _encodable(value) if isinstance(value, str) else value


HubReply = Annotated[Decision | PaymentDecision | ErrorMessage, Field(discriminator="kind")]


# ------------------------------------------------------------- hub -> staff


Severity = Literal["info", "warning", "urgent"]


class StaffAlert(_Message):
    """An alert for the venue's staff consoles, on the venue's staff alerts topic.

    ``rule`` is the automation that raised it; what else the automation's action gave
    (a guest's preferences, a reading ...) goes to ``details``.
    """

    kind: Literal["alert"] = "alert"
    alert_id: EventId = Field(description="A fresh id per alert: show an alert_id once")
    rule: RuleId
    at: AwareDatetime
    severity: Severity = "warning"
    text: Annotated[str, Field(min_length=1, max_length=500)]
    cue: ShortId | None = None
    guest_id: ShortId | None = None
    device_id: ShortId | None = None
    zone_id: ShortId | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="The action's other parameters, as JSON")


# ------------------------------------------------------------------- parsing


class ContractError(ValueError):
    """A payload that breaks the contract, with the error code to answer it with.

    ``detail`` is always encodable (lone surrogates escaped); ``event_id`` is kept only
    when it is one a device could have sent, since the hub answers under it.
    """

    def __init__(self, code: ErrorCode, detail: str, event_id: str | None = None) -> None:
        detail = _encodable(detail)
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.event_id = _plausible_event_id(event_id)

    def __repr__(self) -> str:
        return f"ContractError({self.code.value!r}, {self.detail!r}, event_id={self.event_id!r})"


AnyEvent = TapEvent | HeartbeatEvent | TelemetryEvent | PaymentRequest | OfflineEntry
AnyReply = Decision | PaymentDecision | ErrorMessage
AnyNotification = Receipt | GuestNotice
_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(DeviceEvent)
_REPLY: TypeAdapter[AnyReply] = TypeAdapter(HubReply)
_NOTIFICATION: TypeAdapter[AnyNotification] = TypeAdapter(GuestNotification)

_EVENT_ID_RE = re.compile(_EVENT_ID)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``\\ud800``): UTF-8 can
    carry every other code point, and pydantic refuses to serialize these."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _plausible_event_id(value: object) -> str | None:
    # The hub answers under this id: an id no device could have sent correlates nothing.
    return value if isinstance(value, str) and _EVENT_ID_RE.fullmatch(value) else None


class _Flaw:
    """Stands in for a value strict JSON refuses, so the rest (the event id) is still read."""

    __slots__ = ("code", "why")

    def __init__(self, why: str, code: ErrorCode = ErrorCode.MALFORMED_JSON) -> None:
        self.why = why
        self.code = code


class _Duplicated(dict[str, Any]):
    """An object with a key given twice: a reader keeping the first sees another message."""

    def __init__(self, data: dict[str, Any], key: str) -> None:
        super().__init__(data)
        self.why = f"the key {key[:40]!r} appears twice"


def _constant(name: str) -> _Flaw:
    return _Flaw(f"{name} is not a JSON number")


def _real(literal: str) -> float | _Flaw:
    value = float(literal)
    return value if math.isfinite(value) else _Flaw(f"the number {literal[:24]} is out of range")


def _integer(literal: str) -> int | _Flaw:
    # By length first: int() refuses over 4300 digits, and is slow long before.
    value = int(literal) if len(literal) <= 20 else None
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        # Well-formed JSON, but no field of the contract holds it: a value out of range.
        return _Flaw(f"the integer {literal[:24]} is out of range (64 bits)",
                     ErrorCode.SCHEMA_VIOLATION)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) == len(pairs):
        return data
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            break
        seen.add(key)
    return _Duplicated(data, key)


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_real, parse_int=_integer,
                            object_pairs_hook=_object)


def _first_flaw(data: Any) -> _Flaw | None:
    """Where decoded data breaks strict JSON: a flawed value, a lone surrogate, too deep."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:  # not recursive: a payload must not choose how deep our stack goes
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and (found := _SURROGATE.search(value)):
                return _Flaw(f"a lone surrogate ({_encodable(found.group())}) in a string")
            if "\x00" in value:  # no text of the contract holds it, and PostgreSQL cannot
                return _Flaw("a NUL character (\\u0000) in a string")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return _Flaw(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, _Duplicated):
                return _Flaw(value.why)
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, _Flaw):
            return value
    return None


def _read(payload: bytes) -> Any:
    """The payload read as strict JSON (RFC 8259 within I-JSON's limits, RFC 7493), else
    ContractError(malformed_json), naming the event id when the rest could be read.

    Python's json module is laxer than the contract: it takes NaN and Infinity, lets
    lone surrogates through (escaped, or raw bytes in the 'surrogatepass' it decodes
    bytes with), keeps the last of duplicate keys, turns 1e999 into infinity and
    raises RecursionError or a bare ValueError on deep nesting and huge integers.
    """
    try:
        text = payload.decode("utf-8")  # strictly: no surrogates, no guessed UTF-16
        data = _DECODER.decode(text)
    except UnicodeDecodeError as exc:
        raise ContractError(ErrorCode.MALFORMED_JSON, f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ContractError(ErrorCode.MALFORMED_JSON,
                            f"not JSON: nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise ContractError(ErrorCode.MALFORMED_JSON, f"not JSON: {exc}") from exc
    flaw = _first_flaw(data)
    if flaw is not None:
        what = "not JSON" if flaw.code is ErrorCode.MALFORMED_JSON else "out of range"
        raise ContractError(flaw.code, f"{what}: {flaw.why}",
                            _event_id_of(data) if isinstance(data, dict) else None)
    return data


def _loads(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}"
        )
    data = _read(payload)
    if not isinstance(data, dict):
        raise ContractError(ErrorCode.SCHEMA_VIOLATION, "payload must be a JSON object")
    return data


def _event_id_of(data: dict[str, Any]) -> str | None:
    return _plausible_event_id(data.get("event_id"))


def event_id_of(payload: bytes) -> str | None:
    """The event id of a payload, when it can be read at all (for error replies); never raises."""
    try:
        data = _loads(payload)
    except ContractError as exc:  # the only exception reading raises (property-tested)
        return exc.event_id
    return _event_id_of(data)


def _summary(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return _encodable(f"{where}: {first['msg']}{more}")


def error_message(code: ErrorCode, detail: str, *, event_id: str | None = None,
                  topic: str) -> ErrorMessage:
    """The refusal to send for a message on ``topic``, encodable whatever the message held."""
    return ErrorMessage(code=code, detail=detail, event_id=_plausible_event_id(event_id),
                        topic=topic)


def _check_version(data: dict[str, Any]) -> None:
    """Refuse any ``v`` but the integer VERSION, naming it as the device wrote it (JSON)."""
    version = data.get("v", VERSION)
    if type(version) is not int or version != VERSION:  # true == 1 in Python, not here
        written = json.dumps(version, ensure_ascii=False)
        if len(written) > 40:
            written = written[:40] + "..."
        raise ContractError(
            ErrorCode.UNSUPPORTED_VERSION,
            _encodable(f"contract version {written} is not {VERSION}"), _event_id_of(data),
        )


def parse_event(payload: bytes) -> AnyEvent:
    """Validate a device event; raise ContractError (only) with the code to answer."""
    data = _loads(payload)
    _check_version(data)
    try:
        # From the JSON text, so strict mode still reads ISO 8601 strings as datetimes.
        return _EVENT.validate_json(payload)
    except ValidationError as exc:
        raise ContractError(ErrorCode.SCHEMA_VIOLATION, _summary(exc), _event_id_of(data)) from exc


def parse_status(payload: bytes) -> DeviceStatus:
    """Validate a status message (also accepts the bare words ``online``/``offline``)."""
    if payload in (b"online", b"offline"):
        return DeviceStatus(state=payload.decode())  # type: ignore[arg-type]
    _check_version(_loads(payload))  # pydantic's Literal[1] would take true
    try:
        return DeviceStatus.model_validate_json(payload)
    except ValidationError as exc:
        raise ContractError(ErrorCode.SCHEMA_VIOLATION, _summary(exc)) from exc


def parse_reply(payload: bytes) -> AnyReply:
    """Validate a message from the hub on a decisions or errors topic."""
    return _REPLY.validate_json(payload)


def parse_receipt(payload: bytes) -> Receipt:
    """Validate a receipt on a guest's notifications topic (any other kind is refused)."""
    return Receipt.model_validate_json(payload)


def parse_notification(payload: bytes) -> AnyNotification:
    """Validate a message on a guest's notifications topic: a receipt or a notice."""
    return _NOTIFICATION.validate_json(payload)


def parse_staff_alert(payload: bytes) -> StaffAlert:
    """Validate a message on the venue's staff alerts topic."""
    return StaffAlert.model_validate_json(payload)


def parse_command(payload: bytes) -> Command:
    """Validate a message from the hub on a commands topic."""
    return Command.model_validate_json(payload)


def encode(message: BaseModel) -> bytes:
    """Serialize any contract message for the wire."""
    return message.model_dump_json(exclude_none=True).encode()


def utcnow() -> datetime:
    """The current time, UTC and timezone-aware."""
    return datetime.now(UTC)
