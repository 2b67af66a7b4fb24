"""Set a fresh demo hub up for the bench through its REST API, and say who taps where.

The demo venue has fewer readers than the bench has connections, so extra ones are
registered (``bench-park-in-N``, ``bench-lock-N``, ...), each a copy of a demo device of
its role (same zone, direction or merchant). A band is reported lost when none is, and a
few room guests consent to personalization with preferences, so their door taps set off
the automations. Only for a hub the bench started itself: it changes the venue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from devices.contract import utcnow
from simulators.bench_mix import BenchDevice, MixName, Pools, Role, allocate
from simulators.rest import Credential, Device, Entitlement, HubApi, HubApiError, Merchant

# The demo's published PIN (README, "The demo venue"): Charlie's, asked above 50.00. The
# API never reveals a PIN, so the bench can only make PIN payments for a guest it knows.
PIN_GUEST, PIN = "guest-01", "1234"
CONSENTING = 5  # room guests who consent to personalization: their door taps run automations
PAGE = 500  # the API's largest page: the demo's lists fit in one


class _Zone(BaseModel):
    id: str
    kind: str


class _Policy(BaseModel):
    has_pin: bool
    pin_threshold: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The devices to play and the bands to tap, with what setting them up changed."""

    devices: tuple[BenchDevice, ...]
    pools: Pools
    registered: tuple[str, ...]  # device ids the bench added
    lost: tuple[str, ...]  # credential ids reported lost by the bench
    consenting: tuple[str, ...]  # guest ids


M = TypeVar("M", bound=BaseModel)


def _list(api: HubApi, model: type[M], path: str, **params: Any) -> list[M]:
    body = api.request("GET", path, params={**params, "limit": PAGE})
    return TypeAdapter(list[model]).validate_python(body)  # type: ignore[valid-type]


def _active(ent: Entitlement, now: datetime, until: datetime) -> bool:
    return ent.status == "active" and not ent.schedule and ent.valid_from <= now and \
        until < ent.valid_until


def prepare(api: HubApi, venue: str, *, devices: int, mix: MixName, run_tag: str,
            valid_for: timedelta = timedelta(hours=2),
            log: Callable[[str], None] = lambda _: None) -> Plan:
    """Discover the venue, register the extra devices and return the plan.

    LookupError when the venue lacks a kind of device or guest the mix needs;
    HubApiError / HubUnreachable from the REST client.
    """
    now = utcnow()
    until = now + valid_for
    zones = {z.id: z.kind for z in _list(api, _Zone, "/zones", venue_id=venue)}
    all_devices = [d for d in _list(api, Device, "/devices", venue_id=venue) if d.enabled]
    merchants = {m.id: m.currency for m in _list(api, Merchant, "/merchants")}
    entitlements = [e for e in _list(api, Entitlement, "/entitlements") if _active(e, now, until)]
    bands = [c for c in _list(api, Credential, "/credentials", kind="wristband")
             if c.kind == "wristband" and not c.sun]  # a secure band's bare UID is a clone

    band_of: dict[str, str] = {}
    for c in sorted(bands, key=lambda c: c.id):
        if c.status == "active":
            band_of.setdefault(c.guest_id, c.identifier)
    holders: dict[str, list[str]] = defaultdict(list)  # zone -> guests entitled to it
    for ent in entitlements:
        for zone in ent.zone_ids:
            if ent.guest_id in band_of and ent.guest_id not in holders[zone]:
                holders[zone].append(ent.guest_id)
    areas = [z for z, kind in zones.items() if kind == "area" and holders.get(z)]
    park = max(areas, key=lambda z: (len(holders[z]), z), default=None)

    templates: dict[Role, list[Device]] = {role: [] for role in ("park_in", "park_out", "ride",
                                                                  "lock", "pos")}
    for d in sorted(all_devices, key=lambda d: d.id):
        if d.kind == "gate" and d.zone_id == park and d.direction in ("in", "out"):
            templates["park_in" if d.direction == "in" else "park_out"].append(d)
        elif d.kind == "gate" and zones.get(d.zone_id or "") == "ride" and holders.get(
                d.zone_id or ""):
            templates["ride"].append(d)
        elif d.kind == "door_lock" and zones.get(d.zone_id or "") == "room" and holders.get(
                d.zone_id or ""):
            templates["lock"].append(d)
        elif d.kind == "pos" and d.merchant_id in merchants:
            templates["pos"].append(d)

    roles = allocate(devices, mix)
    missing = sorted({r for r in roles if not templates[r]})
    if missing:
        raise LookupError(f"venue {venue!r} has no device to copy for: {', '.join(missing)}")
    chosen, registered = _devices(api, venue, roles, templates, merchants, run_tag)
    log(f"{len(chosen)} devices ({len(registered)} registered for the bench): "
        + ", ".join(f"{roles.count(r)} {r}" for r in dict.fromkeys(roles)))

    lost_ids: list[str] = []
    lost = [c for c in bands if c.status == "lost"]
    park_guests = sorted(holders.get(park or "", []))
    if mix == "realistic" and not lost and park_guests:
        victim = park_guests[-1]  # the last guest's band: reported lost, then found and tapped
        credential = next(c for c in bands if c.guest_id == victim and c.status == "active")
        api.request("PATCH", f"/credentials/{credential.id}", json={"status": "lost"})
        lost_ids.append(credential.id)
        lost = [credential]
        band_of.pop(victim)
        log(f"reported {credential.identifier} ({victim}) lost")

    def uids(guests: Sequence[str]) -> tuple[str, ...]:
        return tuple(band_of[g] for g in sorted(guests) if g in band_of)

    room_zones = {d.zone_id for d in chosen if d.role == "lock"}
    consenting: list[str] = []
    if mix == "realistic":
        room_guests = sorted({g for z in room_zones for g in holders[z or ""] if g in band_of})
        consenting = room_guests[:CONSENTING]
        for i, guest in enumerate(consenting):
            api.request("PUT", f"/guests/{guest}/preferences",
                        json={"room_temperature_c": 20.0 + i % 4, "lighting_scene": "relax"})
            api.request("PUT", f"/guests/{guest}/consent/personalization", json={"granted": True})
        log(f"{len(consenting)} room guests consent to personalization: {', '.join(consenting)}")

    pools = Pools(
        park=uids(park_guests),
        rides={z or "": uids(holders[z or ""]) for z in {d.zone_id for d in chosen
                                                           if d.role == "ride"}},
        rooms={z or "": uids(holders[z or ""]) for z in room_zones},
        payers=uids(sorted({g for guests in holders.values() for g in guests})),
        lost=tuple(c.identifier for c in lost),
        **_pin(api, band_of),
    )
    empty = [name for name, pool in (("park", pools.park), ("payers", pools.payers))
             if not pool and any(r in roles for r in _NEEDS[name])]
    empty += [z for z, pool in {**pools.rides, **pools.rooms}.items() if not pool]
    if empty:
        raise LookupError(f"no guest wristband to tap for: {', '.join(empty)}")
    return Plan(tuple(chosen), pools, tuple(registered), tuple(lost_ids), tuple(consenting))


_NEEDS: dict[str, tuple[Role, ...]] = {"park": ("park_in", "park_out"), "payers": ("pos",)}


def _devices(api: HubApi, venue: str, roles: Sequence[Role], templates: dict[Role, list[Device]],
             merchants: dict[str, str], run_tag: str) -> tuple[list[BenchDevice], list[str]]:
    """The venue's own devices of each role first, then copies registered for the bench."""
    chosen: list[BenchDevice] = []
    registered: list[str] = []
    taken: dict[Role, int] = defaultdict(int)
    for role in roles:
        k = taken[role]
        taken[role] += 1
        pool = templates[role]
        template = pool[k % len(pool)]
        device_id = template.id
        if k >= len(pool):
            device_id = f"bench-{role.replace('_', '-')}-{k - len(pool) + 1}"
            body = {"id": device_id, "venue_id": venue, "kind": template.kind,
                    "name": f"bench {run_tag} copy of {template.id}",
                    "zone_id": template.zone_id, "direction": template.direction,
                    "merchant_id": template.merchant_id}
            try:
                api.request("POST", "/devices", json={k: v for k, v in body.items()
                                                      if v is not None}, status=201)
                registered.append(device_id)
            except HubApiError as exc:
                if exc.status != 409:  # registered by an earlier bench on this hub: fine
                    raise
        chosen.append(BenchDevice(
            device_id=device_id, role=role, zone_id=template.zone_id,
            direction=template.direction, merchant_id=template.merchant_id,
            currency=merchants.get(template.merchant_id or "", "USD")))
    return chosen, registered


def _pin(api: HubApi, band_of: dict[str, str]) -> dict[str, Any]:
    """The PIN payer's band, PIN and an amount above their threshold, when the venue has them."""
    if PIN_GUEST not in band_of:
        return {}
    try:
        policy = _Policy.model_validate(
            api.request("GET", f"/guests/{PIN_GUEST}/spending-policy"))
    except HubApiError:
        return {}
    if not policy.has_pin or policy.pin_threshold is None:
        return {}
    return {"pin_band": band_of[PIN_GUEST], "pin": PIN, "pin_amount": policy.pin_threshold + 1500}
