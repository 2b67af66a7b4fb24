"""The REST API's request and response models (the tables stay behind the API)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.topics import ID_PATTERN
from hub.models import (
    CredentialKind,
    CredentialStatus,
    DeviceKind,
    Direction,
    EntitlementKind,
    EntitlementStatus,
    ZoneKind,
)

Slug = Annotated[str, Field(pattern=f"^{ID_PATTERN}$", description="Also used in MQTT topics")]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -------------------------------------------------------------------- venues


class VenueCreate(_In):
    id: Slug
    name: Name
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class VenuePublic(_Out):
    id: str
    name: str
    timezone: str
    created_at: datetime


# --------------------------------------------------------------------- zones


class ZoneCreate(_In):
    id: Slug
    venue_id: str
    name: Name
    kind: ZoneKind = ZoneKind.AREA
    capacity: Annotated[int, Field(ge=0)] | None = None
    anti_passback: bool = False


class ZoneUpdate(_In):
    name: Name | None = None
    capacity: Annotated[int, Field(ge=0)] | None = None
    anti_passback: bool | None = None
    occupancy: Annotated[int, Field(ge=0, description="Manual correction of the count")] | None = None


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
    venue_id: str
    kind: DeviceKind
    name: Name
    zone_id: str | None = None
    direction: Direction | None = None
    enabled: bool = True


class DeviceUpdate(_In):
    name: Name | None = None
    zone_id: str | None = None
    direction: Direction | None = None
    enabled: bool | None = None


class DevicePublic(_Out):
    id: str
    venue_id: str
    kind: DeviceKind
    name: str
    zone_id: str | None
    direction: Direction | None
    enabled: bool
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


class GuestUpdate(_In):
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
    guest_id: str
    kind: CredentialKind
    identifier: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    label: Annotated[str, Field(max_length=80)] | None = None

    @model_validator(mode="after")
    def _check_identifier(self) -> Self:
        if self.kind is CredentialKind.WRISTBAND:
            uid = self.identifier or ""
            if not (8 <= len(uid) <= 20 and len(uid) % 2 == 0
                    and all(c in "0123456789abcdefABCDEF" for c in uid)):
                raise ValueError("a wristband needs identifier = its tag UID, 4-10 bytes in hex")
            self.identifier = uid.upper()
        return self


class CredentialUpdate(_In):
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
    guest_id: str
    kind: EntitlementKind
    zone_ids: Annotated[list[str], Field(min_length=1)]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    schedule: list[ScheduleWindow] | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.schedule and self.kind is not EntitlementKind.STAFF:
            raise ValueError("only staff entitlements have a weekly schedule")
        return self


class EntitlementUpdate(_In):
    status: EntitlementStatus | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


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
    decided_at: datetime


class EventPage(BaseModel):
    items: list[EventPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    mqtt: str
    mqtt_connected: bool
    database: str
