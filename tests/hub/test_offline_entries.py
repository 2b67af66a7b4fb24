"""Offline entries as evidence: the hub verifies the proof a lock uploads, as of the
entry's time, names the guest only from a proof that holds, and alerts staff to a forged
or replayed proof and to one of a credential void at that time. Fed message by message,
without a broker, on a real SQLite file (as tests/hub/test_ingest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devices.contract import (
    ErrorCode,
    OfflineEntry,
    PhoneKeyCredential,
    WristbandCredential,
    WristbandSunCredential,
    encode,
    parse_staff_alert,
)
from devices.phone_key import make_proof, new_challenge, phone_keypair
from devices.sun import make_sun
from devices.topics import Channel, device_topic, staff_topic
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import VENUE_ID, secure_band_uid, seed_demo
from hub.ingest import Outcome, handle_message
from hub.models import (
    AuditEntry,
    Credential,
    CredentialStatus,
    Entitlement,
    Event,
    utcnow,
)
from hub.phone_keys import SigningKey, issue_phone_key, jwks, new_signing_key
from hub.presented import Trust, issuer, tag_keys
from hub.store import guests

TAG_KEY = bytes(range(16))
LOCK, ZONE, GUEST, PHONE = "lock-101", "room-101", "guest-01", "phone-guest-01"
NOW = utcnow()
HUB_KEYS = [new_signing_key(NOW - timedelta(days=10), timedelta(days=60))]
TRUST = Trust(tag_master_key=TAG_KEY, jwks=jwks(HUB_KEYS))
SUN_GUEST, SUN_LOCK = "guest-06", "lock-106"
SUN_UID = secure_band_uid(6)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    seed_demo(engine, NOW)
    with session_scope(engine) as session:
        # Stays that began days ago, so an entry hours back is within them at any hour.
        for stay in session.exec(select(Entitlement)).all():
            if stay.valid_from <= NOW <= stay.valid_until:
                stay.valid_from = NOW - timedelta(days=3)
                session.add(stay)
    yield engine
    engine.dispose()


class Key:
    """A phone key the hub issued (recorded), and the phone that holds it."""

    def __init__(self, engine: Engine, *, nbf: datetime, exp: datetime,
                 keys: list[SigningKey] = HUB_KEYS, credential_id: str = PHONE,
                 guest: str = GUEST) -> None:
        self.phone, phone_jwk = phone_keypair()
        self.token, self.jti = issue_phone_key(
            keys, now=NOW - timedelta(days=1), issuer=issuer(VENUE_ID), venue=VENUE_ID,
            guest_id=guest, credential_id=credential_id, zones=[ZONE], nbf=nbf, exp=exp,
            phone_jwk=phone_jwk)
        self.credential_id = credential_id
        with session_scope(engine) as session:
            credential = session.get(Credential, credential_id)
            assert credential is not None
            guests.record_phone_key(session=session, credential=credential, jti=self.jti,
                                    expires_at=exp, now=NOW - timedelta(days=1))

    def shown(self, at: datetime, *, lock: str = LOCK, challenge: str | None = None,
              phone: ec.EllipticCurvePrivateKey | None = None) -> PhoneKeyCredential:
        """What the lock saw: the key, its challenge and the phone's proof at ``at``."""
        challenge = challenge or new_challenge()
        proof = make_proof(phone or self.phone, challenge=challenge, lock_id=lock,
                           key_jti=self.jti, now=at)
        return PhoneKeyCredential(token=self.token, challenge=challenge, proof=proof)


def stay_key(engine: Engine) -> Key:
    return Key(engine, nbf=NOW - timedelta(days=3), exp=NOW + timedelta(days=3))


def upload(engine: Engine, *, event_id: str, ts: datetime,
           credential: PhoneKeyCredential | WristbandSunCredential | WristbandCredential | None,
           ref: str = "-", outcome: Literal["allow", "deny"] = "allow", device: str = LOCK,
           kind: Literal["phone_key", "wristband"] = "phone_key") -> Outcome:
    entry = OfflineEntry(event_id=event_id, ts=ts, credential_kind=kind, credential_ref=ref,
                         credential_id=PHONE, guest_id=GUEST, outcome=outcome,
                         reason="ok" if outcome == "allow" else "key_revoked",
                         credential=credential)
    with session_scope(engine) as session:
        return handle_message(session, device_topic(VENUE_ID, device, Channel.EVENTS),
                              encode(entry), utcnow(), trust=TRUST)


def row(engine: Engine, event_id: str, device: str = LOCK) -> Event:
    with Session(engine) as session:
        found = session.exec(select(Event).where(Event.device_id == device,
                                                 Event.event_id == event_id)).one()
        return found


def alerts(out: Outcome) -> list[Any]:
    return [parse_staff_alert(r.payload) for r in out.replies
            if r.topic == staff_topic(VENUE_ID)]


def audited(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [e.detail for e in session.exec(
            select(AuditEntry).where(AuditEntry.action == "offline_entry.alert")).all()]


def assert_alerted(out: Outcome, reason: str, *, severity: str = "urgent") -> None:
    [alert] = alerts(out)
    assert (alert.rule, alert.reason, alert.severity, alert.device_id, alert.zone_id) == (
        "offline-entry", reason, severity, LOCK, ZONE)
    assert out.alert == reason  # what the bridge counts


# ------------------------------------------------------------------ phone keys


def test_a_valid_proof_names_the_guest_without_an_alert(engine: Engine) -> None:
    key = stay_key(engine)
    at = NOW - timedelta(minutes=10)
    out = upload(engine, event_id="ok-1", ts=at, credential=key.shown(at), ref=key.jti)
    assert out.error is None and out.replies == [] and out.alert is None
    recorded = row(engine, "ok-1")
    assert (recorded.guest_id, recorded.credential_id, recorded.credential_ref) == (
        GUEST, PHONE, key.jti)
    assert recorded.text == "offline, proof verified"


def test_the_locks_word_alone_names_no_guest(engine: Engine) -> None:
    """No proof (a lock from before proofs): recorded, nobody named, no alert."""
    key = stay_key(engine)
    out = upload(engine, event_id="word", ts=NOW - timedelta(minutes=5), credential=None,
                 ref=key.jti)
    assert out.error is None and out.replies == []
    assert row(engine, "word").guest_id is None
    bare = upload(engine, event_id="bare", ts=NOW - timedelta(minutes=4),
                  credential=WristbandCredential(uid="04A10000000001"), ref="04A10000000001",
                  kind="wristband")
    assert bare.replies == [] and row(engine, "bare").guest_id is None


def test_a_forged_proof_names_nobody_and_alerts_staff(engine: Engine) -> None:
    key = stay_key(engine)
    at = NOW - timedelta(minutes=10)
    thief, _ = phone_keypair()  # the token copied, the phone's key not
    out = upload(engine, event_id="forged", ts=at, credential=key.shown(at, phone=thief),
                 ref=key.jti)
    assert_alerted(out, "credential_forged")
    assert row(engine, "forged").guest_id is None
    assert [d["reason"] for d in audited(engine)] == ["credential_forged"]


def test_a_token_the_hub_did_not_sign_names_nobody_and_alerts(engine: Engine) -> None:
    other_hub = [new_signing_key(NOW - timedelta(days=10), timedelta(days=60))]
    key = Key(engine, nbf=NOW - timedelta(days=3), exp=NOW + timedelta(days=3), keys=other_hub)
    at = NOW - timedelta(minutes=10)
    out = upload(engine, event_id="alien", ts=at, credential=key.shown(at), ref=key.jti,
                 outcome="deny")
    assert_alerted(out, "credential_forged", severity="warning")  # the door held
    assert row(engine, "alien").guest_id is None


def test_a_proof_made_for_another_lock_is_refused(engine: Engine) -> None:
    key = stay_key(engine)
    at = NOW - timedelta(minutes=10)
    out = upload(engine, event_id="elsewhere", ts=at, credential=key.shown(at, lock="lock-102"),
                 ref=key.jti)
    assert_alerted(out, "credential_replayed")
    assert row(engine, "elsewhere").guest_id is None


def test_a_replayed_proof_makes_no_second_journey_row(engine: Engine) -> None:
    key = stay_key(engine)
    at = NOW - timedelta(minutes=10)
    shown = key.shown(at)
    assert upload(engine, event_id="first", ts=at, credential=shown, ref=key.jti).replies == []
    # The same upload again (a lost acknowledgement): merged once, no alert.
    assert upload(engine, event_id="first", ts=at, credential=shown, ref=key.jti).replies == []
    again = upload(engine, event_id="second", ts=at + timedelta(seconds=5), credential=shown,
                   ref=key.jti)
    assert_alerted(again, "credential_replayed")
    assert row(engine, "first").guest_id == GUEST
    assert row(engine, "second").guest_id is None
    with Session(engine) as session:
        named = session.exec(select(Event).where(Event.guest_id == GUEST,
                                                 Event.kind == "offline_entry")).all()
    assert [e.event_id for e in named] == ["first"]


def test_validity_is_judged_at_the_entrys_time_not_now(engine: Engine) -> None:
    """A key that expired an hour ago opened the door validly two hours ago; one that
    was already expired at the entry's time did not."""
    key = Key(engine, nbf=NOW - timedelta(days=3), exp=NOW - timedelta(hours=1))
    before = NOW - timedelta(hours=2)
    out = upload(engine, event_id="in-time", ts=before, credential=key.shown(before), ref=key.jti)
    assert out.replies == [] and row(engine, "in-time").guest_id == GUEST
    after = NOW - timedelta(minutes=10)
    late = upload(engine, event_id="too-late", ts=after, credential=key.shown(after), ref=key.jti)
    assert_alerted(late, "outside_validity")
    assert row(engine, "too-late").guest_id is None
    # A proof made long before the time the lock claims: stale.
    stale = upload(engine, event_id="stale", ts=before + timedelta(minutes=5),
                   credential=key.shown(before), ref=key.jti)
    assert_alerted(stale, "credential_replayed")


def test_an_entry_from_the_future_is_still_refused(engine: Engine) -> None:
    key = stay_key(engine)
    at = NOW + timedelta(hours=1)
    out = upload(engine, event_id="future", ts=at, credential=key.shown(at), ref=key.jti)
    assert out.error is ErrorCode.OFFLINE_ENTRY_REFUSED


def test_a_key_revoked_before_the_entry_alerts_and_names_nobody(engine: Engine) -> None:
    key = stay_key(engine)
    with session_scope(engine) as session:
        credential = session.get(Credential, PHONE)
        assert credential is not None
        credential.status = CredentialStatus.REVOKED
        credential.status_changed_at = NOW - timedelta(hours=1)
        session.add(credential)
    earlier = NOW - timedelta(hours=2)  # before the revocation: a fair entry
    out = upload(engine, event_id="before", ts=earlier, credential=key.shown(earlier),
                 ref=key.jti)
    assert out.replies == [] and row(engine, "before").guest_id == GUEST
    later = NOW - timedelta(minutes=30)
    out = upload(engine, event_id="after", ts=later, credential=key.shown(later), ref=key.jti,
                 outcome="deny")
    assert_alerted(out, "credential_revoked", severity="warning")
    [alert] = alerts(out)
    assert alert.guest_id == GUEST  # staff learn whose key it was
    recorded = row(engine, "after")
    assert (recorded.guest_id, recorded.credential_id) == (None, PHONE)


def test_a_key_superseded_before_the_entry_alerts(engine: Engine) -> None:
    old = stay_key(engine)
    stay_key(engine)  # a new key for the same credential supersedes it, a day ago
    with Session(engine) as session:
        assert guests.key_revoked_at(session=session, jti=old.jti) == NOW - timedelta(days=1)
    at = NOW - timedelta(minutes=10)
    out = upload(engine, event_id="old-key", ts=at, credential=old.shown(at), ref=old.jti)
    assert_alerted(out, "credential_revoked")
    assert row(engine, "old-key").guest_id is None


# ------------------------------------------------------------------ secure bands


def sun_read(counter: int) -> WristbandSunCredential:
    meta, file_key = tag_keys(TAG_KEY, bytes.fromhex(SUN_UID))
    picc, cmac = make_sun(bytes.fromhex(SUN_UID), counter, meta_read_key=meta,
                          file_read_key=file_key)
    return WristbandSunCredential(picc=picc, cmac=cmac)


def sun_upload(engine: Engine, event_id: str, credential: WristbandSunCredential,
               ts: datetime) -> Outcome:
    return upload(engine, event_id=event_id, ts=ts, credential=credential, ref=SUN_UID,
                  device=SUN_LOCK, kind="wristband")


def test_a_secure_bands_sun_data_names_the_guest_and_a_replay_alerts(engine: Engine) -> None:
    at = NOW - timedelta(minutes=10)
    read = sun_read(41)
    assert sun_upload(engine, "sun-1", read, at).replies == []
    assert row(engine, "sun-1", SUN_LOCK).guest_id == SUN_GUEST
    replay = sun_upload(engine, "sun-2", read, at + timedelta(minutes=1))
    [alert] = alerts(replay)
    assert alert.reason == "credential_replayed"
    assert row(engine, "sun-2", SUN_LOCK).guest_id is None


def test_forged_sun_data_alerts(engine: Engine) -> None:
    read = sun_read(42)
    flipped = WristbandSunCredential(picc=read.picc,
                                     cmac=f"{int(read.cmac[0], 16) ^ 1:X}{read.cmac[1:]}")
    out = sun_upload(engine, "sun-forged", flipped, NOW - timedelta(minutes=3))
    [alert] = alerts(out)
    assert alert.reason == "credential_forged"
    assert row(engine, "sun-forged", SUN_LOCK).guest_id is None


def test_a_band_reported_lost_before_the_entry_alerts(engine: Engine) -> None:
    with session_scope(engine) as session:
        band = session.get(Credential, f"sunband-{SUN_GUEST}")
        assert band is not None
        band.status = CredentialStatus.LOST
        band.status_changed_at = NOW - timedelta(hours=1)
        session.add(band)
    fair = sun_upload(engine, "sun-before", sun_read(50), NOW - timedelta(hours=2))
    assert fair.replies == [] and row(engine, "sun-before", SUN_LOCK).guest_id == SUN_GUEST
    out = sun_upload(engine, "sun-after", sun_read(51), NOW - timedelta(minutes=5))
    [alert] = alerts(out)
    assert (alert.reason, alert.guest_id, alert.severity) == (
        "credential_lost", SUN_GUEST, "urgent")
    assert row(engine, "sun-after", SUN_LOCK).guest_id is None
    assert json.dumps(audited(engine))  # recorded, as JSON the audit log can show


def online_sun_tap(engine: Engine, event_id: str, read: WristbandSunCredential,
                   at: datetime) -> str:
    from devices.contract import Decision, TapEvent, parse_reply

    tap = TapEvent(event_id=event_id, ts=at, credential=read)
    with session_scope(engine) as session:
        out = handle_message(session, device_topic(VENUE_ID, "gate-park-in-1", Channel.EVENTS),
                             encode(tap), at, trust=TRUST)
    decision = parse_reply(out.replies[0].payload)
    assert isinstance(decision, Decision)
    return decision.reason


def test_an_offline_read_must_fit_the_reads_the_hub_saw_online(engine: Engine) -> None:
    """Reads are ordered in time as their counters are: an upload carrying the read the hub
    saw online, or a newer read dated before it, is not what happened; an older read dated
    earlier is; and a read accepted offline cannot be replayed online afterwards."""
    seen_at = NOW - timedelta(minutes=30)
    assert online_sun_tap(engine, "online-100", sun_read(100), seen_at) == "ok"
    same = sun_upload(engine, "off-same", sun_read(100), seen_at - timedelta(hours=1))
    assert [a.reason for a in alerts(same)] == ["credential_replayed"]
    backdated = sun_upload(engine, "off-150", sun_read(150), seen_at - timedelta(hours=2))
    assert [a.reason for a in alerts(backdated)] == ["credential_replayed"]
    assert row(engine, "off-150", SUN_LOCK).guest_id is None
    older = sun_upload(engine, "off-90", sun_read(90), seen_at - timedelta(hours=3))
    assert alerts(older) == [] and row(engine, "off-90", SUN_LOCK).guest_id == SUN_GUEST
    later = sun_upload(engine, "off-160", sun_read(160), seen_at + timedelta(minutes=5))
    assert alerts(later) == [] and row(engine, "off-160", SUN_LOCK).guest_id == SUN_GUEST
    assert online_sun_tap(engine, "online-160", sun_read(160), NOW) == "credential_replayed"
