"""decide_entry is pure: every reason, in order of precedence, without fixtures."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.contract import EntryReason
from hub.entry import TEXTS, EntryContext, decide_entry
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
    ZoneKind,
)

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # a Wednesday


def gate(direction: Direction | None = Direction.IN, **kw: Any) -> Device:
    return Device(id="g1", venue_id="v", kind=kw.pop("kind", DeviceKind.GATE), name="g",
                  zone_id=kw.pop("zone_id", "park"), direction=direction, **kw)


def ticket(**kw: Any) -> Entitlement:
    values: dict[str, Any] = dict(id="t1", guest_id="u1", kind=EntitlementKind.TICKET,
                                     zone_ids=["park"], valid_from=NOW - timedelta(hours=1),
                                     valid_until=NOW + timedelta(hours=1))
    values.update(kw)
    return Entitlement(**values)


def context(**kw: object) -> EntryContext:
    base = EntryContext(
        device=gate(),
        credential=Credential(id="c1", guest_id="u1", kind=CredentialKind.WRISTBAND,
                              identifier="04AA"),
        guest=Guest(id="u1", name="Charlie Baker", display_name="Charlie"),
        zone=Zone(id="park", venue_id="v", name="Park", capacity=10, anti_passback=True),
        entitlements=(ticket(),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_allows_a_valid_ticket_and_enters_the_zone() -> None:
    decision = decide_entry(context(), NOW)
    assert (decision.allowed, decision.reason, decision.effect) == (True, EntryReason.OK,
                                                                     Effect.ENTER)
    assert decision.text == "Welcome, Charlie" and decision.guest_name == "Charlie"
    assert decision.entitlement_id == "t1"


@pytest.mark.parametrize(
    ("ctx", "reason"),
    [
        (context(device=None), EntryReason.UNKNOWN_DEVICE),
        (context(device=gate(enabled=False)), EntryReason.DEVICE_DISABLED),
        (context(venue_enabled=False), EntryReason.DEVICE_DISABLED),  # a closed venue
        (context(device=gate(kind=DeviceKind.THERMOSTAT)), EntryReason.DEVICE_NOT_A_READER),
        (context(device=gate(zone_id=None)), EntryReason.DEVICE_NOT_A_READER),
        (context(credential=None, guest=None), EntryReason.UNKNOWN_CREDENTIAL),
        (context(entitlements=()), EntryReason.NO_ENTITLEMENT),
        (context(entitlements=(ticket(zone_ids=["water"]),)), EntryReason.WRONG_ZONE),
        (context(entitlements=(ticket(status=EntitlementStatus.CANCELLED),)),
         EntryReason.NO_ENTITLEMENT),
        (context(entitlements=(ticket(valid_until=NOW),)), EntryReason.OUTSIDE_VALIDITY),
        (context(entitlements=(ticket(valid_from=NOW + timedelta(seconds=1)),)),
         EntryReason.OUTSIDE_VALIDITY),
        (context(inside=True), EntryReason.ANTI_PASSBACK),
        (context(device=gate(Direction.OUT), inside=False), EntryReason.ANTI_PASSBACK),
    ],
)
def test_denials_carry_their_reason_and_text(ctx: EntryContext, reason: EntryReason) -> None:
    decision = decide_entry(ctx, NOW)
    assert not decision.allowed
    assert decision.reason is reason
    assert decision.text == TEXTS[reason]
    assert decision.effect is Effect.NONE and decision.guest_name is None


@pytest.mark.parametrize(("status", "reason"), [
    (CredentialStatus.LOST, EntryReason.CREDENTIAL_LOST),
    (CredentialStatus.SUSPENDED, EntryReason.CREDENTIAL_SUSPENDED),
    (CredentialStatus.REVOKED, EntryReason.CREDENTIAL_REVOKED),
])
def test_credential_status_denies_before_anything_else(status: CredentialStatus,
                                                       reason: EntryReason) -> None:
    ctx = context()
    assert ctx.credential is not None
    cred = ctx.credential.model_copy(update={"status": status})
    assert decide_entry(replace(ctx, credential=cred, entitlements=()), NOW).reason is reason


def test_zone_full_only_for_entries() -> None:
    full = Zone(id="park", venue_id="v", name="Park", capacity=3, occupancy=3, anti_passback=True)
    assert decide_entry(context(zone=full), NOW).reason is EntryReason.ZONE_FULL
    leaving = decide_entry(context(zone=full, device=gate(Direction.OUT), inside=True), NOW)
    assert leaving.allowed and leaving.effect is Effect.EXIT
    assert leaving.text == "Goodbye, Charlie"


def test_without_anti_passback_a_second_entry_is_allowed_but_not_counted_twice() -> None:
    open_zone = Zone(id="park", venue_id="v", name="Park", anti_passback=False)
    decision = decide_entry(context(zone=open_zone, inside=True), NOW)
    assert decision.allowed and decision.effect is Effect.NONE


def test_a_bidirectional_reader_uses_the_direction_of_the_tap() -> None:
    decision = decide_entry(context(device=gate(None), inside=True,
                                    requested_direction=Direction.OUT), NOW)
    assert decision.allowed and decision.effect is Effect.EXIT


def test_door_lock_without_direction_has_no_effect() -> None:
    room = Zone(id="room-101", venue_id="v", name="Room", kind=ZoneKind.ROOM)
    stay = ticket(kind=EntitlementKind.ROOM, zone_ids=["room-101"])
    lock = gate(None, kind=DeviceKind.DOOR_LOCK, zone_id="room-101")
    decision = decide_entry(context(device=lock, zone=room, entitlements=(stay,)), NOW)
    assert decision.allowed and decision.effect is Effect.NONE


def staff(windows: list[dict[str, object]]) -> Entitlement:
    return ticket(kind=EntitlementKind.STAFF, schedule=windows,
                  valid_until=NOW + timedelta(days=30))


def test_staff_schedule_in_the_venue_time_zone() -> None:
    # 12:00 UTC on a Wednesday is 14:00 in Paris (summer time).
    morning = staff([{"days": [2], "start": "08:00", "end": "13:00"}])
    afternoon = staff([{"days": [2], "start": "13:00", "end": "18:00"}])
    weekend = staff([{"days": [5, 6], "start": "00:00", "end": "23:59"}])
    assert decide_entry(context(entitlements=(morning,)), NOW).allowed  # UTC: 12:00
    paris = "Europe/Paris"
    assert decide_entry(context(entitlements=(morning,), venue_timezone=paris), NOW).reason \
        is EntryReason.OUTSIDE_SCHEDULE
    assert decide_entry(context(entitlements=(afternoon,), venue_timezone=paris), NOW).allowed
    assert decide_entry(context(entitlements=(weekend,)), NOW).reason \
        is EntryReason.OUTSIDE_SCHEDULE


@given(offset=st.integers(min_value=-10_000, max_value=10_000))
def test_validity_window_is_half_open(offset: int) -> None:
    start, end = NOW, NOW + timedelta(seconds=3600)
    at = NOW + timedelta(seconds=offset)
    decision = decide_entry(context(entitlements=(ticket(valid_from=start, valid_until=end),)), at)
    assert decision.allowed == (start <= at < end)
    if not decision.allowed:
        assert decision.reason is EntryReason.OUTSIDE_VALIDITY


@given(capacity=st.integers(0, 5), occupancy=st.integers(0, 6), inside=st.booleans(),
       direction=st.sampled_from([Direction.IN, Direction.OUT]))
def test_zone_rules_never_overfill_and_never_double_count(
    capacity: int, occupancy: int, inside: bool, direction: Direction
) -> None:
    zone = Zone(id="park", venue_id="v", name="Park", capacity=capacity, occupancy=occupancy,
                anti_passback=True)
    decision = decide_entry(context(zone=zone, inside=inside, device=gate(direction)), NOW)
    if decision.effect is Effect.ENTER:
        assert not inside and occupancy < capacity and direction is Direction.IN
    if decision.effect is Effect.EXIT:
        assert inside and direction is Direction.OUT
    if direction is Direction.IN and inside:
        assert decision.reason is EntryReason.ANTI_PASSBACK
