"""The guest's profile and consents through the real API: own data only, validated, audited."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.api.main import API_PREFIX
from hub.db import create_db_engine, init_db
from hub.demo import seed_demo
from hub.models import AuditEntry, Consent, ConsentChange, GuestPreferences, utcnow
from hub.privacy import PURPOSES, has_consent
from tests.hub.conftest import who

JSON = {"content-type": "application/json"}
PROFILE = {"room_temperature_c": 21.5, "lighting_scene": "relax", "language": "pt-BR",
           "dietary": ["vegan", "nut_allergy", "vegan"], "display_name": "Chuck",
           "heart_rate_threshold": 150}


def url(path: str) -> str:
    return API_PREFIX + path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


def audit(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all())


# ------------------------------------------------------------------ preferences


def test_a_guest_reads_an_empty_profile_then_sets_their_own(client: TestClient, app: FastAPI,
                                                            engine: Engine) -> None:
    me = who(app, "guest-01")
    r = client.get(url("/guests/guest-01/preferences"), headers=me)
    assert r.status_code == 200, r.text
    assert r.json() == {"guest_id": "guest-01", "room_temperature_c": None,
                        "lighting_scene": None, "language": None, "dietary": [],
                        "display_name": None, "heart_rate_threshold": None, "updated_at": None}
    before = utcnow()
    r = client.put(url("/guests/guest-01/preferences"), json=PROFILE, headers=me)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dietary"] == ["nut_allergy", "vegan"]  # a set, kept sorted
    assert {k: body[k] for k in PROFILE if k != "dietary"} == {
        k: v for k, v in PROFILE.items() if k != "dietary"}
    assert client.get(url("/guests/guest-01/preferences"), headers=me).json() == body
    with Session(engine) as session:
        row = session.get(GuestPreferences, "guest-01")
        assert row is not None and row.room_temperature_c == 21.5
        assert before <= row.updated_at <= utcnow()
    [entry] = audit(engine)
    assert (entry.actor, entry.action, entry.target) == ("guest:guest-01", "preferences.set",
                                                         "guest:guest-01")
    assert entry.detail == {"changed": sorted(PROFILE)}
    # The append-only log names the fields, never what the guest eats or their pulse.
    text = json.dumps(entry.detail)
    assert "vegan" not in text and "Chuck" not in text and "150" not in text


def test_put_replaces_the_whole_profile(client: TestClient, app: FastAPI,
                                        engine: Engine) -> None:
    me = who(app, "guest-01")
    client.put(url("/guests/guest-01/preferences"), json=PROFILE, headers=me)
    r = client.put(url("/guests/guest-01/preferences"), json={"language": "pt-BR"}, headers=me)
    assert r.status_code == 200
    assert r.json() | {"updated_at": None} == {
        "guest_id": "guest-01", "room_temperature_c": None, "lighting_scene": None,
        "language": "pt-BR", "dietary": [], "display_name": None,
        "heart_rate_threshold": None, "updated_at": None}
    assert audit(engine)[-1].detail == {"changed": sorted(set(PROFILE) - {"language"})}


def test_staff_set_a_guest_s_profile_and_auditors_only_read_it(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    r = client.put(url("/guests/guest-05/preferences"), json={"lighting_scene": "warm"},
                   headers=who(app, "staff"))
    assert r.status_code == 200, r.text
    auditor = who(app, "auditor")
    assert client.get(url("/guests/guest-05/preferences"),
                      headers=auditor).json()["lighting_scene"] == "warm"
    r = client.put(url("/guests/guest-05/preferences"), json={}, headers=auditor)
    assert r.status_code == 403
    assert client.get(url("/guests/guest-05/preferences"),
                      headers=who(app, "integrator")).status_code == 403
    assert [e.actor for e in audit(engine)] == ["test-staff"]


def test_another_guest_neither_reads_nor_changes_the_profile(
        client: TestClient, app: FastAPI, engine: Engine) -> None:
    client.put(url("/guests/guest-01/preferences"), json=PROFILE, headers=who(app, "guest-01"))
    other = who(app, "guest-02")
    for r in (client.get(url("/guests/guest-01/preferences"), headers=other),
              client.put(url("/guests/guest-01/preferences"), json={"language": "en"},
                         headers=other),
              client.get(url("/guests/nobody/preferences"), headers=other)):
        assert r.status_code == 403, r.text
        assert "Chuck" not in r.text
    with Session(engine) as session:
        row = session.get(GuestPreferences, "guest-01")
        assert row is not None and row.language == "pt-BR"
    assert len(audit(engine)) == 1
    assert client.get(url("/guests/nobody/preferences"),
                      headers=who(app, "admin")).status_code == 404


@pytest.mark.parametrize("change", [
    {"room_temperature_c": 15.9}, {"room_temperature_c": 28.01}, {"room_temperature_c": "warm"},
    {"room_temperature_c": math.nan}, {"room_temperature_c": math.inf},
    {"lighting_scene": "disco"}, {"lighting_scene": "WARM"},
    {"language": "english!"}, {"language": "e"}, {"language": "en-" + "a" * 14},
    {"dietary": ["bacon"]}, {"dietary": "vegan"}, {"dietary": [None]},
    {"display_name": ""}, {"display_name": "x" * 81},
    {"heart_rate_threshold": 99}, {"heart_rate_threshold": 221}, {"heart_rate_threshold": 150.5},
    {"colour": "blue"},
], ids=lambda c: json.dumps(c, allow_nan=True))
def test_invalid_preferences_are_422_and_change_nothing(
        client: TestClient, app: FastAPI, engine: Engine, change: dict[str, Any]) -> None:
    me = who(app, "guest-01")
    client.put(url("/guests/guest-01/preferences"), json=PROFILE, headers=me)
    before = client.get(url("/guests/guest-01/preferences"), headers=me).json()
    # Raw JSON: NaN and Infinity are what a lax client sends, and httpx refuses to.
    r = client.put(url("/guests/guest-01/preferences"), headers=me | JSON,
                   content=json.dumps(PROFILE | change, allow_nan=True))
    assert r.status_code == 422, r.text
    assert client.get(url("/guests/guest-01/preferences"), headers=me).json() == before
    assert len(audit(engine)) == 1


@pytest.mark.parametrize("edge", [{"room_temperature_c": 16}, {"room_temperature_c": 28.0},
                                  {"heart_rate_threshold": 100}, {"heart_rate_threshold": 220},
                                  {"language": "zh-Hant-TW"}, {"language": "de"}])
def test_the_bounds_themselves_are_accepted(client: TestClient, app: FastAPI,
                                            edge: dict[str, Any]) -> None:
    r = client.put(url("/guests/guest-01/preferences"), json=edge, headers=who(app, "guest-01"))
    assert r.status_code == 200, r.text
    [(name, value)] = edge.items()
    assert r.json()[name] == value


# ---------------------------------------------------------------------- consent


def test_nothing_is_granted_until_the_guest_says_so(client: TestClient, app: FastAPI) -> None:
    r = client.get(url("/guests/guest-01/consent"), headers=who(app, "guest-01"))
    assert r.status_code == 200, r.text
    assert r.json() == {"guest_id": "guest-01", "history": [], "consents": [
        {"purpose": p, "granted": False, "changed_at": None} for p in PURPOSES]}
    assert set(PURPOSES) == {"personalization", "offers", "health", "analytics"}


def test_consent_changes_are_kept_with_who_made_them(client: TestClient, app: FastAPI,
                                                     engine: Engine) -> None:
    me, staff = who(app, "guest-01"), who(app, "staff")
    path = url("/guests/guest-01/consent/personalization")
    r = client.put(path, json={"granted": True}, headers=me)
    assert r.status_code == 200, r.text
    assert (r.json()["purpose"], r.json()["granted"]) == ("personalization", True)
    assert client.put(path, json={"granted": True}, headers=me).status_code == 200  # no change
    assert client.put(url("/guests/guest-01/consent/offers"), json={"granted": False},
                      headers=me).status_code == 200  # a first answer is a change
    assert client.put(path, json={"granted": False}, headers=staff).status_code == 200
    state = client.get(url("/guests/guest-01/consent"), headers=who(app, "auditor")).json()
    assert [(h["purpose"], h["granted"], h["actor"]) for h in state["history"]] == [
        ("personalization", True, "guest:guest-01"), ("offers", False, "guest:guest-01"),
        ("personalization", False, "test-staff")]
    current = {c["purpose"]: (c["granted"], c["changed_at"] is not None)
               for c in state["consents"]}
    assert current == {"personalization": (False, True), "offers": (False, True),
                       "health": (False, False), "analytics": (False, False)}
    assert state["consents"][0]["changed_at"] == state["history"][-1]["at"]
    entries = [(e.actor, e.action, e.detail) for e in audit(engine)]
    assert entries == [
        ("guest:guest-01", "consent.set",
         {"purpose": "personalization", "granted": True, "changed": True}),
        ("guest:guest-01", "consent.set",
         {"purpose": "personalization", "granted": True, "changed": False}),
        ("guest:guest-01", "consent.set", {"purpose": "offers", "granted": False,
                                           "changed": True}),
        ("test-staff", "consent.set",
         {"purpose": "personalization", "granted": False, "changed": True})]
    with Session(engine) as session:
        assert len(session.exec(select(ConsentChange)).all()) == 3
        rows = session.exec(select(Consent).where(Consent.guest_id == "guest-01")).all()
        assert not has_consent(rows, "personalization") and not has_consent(rows, "health")


def test_a_granted_consent_is_what_has_consent_sees(client: TestClient, app: FastAPI,
                                                    engine: Engine) -> None:
    client.put(url("/guests/guest-03/consent/health"), json={"granted": True},
               headers=who(app, "guest-03"))
    with Session(engine) as session:
        rows = session.exec(select(Consent).where(Consent.guest_id == "guest-03")).all()
        assert has_consent(rows, "health") and not has_consent(rows, "offers")


@pytest.mark.parametrize(("path", "body"), [
    ("/guests/guest-01/consent/marketing", {"granted": True}),
    ("/guests/guest-01/consent/personalization", {"granted": "yes"}),
    ("/guests/guest-01/consent/personalization", {"granted": "true"}),
    ("/guests/guest-01/consent/personalization", {"granted": 1}),
    ("/guests/guest-01/consent/personalization", {"granted": None}),
    ("/guests/guest-01/consent/personalization", {}),
    ("/guests/guest-01/consent/personalization", {"granted": True, "until": "2030-01-01"}),
])
def test_an_unclear_consent_is_422(client: TestClient, app: FastAPI, engine: Engine, path: str,
                                   body: dict[str, Any]) -> None:
    r = client.put(url(path), json=body, headers=who(app, "guest-01"))
    assert r.status_code == 422, r.text
    assert audit(engine) == []


def test_another_guest_cannot_read_or_give_consent(client: TestClient, app: FastAPI,
                                                   engine: Engine) -> None:
    other = who(app, "guest-02")
    assert client.get(url("/guests/guest-01/consent"), headers=other).status_code == 403
    r = client.put(url("/guests/guest-01/consent/offers"), json={"granted": True}, headers=other)
    assert r.status_code == 403
    with Session(engine) as session:
        assert session.exec(select(Consent)).all() == []
    assert audit(engine) == []
    r = client.put(url("/guests/nobody/consent/offers"), json={"granted": True},
                   headers=who(app, "admin"))
    assert r.status_code == 404


def test_has_consent_is_no_unless_granted() -> None:
    def row(purpose: str, granted: bool) -> Consent:
        return Consent(guest_id="g", purpose=purpose, granted=granted, changed_at=utcnow())

    assert not has_consent([], "personalization")
    assert not has_consent([row("offers", True)], "personalization")
    assert not has_consent([row("personalization", False)], "personalization")
    assert has_consent([row("offers", False), row("personalization", True)], "personalization")
    assert not has_consent(iter([row("health", True)]), "healthy")
