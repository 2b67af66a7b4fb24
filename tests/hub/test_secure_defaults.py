"""Secure by default: separate secrets, ids that cannot collide, private files, headers."""

from __future__ import annotations

import logging
import shutil
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from devices.contract import ErrorCode, OfflineEntry, encode
from devices.topics import Channel, device_topic
from hub import cli
from hub.api.main import API_PREFIX
from hub.broker_auth import allowed, bridge_password, device_password, password_ok
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import VENUE_ID, seed_demo
from hub.ingest import Outcome, handle_message
from hub.models import AuditEntry, Credential, Event, utcnow
from hub.provisioning import BRIDGE_USER, broker_auth, device_sheet, mosquitto_config
from hub.secrets import load_or_create, private_dir
from tests.hub.conftest import who
from tests.utils import ingest
from tests.utils.ingest import feed


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secure") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


# ------------------------------------------------------------ separate secrets


def test_no_device_can_obtain_the_bridges_password(tmp_path: Path) -> None:
    """A venue 'hub' with a device 'bridge' once derived the bridge's own password."""
    secrets = load_or_create(tmp_path)
    auth = broker_auth(secrets)
    assert auth.bridge_password == bridge_password(secrets.broker_key)
    for venue, device in [("hub", "bridge"), ("venuehub", "bridge"), ("demo", "bridge")]:
        assert device_password(secrets.broker_key, venue, device) != auth.bridge_password
    # And the bridge's password opens no device login, nor a device's the bridge's.
    assert not password_ok("hub.bridge", auth.bridge_password, auth)
    assert password_ok(BRIDGE_USER, auth.bridge_password, auth)


@pytest.mark.parametrize("venue_id", ["hub", "HUB", "venuehub", "venuehub-2", "bridge",
                                      "guest-01", "evil.venue", "a.b"])
def test_venue_ids_that_could_impersonate_or_break_the_hub_are_refused(
        client: TestClient, app: FastAPI, venue_id: str) -> None:
    answer = client.post(f"{API_PREFIX}/venues", headers=who(app, "admin"),
                         json={"id": venue_id, "name": "Evil"})
    assert answer.status_code == 422, answer.text
    assert client.get(f"{API_PREFIX}/venues/{venue_id}",
                      headers=who(app, "admin")).status_code == 404


def test_an_ordinary_venue_id_is_accepted(client: TestClient, app: FastAPI) -> None:
    answer = client.post(f"{API_PREFIX}/venues", headers=who(app, "admin"),
                         json={"id": "water_world-2", "name": "Water World"})
    assert answer.status_code == 201, answer.text


def test_a_legacy_venue_id_with_a_dot_does_not_stop_provisioning(template: Path,
                                                                  tmp_path: Path) -> None:
    """A venue created before the rule: its devices get no broker login, the rest do."""
    copy = tmp_path / "legacy.db"
    shutil.copyfile(template, copy)
    engine = create_db_engine(f"sqlite:///{copy}", sqlite_synchronous="OFF")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO venue (id, name, timezone, currency, "
                             "allow_plain_uid, created_at) VALUES ('old.venue', 'Old', 'UTC', "
                             "'USD', 0, '2026-01-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO device (id, venue_id, kind, name, enabled, online, "
                             "created_at) VALUES ('gate-x', 'old.venue', 'GATE', 'x', 1, 0, "
                             "'2026-01-01 00:00:00')")
    secrets = load_or_create(tmp_path)
    with Session(engine) as session:
        sheet = device_sheet(session, secrets)
        passwords, acl = mosquitto_config(session, secrets)
    engine.dispose()
    assert "gate-x" not in sheet and "gate-park-in-1" in sheet
    assert "old.venue" not in passwords + acl


# ------------------------------------------------------------ broker ACL


def test_a_lock_reads_its_venues_key_material_and_nothing_else() -> None:
    lock = "demo.lock-101"
    assert allowed(lock, "subscribe", "venuehub/v1/demo/keys/#", bridge_user=BRIDGE_USER)
    assert allowed(lock, "receive", "venuehub/v1/demo/keys/jwks", bridge_user=BRIDGE_USER)
    assert not allowed(lock, "publish", "venuehub/v1/demo/keys/jwks", bridge_user=BRIDGE_USER)
    assert not allowed(lock, "subscribe", "venuehub/v1/other/keys/#", bridge_user=BRIDGE_USER)
    assert not allowed(lock, "subscribe", "venuehub/v1/+/keys/#", bridge_user=BRIDGE_USER)


# ------------------------------------------------------------ private files


def test_the_database_and_data_directory_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    private_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    init_db(engine)
    engine.dispose()
    for name in ("hub.db", "hub.db-wal", "hub.db-shm"):
        path = data / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.touch()
    path.chmod(0o644)
    create_db_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ------------------------------------------------------------ headers


def test_every_response_carries_security_headers_and_no_store(client: TestClient,
                                                              app: FastAPI) -> None:
    for answer in (client.get(f"{API_PREFIX}/health"),
                   client.get(f"{API_PREFIX}/venues", headers=who(app, "admin")),
                   client.get(f"{API_PREFIX}/venues"),  # 401 too
                   client.post(f"{API_PREFIX}/auth/token", json={"username": "x",
                                                                 "password": "y"})):
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_a_guest_token_is_not_cached(client: TestClient, app: FastAPI) -> None:
    answer = client.post(f"{API_PREFIX}/guests/guest-01/token", headers=who(app, "admin"))
    assert answer.status_code in (200, 201), answer.text
    assert answer.headers["cache-control"] == "no-store"


# ------------------------------------------------------------ offline entries


def offline_entry(engine: Engine, device: str, *, ts: datetime, ref: str,
                  credential_id: str | None, event_id: str = "off-1") -> Outcome:
    entry = OfflineEntry(event_id=event_id, ts=ts, credential_kind="phone_key",
                         credential_ref=ref, credential_id=credential_id, outcome="allow",
                         reason="ok")
    return feed(engine, device_topic(VENUE_ID, device, Channel.EVENTS), encode(entry), utcnow())


def journey(engine: Engine, device: str) -> list[Event]:
    with Session(engine) as session:
        return list(session.exec(select(Event).where(Event.device_id == device,
                                                     Event.kind == "offline_entry")).all())


@pytest.fixture
def seeded(template: Path, tmp_path: Path) -> Iterator[Engine]:
    shutil.copyfile(template, tmp_path / "hub.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}", sqlite_synchronous="OFF")
    with session_scope(engine) as session:
        phone = session.get(Credential, "phone-guest-01")
        assert phone is not None
        phone.key_jti = "jti-of-charlies-key"
    yield engine
    engine.dispose()


def test_an_offline_entry_from_a_device_that_is_no_lock_is_refused(seeded: Engine) -> None:
    out = offline_entry(seeded, "thermostat-101", ts=utcnow() - timedelta(days=3),
                        ref="jti-of-charlies-key", credential_id="phone-guest-01")
    assert out.error is ErrorCode.OFFLINE_ENTRY_REFUSED
    assert journey(seeded, "thermostat-101") == []


def test_an_offline_entry_from_the_future_is_refused(seeded: Engine) -> None:
    out = offline_entry(seeded, "lock-101", ts=utcnow() + timedelta(hours=1),
                        ref="jti-of-charlies-key", credential_id="phone-guest-01")
    assert out.error is ErrorCode.OFFLINE_ENTRY_REFUSED
    assert journey(seeded, "lock-101") == []


def test_an_offline_entry_without_a_proof_names_no_guest(seeded: Engine) -> None:
    """The lock's word alone, even with the right reference: recorded, nobody named (the
    proofs that do name a guest: tests/hub/test_offline_entries.py)."""
    out = offline_entry(seeded, "lock-101", ts=utcnow() - timedelta(minutes=5),
                        ref="someone-elses-jti", credential_id="phone-guest-01", event_id="a")
    assert out.error is None
    out = offline_entry(seeded, "lock-101", ts=utcnow() - timedelta(minutes=4),
                        ref="jti-of-charlies-key", credential_id="phone-guest-01", event_id="b")
    assert out.error is None
    recorded = {e.event_id: e.guest_id for e in journey(seeded, "lock-101")}
    assert recorded == {"a": None, "b": None}


# ------------------------------------------------------------ copyable credentials


def bare_key_tap(engine: Engine, device: str, key_id: str, event_id: str) -> str:
    out = ingest.tap(engine, VENUE_ID, device, utcnow(), event_id, key_id=key_id)
    assert out.decision is not None, out
    return str(out.decision.reason.value)


def test_a_phone_keys_bare_id_is_refused_once_it_has_a_signed_form(seeded: Engine) -> None:
    """The demo venue accepts bare ids (legacy readers); not for a key that was signed."""
    assert bare_key_tap(seeded, "lock-102", "pk-guest-02", "k1") == "ok"  # never signed
    assert bare_key_tap(seeded, "lock-101", "pk-guest-01", "k2") == "insecure_credential"
    paid = ingest.pay(seeded, VENUE_ID, "pos-cafe-1", utcnow(), "k3", amount=300,
                      merchant_id="cafe", key_id="pk-guest-01")
    assert paid.decision is not None and paid.decision.reason == "insecure_credential"


def test_new_venues_are_strict_and_only_admins_change_that(client: TestClient,
                                                           app: FastAPI) -> None:
    made = client.post(f"{API_PREFIX}/venues", headers=who(app, "admin"),
                       json={"id": "strict-park", "name": "Strict"})
    assert made.status_code == 201 and made.json()["allow_plain_uid"] is False
    path = f"{API_PREFIX}/venues/strict-park/security-policy"
    for role in ("staff", "integrator", "auditor"):
        assert client.put(path, headers=who(app, role),
                          json={"allow_plain_uid": True}).status_code == 403
    changed = client.put(path, headers=who(app, "admin"), json={"allow_plain_uid": True})
    assert changed.status_code == 200 and changed.json()["allow_plain_uid"] is True
    assert client.put(path, headers=who(app, "admin"), json={}).status_code == 422


def test_the_cli_shows_and_sets_the_policy(template: Path, tmp_path: Path) -> None:
    shutil.copyfile(template, tmp_path / "hub.db")
    runner = CliRunner()
    args = ["venue", "policy", VENUE_ID, "--data-dir", str(tmp_path)]
    shown = runner.invoke(cli.app, args)
    assert shown.exit_code == 0 and "accepts bare" in shown.output
    strict = runner.invoke(cli.app, [*args, "--strict"])
    assert strict.exit_code == 0 and "strict" in strict.output
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    assert bare_key_tap(engine, "lock-102", "pk-guest-02", "s1") == "insecure_credential"
    with Session(engine) as session:
        [entry] = session.exec(select(AuditEntry).where(
            AuditEntry.action == "venue.security_policy")).all()
        assert entry.detail == {"allow_plain_uid": False} and entry.source == "cli"
    engine.dispose()
    assert runner.invoke(cli.app, ["venue", "policy", "nowhere", "--data-dir",
                                   str(tmp_path)]).exit_code == 2


def test_an_offline_entry_names_no_guest_who_could_not_enter_that_zone(seeded: Engine) -> None:
    """Guest 5's band at room 101's lock: the reference matches, the stay does not."""
    out = offline_entry(seeded, "lock-101", ts=utcnow() - timedelta(minutes=5),
                        ref="04A10000000005", credential_id="band-guest-05", event_id="c")
    assert out.error is None
    assert {e.event_id: e.guest_id for e in journey(seeded, "lock-101")} == {"c": None}


def test_an_integrator_cannot_create_a_lax_venue(client: TestClient, app: FastAPI) -> None:
    body = {"id": "laxv", "name": "Lax", "allow_plain_uid": True}
    assert client.post(f"{API_PREFIX}/venues", headers=who(app, "integrator"),
                       json=body).status_code == 403
    assert client.post(f"{API_PREFIX}/venues", headers=who(app, "admin"),
                       json=body).status_code == 201


def test_the_last_active_admin_cannot_be_disabled(client: TestClient, app: FastAPI) -> None:
    admin = who(app, "admin")  # the user test-admin; the demo has an admin too
    assert client.patch(f"{API_PREFIX}/users/admin", headers=admin,
                        json={"active": False}).status_code == 200
    answer = client.patch(f"{API_PREFIX}/users/test-admin", headers=admin,
                          json={"active": False})
    assert answer.status_code == 409 and "last active admin" in answer.text


def test_log_ins_are_counted_per_address_and_per_account_from_that_address() -> None:
    from hub.login_throttle import FORGET_AFTER, retry_after, throttle_keys
    assert throttle_keys("Admin", "10.0.0.1") == ("addr:10.0.0.1", "user:admin@10.0.0.1")
    assert throttle_keys("admin", "10.0.0.2")[1] != throttle_keys("admin", "10.0.0.1")[1]
    now = utcnow()
    assert retry_after(9, now, now) > 0
    assert retry_after(9, now - FORGET_AFTER - timedelta(seconds=1), now) == 0.0


# ------------------------------------------------------------ PIN locks


def test_a_pin_lock_is_lifted_by_staff_only_and_a_reset_changes_nothing_else(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    path = f"{API_PREFIX}/guests/guest-01/spending-policy"
    staff, charlie = who(app, "staff"), who(app, "guest-01")
    set_up = client.put(path, headers=staff, json={"daily_limit": 20_000, "pin": "4321",
                                                   "pin_threshold": 5_000})
    assert set_up.status_code == 200, set_up.text
    with session_scope(engine) as session:  # five wrong PINs in a row at the till
        band = session.get(Credential, "band-guest-01")
        assert band is not None
        band.pin_failures = 5
    shown = client.get(path, headers=charlie).json()
    assert (shown["pin_failures"], shown["pin_locked"]) == (5, True)
    for body in ({"reset_pin_lock": True}, {"pin": "1111"}):
        refused = client.put(path, headers=charlie, json=body)
        assert refused.status_code == 403 and "staff" in refused.text, body
    lifted = client.put(path, headers=staff, json={"reset_pin_lock": True})
    assert lifted.status_code == 200, lifted.text
    kept = lifted.json()
    assert (kept["daily_limit"], kept["pin_threshold"], kept["has_pin"]) == (20_000, 5_000, True)
    assert (kept["pin_failures"], kept["pin_locked"]) == (0, False)
    with Session(engine) as session:
        band = session.get(Credential, "band-guest-01")
        assert band is not None and band.pin_failures == 0
    # Unlocked, the guest may change their own PIN again.
    assert client.put(path, headers=charlie, json={"pin": "1111"}).status_code == 200


# ------------------------------------------------------------ signed keys at a till


def test_an_expired_signed_phone_key_at_a_till_is_declined_with_its_reason(
        seeded: Engine) -> None:
    """It answered `internal` (outside_validity was no payment reason) and dead-lettered."""
    from devices.contract import PaymentDecision, PaymentRequest, PhoneKeyCredential, parse_reply
    from devices.phone_key import make_proof, new_challenge, phone_keypair
    from hub.phone_keys import issue_phone_key, jwks, new_signing_key
    from hub.presented import Trust, issuer

    now = utcnow()
    keys = [new_signing_key(now - timedelta(days=5), timedelta(days=90))]
    phone, phone_jwk = phone_keypair()
    token, jti = issue_phone_key(
        keys, now=now - timedelta(days=3), issuer=issuer(VENUE_ID), venue=VENUE_ID,
        guest_id="guest-01", credential_id="phone-guest-01", zones=["park"],
        nbf=now - timedelta(days=3), exp=now - timedelta(days=1), phone_jwk=phone_jwk)
    challenge = new_challenge()
    request = PaymentRequest(
        event_id="exp-1", ts=now, amount=300, currency="USD", merchant_id="cafe",
        idempotency_key="exp-1",
        credential=PhoneKeyCredential(token=token, challenge=challenge, proof=make_proof(
            phone, challenge=challenge, lock_id="pos-cafe-1", key_jti=jti, now=now)))
    with session_scope(seeded) as session:
        out = handle_message(session, device_topic(VENUE_ID, "pos-cafe-1", Channel.EVENTS),
                             encode(request), now, trust=Trust(jwks=jwks(keys)))
    decision = parse_reply(out.replies[0].payload)
    assert isinstance(decision, PaymentDecision), decision
    assert (decision.outcome, decision.reason) == ("decline", "outside_validity")
    with Session(seeded) as session:  # the journey says which check
        (row,) = session.exec(select(Event).where(Event.event_id == "exp-1")).all()
    assert (row.detail or "").startswith("key_expired: ")


def test_a_forged_phone_key_is_recorded_against_the_guest_it_imitates(
        seeded: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """A captured key with a proof made by another phone is an attempt on that guest's key:
    the journey says whose, the lock does not. A key the hub never issued names nobody.
    The journey and the log say which check failed; the lock is told only the reason."""
    from devices.contract import Decision, PhoneKeyCredential, TapEvent, parse_reply
    from devices.phone_key import make_proof, new_challenge, phone_keypair
    from hub.phone_keys import issue_phone_key, jwks, new_signing_key
    from hub.presented import Trust, issuer

    now = utcnow()
    keys = [new_signing_key(now - timedelta(days=1), timedelta(days=90))]
    _, phone_jwk = phone_keypair()
    token, jti = issue_phone_key(
        keys, now=now, issuer=issuer(VENUE_ID), venue=VENUE_ID, guest_id="guest-01",
        credential_id="phone-guest-01", zones=["room-101"], nbf=now - timedelta(minutes=1),
        exp=now + timedelta(days=1), phone_jwk=phone_jwk)
    with session_scope(seeded) as session:
        credential = session.get(Credential, "phone-guest-01")
        assert credential is not None
        credential.key_jti = jti
    other_keys = [new_signing_key(now - timedelta(days=1), timedelta(days=90))]
    self_signed, _ = issue_phone_key(
        other_keys, now=now, issuer=issuer(VENUE_ID), venue=VENUE_ID, guest_id="guest-01",
        credential_id="phone-guest-01", zones=["room-101"], nbf=now - timedelta(minutes=1),
        exp=now + timedelta(days=1), phone_jwk=phone_jwk)
    thief, _ = phone_keypair()

    def attempt(event_id: str, key: str, key_jti: str) -> Decision:
        challenge = new_challenge()
        tap = TapEvent(event_id=event_id, ts=now, credential=PhoneKeyCredential(
            token=key, challenge=challenge, proof=make_proof(
                thief, challenge=challenge, lock_id="lock-101", key_jti=key_jti, now=now)))
        with session_scope(seeded) as session:
            out = handle_message(session, device_topic(VENUE_ID, "lock-101", Channel.EVENTS),
                                 encode(tap), now, trust=Trust(jwks=jwks(keys)))
        # A decision, not a malformed message: nothing on the errors topic.
        assert [r.topic for r in out.replies] == [
            device_topic(VENUE_ID, "lock-101", Channel.DECISIONS)]
        assert out.error is None
        decision = parse_reply(out.replies[0].payload)
        assert isinstance(decision, Decision)
        return decision

    with caplog.at_level(logging.WARNING, logger="hub.credentials"):
        stolen = attempt("stolen-1", token, jti)
        forged = attempt("forged-1", self_signed, jti)
    assert (stolen.outcome, stolen.guest_name) == ("deny", None)
    assert (forged.outcome, forged.guest_name) == ("deny", None)
    with Session(seeded) as session:
        rows = {e.event_id: e for e in session.exec(select(Event).where(
            Event.device_id == "lock-101")).all()}
    assert (rows["stolen-1"].guest_id, rows["stolen-1"].credential_id) == (
        "guest-01", "phone-guest-01")
    # Signed by no key of this hub, under a jti guest-01's key does not carry: anyone can
    # write such claims, so they name nobody.
    assert (rows["forged-1"].reason, rows["forged-1"].guest_id) == ("credential_forged", None)
    assert (rows["stolen-1"].detail or "").startswith("proof_bad_signature: ")
    assert (rows["forged-1"].detail or "").startswith("key_unknown_kid: ")
    assert stolen.text == forged.text == "Key not genuine - please see staff"  # no more
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("stolen-1" in m and "proof_bad_signature" in m for m in warned), warned
    assert any("forged-1" in m and "key_unknown_kid" in m for m in warned), warned
