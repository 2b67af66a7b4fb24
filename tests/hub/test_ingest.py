"""The bridge's logic fed message by message, without a broker, on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from devices.contract import (
    MAX_PAYLOAD_BYTES,
    Decision,
    ErrorCode,
    ErrorMessage,
    HeartbeatEvent,
    PaymentDecision,
    PaymentRequest,
    PhoneKeyCredential,
    TapEvent,
    TelemetryEvent,
    WristbandCredential,
    WristbandSunCredential,
    encode,
    parse_reply,
)
from devices.sun import make_sun
from devices.topics import Channel, device_topic
from hub.db import session_scope
from hub.deadline import Deadline
from hub.demo import VENUE_ID, wristband_uid
from hub.ingest import Outcome, content_digest, handle_message
from hub.models import (
    AuditEntry,
    Credential,
    CredentialKind,
    CredentialStatus,
    Device,
    Event,
    Venue,
    Zone,
    utcnow,
)
from hub.payment import PaymentLimits
from hub.presented import Trust, tag_keys
from tests.utils.demo_db import demo_database

CHARLIE = wristband_uid(1)

LIMITS = PaymentLimits(max_amount=1_000_000, max_pin_failures=5)
TAG_KEY = bytes(range(16))  # the venue's tag master key in these tests


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The same rules on the embedded database and on PostgreSQL."""
    engine = demo_database(request, request.param, tmp_path)
    yield engine
    engine.dispose()


def feed(engine: Engine, device: str, payload: bytes | dict[str, object],
         channel: Channel = Channel.EVENTS, venue: str = VENUE_ID) -> Outcome:
    """Hand one message to the bridge's logic, as if it came from the broker."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return handle(engine, device_topic(venue, device, channel), raw)


def handle(engine: Engine, topic: str, raw: bytes) -> Outcome:
    """What the bridge does with one message, minus MQTT: one transaction, then the replies."""
    with session_scope(engine) as session:
        return handle_message(session, topic, raw, utcnow(), limits=LIMITS,
                              trust=Trust(tag_master_key=TAG_KEY))


def tap(engine: Engine, device: str, uid: str = CHARLIE, event_id: str | None = None,
        **kw: object) -> Decision:
    event = TapEvent(event_id=event_id or utcnow().strftime("e%H%M%S%f"), ts=utcnow(),
                     credential=WristbandCredential(uid=uid), **kw)  # type: ignore[arg-type]
    outcome = feed(engine, device, encode(event))
    assert outcome.error is None, outcome
    [reply] = outcome.replies
    assert reply.topic == device_topic(VENUE_ID, device, Channel.DECISIONS)
    decision = parse_reply(reply.payload)
    assert isinstance(decision, Decision) and decision.event_id == event.event_id
    return decision


def tap_with(engine: Engine, device: str,
             credential: PhoneKeyCredential | WristbandCredential | WristbandSunCredential,
             event_id: str | None = None, **kw: object) -> Decision:
    """A tap of any credential, answered with a decision."""
    event = TapEvent(event_id=event_id or utcnow().strftime("k%H%M%S%f"), ts=utcnow(),
                     credential=credential, **kw)  # type: ignore[arg-type]
    [reply] = feed(engine, device, encode(event)).replies
    decision = parse_reply(reply.payload)
    assert isinstance(decision, Decision), decision
    return decision


def error_of(outcome: Outcome, device: str) -> ErrorMessage:
    [reply] = outcome.replies
    assert reply.topic == device_topic(VENUE_ID, device, Channel.ERRORS)
    message = parse_reply(reply.payload)
    assert isinstance(message, ErrorMessage)
    assert outcome.error is message.code
    return message


def count_events(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Event)).one()


def test_gate_in_out_and_anti_passback(engine: Engine) -> None:
    assert tap(engine, "gate-park-in-1").reason == "ok"
    assert tap(engine, "gate-park-in-2").reason == "anti_passback"
    assert tap(engine, "gate-park-out-1").reason == "ok"
    assert tap(engine, "gate-park-out-1").reason == "anti_passback"
    assert tap(engine, "gate-park-in-2").reason == "ok"
    with Session(engine) as session:
        assert session.get(Zone, "park").occupancy == 1  # type: ignore[union-attr]


def test_same_event_twice_is_decided_once_and_recorded_once(engine: Engine) -> None:
    first = tap(engine, "gate-park-in-1", event_id="dup-1")
    again = tap(engine, "gate-park-in-1", event_id="dup-1")
    assert again == first and first.outcome == "allow"  # not an anti-passback denial
    assert count_events(engine) == 1
    # The same event id from another device is another event.
    assert tap(engine, "gate-park-in-2", event_id="dup-1").reason == "anti_passback"
    assert count_events(engine) == 2


def test_lost_band_is_denied_on_the_very_next_tap(engine: Engine) -> None:
    assert tap(engine, "lock-101").outcome == "allow"
    with session_scope(engine) as session:
        band = session.get(Credential, "band-guest-01")
        assert band is not None
        band.status = CredentialStatus.LOST
    decision = tap(engine, "lock-101")
    assert (decision.outcome, decision.reason) == ("deny", "credential_lost")
    assert decision.guest_name is None  # a lost band does not reveal its owner


def test_phone_key_opens_its_room_only(engine: Engine) -> None:
    event = TapEvent(event_id="pk1", ts=utcnow(),
                     credential=PhoneKeyCredential(key_id="pk-guest-02"))
    [reply] = feed(engine, "lock-102", encode(event)).replies
    assert parse_reply(reply.payload).reason == "ok"  # type: ignore[union-attr]
    assert tap(engine, "lock-105", uid=wristband_uid(2)).reason == "wrong_zone"


def test_zone_capacity_is_enforced(engine: Engine) -> None:
    with session_scope(engine) as session:
        zone = session.get(Zone, "park")
        assert zone is not None
        zone.capacity = 2
    outcomes = [tap(engine, "gate-park-in-1", uid=wristband_uid(n)).reason for n in (1, 2, 3)]
    assert outcomes == ["ok", "ok", "zone_full"]
    assert tap(engine, "gate-park-out-1", uid=wristband_uid(1)).reason == "ok"
    assert tap(engine, "gate-park-in-1", uid=wristband_uid(3)).reason == "ok"


def test_disabled_device_and_unknown_credential(engine: Engine) -> None:
    assert tap(engine, "gate-park-in-1", uid="04FFFFFFFFFFFF").reason == "unknown_credential"
    with session_scope(engine) as session:
        device = session.get(Device, "gate-park-in-1")
        assert device is not None
        device.enabled = False
    assert tap(engine, "gate-park-in-1").reason == "device_disabled"


# ------------------------------------------------------------------ bad input


def test_malformed_json_is_answered_on_the_error_path(engine: Engine) -> None:
    message = error_of(feed(engine, "gate-park-in-1", b"{not json"), "gate-park-in-1")
    assert message.code is ErrorCode.MALFORMED_JSON and message.event_id is None
    assert count_events(engine) == 0


def test_schema_violation_names_the_field_and_keeps_the_event_id(engine: Engine) -> None:
    bad = {"v": 1, "kind": "tap", "event_id": "e-77", "ts": "2026-01-01T00:00:00Z",
           "credential": {"type": "wristband", "uid": "not-hex"}}
    message = error_of(feed(engine, "gate-park-in-1", bad), "gate-park-in-1")
    assert message.code is ErrorCode.SCHEMA_VIOLATION and message.event_id == "e-77"
    assert "uid" in message.detail


@pytest.mark.parametrize("payload", [
    {"v": 1, "kind": "tap", "event_id": "e1", "ts": "2026-01-01T00:00:00",  # naive time
     "credential": {"type": "wristband", "uid": "04A1B2C3"}},
    {"v": 1, "kind": "tap", "event_id": "e1", "ts": "2026-01-01T00:00:00Z",
     "credential": {"type": "wristband", "uid": "04A1B2C3"}, "extra": 1},
    {"v": 1, "kind": "teleport", "event_id": "e1"},
    [1, 2, 3],
])
def test_schema_violations(engine: Engine, payload: object) -> None:
    raw = json.dumps(payload).encode()
    assert error_of(feed(engine, "gate-park-in-1", raw), "gate-park-in-1").code \
        is ErrorCode.SCHEMA_VIOLATION


def test_future_contract_version_is_refused(engine: Engine) -> None:
    payload = {"v": 2, "kind": "tap", "event_id": "e1"}
    assert error_of(feed(engine, "gate-park-in-1", payload), "gate-park-in-1").code \
        is ErrorCode.UNSUPPORTED_VERSION


def test_payload_over_64_kib_is_refused_unparsed(engine: Engine) -> None:
    raw = b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    assert error_of(feed(engine, "gate-park-in-1", raw), "gate-park-in-1").code \
        is ErrorCode.PAYLOAD_TOO_LARGE


def test_unknown_device_is_refused_and_audited(engine: Engine) -> None:
    event = TapEvent(event_id="x1", ts=utcnow(), credential=WristbandCredential(uid=CHARLIE))
    message = error_of(feed(engine, "rogue-1", encode(event)), "rogue-1")
    assert message.code is ErrorCode.UNKNOWN_DEVICE and message.event_id == "x1"
    # A real device id under another venue's topic is not that device either.
    other = feed(engine, "gate-park-in-1", encode(event), venue="other-venue")
    assert other.error is ErrorCode.UNKNOWN_DEVICE
    with Session(engine) as session:
        reasons = session.exec(select(Event.reason)).all()
    assert reasons == ["unknown_device", "unknown_device"]


def test_topic_outside_the_contract(engine: Engine) -> None:
    outcome = handle(engine, f"venuehub/v1/{VENUE_ID}/device/gate-park-in-1/bogus",
                             b"{}")
    assert error_of(outcome, "gate-park-in-1").code is ErrorCode.UNKNOWN_TOPIC
    # No device to answer: counted, not answered.
    stray = handle(engine, "venuehub/v1/elsewhere", b"{}")
    assert stray.error is ErrorCode.UNKNOWN_TOPIC and stray.replies == []


def test_a_device_cannot_publish_on_the_hubs_channels(engine: Engine) -> None:
    forged = handle(engine, f"venuehub/v1/{VENUE_ID}/device/gate-park-in-1/decisions",
                            b"{}")
    assert error_of(forged, "gate-park-in-1").code is ErrorCode.UNKNOWN_TOPIC
    assert count_events(engine) == 0


def test_heartbeat_and_status_update_the_device(engine: Engine) -> None:
    beat = HeartbeatEvent(event_id="hb1", ts=utcnow(), battery_pct=55, firmware="1.2.3")
    assert feed(engine, "lock-101", encode(beat)) == Outcome()
    assert feed(engine, "lock-101", encode(beat)) == Outcome()  # a redelivery is harmless
    with Session(engine) as session:
        device = session.get(Device, "lock-101")
        assert device is not None
        assert (device.online, device.battery_pct, device.firmware) == (True, 55, "1.2.3")
        assert device.last_seen is not None and device.last_seen > utcnow() - timedelta(minutes=1)
    assert feed(engine, "lock-101", b"offline", channel=Channel.STATUS) == Outcome()
    with Session(engine) as session:
        assert session.get(Device, "lock-101").online is False  # type: ignore[union-attr]


def test_many_messages_in_one_transaction_see_each_others_effects(engine: Engine) -> None:
    """The bridge decides a batch in one transaction: state must not be read stale."""
    with session_scope(engine) as session:
        zone = session.get(Zone, "park")
        assert zone is not None
        zone.capacity = 2
    topic = device_topic(VENUE_ID, "gate-park-in-1", Channel.EVENTS)
    taps = [TapEvent(event_id=f"b{n}", ts=utcnow(), credential=WristbandCredential(
        uid=wristband_uid(n))) for n in (1, 2, 3)]
    taps.append(taps[0])  # a redelivery inside the same batch
    taps.append(TapEvent(event_id="b1-again", ts=utcnow(),
                         credential=WristbandCredential(uid=wristband_uid(1))))
    with session_scope(engine) as session:
        outcomes = [handle_message(session, topic, encode(t), utcnow(), limits=LIMITS)
                    for t in taps]
    reasons = [o.decision.reason.value for o in outcomes if o.decision]
    assert reasons == ["ok", "ok", "zone_full", "ok", "anti_passback"]
    assert count_events(engine) == 4
    with Session(engine) as session:
        assert session.get(Zone, "park").occupancy == 2  # type: ignore[union-attr]



# ------------------------------------------------------------- secure bands


def sun_band(engine: Engine, uid: str = "04C0FFEE000001") -> None:
    """Register a secure (NTAG 424 DNA) band for guest-03."""
    with session_scope(engine) as session:
        session.add(Credential(id="sun-guest-03", guest_id="guest-03",
                               kind=CredentialKind.WRISTBAND, identifier=uid, sun=True))


def sun_event(device: str, uid: str, counter: int, *, flip: bool = False,
              master: bytes = TAG_KEY, pad: bytes | None = None) -> TapEvent:
    """A tap of a secure band's read ``counter``; each read encrypts anew (random padding),
    unless ``pad`` repeats one."""
    meta, file_key = tag_keys(master, bytes.fromhex(uid))
    picc, cmac = make_sun(bytes.fromhex(uid), counter, meta_read_key=meta,
                          file_read_key=file_key, random_pad=pad)
    if flip:
        cmac = f"{int(cmac[0], 16) ^ 1:X}{cmac[1:]}"
    return TapEvent(event_id=f"sun-{counter}-{flip}-{device}", ts=utcnow(),
                    credential=WristbandSunCredential(picc=picc, cmac=cmac))


def sun_tap(engine: Engine, device: str, uid: str, counter: int, *, flip: bool = False,
            master: bytes = TAG_KEY, pad: bytes | None = None) -> Decision:
    event = sun_event(device, uid, counter, flip=flip, master=master, pad=pad)
    [reply] = feed(engine, device, encode(event)).replies
    decision = parse_reply(reply.payload)
    assert isinstance(decision, Decision)
    return decision


def test_secure_band_opens_and_its_replay_is_refused(engine: Engine) -> None:
    sun_band(engine)
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 7, pad=bytes(5)).reason == "ok"
    # The same event again (its very bytes, as QoS 1 redelivers them): the recorded
    # decision is replayed, not decided anew.
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 7, pad=bytes(5)).reason == "ok"
    replayed = sun_tap(engine, "lock-104", "04C0FFEE000001", 7)  # same SUN data elsewhere
    assert (replayed.outcome, replayed.reason) == ("deny", "credential_replayed")
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 6).reason == "credential_replayed"
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 8).reason == "ok"


def test_forged_and_cloned_secure_bands_are_refused(engine: Engine) -> None:
    sun_band(engine)
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 1, flip=True).reason \
        == "credential_forged"
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 2, master=bytes(16)).reason \
        == "credential_forged"  # keys not from this venue
    clone = tap(engine, "lock-103", uid="04C0FFEE000001")  # the UID copied with a phone app
    assert (clone.outcome, clone.reason) == ("deny", "credential_forged")
    with Session(engine) as session:
        rows = session.exec(select(Event).where(Event.device_id == "lock-103")
                            .order_by(col(Event.id))).all()
    assert [r.reason for r in rows].count("credential_forged") == 3
    # Whom each attempt imitated, when that is known: a MAC that fails over a UID that
    # decrypts under the venue's key, and a bare copy of the UID, are attempts on guest-03's
    # band; SUN data made with other keys names no band at all.
    assert [(r.guest_id, r.credential_id) for r in rows] == [
        ("guest-03", "sun-guest-03"), (None, None), ("guest-03", "sun-guest-03")]
    assert all(r.guest_name is None for r in rows)  # the gate never says whose band it was
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 1).reason == "ok"  # counter unspent


def test_a_closed_venue_lets_nobody_in_and_takes_no_money(engine: Engine) -> None:
    from devices.contract import PaymentDecision, parse_reply
    from tests.utils import ingest

    def till(event_id: str) -> str:
        out = ingest.pay(engine, VENUE_ID, "pos-cafe-1", utcnow(), event_id, amount=100,
                         merchant_id="cafe", uid=CHARLIE)
        decision = parse_reply(out.replies[0].payload)
        assert isinstance(decision, PaymentDecision)
        return decision.reason

    with session_scope(engine) as session:
        venue = session.get(Venue, VENUE_ID)
        assert venue is not None
        venue.enabled = False
    assert tap(engine, "lock-101").reason == "device_disabled"
    assert till("closed-1") == "device_disabled"
    with session_scope(engine) as session:
        venue = session.get(Venue, VENUE_ID)
        assert venue is not None
        venue.enabled = True
    assert tap(engine, "lock-101").reason == "ok"
    assert till("open-1") == "ok"


def test_one_reader_may_differ_from_its_venue_s_policy(engine: Engine) -> None:
    """A legacy lock at a strict venue takes bare UIDs; a strict one at a legacy venue
    does not; every other reader follows the venue."""
    with session_scope(engine) as session:
        venue = session.get(Venue, VENUE_ID)
        legacy, strict = session.get(Device, "lock-101"), session.get(Device, "lock-102")
        assert venue is not None and legacy is not None and strict is not None
        venue.allow_plain_uid = False
        legacy.allow_plain_uid = True
    assert tap(engine, "lock-101").reason == "ok"  # guest-01's room, a legacy reader
    assert tap(engine, "lock-102", uid=wristband_uid(2)).reason == "insecure_credential"
    with session_scope(engine) as session:
        venue = session.get(Venue, VENUE_ID)
        legacy, strict = session.get(Device, "lock-101"), session.get(Device, "lock-102")
        assert venue is not None and legacy is not None and strict is not None
        venue.allow_plain_uid = True
        legacy.allow_plain_uid = None
        strict.allow_plain_uid = False
    assert tap(engine, "lock-101", event_id="again").reason == "ok"  # follows the venue
    assert tap(engine, "lock-102", uid=wristband_uid(2),
               event_id="strict").reason == "insecure_credential"


def test_a_venue_may_refuse_plain_uid_bands(engine: Engine) -> None:
    assert tap(engine, "lock-101").reason == "ok"
    with session_scope(engine) as session:
        venue = session.get(Venue, VENUE_ID)
        assert venue is not None
        venue.allow_plain_uid = False
    assert tap(engine, "lock-101").reason == "insecure_credential"
    sun_band(engine)
    assert sun_tap(engine, "lock-103", "04C0FFEE000001", 1).reason == "ok"


def test_a_forged_phone_key_is_not_called_a_band(engine: Engine) -> None:
    forged = PhoneKeyCredential(token="not.a.jwt", challenge="c" * 16, proof="nope")
    door = tap_with(engine, "lock-101", forged)
    assert (door.reason, door.text) == ("credential_forged", "Key not genuine - please see staff")
    request = PaymentRequest(event_id="forged-key-pay", ts=utcnow(), credential=forged,
                             amount=100, currency="USD", merchant_id="cafe",
                             idempotency_key="forged-key-pay")
    [reply] = feed(engine, "pos-cafe-1", encode(request)).replies
    till = parse_reply(reply.payload)
    assert isinstance(till, PaymentDecision)
    assert (till.reason, till.text) == ("credential_forged", "Key not genuine - please see staff")
    band = tap(engine, "lock-101", uid="04FF0000000009")  # no such band: the words for both
    assert (band.reason, band.text) == ("unknown_credential", "Band or key not recognised")


def conflicts_audited(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEntry).where(
            AuditEntry.action == "device.event_id_conflict").order_by(col(AuditEntry.id))).all())


def test_an_event_id_used_again_for_another_tap_is_refused_and_audited(engine: Engine) -> None:
    first = tap(engine, "gate-park-in-1", uid=CHARLIE, event_id="same-1")
    assert first.outcome == "allow"
    stranger = wristband_uid(2)
    for _ in range(2):  # QoS 1 may redeliver the conflicting tap too
        outcome = feed(engine, "gate-park-in-1", encode(TapEvent(
            event_id="same-1", ts=utcnow(), credential=WristbandCredential(uid=stranger))))
        refused = error_of(outcome, "gate-park-in-1")  # not Charlie's decision and name
        assert (refused.code, refused.event_id) == (ErrorCode.EVENT_ID_CONFLICT, "same-1")
        assert outcome.decision is None and outcome.occurrence is None
    other_way = feed(engine, "gate-park-in-1", encode(TapEvent(
        event_id="same-1", ts=utcnow(), credential=WristbandCredential(uid=CHARLIE),
        direction="out")))
    assert error_of(other_way, "gate-park-in-1").code is ErrorCode.EVENT_ID_CONFLICT
    # The identical tap, even stamped anew and laid out differently, is a redelivery.
    resent = {"v": 1, "kind": "tap", "ts": utcnow().isoformat(), "event_id": "same-1",
              "credential": {"uid": CHARLIE, "type": "wristband"}}
    [reply] = feed(engine, "gate-park-in-1", json.dumps(resent, indent=1).encode()).replies
    assert parse_reply(reply.payload) == first
    assert count_events(engine) == 1
    with Session(engine) as session:
        assert session.get(Zone, "park").occupancy == 1  # type: ignore[union-attr]
    [entry] = conflicts_audited(engine)  # once per (device, event id): the audit stays small
    assert (entry.actor, entry.target) == ("device:gate-park-in-1", "event:gate-park-in-1/same-1")
    assert entry.detail["first"]["credential_ref"] == CHARLIE
    assert entry.detail["first"]["reason"] == "ok"
    assert entry.detail["again"] == {"kind": "tap", "credential_kind": "wristband",
                                     "credential_ref": stranger, "direction": None}


def test_a_secure_band_s_redelivery_is_its_very_bytes(engine: Engine) -> None:
    sun_band(engine)
    event = sun_event("lock-103", "04C0FFEE000001", 7)
    [reply] = feed(engine, "lock-103", encode(event)).replies
    first = parse_reply(reply.payload)
    assert isinstance(first, Decision) and first.reason == "ok"
    [again] = feed(engine, "lock-103", encode(event)).replies
    assert parse_reply(again.payload) == first
    # Another read under that event id (the same counter, encrypted anew, as only a holder of
    # the keys could) is not a redelivery.
    other = sun_event("lock-103", "04C0FFEE000001", 7)
    assert other.credential != event.credential
    refused = error_of(feed(engine, "lock-103", encode(other)), "lock-103")
    assert refused.code is ErrorCode.EVENT_ID_CONFLICT


def test_a_tap_recorded_without_a_digest_answers_as_before(engine: Engine) -> None:
    first = tap(engine, "gate-park-in-1", uid=CHARLIE, event_id="old-1")
    with session_scope(engine) as session:
        [row] = session.exec(select(Event).where(Event.event_id == "old-1")).all()
        assert row.content_digest is not None
        row.content_digest = None  # recorded before digests were kept: nothing to tell by
        session.add(row)
    assert tap(engine, "gate-park-in-1", uid=wristband_uid(2), event_id="old-1") == first


def test_a_report_under_a_used_event_id_must_say_the_same(engine: Engine) -> None:
    beat = HeartbeatEvent(event_id="hb-9", ts=utcnow(), battery_pct=55)
    assert feed(engine, "lock-101", encode(beat)) == Outcome()
    later = beat.model_copy(update={"ts": utcnow() + timedelta(seconds=1)})
    assert feed(engine, "lock-101", encode(later)) == Outcome()  # a retry, stamped anew
    drained = beat.model_copy(update={"battery_pct": 5})
    assert error_of(feed(engine, "lock-101", encode(drained)), "lock-101").code \
        is ErrorCode.EVENT_ID_CONFLICT
    with Session(engine) as session:
        assert session.get(Device, "lock-101").battery_pct == 55  # type: ignore[union-attr]
    reading = TelemetryEvent(event_id="hb-9", ts=utcnow(), readings={"temp_c": 21.5})
    assert error_of(feed(engine, "lock-101", encode(reading)), "lock-101").code \
        is ErrorCode.EVENT_ID_CONFLICT  # a heartbeat's id for readings
    first = TelemetryEvent(event_id="t-9", ts=utcnow(), readings={"temp_c": 21.5, "on": True})
    assert feed(engine, "lock-101", encode(first)).occurrence is not None
    assert feed(engine, "lock-101", encode(first)) == Outcome()  # a redelivery: nothing new
    changed = first.model_copy(update={"readings": {"temp_c": 30.0, "on": True}})
    assert error_of(feed(engine, "lock-101", encode(changed)), "lock-101").code \
        is ErrorCode.EVENT_ID_CONFLICT
    assert [(e.target, e.detail["first"], e.detail["again"]) for e in conflicts_audited(engine)] \
        == [("event:lock-101/hb-9", {"kind": "heartbeat"}, {"kind": "heartbeat"}),
            ("event:lock-101/t-9", {"kind": "telemetry"}, {"kind": "telemetry"})]


def test_the_content_of_a_message_is_what_it_says_not_how_or_when() -> None:
    base = TapEvent(event_id="x", ts=utcnow(), credential=WristbandCredential(uid=CHARLIE))
    digest = content_digest(base)
    assert len(digest) == 64
    assert content_digest(base.model_copy(update={"ts": utcnow() + timedelta(hours=1),
                                                  "event_id": "y"})) == digest
    assert content_digest(base.model_copy(update={"direction": "in"})) != digest
    assert content_digest(base.model_copy(update={
        "credential": WristbandCredential(uid=wristband_uid(2))})) != digest
    assert content_digest(base.model_copy(update={
        "credential": PhoneKeyCredential(key_id="pk-guest-01")})) != digest


def test_an_event_id_used_for_another_kind_is_audited_too(engine: Engine) -> None:
    request = PaymentRequest(event_id="kind-1", ts=utcnow(), amount=100, currency="USD",
                             merchant_id="cafe", idempotency_key="kind-1",
                             credential=WristbandCredential(uid=CHARLIE))
    assert feed(engine, "pos-cafe-1", encode(request)).error is None
    as_tap = TapEvent(event_id="kind-1", ts=utcnow(), credential=WristbandCredential(uid=CHARLIE))
    assert error_of(feed(engine, "pos-cafe-1", encode(as_tap)), "pos-cafe-1").code \
        is ErrorCode.EVENT_ID_CONFLICT
    tap(engine, "pos-cafe-1", event_id="kind-2")  # a tap at a till: recorded, denied
    again = request.model_copy(update={"event_id": "kind-2", "idempotency_key": "kind-2"})
    assert error_of(feed(engine, "pos-cafe-1", encode(again)), "pos-cafe-1").code \
        is ErrorCode.EVENT_ID_CONFLICT
    assert [(e.target, e.detail["first"], e.detail["again"]) for e in conflicts_audited(engine)] \
        == [("event:pos-cafe-1/kind-1", {"kind": "payment"}, {"kind": "tap"}),
            ("event:pos-cafe-1/kind-2", {"kind": "tap"}, {"kind": "payment"})]


def test_a_tap_answered_too_late_keeps_its_event_id_to_what_it_said(engine: Engine) -> None:
    def late_tap(uid: str) -> Outcome:
        now = utcnow()
        event = TapEvent(event_id="late-1", ts=now - timedelta(seconds=10),
                         credential=WristbandCredential(uid=uid))
        with session_scope(engine) as session:
            return handle_message(session, device_topic(VENUE_ID, "gate-park-in-1",
                                                        Channel.EVENTS), encode(event), now,
                                  limits=LIMITS, received_at=now - timedelta(seconds=10),
                                  deadline=Deadline(limit=timedelta(seconds=1)))

    [reply] = late_tap(CHARLIE).replies
    first = parse_reply(reply.payload)
    assert isinstance(first, Decision) and first.reason == "too_late"
    assert parse_reply(late_tap(CHARLIE).replies[0].payload) == first
    refused = error_of(late_tap(wristband_uid(2)), "gate-park-in-1")
    assert refused.code is ErrorCode.EVENT_ID_CONFLICT
