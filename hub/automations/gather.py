"""The facts an automation looks at, gathered from the database for one occurrence."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from hub.automations.facts import Facts
from hub.automations.occurrence import Occurrence
from hub.automations.rules import Rule
from hub.models import (
    Device,
    DeviceKind,
    Entitlement,
    EntitlementKind,
    Guest,
    GuestPreferences,
    Zone,
    ZoneKind,
)
from hub.store import automations as store
from hub.store import devices, guests

ROOM_APPLIANCES = (DeviceKind.THERMOSTAT, DeviceKind.LIGHT, DeviceKind.DISPLAY,
                   DeviceKind.FRIDGE_DISPLAY)
STUCK_WINDOW = timedelta(minutes=2)
# Readings further apart than this are not one episode of a high heart rate.
HEART_RATE_WINDOW = timedelta(minutes=10)
# A device's clock is believed for when something happened only this far back.
REPORTED_AT_LIMIT = timedelta(days=1)


def load_facts(session: Session, occurrence: Occurrence) -> Facts | None:
    """Everything rules may look at; None when the device is gone (or, for a scheduled
    occurrence, which concerns a guest and no device, when the guest is).

    What only some rules look at (preferences, the room's appliances, counters) is read
    on first use, inside this session: a tap that no rule's filters and conditions let
    through costs a few primary-key reads, not a dozen queries.
    """
    device = store.device(session=session, device_id=occurrence.device_id) \
        if occurrence.device_id else None
    if device is None and (occurrence.device_id is not None or occurrence.guest_id is None):
        return None
    zone = store.zone(session=session, zone_id=device.zone_id) \
        if device and device.zone_id else None
    guest_id = occurrence.guest_id
    worn = None
    if guest_id is None and device is not None:  # a wearable's readings are its wearer's
        worn = guests.current_wearer(session=session, device_id=device.id)
        guest_id = worn.guest_id if worn else None
    guest = store.guest(session=session, guest_id=guest_id) if guest_id else None
    consents = store.granted_purposes(session=session, guest_id=guest.id) if guest \
        else frozenset()
    tz = ZoneInfo(devices.venue_timezone(session=session, venue_id=occurrence.venue))

    def prefs_row() -> GuestPreferences | None:
        return store.preferences(session=session, guest_id=guest.id) if guest else None

    def guest_facts() -> dict[str, Any]:
        if guest is None:
            return {}
        prefs = prefs_row()
        return {"id": guest.id, "name": guest.name,
                "display_name": (prefs and prefs.display_name) or guest.display_name
                or guest.name}

    def prefs_facts() -> dict[str, Any]:
        prefs = prefs_row()
        return prefs.model_dump(exclude={"guest_id", "updated_at"}) if prefs else {}

    def room_devices() -> dict[str, str]:
        room = zone if zone is not None and zone.kind is ZoneKind.ROOM else (
            _room_of(session, guest.id, occurrence.at) if guest else None)
        if room is None:
            return {}
        return {d.kind.value: d.id for d in store.devices_in(session=session, zone_id=room.id)
                if d.kind in ROOM_APPLIANCES}

    return Facts(
        trigger=occurrence.trigger,  # type: ignore[arg-type]
        now=occurrence.at.astimezone(tz),
        data_purposes=frozenset({"health"}) if device and device.kind is DeviceKind.WATCH
        else frozenset(),
        guest=Lazy(guest_facts, known={"id": guest.id} if guest else {}),
        prefs=Lazy(prefs_facts),
        consents=consents,
        zone={"id": zone.id, "kind": zone.kind.value} if zone else {},
        device={"id": device.id, "kind": device.kind.value} if device else {},
        event={"reason": occurrence.reason, "at": _reported_at(occurrence).astimezone(tz),
               "schedule": occurrence.schedule, **(occurrence.purchase or {})},
        reading=dict(occurrence.readings or {}),
        counters=_counters(session, occurrence, device, zone, guest,
                           lambda: (p.heart_rate_threshold if (p := prefs_row()) else None),
                           worn.paired_at if worn else None),
        room_devices=Lazy(room_devices),
    )


class Lazy(Mapping[str, Any]):
    """A mapping read on first use (``known`` keys answer without reading it)."""

    def __init__(self, load: Callable[[], Mapping[str, Any]], *,
                 known: Mapping[str, Any] | None = None) -> None:
        self._load = load
        self._known = dict(known or {})
        self._data: Mapping[str, Any] | None = None

    def _all(self) -> Mapping[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def __getitem__(self, key: str) -> Any:
        if key in self._known:
            return self._known[key]
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"Lazy({dict(self)!r})"


def might_apply(session: Session, occurrence: Occurrence, rules: Sequence[Rule]) -> bool:
    """False when no rule can fire for this guest whatever the facts: each needs a consent
    the guest has not given. One query instead of the dozen the facts take, for most taps
    (a guest who consented to nothing)."""
    if occurrence.guest_id is None or any(r.purpose == "service" for r in rules):
        return True
    granted = store.granted_purposes(session=session, guest_id=occurrence.guest_id)
    return any(r.purpose in granted for r in rules)


def _reported_at(occurrence: Occurrence) -> datetime:
    """When it happened: the device's word if plausible (not ahead, not stale), else ours."""
    said = occurrence.reported_at
    if said is None or said > occurrence.at or occurrence.at - said > REPORTED_AT_LIMIT:
        return occurrence.at
    return said


def _room_of(session: Session, guest_id: str, at: datetime) -> Zone | None:
    """The room of the guest's current stay, if any."""
    stay = _current(session, guest_id, at, kind=EntitlementKind.ROOM)
    for zone_id in stay.zone_ids if stay else ():
        zone = store.zone(session=session, zone_id=zone_id)
        if zone is not None and zone.kind is ZoneKind.ROOM:
            return zone
    return None


def _current(session: Session, guest_id: str, at: datetime, *,
             kind: EntitlementKind | None = None, zone_id: str | None = None
             ) -> Entitlement | None:
    for entitlement in store.current_entitlements(session=session, guest_id=guest_id, at=at,
                                                  kind=kind):
        if zone_id is None or zone_id in entitlement.zone_ids:
            return entitlement
    return None


class LazyCounters(Mapping[str, int]):
    """Counters computed on first use: a rule that looks at none costs no query.

    Read while the session they were made with is open (the runner plans inside it).
    """

    def __init__(self, thunks: dict[str, Callable[[], int]]) -> None:
        self._thunks = thunks
        self._values: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        if name not in self._values:
            self._values[name] = self._thunks[name]()
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._thunks)

    def __len__(self) -> int:
        return len(self._thunks)

    def __repr__(self) -> str:
        return f"LazyCounters({dict(self)!r})"


def _counters(session: Session, occurrence: Occurrence, device: Device | None,
              zone: Zone | None, guest: Guest | None,
              threshold: Callable[[], int | None] = lambda: None,
              worn_since: datetime | None = None) -> LazyCounters:
    """The counters of :data:`hub.automations.vocabulary.COUNTERS` that apply to this occurrence.

    Counts of the journey stop at the occurrence's own row: the runner may lag behind
    the bridge, and a second tap already recorded must not make the first one look
    like the second (no welcome at all after a quick double tap).
    """
    thunks: dict[str, Callable[[], int]] = {}
    upto = store.Upto(occurrence.event_row_id, occurrence.at)
    since = occurrence.at - STUCK_WINDOW
    if device is not None:
        thunks["recent_denials"] = lambda: store.denials_at(
            session=session, device_id=device.id, since=since, upto=upto)
    if guest is not None and device is not None and device.kind is DeviceKind.WATCH:
        @cache
        def run() -> int:
            limit = threshold()
            return 0 if limit is None else _heart_rate_run(session, device.id, limit,
                                                           occurrence, since=worn_since)

        thunks["heart_rate_high"] = run
        thunks["heart_rate_level"] = lambda: min(run(), 3)
    if guest is None:
        return LazyCounters(thunks)
    # Stays that ended (not cancelled bookings, not day tickets): a returning guest.
    thunks["earlier_stays"] = lambda: store.stays_over(session=session, guest_id=guest.id,
                                                       at=occurrence.at)
    thunks["rides"] = lambda: store.rides(session=session, guest_id=guest.id, upto=upto)
    if zone is None:
        return LazyCounters(thunks)

    def entries() -> int:
        current = _current(session, guest.id, occurrence.at, zone_id=zone.id)
        start = current.valid_from if current else occurrence.at
        return store.entries(session=session, guest_id=guest.id, zone_id=zone.id,
                             since=start, upto=upto)

    def first_entry() -> int:
        # Whether any allowed entry came before this one this stay: an EXISTS stops at
        # the first row, where counting every entry of a regular would read them all.
        current = _current(session, guest.id, occurrence.at, zone_id=zone.id)
        start = current.valid_from if current else occurrence.at
        earlier = store.first_entries(session=session, guest_id=guest.id, zone_id=zone.id,
                                      since=start, upto=upto)
        if occurrence.event_row_id:  # a tap: its own row is not among the earlier ones
            return 1 if not earlier else 0
        return 1 if len(earlier) == 1 else 0  # the only allowed entry must be this one

    thunks["entries"] = entries
    thunks["first_entry"] = first_entry
    thunks["visits"] = lambda: store.visit_days(session=session, guest_id=guest.id,
                                                zone_id=zone.id, upto=upto)
    return LazyCounters(thunks)


def _heart_rate_run(session: Session, device_id: str, threshold: int,
                    occurrence: Occurrence, *, since: datetime | None = None) -> int:
    """How many of the watch's heart-rate readings in a row, up to this one, are above
    ``threshold``: the run ends at a reading at or below it, or at a gap longer than
    HEART_RATE_WINDOW (another episode). Readings that came later are not counted: the
    runner may lag behind the bridge."""
    # From ``since``: the previous wearer's heart is not this guest's.
    rows = store.readings_upto(session=session, device_id=device_id, at=occurrence.at,
                               upto_id=occurrence.telemetry_id, since=since, limit=200)
    run, newer = 0, occurrence.at
    for row in rows:
        bpm = row.data.get("readings", {}).get("heart_rate_bpm")
        if bpm is None:
            continue  # a workout report between readings breaks no run
        if newer - row.received_at > HEART_RATE_WINDOW:
            break
        if isinstance(bpm, bool) or not isinstance(bpm, int | float) or bpm <= threshold:
            break
        run, newer = run + 1, row.received_at
    return run

