"""A copy of a guest's data, their erasure (the books still balance), telemetry retention."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from devices.contract import PaymentDecision, parse_reply
from hub import cli
from hub.api.main import API_PREFIX
from hub.config import Settings
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.models import (
    Account,
    AuditEntry,
    AutomationRun,
    Credential,
    CredentialStatus,
    Device,
    DeviceKind,
    Event,
    Guest,
    LedgerTransaction,
    Posting,
    Telemetry,
    Venue,
    Wearable,
    utcnow,
)
from hub.privacy import erase_guest, scrub
from hub.retention import Retention
from hub.server import Hub
from hub.store import guests, money
from hub.store.events import purge_telemetry
from tests.conftest import hub_settings
from tests.hub.conftest import who
from tests.utils import ingest

JTI = "jti-guest-01-phone"
# Everything that names Charlie Baker (guest-01), in any case.
PERSONAL = ["charlie", "baker", "charlie.baker@example.com", "chuck", "halal"]
PROFILE = {"display_name": "Chuck", "dietary": ["halal"], "room_temperature_c": 20.0}


def url(path: str) -> str:
    return API_PREFIX + path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo venue; Charlie (guest-01) entered the park, paid, and pays for guest-11;
    his phone key was issued (a jti); Ana (guest-02) entered too."""
    path = tmp_path_factory.mktemp("privacy") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    now = utcnow()
    seed_demo(engine, now)
    for n, guest in enumerate((1, 2)):
        done = ingest.tap(engine, VENUE_ID, "gate-park-in-1", now + timedelta(seconds=n),
                          f"in-{n}", uid=wristband_uid(guest))
        assert done.replies
    for n, guest in enumerate((1, 11)):
        paid = ingest.pay(engine, VENUE_ID, "pos-cafe-1", now, f"pay-{n}", amount=1_250,
                          merchant_id="cafe", uid=wristband_uid(guest))
        decision = parse_reply(paid.replies[0].payload)
        assert isinstance(decision, PaymentDecision) and decision.outcome == "approve", decision
    with session_scope(engine) as session:
        phone = session.get(Credential, "phone-guest-01")
        assert phone is not None
        phone.key_jti = JTI
    engine.dispose()
    return path


def personalise(client: TestClient, app: FastAPI) -> None:
    """Charlie sets a profile and grants personalization, as his app would."""
    me = who(app, "guest-01")
    assert client.put(url("/guests/guest-01/preferences"), json=PROFILE,
                      headers=me).status_code == 200
    assert client.put(url("/guests/guest-01/consent/personalization"), json={"granted": True},
                      headers=me).status_code == 200


def ledger_state(engine: Engine) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    with Session(engine) as session:
        balances = {a.id: a.balance for a in session.exec(select(Account)).all()}
        postings = [(p.transaction_id, p.account_id, p.amount)
                    for p in session.exec(select(Posting).order_by(col(Posting.id))).all()]
    return balances, postings


# ------------------------------------------------------------------- export


def test_the_export_holds_everything_about_the_guest_and_no_secret(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    personalise(client, app)
    r = client.get(url("/guests/guest-01/export"), headers=who(app, "guest-01"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["guest"]["name"], doc["guest"]["email"]) == ("Charlie Baker",
                                                             "charlie.baker@example.com")
    assert doc["preferences"]["display_name"] == "Chuck"
    assert doc["preferences"]["dietary"] == ["halal"]
    assert [(h["purpose"], h["granted"]) for h in doc["consent"]["history"]] == [
        ("personalization", True)]
    with Session(engine) as session:
        owned = [a.id for a in session.exec(select(Account)
                                            .where(Account.guest_id == "guest-01")).all()]
        txns = session.exec(select(LedgerTransaction).where(sa.or_(
            col(LedgerTransaction.guest_id) == "guest-01",
            col(LedgerTransaction.account_id).in_(owned)))).all()
        events = session.exec(select(Event).where(Event.guest_id == "guest-01")
                              .order_by(col(Event.id))).all()
    assert sorted(a["id"] for a in doc["accounts"]) == sorted(owned) == [
        "folio-guest-01", "wallet-guest-01"]
    assert sorted(t["id"] for t in doc["transactions"]) == sorted(t.id for t in txns)
    # guest-11's coffee was paid from Charlie's account: it is his record too.
    assert {t["guest_id"] for t in doc["transactions"]} == {"guest-01", "guest-11"}
    assert {t["type"] for t in doc["transactions"]} == {"topup", "charge"}
    assert [e["id"] for e in doc["events"]] == [e.id for e in events] and events
    assert doc["events"][0]["guest_name"] == "Charlie"
    assert {c["id"] for c in doc["credentials"]} == {"band-guest-01", "phone-guest-01"}
    assert {e["id"] for e in doc["entitlements"]} == {"ticket-guest-01", "stay-guest-01",
                                                      "past-stay-guest-01", "spa-guest-01"}
    assert [p["zone_id"] for p in doc["presence"] if p["inside"]] == ["park"]
    assert [d["spent"] for d in doc["daily_spend"]] == [1_250]  # his own coffee only
    # Secrets never: the policy says has_pin; no hash, no key material, no telemetry.
    assert doc["spending_policy"]["has_pin"] is True
    text = r.text
    for secret in ("$argon2", "pin_hash", "password", "sun_counter", "telemetry"):
        assert secret not in text, secret
    assert client.get(url("/guests/guest-01/export"),
                      headers=who(app, "staff")).json()["guest"] == doc["guest"]


def test_the_export_is_the_guest_s_own(client: TestClient, app: FastAPI) -> None:
    personalise(client, app)
    r = client.get(url("/guests/guest-02/export"), headers=who(app, "guest-02"))
    assert r.status_code == 200
    assert "Charlie" not in r.text and "Chuck" not in r.text and r.json()["preferences"] is None
    assert client.get(url("/guests/guest-01/export"),
                      headers=who(app, "guest-02")).status_code == 403
    assert client.get(url("/guests/guest-01/export"),
                      headers=who(app, "auditor")).status_code == 403
    assert client.get(url("/guests/nobody/export"), headers=who(app, "admin")).status_code == 404


# ------------------------------------------------------------------ erasure


def test_erase_then_export_holds_no_personal_data(client: TestClient, app: FastAPI,
                                                  engine: Engine) -> None:
    personalise(client, app)
    # What automations did for Charlie, and what his watch said, are his data too.
    now = utcnow()
    with session_scope(engine) as session:
        session.add(AutomationRun(rule_id="room-welcome", action="command",
                                  guest_id="guest-01", device_id="display-101",
                                  command_id="c-charlie", name="show",
                                  params={"text": "Welcome, Chuck", "kind": "greeting"},
                                  sent_at=now, created_at=now))
        session.add(Telemetry(device_id="watch-guest-01", event_id="hr-1", kind="telemetry",
                              ts=now, received_at=now, data={"readings": {
                                  "heart_rate_bpm": 131, "note": "Charlie's run"}}))
    exported = client.get(url("/guests/guest-01/export"), headers=who(app, "guest-01")).json()
    assert exported["automation_runs"][0]["params"]["text"] == "Welcome, Chuck"
    assert exported["wearable_readings"][-1]["data"]["readings"]["heart_rate_bpm"] == 131
    before = ledger_state(engine)
    assert JTI not in client.get(url(f"/venues/{VENUE_ID}/revocations")).json()["revoked"]
    r = client.post(url("/guests/guest-01/erase"), headers=who(app, "admin"))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["credentials_revoked"] == 2 and report["events_scrubbed"] >= 1
    assert report["preferences_deleted"] is True and report["consents_deleted"] == 1
    assert (report["wearables_unpaired"], report["automation_runs_scrubbed"]) == (1, 1)
    assert report["readings_deleted"] >= 1

    doc = client.get(url("/guests/guest-01/export"), headers=who(app, "admin")).json()
    text = json.dumps(doc).lower()
    for personal in PERSONAL:
        at = text.find(personal)
        assert at < 0, text[max(0, at - 300):at + 100]
    assert doc["guest"]["name"] == f"erased-{report['pseudonym']}"
    assert (doc["guest"]["display_name"], doc["guest"]["email"]) == (None, None)
    assert doc["preferences"] is None and doc["consent"]["history"] == []
    assert [c["granted"] for c in doc["consent"]["consents"]] == [False] * 4
    assert {c["status"] for c in doc["credentials"]} == {"revoked"}
    assert all(e["guest_name"] is None for e in doc["events"])
    assert doc["events"][0]["text"] == "Welcome, guest"
    assert doc["spending_policy"]["has_pin"] is False
    assert doc["wearables"] == [] and doc["wearable_readings"] == []
    assert doc["automation_runs"] == []  # kept only as counts, about nobody
    with Session(engine) as session:
        [run] = session.exec(select(AutomationRun)).all()
        assert (run.guest_id, run.params, run.rule_id) == (None, {}, "room-welcome")
        assert session.exec(select(Telemetry).where(
            Telemetry.device_id == "watch-guest-01")).all() == []

    # The books: every amount and posting kept, still under guest-01's (now empty) row.
    assert ledger_state(engine) == before
    assert {t["guest_id"] for t in doc["transactions"]} == {"guest-01", "guest-11"}
    with Session(engine) as session:
        assert money.verify(session=session) == []
        phone = session.get(Credential, "phone-guest-01")
        assert phone is not None and phone.key_jti == JTI
        audit = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
    # The phone key stays refused by offline locks.
    assert JTI in client.get(url(f"/venues/{VENUE_ID}/revocations")).json()["revoked"]
    assert (audit[-1].actor, audit[-1].action, audit[-1].target) == (
        "test-admin", "guest.erase", "guest:guest-01")
    assert audit[-1].detail["pseudonym"] == report["pseudonym"]
    audit_text = json.dumps([e.detail for e in audit]).lower()
    for personal in PERSONAL:
        assert personal not in audit_text, personal


def test_an_erased_guest_s_band_opens_and_pays_nothing(client: TestClient, app: FastAPI,
                                                       engine: Engine) -> None:
    client.post(url("/guests/guest-01/erase"), headers=who(app, "admin"))
    now = utcnow()
    entered = ingest.tap(engine, VENUE_ID, "gate-park-in-2", now, "after-erase",
                         uid=wristband_uid(1))
    assert b'"deny"' in entered.replies[0].payload and b"Charlie" not in entered.replies[0].payload
    paid = ingest.pay(engine, VENUE_ID, "pos-bar-1", now, "pay-after-erase", amount=100,
                      merchant_id="bar", uid=wristband_uid(1))
    decision = parse_reply(paid.replies[0].payload)
    assert isinstance(decision, PaymentDecision) and decision.outcome == "decline"
    with Session(engine) as session:
        assert money.verify(session=session) == []


def test_erasure_touches_no_other_guest(client: TestClient, app: FastAPI,
                                        engine: Engine) -> None:
    client.post(url("/guests/guest-01/erase"), headers=who(app, "admin"))
    ana = client.get(url("/guests/guest-02/export"), headers=who(app, "guest-02")).json()
    assert ana["guest"]["name"] == "Ana Lopez"
    assert ana["events"][0]["text"] == "Welcome, Ana"
    assert {c["status"] for c in ana["credentials"]} == {"active"}


def test_erasing_again_changes_nothing_more(client: TestClient, app: FastAPI) -> None:
    admin = who(app, "admin")
    first = client.post(url("/guests/guest-01/erase"), headers=admin).json()
    again = client.post(url("/guests/guest-01/erase"), headers=admin)
    assert again.status_code == 200
    assert first["wearables_unpaired"] == 1  # Charlie's watch
    assert again.json() == first | {"credentials_revoked": 0, "events_scrubbed": 0,
                                    "preferences_deleted": False, "consents_deleted": 0,
                                    "wearables_unpaired": 0, "readings_deleted": 0,
                                    "automation_runs_scrubbed": 0}
    assert client.post(url("/guests/nobody/erase"), headers=admin).status_code == 404
    assert client.post(url("/guests/guest-02/erase"),
                       headers=who(app, "staff")).status_code == 403


def _reading(engine: Engine, event_id: str, at: datetime) -> None:
    with session_scope(engine) as session:
        session.add(Telemetry(device_id="watch-guest-01", event_id=event_id, kind="telemetry",
                              ts=at, received_at=at, data={"readings": {"heart_rate_bpm": 80},
                                                           "note": event_id}))


def _notes(doc: dict[str, Any]) -> list[str]:
    return [r["data"]["note"] for r in doc["wearable_readings"]]


def test_a_watch_handed_on_keeps_each_wearer_s_readings_theirs(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    """Charlie wore the watch, then Lena (guest-12): his export, and his erasure, hold
    what it said on his wrist; hers, what it said on hers."""
    start = utcnow() - timedelta(hours=1)
    with session_scope(engine) as session:
        charlie_s = guests.current_wearer(session=session, device_id="watch-guest-01")
        assert charlie_s is not None and charlie_s.guest_id == "guest-01"
        charlie_s.paired_at = start
    _reading(engine, "before-anyone", start - timedelta(minutes=1))
    _reading(engine, "charlie-1", start)
    _reading(engine, "charlie-2", start + timedelta(minutes=30))
    r = client.put(url("/devices/watch-guest-01/wearer"), json={"guest_id": "guest-12"},
                   headers=who(app, "staff"))
    assert r.status_code == 200, r.text
    handed_on = datetime.fromisoformat(r.json()["paired_at"])
    _reading(engine, "lena-1", handed_on)  # from the moment she wears it: hers
    _reading(engine, "lena-2", handed_on + timedelta(seconds=1))

    charlie = client.get(url("/guests/guest-01/export"), headers=who(app, "guest-01")).json()
    assert _notes(charlie) == ["charlie-1", "charlie-2"]
    [pairing] = charlie["wearables"]
    assert (pairing["device_id"], datetime.fromisoformat(pairing["paired_at"]),
            datetime.fromisoformat(pairing["unpaired_at"])) == ("watch-guest-01", start,
                                                                 handed_on)
    lena = client.get(url("/guests/guest-12/export"), headers=who(app, "guest-12")).json()
    assert _notes(lena) == ["lena-1", "lena-2"]
    assert [(w["guest_id"], w["unpaired_at"]) for w in lena["wearables"]] == [
        ("guest-12", None)]

    erased = client.post(url("/guests/guest-01/erase"), headers=who(app, "admin")).json()
    assert (erased["readings_deleted"], erased["wearables_unpaired"]) == (2, 1)
    with Session(engine) as session:
        left = session.exec(select(Telemetry).where(Telemetry.device_id == "watch-guest-01")
                            .order_by(col(Telemetry.id))).all()
        worn = guests.current_wearer(session=session, device_id="watch-guest-01")
        assert session.exec(select(Wearable).where(Wearable.guest_id == "guest-01")).all() == []
    assert [t.data["note"] for t in left] == ["before-anyone", "lena-1", "lena-2"]
    assert worn is not None and worn.guest_id == "guest-12"  # her pairing is untouched
    assert _notes(client.get(url("/guests/guest-12/export"),
                             headers=who(app, "guest-12")).json()) == ["lena-1", "lena-2"]
    charlie = client.get(url("/guests/guest-01/export"), headers=who(app, "admin")).json()
    assert charlie["wearables"] == [] and charlie["wearable_readings"] == []


def test_scrub_replaces_whole_names_only() -> None:
    assert scrub("Welcome, Charlie", {"Charlie"}) == "Welcome, guest"
    assert scrub("Goodbye, Charlie Baker", {"Charlie", "Charlie Baker"}) == "Goodbye, guest"
    assert scrub("Welcome, Bo", {"Bo"}) == "Welcome, guest"
    assert scrub("Bottle Bob", {"Bo"}) == "Bottle Bob"
    assert scrub("Hi (x)!", {"(x)"}) == "Hi guest!"


runner = CliRunner()


def test_hub_guest_erase(tmp_path: Path, template: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(template, data / "hub.db")
    args = ["guest", "erase", "guest-01", "--data-dir", str(data)]
    refused = runner.invoke(cli.app, args, input="n\n")
    assert refused.exit_code == 1, refused.output
    done = runner.invoke(cli.app, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    assert "erased guest guest-01: now erased-" in done.output
    assert "2 credential(s) revoked" in done.output
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    try:
        with Session(engine) as session:
            guest = session.get(Guest, "guest-01")
            assert guest is not None and guest.name.startswith("erased-")
            assert guest.email is None and guest.display_name is None
            statuses = {c.status for c in session.exec(
                select(Credential).where(Credential.guest_id == "guest-01")).all()}
            assert statuses == {CredentialStatus.REVOKED}
            [entry] = session.exec(select(AuditEntry)).all()
            assert (entry.action, entry.target, entry.source) == ("guest.erase",
                                                                  "guest:guest-01", "cli")
            assert entry.actor.startswith("cli:")
    finally:
        engine.dispose()
    verified = runner.invoke(cli.app, ["ledger", "verify", "--data-dir", str(data)])
    assert verified.exit_code == 0 and "ledger OK" in verified.output
    missing = runner.invoke(cli.app, ["guest", "erase", "nobody", "--yes", "--data-dir",
                                      str(data)])
    assert missing.exit_code == 1 and "no guest" in missing.output


def test_the_erase_function_keeps_the_ledger(engine: Engine) -> None:
    before = ledger_state(engine)
    with session_scope(engine) as session:
        report = erase_guest(session, guest_id="guest-01", now=utcnow())
    assert report.credentials_revoked == 2
    assert ledger_state(engine) == before
    with Session(engine) as session:
        assert money.verify(session=session) == []


# ---------------------------------------------------------------- retention


def add_readings(engine: Engine, now: datetime, ages: list[timedelta]) -> None:
    with session_scope(engine) as session:
        for n, age in enumerate(ages):
            session.add(Telemetry(device_id="thermostat-101", event_id=f"t-{n}-{age}",
                                  kind="telemetry", ts=now - age, received_at=now - age,
                                  data={"celsius": 21}))


def ages_left(engine: Engine, now: datetime) -> list[timedelta]:
    with Session(engine) as session:
        return sorted(now - t.received_at for t in session.exec(select(Telemetry)).all())


def test_the_purge_deletes_only_readings_older_than_the_period(engine: Engine) -> None:
    now = utcnow()
    day = timedelta(days=1)
    add_readings(engine, now, [31 * day, 30 * day + timedelta(seconds=1), 30 * day, 29 * day,
                               timedelta(0)])
    with session_scope(engine) as session:
        assert purge_telemetry(session=session, now=now, days=30) == 2
    assert ages_left(engine, now) == [timedelta(0), 29 * day, 30 * day]
    with session_scope(engine) as session:
        assert purge_telemetry(session=session, now=now, days=30) == 0
        assert purge_telemetry(session=session, now=now, days=0) == 2  # all but the one of now
    with Session(engine) as session, pytest.raises(ValueError):
        purge_telemetry(session=session, now=now, days=-1)


def test_the_purge_goes_in_bounded_batches(engine: Engine) -> None:
    now = utcnow()
    add_readings(engine, now, [timedelta(days=40 + n) for n in range(5)] + [timedelta(0)])
    taken = []
    while True:
        with session_scope(engine) as session:
            taken.append(purge_telemetry(session=session, now=now, days=30, limit=2))
        if taken[-1] < 2:
            break
    assert taken == [2, 2, 1] and ages_left(engine, now) == [timedelta(0)]


def test_hub_telemetry_purge_follows_the_setting(tmp_path: Path, template: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(template, data / "hub.db")
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    now = utcnow()
    try:
        add_readings(engine, now, [timedelta(days=11), timedelta(days=9)])
        monkeypatch.setenv("HUB_TELEMETRY_RETENTION_DAYS", "10")
        done = runner.invoke(cli.app, ["telemetry", "purge", "--data-dir", str(data)])
        assert done.exit_code == 0, done.output
        assert "purged 1 telemetry rows older than 10 days" in done.output
        assert ages_left(engine, now) == [timedelta(days=9)]
        done = runner.invoke(cli.app, ["telemetry", "purge", "--days", "5", "--data-dir",
                                       str(data)])
        assert done.exit_code == 0 and "purged 1 " in done.output
        assert ages_left(engine, now) == []
    finally:
        engine.dispose()
    missing = runner.invoke(cli.app, ["telemetry", "purge", "--data-dir", str(tmp_path / "no")])
    assert missing.exit_code == 2


def test_retention_is_30_days_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().telemetry_retention_days == 30
    monkeypatch.setenv("HUB_TELEMETRY_RETENTION_DAYS", "7")
    assert Settings().telemetry_retention_days == 7
    monkeypatch.setenv("HUB_TELEMETRY_RETENTION_DAYS", "0")
    with pytest.raises(ValueError):
        Settings()


def test_the_scheduler_purges_once_at_start_then_waits(engine: Engine) -> None:
    now = utcnow()
    add_readings(engine, now, [timedelta(days=31), timedelta(days=1)])
    scheduler = Retention(engine, days=30, interval=timedelta(days=1)).start()
    try:
        assert scheduler.ran.wait(10)
        assert ages_left(engine, now) == [timedelta(days=1)]
        add_readings(engine, now, [timedelta(days=32)])
        time.sleep(0.2)
        assert scheduler.runs == 1 and scheduler.purged == 1  # the next run is tomorrow
    finally:
        started = time.monotonic()
        scheduler.stop()
    assert time.monotonic() - started < 2  # stop does not wait for tomorrow
    assert not [t for t in threading.enumerate() if t.name == "hub-retention"]


def test_the_scheduler_runs_every_interval_and_survives_a_failure(engine: Engine) -> None:
    calls = []

    def clock() -> datetime:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the clock broke once")
        return utcnow()

    now = utcnow()
    add_readings(engine, now, [timedelta(days=40)])
    scheduler = Retention(engine, days=30, interval=timedelta(milliseconds=20), clock=clock)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while scheduler.purged < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.purged == 1 and len(calls) >= 2
        add_readings(engine, now, [timedelta(days=50)])
        while scheduler.purged < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.purged == 2 and ages_left(engine, now) == []
    finally:
        scheduler.stop()


def test_hub_up_purges_old_telemetry_at_start(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    engine = create_db_engine(settings.database)
    now = utcnow()
    try:
        init_db(engine)
        with session_scope(engine) as session:
            session.add(Venue(id="v", name="V"))
            session.flush()
            session.add(Device(id="thermostat-101", venue_id="v", kind=DeviceKind.THERMOSTAT,
                               name="t"))
        add_readings(engine, now, [timedelta(days=45), timedelta(days=2)])
    finally:
        engine.dispose()
    running = Hub(settings)
    running.start()
    try:
        assert running.retention is not None and running.retention.ran.wait(10)
        assert running.retention.runs == 1 and running.retention.days == 30
        assert running.engine is not None
        assert ages_left(running.engine, now) == [timedelta(days=2)]
    finally:
        running.stop()
    assert not [t for t in threading.enumerate() if t.name == "hub-retention"]
