"""The demo venue: a park with gates, a hotel with ten smart rooms, shops, and twenty guests;
and a strict venue beside it, a spa whose gate takes only secure bands and signed phone keys.

Seeding is idempotent: rows are keyed by fixed ids and the opening top-ups by
fixed idempotency keys, so seeding again adds nothing; the demo guests' tickets and
stays are moved to start today, so a demo seeded last week still opens its gates.

The demo also has one staff user per role, named after it, with the password
``demo-<role>`` (e.g. ``admin`` / ``demo-admin``). Those users exist only in the demo:
``hub up`` without ``--demo`` never creates them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from hub import wearables
from hub.cashier import top_up
from hub.db import session_scope
from hub.models import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    Device,
    DeviceKind,
    Direction,
    Entitlement,
    EntitlementKind,
    Guest,
    Merchant,
    SpendingPolicy,
    StaffRole,
    Venue,
    Wearable,
    Zone,
    ZoneKind,
)
from hub.security import hash_secret
from hub.store import guests, rows, staff

VENUE_ID = "demo-resort"
# The resort is a legacy venue: its readers may send a wristband's bare UID (as the README's
# examples do). The spa next door is strict, as every new venue is: only secure bands (SUN)
# and signed phone keys open it, a bare UID is refused "insecure_credential".
STRICT_VENUE_ID = "demo-spa"
SPA_GUESTS = (1, 2, 6, 7, 8)
CURRENCY = "USD"
MERCHANTS = {"cafe": "Cafe", "shop": "Gift shop", "bar": "Pool bar"}
DEMO_PIN = "1234"  # Charlie's, asked for payments above 50.00
ROOMS = [f"{n}" for n in range(101, 111)]
FIRST_NAMES = ["Charlie", "Ana", "Bo", "Dana", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jun",
               "Kai", "Lena", "Milo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess"]
LAST_NAMES = ["Baker", "Lopez", "Chen", "Okafor", "Novak", "Haddad", "Berg", "Sato", "Petrov",
              "Kim", "Silva", "Meyer", "Rossi", "Diallo", "Aziz", "Larsen", "Byrne", "Costa",
              "Nair", "Walsh"]


def demo_password(role: str) -> str:
    """The published password of the demo's staff user ``role``."""
    return f"demo-{role}"


@lru_cache(maxsize=8)
def _demo_hash(role: str) -> str:
    # Hashed once per process: tests seed many fresh databases, argon2 is slow on purpose.
    return hash_secret(demo_password(role))


SECURE_BAND_GUESTS = (6, 7, 8)
WATCH_GUESTS = (1, 2, 3, 4, 5)  # wear a smartwatch paired to them
RETURNING_GUESTS = (1, 2)  # had a stay before this one
RIDES = {"coaster": "Big coaster", "carousel": "Carousel"}


def watch_id(n: int) -> str:
    """The device id of guest number ``n``'s demo watch."""
    return f"watch-guest-{n:02d}"


def secure_band_uid(n: int) -> str:
    """The demo secure (SUN) wristband UID of guest number ``n``."""
    return f"04A2{n:010d}"


def wristband_uid(n: int) -> str:
    """The demo wristband UID of guest number ``n`` (7-byte NFC UID, hex)."""
    return f"04A1{n:010d}"


def _rows(day: datetime) -> list[SQLModel]:
    rows: list[SQLModel] = [Venue(id=VENUE_ID, name="Demo Resort", timezone="UTC",
                                  currency=CURRENCY, allow_plain_uid=True),
                            Venue(id=STRICT_VENUE_ID, name="Demo Spa (strict)", timezone="UTC",
                                  currency=CURRENCY, allow_plain_uid=False),
                            Zone(id="spa", venue_id=STRICT_VENUE_ID, name="Spa", capacity=40),
                            Device(id="gate-spa-in-1", venue_id=STRICT_VENUE_ID,
                                   kind=DeviceKind.GATE, name="Spa entrance", zone_id="spa",
                                   direction=Direction.IN)]
    rows += [Merchant(id=m, venue_id=VENUE_ID, name=name, currency=CURRENCY)
             for m, name in MERCHANTS.items()]
    rows += [
        Zone(id="park", venue_id=VENUE_ID, name="Theme park", capacity=2000, anti_passback=True),
        Zone(id="water-park", venue_id=VENUE_ID, name="Water park", capacity=300,
             anti_passback=True),
    ]
    rows += [Zone(id=f"room-{r}", venue_id=VENUE_ID, name=f"Room {r}", kind=ZoneKind.ROOM)
             for r in ROOMS]
    rows += [Zone(id=z, venue_id=VENUE_ID, name=name, kind=ZoneKind.RIDE)
             for z, name in RIDES.items()]
    rows += [Device(id=f"ride-{z}-1", venue_id=VENUE_ID, kind=DeviceKind.GATE,
                    name=f"{name} entrance", zone_id=z, direction=Direction.IN)
             for z, name in RIDES.items()]
    gates = [("gate-park-in-1", "park", Direction.IN), ("gate-park-in-2", "park", Direction.IN),
             ("gate-park-out-1", "park", Direction.OUT),
             ("gate-water-in-1", "water-park", Direction.IN),
             ("gate-water-out-1", "water-park", Direction.OUT)]
    rows += [Device(id=d, venue_id=VENUE_ID, kind=DeviceKind.GATE, name=d.replace("-", " "),
                    zone_id=z, direction=dr) for d, z, dr in gates]
    for r in ROOMS:
        for kind, prefix in ((DeviceKind.DOOR_LOCK, "lock"), (DeviceKind.THERMOSTAT, "thermostat"),
                             (DeviceKind.LIGHT, "light"), (DeviceKind.DISPLAY, "display"),
                             (DeviceKind.FRIDGE_DISPLAY, "fridge")):
            rows.append(Device(id=f"{prefix}-{r}", venue_id=VENUE_ID, kind=kind,
                               name=f"Room {r} {prefix}", zone_id=f"room-{r}"))
    rows += [Device(id=f"pos-{m}-1", venue_id=VENUE_ID, kind=DeviceKind.POS,
                    name=f"{MERCHANTS[m]} till", merchant_id=m) for m in MERCHANTS]
    rows.append(Device(id="kiosk-lobby-1", venue_id=VENUE_ID, kind=DeviceKind.KIOSK,
                       name="Lobby kiosk", merchant_id="shop"))
    for i in range(1, 21):
        gid = f"guest-{i:02d}"
        first, last = FIRST_NAMES[i - 1], LAST_NAMES[i - 1]
        rows.append(Guest(id=gid, name=f"{first} {last}", display_name=first,
                          email=f"{first.lower()}.{last.lower()}@example.com"))
        rows.append(Credential(id=f"band-{gid}", guest_id=gid, kind=CredentialKind.WRISTBAND,
                               identifier=wristband_uid(i), label="wristband"))
        rows.append(Credential(id=f"phone-{gid}", guest_id=gid, kind=CredentialKind.PHONE_KEY,
                               identifier=f"pk-{gid}", label="phone"))
        if i in SECURE_BAND_GUESTS:  # NTAG 424 DNA bands: they present SUN data, never a bare UID
            rows.append(Credential(id=f"sunband-{gid}", guest_id=gid,
                                   kind=CredentialKind.WRISTBAND, identifier=secure_band_uid(i),
                                   label="secure wristband", sun=True))
        rows.append(Entitlement(id=f"ticket-{gid}", guest_id=gid, kind=EntitlementKind.TICKET,
                                zone_ids=["park", *RIDES], valid_from=day,
                                valid_until=day + timedelta(days=3)))
        if i in SPA_GUESTS:
            rows.append(Entitlement(id=f"spa-{gid}", guest_id=gid, kind=EntitlementKind.TICKET,
                                    zone_ids=["spa"], valid_from=day,
                                    valid_until=day + timedelta(days=3)))
        room = ROOMS[(i - 1) % len(ROOMS)]
        if i in WATCH_GUESTS:
            rows.append(Device(id=watch_id(i), venue_id=VENUE_ID, kind=DeviceKind.WATCH,
                               name=f"{first}'s watch"))
            rows.append(Wearable(device_id=watch_id(i), guest_id=gid, paired_at=day))
        if i in RETURNING_GUESTS:  # stayed with us before: staff get a "welcome back" cue
            rows.append(Entitlement(id=f"past-stay-{gid}", guest_id=gid,
                                    kind=EntitlementKind.ROOM, zone_ids=[f"room-{room}"],
                                    valid_from=day - timedelta(days=200),
                                    valid_until=day - timedelta(days=197)))
        rows.append(Entitlement(id=f"stay-{gid}", guest_id=gid, kind=EntitlementKind.ROOM,
                                zone_ids=[f"room-{room}"], valid_from=day,
                                valid_until=day + timedelta(days=3)))
        rows.append(Account(id=f"wallet-{gid}", venue_id=VENUE_ID, kind=AccountKind.WALLET,
                            currency=CURRENCY, guest_id=gid))
        rows.append(Account(id=f"folio-{gid}", venue_id=VENUE_ID, kind=AccountKind.FOLIO,
                            currency=CURRENCY, guest_id=gid, stay_id=f"stay-{gid}"))
        # guest-11 .. guest-20 share a room with guest-01 .. guest-10, who pays for them.
        payer = f"guest-{i - 10:02d}" if i > 10 else gid
        rows.append(SpendingPolicy(guest_id=gid, payer_guest_id=payer,
                                   daily_limit=2_000 if payer != gid else None))
    return rows


def seed_demo(engine: Engine, now: datetime) -> dict[str, Any]:
    """Create what is missing of the demo venue; return a summary for the banner."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    created = 0
    with session_scope(engine) as session:
        for row in _rows(day):
            created += _ensure(session, row)
        charlie = rows.find(session=session, model=SpendingPolicy, key="guest-01")
        if charlie is not None and charlie.pin_hash is None:
            charlie.pin_hash = hash_secret(DEMO_PIN)
            charlie.pin_threshold = 5_000
        for i in range(1, 21):
            wallet = rows.find(session=session, model=Account, key=f"wallet-guest-{i:02d}")
            assert wallet is not None
            top_up(session, wallet=wallet, amount=10_000, key=f"demo-topup-guest-{i:02d}",
                   actor="demo", now=now)
        for role in StaffRole:
            if staff.find_staff_user(session=session, username=role.value) is None:
                staff.add_staff_user(session=session, username=role.value,
                                     password_hash=_demo_hash(role.value), roles=[role.value],
                                     now=now)
                created += 1
    return {"venue": VENUE_ID, "strict_venue": STRICT_VENUE_ID, "created": created,
            "guests": 20, "rooms": len(ROOMS),
            "users": [role.value for role in StaffRole]}


def _ensure(session: Session, row: SQLModel) -> int:
    if isinstance(row, Wearable):  # keyed by its device: paired unless someone wears it
        if guests.current_wearer(session=session, device_id=row.device_id) is not None:
            return 0
        wearables.pair(session, device_id=row.device_id, guest_id=row.guest_id,
                       now=row.paired_at)
        return 1
    key = sa.inspect(type(row)).primary_key_from_instance(row)
    existing = rows.find(session=session, model=type(row), key=tuple(key))
    if existing is None:
        session.add(row)
        session.flush()
        return 1
    if isinstance(row, Entitlement) and isinstance(existing, Entitlement):
        if existing.valid_until < row.valid_from:  # an old demo: start its stays today
            existing.valid_from, existing.valid_until = row.valid_from, row.valid_until
        if set(row.zone_ids) - set(existing.zone_ids):  # a demo seeded before the rides
            existing.zone_ids = list(row.zone_ids)
    return 0


# Scale: extra guests (numbered after the demo's 20) with a band, a phone key and a park
# ticket each, and extra park gates, written with bulk INSERTs (a million ORM objects
# would take minutes). Idempotent like the rest: what exists is skipped.
SCALE_FIRST_GUEST = 1001
_CHUNK = 5_000


def scale_gate_id(n: int) -> str:
    """The device id of extra park gate number ``n`` (odd: in, even: out)."""
    return f"scale-gate-{n:05d}"


def seed_scale(engine: Engine, now: datetime, *, guests: int, devices: int) -> dict[str, int]:
    """Add ``guests`` ticketed guests (two credentials each) and ``devices`` park gates."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    added = {"guests": 0, "credentials": 0, "devices": 0}
    with session_scope(engine) as session:
        have = rows.ids_like(session=session, model=Guest, pattern="guest-s%")
        numbers = [n for n in range(SCALE_FIRST_GUEST, SCALE_FIRST_GUEST + guests)
                   if f"guest-s{n}" not in have]
        for start in range(0, len(numbers), _CHUNK):
            chunk = numbers[start:start + _CHUNK]
            rows.insert_many(session=session, model=Guest, values=[
                {"id": f"guest-s{n}", "name": f"Guest {n}", "display_name": f"Guest {n}",
                 "email": None, "created_at": now} for n in chunk])
            rows.insert_many(session=session, model=Credential, values=[
                row for n in chunk for row in (
                    {"id": f"band-s{n}", "guest_id": f"guest-s{n}",
                     "kind": CredentialKind.WRISTBAND, "identifier": wristband_uid(n),
                     "label": "wristband", "status": "active", "pin_failures": 0,
                     "sun": False, "created_at": now, "status_changed_at": now},
                    {"id": f"phone-s{n}", "guest_id": f"guest-s{n}",
                     "kind": CredentialKind.PHONE_KEY, "identifier": f"pk-s{n}",
                     "label": "phone", "status": "active", "pin_failures": 0, "sun": False,
                     "created_at": now, "status_changed_at": now})])
            rows.insert_many(session=session, model=Entitlement, values=[
                {"id": f"ticket-s{n}", "guest_id": f"guest-s{n}",
                 "kind": EntitlementKind.TICKET, "zone_ids": ["park"], "valid_from": day,
                 "valid_until": day + timedelta(days=30), "status": "active",
                 "created_at": now} for n in chunk])
        added["guests"], added["credentials"] = len(numbers), 2 * len(numbers)
        have_dev = rows.ids_like(session=session, model=Device, pattern="scale-gate-%")
        gates = [n for n in range(1, devices + 1) if scale_gate_id(n) not in have_dev]
        if gates:
            rows.insert_many(session=session, model=Device, values=[
                {"id": scale_gate_id(n), "venue_id": VENUE_ID, "kind": DeviceKind.GATE,
                 "name": f"scale gate {n}", "zone_id": "park", "enabled": True,
                 "direction": Direction.IN if n % 2 else Direction.OUT, "online": False}
                for n in gates])
        added["devices"] = len(gates)
        if numbers or gates:
            from hub.store.registry import bump
            bump(session)  # bulk INSERTs bypass the ORM's flush, and so its bump
    return added
