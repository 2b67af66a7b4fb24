"""Entry decisions: pure functions of a tap's context and the clock; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from devices.contract import EntryReason
from hub.models import (
    Credential,
    CredentialKind,
    CredentialStatus,
    Device,
    DeviceKind,
    Direction,
    Effect,
    Entitlement,
    EntitlementKind,
    EntitlementStatus,
    Guest,
    Zone,
)
from hub.presented import CredentialProblem

READER_KINDS = frozenset({DeviceKind.GATE, DeviceKind.DOOR_LOCK})

TEXTS: dict[EntryReason, str] = {
    EntryReason.UNKNOWN_DEVICE: "Reader not registered",
    EntryReason.DEVICE_DISABLED: "Reader out of service",
    EntryReason.DEVICE_NOT_A_READER: "Not an entry reader",
    EntryReason.UNKNOWN_CREDENTIAL: "Band or key not recognised",
    EntryReason.CREDENTIAL_LOST: "Reported lost - please see staff",
    EntryReason.CREDENTIAL_SUSPENDED: "Suspended - please see staff",
    EntryReason.CREDENTIAL_REVOKED: "No longer valid - please see staff",
    EntryReason.NO_ENTITLEMENT: "No ticket or reservation",
    EntryReason.WRONG_ZONE: "Not valid for this entrance",
    EntryReason.OUTSIDE_VALIDITY: "Not valid at this date",
    EntryReason.OUTSIDE_SCHEDULE: "Not valid at this time",
    EntryReason.ANTI_PASSBACK: "Already used - please see staff",
    EntryReason.ZONE_FULL: "Full right now - please wait",
    EntryReason.CREDENTIAL_FORGED: "Band not genuine - please see staff",
    EntryReason.CREDENTIAL_REPLAYED: "Please tap again",
    EntryReason.INSECURE_CREDENTIAL: "Band not accepted here - please see staff",
}

# A phone key is not a band: its own words where the reason is about the credential
# (entitlement denials say the same whatever was presented, and are given no kind).
KEY_TEXTS: dict[EntryReason, str] = {
    EntryReason.UNKNOWN_CREDENTIAL: "Key not recognised",
    EntryReason.CREDENTIAL_LOST: "Phone reported lost - please see staff",
    EntryReason.CREDENTIAL_SUSPENDED: "Key suspended - please see staff",
    EntryReason.CREDENTIAL_REVOKED: "Key no longer valid - please see staff",
    EntryReason.OUTSIDE_VALIDITY: "Key not valid at this time - please see staff",
    EntryReason.CREDENTIAL_FORGED: "Key not genuine - please see staff",
    EntryReason.CREDENTIAL_REPLAYED: "Please tap your phone again",
    EntryReason.INSECURE_CREDENTIAL: "Key not accepted here - please see staff",
}

# What a presented credential's problem means at a door: the one way from one to the other.
PROBLEMS: dict[CredentialProblem, EntryReason] = {
    CredentialProblem.FORGED: EntryReason.CREDENTIAL_FORGED,
    CredentialProblem.REPLAYED: EntryReason.CREDENTIAL_REPLAYED,
    CredentialProblem.INSECURE: EntryReason.INSECURE_CREDENTIAL,
    CredentialProblem.EXPIRED: EntryReason.OUTSIDE_VALIDITY,
    CredentialProblem.NOT_YET_VALID: EntryReason.OUTSIDE_VALIDITY,
    CredentialProblem.REVOKED: EntryReason.CREDENTIAL_REVOKED,
}

_CREDENTIAL_DENIALS = {
    CredentialStatus.LOST: EntryReason.CREDENTIAL_LOST,
    CredentialStatus.SUSPENDED: EntryReason.CREDENTIAL_SUSPENDED,
    CredentialStatus.REVOKED: EntryReason.CREDENTIAL_REVOKED,
}


@dataclass(frozen=True)
class EntryContext:
    """Everything an entry decision depends on, loaded by the caller."""

    device: Device | None
    credential: Credential | None
    guest: Guest | None = None
    zone: Zone | None = None
    entitlements: tuple[Entitlement, ...] = ()
    inside: bool = False
    requested_direction: Direction | None = None
    venue_timezone: str = "UTC"
    # Why the presented credential cannot be trusted (forged, replayed, insecure ...), if so.
    credential_problem: CredentialProblem | None = None
    # What was presented (a band or a phone key), for the reader's words; None: unsaid.
    presented_kind: CredentialKind | None = None
    # How many are inside the zone now, read afresh by the caller (the zone may be a
    # cached copy); None: the zone's own count.
    occupancy: int | None = None
    venue_enabled: bool = True  # a closed venue lets nobody in, whatever its devices say


@dataclass(frozen=True)
class EntryDecision:
    """The outcome of a tap, what to show, and what to change."""

    allowed: bool
    reason: EntryReason
    text: str
    direction: Direction | None = None
    effect: Effect = Effect.NONE
    entitlement_id: str | None = None
    guest_name: str | None = field(default=None)

    @property
    def outcome(self) -> str:
        return "allow" if self.allowed else "deny"


def text_of(reason: EntryReason, kind: CredentialKind | None = None) -> str:
    """The reader's words for ``reason``, in terms of what was presented."""
    if kind is CredentialKind.PHONE_KEY and reason in KEY_TEXTS:
        return KEY_TEXTS[reason]
    return TEXTS[reason]


def deny(reason: EntryReason, direction: Direction | None = None,
         kind: CredentialKind | None = None) -> EntryDecision:
    """A denial with the reader's text for ``reason`` (and the credential ``kind``)."""
    return EntryDecision(False, reason, text_of(reason, kind), direction=direction)


def _in_schedule(ent: Entitlement, now: datetime, tz: str) -> bool:
    if not ent.schedule:
        return True
    local = now.astimezone(ZoneInfo(tz))
    for window in ent.schedule:
        start, end = time.fromisoformat(window["start"]), time.fromisoformat(window["end"])
        if local.weekday() in window["days"] and start <= local.time() < end:
            return True
    return False


def _entitlement_for(ctx: EntryContext, zone_id: str, now: datetime) -> Entitlement | EntryReason:
    active = [e for e in ctx.entitlements if e.status == EntitlementStatus.ACTIVE]
    for_zone = [e for e in active if zone_id in e.zone_ids]
    if not for_zone:
        return EntryReason.WRONG_ZONE if active else EntryReason.NO_ENTITLEMENT
    current = [e for e in for_zone if e.valid_from <= now < e.valid_until]
    if not current:
        return EntryReason.OUTSIDE_VALIDITY
    for ent in current:
        if ent.kind != EntitlementKind.STAFF or _in_schedule(ent, now, ctx.venue_timezone):
            return ent
    return EntryReason.OUTSIDE_SCHEDULE


def decide_entry(ctx: EntryContext, now: datetime) -> EntryDecision:
    """Allow or deny a tap at a gate or door, and say what it changes."""
    device = ctx.device
    if device is None:
        return deny(EntryReason.UNKNOWN_DEVICE)
    if not (device.enabled and ctx.venue_enabled):
        return deny(EntryReason.DEVICE_DISABLED)
    if device.kind not in READER_KINDS or device.zone_id is None:
        return deny(EntryReason.DEVICE_NOT_A_READER)
    direction, kind = device.direction or ctx.requested_direction, ctx.presented_kind
    if ctx.credential_problem is not None:
        return deny(PROBLEMS[ctx.credential_problem], direction, kind)
    cred = ctx.credential
    if cred is None or ctx.guest is None:
        return deny(EntryReason.UNKNOWN_CREDENTIAL, direction, kind)
    if cred.status in _CREDENTIAL_DENIALS:
        return deny(_CREDENTIAL_DENIALS[cred.status], direction, kind)

    found = _entitlement_for(ctx, device.zone_id, now)
    if isinstance(found, EntryReason):
        return deny(found, direction)

    zone = ctx.zone
    effect = Effect.NONE
    if zone is not None and direction is Direction.IN:
        if ctx.inside and zone.anti_passback:
            return deny(EntryReason.ANTI_PASSBACK, direction)
        occupancy = zone.occupancy if ctx.occupancy is None else ctx.occupancy
        if zone.capacity is not None and occupancy >= zone.capacity:
            return deny(EntryReason.ZONE_FULL, direction)
        effect = Effect.NONE if ctx.inside else Effect.ENTER
    elif zone is not None and direction is Direction.OUT:
        if not ctx.inside and zone.anti_passback:
            return deny(EntryReason.ANTI_PASSBACK, direction)
        effect = Effect.EXIT if ctx.inside else Effect.NONE

    name = ctx.guest.display_name or ctx.guest.name
    text = f"Goodbye, {name}" if direction is Direction.OUT else f"Welcome, {name}"
    return EntryDecision(
        True, EntryReason.OK, text[:80], direction=direction, effect=effect,
        entitlement_id=found.id, guest_name=name,
    )
