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
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

VERSION: Final = 1
MAX_PAYLOAD_BYTES = 64 * 1024

EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Uid = Annotated[str, Field(pattern=r"^(?:[0-9A-Fa-f]{2}){4,10}$", description="NFC tag UID, hex")]
KeyId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Message(BaseModel):
    # Strict: "50" is not 50 and a number is not a timestamp; devices get told, not guessed at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = VERSION


# ---------------------------------------------------------------- credentials


class WristbandCredential(BaseModel):
    """A wristband (or card) read by NFC: the tag's UID."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    type: Literal["wristband"] = "wristband"
    uid: Uid


class PhoneKeyCredential(BaseModel):
    """A phone key presented over BLE.

    Signed form: ``token`` (the hub-issued ES256 JWT), ``challenge`` (the fresh nonce
    the lock gave the phone) and ``proof`` (a JWS by the phone's own key over that
    challenge, this lock and the key's jti; see devices/phone_key.py). Legacy form:
    a bare ``key_id``, accepted only where the venue allows insecure credentials.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    type: Literal["phone_key"] = "phone_key"
    key_id: KeyId | None = None
    token: Annotated[str, Field(min_length=1, max_length=8192)] | None = None
    challenge: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")] | None = None
    proof: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PhoneKeyCredential:
        if (self.key_id is None) == (self.token is None):
            raise ValueError("a phone key carries either key_id or token (with its proof)")
        if self.token is not None and self.challenge is None:
            raise ValueError("a signed phone key needs the lock's challenge")
        return self


class WristbandSunCredential(BaseModel):
    """A secure wristband (NTAG 424 DNA): the SUN data the tag emitted on this read.

    ``picc`` is the encrypted PICC data (UID and read counter), ``cmac`` the
    truncated AES-CMAC over it (NXP AN12196); the hub decrypts and verifies both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
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
    ts: AwareDatetime
    credential: Credential
    direction: Literal["in", "out"] | None = Field(
        default=None, description="For readers that serve both ways; else the device's own."
    )


class HeartbeatEvent(_Message):
    """A device saying it is alive, with its health."""

    kind: Literal["heartbeat"] = "heartbeat"
    event_id: EventId
    ts: AwareDatetime
    battery_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    firmware: Annotated[str, Field(max_length=64)] | None = None
    interval_s: Annotated[int, Field(ge=1, le=86_400)] | None = None


Reading = float | int | str | bool


class TelemetryEvent(_Message):
    """Readings of an appliance (thermostat, light, watch ...)."""

    kind: Literal["telemetry"] = "telemetry"
    event_id: EventId
    ts: AwareDatetime
    readings: Annotated[dict[Annotated[str, Field(max_length=64)], Reading], Field(max_length=64)]


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
RuleId = Annotated[str, Field(min_length=1, max_length=64, description="The automation's id")]
ShortId = Annotated[str, Field(min_length=1, max_length=64)]
MinorUnits = Annotated[int, Field(gt=0, description="Integer minor units (cents), never floats")]
IdempotencyKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class LineItem(BaseModel):
    """One line of a purchase, for the receipt."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    sku: Annotated[str, Field(max_length=64)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=80)]
    quantity: Annotated[int, Field(ge=1, le=999)] = 1
    unit_amount: Annotated[int, Field(ge=0)]


class PaymentRequest(_Message):
    """A point-of-sale terminal asking to charge the tapped credential.

    ``idempotency_key`` is the terminal's: the same key always gets the same
    decision and moves money at most once, whatever the network redelivers.
    """

    kind: Literal["payment"] = "payment"
    event_id: EventId
    ts: AwareDatetime
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


class OfflineEntry(_Message):
    """A lock's record of a tap it decided alone while the hub was out of reach.

    Uploaded when the connection returns, under the tap's own ``event_id``, so a
    record sent twice is merged into the journey once.
    """

    kind: Literal["offline_entry"] = "offline_entry"
    event_id: EventId
    ts: AwareDatetime = Field(description="When the lock decided")
    credential_kind: Literal["phone_key", "wristband"]
    credential_ref: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="The phone key's jti, or the wristband's UID")
    credential_id: Annotated[str, Field(max_length=64)] | None = None
    guest_id: Annotated[str, Field(max_length=64)] | None = None
    outcome: Literal["allow", "deny"]
    reason: Annotated[str, Field(min_length=1, max_length=40)]


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
    PAYMENT_DISABLED = "payment_disabled"
    NO_ACCOUNT = "no_account"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_TOO_LARGE = "amount_too_large"
    PIN_REQUIRED = "pin_required"
    PIN_WRONG = "pin_wrong"
    PIN_LOCKED = "pin_locked"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    INSUFFICIENT_FUNDS = "insufficient_funds"
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
    amount: int
    currency: Currency
    transaction_id: str | None = None
    account: Literal["wallet", "folio"] | None = None
    balance_after: int | None = Field(default=None, description="Wallet balance, minor units")
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
    amount: int
    currency: Currency
    account: Literal["wallet", "folio"]
    balance_after: int
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
    INTERNAL = "internal"


class ErrorMessage(_Message):
    """A refusal of a device message, with the event id when it could be read."""

    kind: Literal["error"] = "error"
    code: ErrorCode
    detail: Annotated[str, Field(max_length=500)]
    event_id: str | None = None
    topic: str


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
    """A payload that breaks the contract, with the error code to answer it with."""

    def __init__(self, code: ErrorCode, detail: str, event_id: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.event_id = event_id

    def __repr__(self) -> str:
        return f"ContractError({self.code.value!r}, {self.detail!r}, event_id={self.event_id!r})"


AnyEvent = TapEvent | HeartbeatEvent | TelemetryEvent | PaymentRequest | OfflineEntry
AnyReply = Decision | PaymentDecision | ErrorMessage
AnyNotification = Receipt | GuestNotice
_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(DeviceEvent)
_REPLY: TypeAdapter[AnyReply] = TypeAdapter(HubReply)
_NOTIFICATION: TypeAdapter[AnyNotification] = TypeAdapter(GuestNotification)


def _loads(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}"
        )
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(ErrorCode.MALFORMED_JSON, f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(ErrorCode.SCHEMA_VIOLATION, "payload must be a JSON object")
    return data


def _event_id_of(data: dict[str, Any]) -> str | None:
    value = data.get("event_id")
    return value if isinstance(value, str) and len(value) <= 64 else None


def event_id_of(payload: bytes) -> str | None:
    """The event id of a payload, when it can be read at all (for error replies)."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return _event_id_of(data) if isinstance(data, dict) else None


def _summary(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_event(payload: bytes) -> AnyEvent:
    """Validate a device event; raise ContractError with the code to answer."""
    data = _loads(payload)
    version = data.get("v", VERSION)
    if type(version) is not int or version != VERSION:  # true == 1 in Python, not here
        raise ContractError(
            ErrorCode.UNSUPPORTED_VERSION, f"contract version {data.get('v')!r} is not {VERSION}",
            _event_id_of(data),
        )
    try:
        # From the JSON text, so strict mode still reads ISO 8601 strings as datetimes.
        return _EVENT.validate_json(payload)
    except ValidationError as exc:
        raise ContractError(ErrorCode.SCHEMA_VIOLATION, _summary(exc), _event_id_of(data)) from exc


def parse_status(payload: bytes) -> DeviceStatus:
    """Validate a status message (also accepts the bare words ``online``/``offline``)."""
    if payload in (b"online", b"offline"):
        return DeviceStatus(state=payload.decode())  # type: ignore[arg-type]
    _loads(payload)
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
