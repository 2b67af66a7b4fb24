"""Every message the hub emits validates against devices/asyncapi.yaml, by its topic.

The real hub's logic (``hub.ingest.handle_message``, ``hub.keyring``) on a seeded SQLite
file answers taps, payments, reports, offline entries and bad input; each reply is
checked against the schema of the channel its topic belongs to, and the key material
(the documents and the claims their JWS signs) against theirs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from jsonschema import Draft7Validator, FormatChecker
from sqlalchemy.engine import Engine
from sqlmodel import select

from devices.contract import (
    HeartbeatEvent,
    OfflineEntry,
    PaymentRequest,
    PhoneKeyCredential,
    TapEvent,
    TelemetryEvent,
    WristbandCredential,
    encode,
    utcnow,
)
from devices.key_material import verify
from devices.phone_key import make_proof, new_challenge, phone_keypair
from devices.topics import Channel, device_topic, guest_topic, keys_topic, parse_topic, staff_topic
from hub import keyring
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.ingest import Outgoing, handle_message
from hub.models import Credential, Entitlement
from hub.payment import PaymentLimits
from hub.phone_keys import issue_phone_key, jwks, new_signing_key
from hub.presented import Trust, issuer
from hub.store import guests
from tests.devices.test_asyncapi import load_doc, normalize

NOW = utcnow()
HUB_KEYS = [new_signing_key(NOW - timedelta(days=10), timedelta(days=60))]
TRUST = Trust(tag_master_key=bytes(range(16)), jwks=jwks(HUB_KEYS))
LIMITS = PaymentLimits(max_amount=1_000_000, max_pin_failures=5)
DOC = load_doc()
CHANNEL_SCHEMA = {Channel.DECISIONS: "HubReply", Channel.ERRORS: "HubReply",
                  Channel.COMMANDS: "Command"}


def validator(name: str) -> Draft7Validator:
    return Draft7Validator(normalize({"$ref": f"#/components/schemas/{name}"}, DOC),
                           format_checker=FormatChecker())


def schema_for(topic: str) -> str:
    """The schema of what travels on ``topic``, found by the topic builders."""
    parts = topic.split("/")
    venue = parts[2]
    if topic == staff_topic(venue):
        return "StaffAlert"
    if topic == keys_topic(venue, "jwks"):
        return "JwksDocument"
    if topic == keys_topic(venue, "revocations"):
        return "RevocationsDocument"
    if len(parts) == 6 and topic == guest_topic(venue, parts[4]):
        return "GuestNotification"
    return CHANNEL_SCHEMA[parse_topic(topic).channel]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    seed_demo(engine, NOW)
    with session_scope(engine) as session:
        for stay in session.exec(select(Entitlement)).all():  # an entry hours back is in it
            if stay.valid_from <= NOW <= stay.valid_until:
                stay.valid_from = NOW - timedelta(days=3)
                session.add(stay)
    yield engine
    engine.dispose()


def send(engine: Engine, device: str, payload: bytes,
         channel: Channel = Channel.EVENTS) -> list[Outgoing]:
    with session_scope(engine) as session:
        out = handle_message(session, device_topic(VENUE_ID, device, channel), payload,
                             utcnow(), limits=LIMITS, trust=TRUST)
    return out.replies


def tap(uid: str, event_id: str) -> bytes:
    return encode(TapEvent(event_id=event_id, ts=utcnow(),
                           credential=WristbandCredential(uid=uid)))


def pay(event_id: str, key: str, amount: int) -> bytes:
    return encode(PaymentRequest(event_id=event_id, ts=utcnow(),
                                 credential=WristbandCredential(uid=wristband_uid(4)),
                                 amount=amount, currency="USD", merchant_id="cafe",
                                 idempotency_key=key, account="wallet"))


def forged_offline_entry(engine: Engine) -> bytes:
    """An offline entry whose proof was made by another phone than the key's."""
    _, phone_jwk = phone_keypair()
    token, jti = issue_phone_key(
        HUB_KEYS, now=NOW - timedelta(days=1), issuer=issuer(VENUE_ID), venue=VENUE_ID,
        guest_id="guest-01", credential_id="phone-guest-01", zones=["room-101"],
        nbf=NOW - timedelta(days=3), exp=NOW + timedelta(days=3), phone_jwk=phone_jwk)
    with session_scope(engine) as session:
        credential = session.get(Credential, "phone-guest-01")
        assert credential is not None
        guests.record_phone_key(session=session, credential=credential, jti=jti,
                              expires_at=NOW + timedelta(days=3), now=NOW - timedelta(days=1))
    at = NOW - timedelta(minutes=10)
    thief, _ = phone_keypair()
    challenge = new_challenge()
    proof = make_proof(thief, challenge=challenge, lock_id="lock-101", key_jti=jti, now=at)
    return encode(OfflineEntry(
        event_id="offline-1", ts=at, credential_kind="phone_key", credential_ref=jti,
        outcome="allow", reason="ok",
        credential=PhoneKeyCredential(token=token, challenge=challenge, proof=proof)))


def everything_the_hub_answers(engine: Engine) -> list[Outgoing]:
    uid = wristband_uid(1)
    replies: list[Outgoing] = []
    replies += send(engine, "gate-park-in-1", tap(uid, "t-1"))  # allow
    replies += send(engine, "gate-park-in-1", tap(uid, "t-2"))  # anti_passback
    replies += send(engine, "gate-park-in-1", tap("04FFFFFFFFFFFF", "t-3"))  # unknown
    replies += send(engine, "gate-park-in-1", tap(uid, "t-1").replace(b"t-1", b"t-9", 1))
    replies += send(engine, "rogue-1", tap(uid, "t-4"))  # unknown_device
    replies += send(engine, "gate-park-in-1", b'{"v":1,"kind":"tap"}')  # schema_violation
    replies += send(engine, "gate-park-in-1", b"not json")  # malformed_json
    replies += send(engine, "gate-park-in-1", b"{}", Channel.DECISIONS)  # unknown_topic
    replies += send(engine, "pos-cafe-1", pay("p-1", "till-1", 1150))  # approve, receipts
    replies += send(engine, "pos-cafe-1", pay("p-2", "till-1", 900))  # idempotency_conflict
    replies += send(engine, "pos-cafe-1", pay("p-3", "till-2", 999_999))  # a decline
    replies += send(engine, "gate-park-in-1", encode(HeartbeatEvent(
        event_id="hb-1", ts=utcnow(), battery_pct=80)))
    replies += send(engine, "thermostat-101", encode(TelemetryEvent(
        event_id="tm-1", ts=utcnow(), readings={"temperature_c": 21.5})))
    replies += send(engine, "gate-park-in-1", b"online", Channel.STATUS)
    replies += send(engine, "lock-101", forged_offline_entry(engine))  # a staff alert
    with session_scope(engine) as session:
        replies += [Outgoing(topic, payload)
                    for topic, payload in keyring.key_material(session, HUB_KEYS, NOW)]
    return replies


def test_every_message_the_hub_emits_validates(engine: Engine) -> None:
    replies = everything_the_hub_answers(engine)
    kinds: set[str] = set()
    for reply in replies:
        name = schema_for(reply.topic)
        payload: Any = json.loads(reply.payload)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator(name).iter_errors(payload)]
        assert errors == [], (reply.topic, payload)
        kinds.add(payload.get("kind", name))
    # Guards the scenario: each message of the hub was among them.
    assert {"decision", "payment_decision", "error", "receipt", "alert", "JwksDocument",
            "RevocationsDocument"} <= kinds, kinds


def test_key_material_claims_validate_and_verify(engine: Engine) -> None:
    with session_scope(engine) as session:
        messages = dict(keyring.key_material(session, HUB_KEYS, NOW))
    claims_schema = validator("KeyMaterialClaims")
    for kind in ("jwks", "revocations"):
        document = json.loads(messages[keys_topic(VENUE_ID, kind)])
        claims = jwt.decode(document["jws"], options={"verify_signature": False})
        assert [e.message for e in claims_schema.iter_errors(claims)] == []
        assert claims["kind"] == kind
        verify(document, kind=kind, venue=VENUE_ID, trusted=jwks(HUB_KEYS))
