"""The registry cache never lets a decision see a stale device, credential or entitlement."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devices.contract import PaymentRequest, TapEvent, WristbandCredential, encode, utcnow
from devices.topics import Channel, device_topic
from hub.db import session_scope
from hub.demo import DEMO_PIN, VENUE_ID, wristband_uid
from hub.ingest import handle_message
from hub.models import (
    Credential,
    CredentialKind,
    CredentialStatus,
    Device,
    Entitlement,
    Merchant,
    RegistryVersion,
)
from hub.store import devices
from hub.store.registry import Registry
from tests.utils.demo_db import demo_sqlite

LOCK = "lock-101"


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    eng = demo_sqlite(request, tmp_path / "hub.db")
    yield eng
    eng.dispose()


def guest_of_room_101(engine: Engine) -> int:
    with Session(engine) as session:
        ent = session.exec(select(Entitlement).where(Entitlement.kind == "room")).all()
        guest = next(e.guest_id for e in ent if "room-101" in e.zone_ids)
    return int(guest.split("-")[1])


def tap(engine: Engine, registry: Registry, n: int, event_id: str, device: str = LOCK) -> str:
    event = TapEvent(event_id=event_id, ts=utcnow(),
                     credential=WristbandCredential(uid=wristband_uid(n)))
    with session_scope(engine) as session:
        outcome = handle_message(session, device_topic(VENUE_ID, device, Channel.EVENTS),
                                 encode(event), utcnow(), registry=registry)
    assert outcome.decision is not None, outcome
    return outcome.decision.reason.value


def version(engine: Engine) -> int:
    with Session(engine) as session:
        row = session.get(RegistryVersion, 1)
        assert row is not None
        return row.version


def test_a_band_marked_lost_elsewhere_is_denied_on_the_very_next_tap(engine: Engine) -> None:
    registry = Registry()
    guest = guest_of_room_101(engine)
    assert tap(engine, registry, guest, "a") == "ok"
    assert tap(engine, registry, guest, "b") == "ok"
    assert registry.hits > 0  # the second tap read the band from the cache
    with session_scope(engine) as other:  # another process: the API, another worker
        band = other.exec(select(Credential).where(
            Credential.identifier == wristband_uid(guest))).one()
        band.status = CredentialStatus.LOST
    assert tap(engine, registry, guest, "c") == "credential_lost"


def test_a_band_registered_after_a_miss_is_known_at_once(engine: Engine) -> None:
    registry = Registry()
    uid = "04FF00000000AA"
    event = TapEvent(event_id="x1", ts=utcnow(), credential=WristbandCredential(uid=uid))
    topic = device_topic(VENUE_ID, "gate-park-in-1", Channel.EVENTS)
    with session_scope(engine) as session:
        first = handle_message(session, topic, encode(event), utcnow(), registry=registry)
    assert first.decision is not None and first.decision.reason == "unknown_credential"
    with session_scope(engine) as other:
        other.add(Credential(id="band-new", guest_id="guest-02", kind=CredentialKind.WRISTBAND,
                             identifier=uid))
    event = event.model_copy(update={"event_id": "x2"})
    with session_scope(engine) as session:
        second = handle_message(session, topic, encode(event), utcnow(), registry=registry)
    assert second.decision is not None and second.decision.reason != "unknown_credential"


def test_a_cancelled_entitlement_and_a_disabled_device_take_effect_at_once(
        engine: Engine) -> None:
    registry = Registry()
    guest = guest_of_room_101(engine)
    assert tap(engine, registry, guest, "e1") == "ok"
    assert tap(engine, registry, 3, "e0", device="gate-park-in-2") == "ok"  # now cached
    with session_scope(engine) as other:
        for ent in other.exec(select(Entitlement).where(
                Entitlement.guest_id == f"guest-{guest:02d}")).all():
            ent.valid_until = utcnow() - timedelta(minutes=1)
    assert tap(engine, registry, guest, "e2") in {"outside_validity", "no_entitlement"}
    with session_scope(engine) as other:
        device = other.get(Device, "gate-park-in-2")
        assert device is not None
        device.enabled = False
    assert tap(engine, registry, 3, "e3", device="gate-park-in-2") == "device_disabled"


def test_state_changes_do_not_empty_the_cache(engine: Engine) -> None:
    before = version(engine)
    with session_scope(engine) as session:
        devices.record_device_seen(session=session, device_id=LOCK, now=utcnow(), online=True,
                                   battery_pct=80, firmware="2.0")
        credential = session.exec(select(Credential)).first()
        assert credential is not None
        credential.pin_failures += 1  # a wrong PIN is state, not registry
    assert version(engine) == before
    with session_scope(engine) as session:
        device = session.get(Device, LOCK)
        assert device is not None
        device.name = "Renamed lock"
    assert version(engine) == before + 1


def test_cached_rows_belong_to_no_session(engine: Engine) -> None:
    registry = Registry()
    with session_scope(engine) as session:
        registry.sync(session)
        device = registry.get(session, Device, LOCK)
        assert device is not None and device not in session
        assert registry.get(session, Device, LOCK) is device  # the same copy, from the cache


def pay(engine: Engine, registry: Registry, n: int, event_id: str, *, amount: int = 350,
        merchant: str = "cafe", pin: str | None = None) -> str:
    request = PaymentRequest(event_id=event_id, ts=utcnow(), amount=amount, currency="USD",
                             merchant_id=merchant, idempotency_key=event_id, pin=pin,
                             credential=WristbandCredential(uid=wristband_uid(n)))
    with session_scope(engine) as session:
        outcome = handle_message(session, device_topic(VENUE_ID, f"pos-{merchant}-1",
                                                       Channel.EVENTS),
                                 encode(request), utcnow(), registry=registry)
    assert outcome.decision is not None, outcome
    return str(outcome.decision.reason.value)


def test_a_pin_lock_set_elsewhere_holds_though_the_band_is_cached(engine: Engine) -> None:
    registry = Registry()
    assert pay(engine, registry, 1, "p1") == "ok"  # Charlie's band, now in the cache
    with session_scope(engine) as other:  # another worker counted his wrong PINs
        band = other.exec(select(Credential).where(
            Credential.identifier == wristband_uid(1))).one()
        band.pin_failures = 99
    assert pay(engine, registry, 1, "p2") == "pin_locked"


def test_wrong_pins_are_counted_in_the_database_not_on_a_cached_copy(engine: Engine) -> None:
    registry = Registry()
    for attempt in range(2):
        assert pay(engine, registry, 1, f"w{attempt}", amount=6_000, pin="0000") == "pin_wrong"
    with Session(engine) as session:
        band = session.exec(select(Credential).where(
            Credential.identifier == wristband_uid(1))).one()
        assert band.pin_failures == 2
    assert pay(engine, registry, 1, "right", amount=6_000, pin=DEMO_PIN) == "ok"
    with Session(engine) as session:
        band = session.exec(select(Credential).where(
            Credential.identifier == wristband_uid(1))).one()
        assert band.pin_failures == 0  # a right PIN ends the run


def test_a_merchant_changed_elsewhere_is_seen_by_the_next_payment(engine: Engine) -> None:
    registry = Registry()
    assert pay(engine, registry, 2, "m1") == "ok"
    with session_scope(engine) as other:
        merchant = other.get(Merchant, "cafe")
        assert merchant is not None
        merchant.currency = "EUR"
    assert pay(engine, registry, 2, "m2") == "currency_mismatch"
