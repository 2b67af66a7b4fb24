"""Automations through the REST API: stored rules over the shipped ones, YAML, runs and
stats from the database, the runner."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.api.main import API_PREFIX, create_app
from hub.automations.catalogue import room_welcome, shipped
from hub.automations.exchange import export_yaml, import_yaml
from hub.automations.rules import RuleError, condition_to_dict
from hub.automations.ruleset import CachedRules, load_rules, row_of, rule_of
from hub.automations.vocabulary import NUMERIC_FIELDS
from hub.config import Settings
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import seed_demo
from hub.models import AuditEntry, AutomationRule, AutomationRun, RunStatus, utcnow
from tests.conftest import bearer, staff_token

URL = API_PREFIX + "/automations"
SHIPPED = [rule.id for rule in shipped()]
POOL = {"name": "Pool closing", "purpose": "service", "trigger": "entry_allowed",
        "filters": {"zone.id": "water-park"},
        "actions": [{"kind": "command", "target": "display-101", "name": "show",
                     "params": {"text": "Hello {guest.display_name}, the pool closes at 8"}}]}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("automations") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


@pytest.fixture
def engine(tmp_path: Path, template: Path) -> Iterator[Engine]:
    shutil.copyfile(template, tmp_path / "hub.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}", sqlite_synchronous="OFF")
    yield engine
    engine.dispose()


class FakeRunner:
    """A running runner's own counts: the API's stats must not come from them."""

    def __init__(self) -> None:
        self.fired: Counter[str] = Counter({"room-welcome": 3})
        self.failed: Counter[str] = Counter({"stuck-guest": 1})


@pytest.fixture
def app(engine: Engine, tmp_path: Path) -> FastAPI:
    return create_app(engine=engine, settings=Settings(data_dir=tmp_path, broker_url=None),
                      automations=FakeRunner())


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, headers=bearer(staff_token(app))) as c:
        yield c


def rules_in_force(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        return {r.id: r for r in load_rules(session)}


def audit_actions(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
        return [(r.action, r.target) for r in rows]


def add_runs(engine: Engine, *runs: AutomationRun) -> None:
    with session_scope(engine) as session:
        session.add_all(runs)


def run(rule_id: str, status: RunStatus = RunStatus.SENT, *, overridden: bool = False,
        device_id: str | None = "display-101", minutes: int = 0) -> AutomationRun:
    """A recorded action, ``minutes`` after an hour ago."""
    at = utcnow() - timedelta(hours=1) + timedelta(minutes=minutes)
    return AutomationRun(rule_id=rule_id, action="command", device_id=device_id, name="show",
                         params={"text": f"{rule_id} at {minutes}"}, status=status,
                         created_at=at, sent_at=at if status == RunStatus.SENT else None,
                         overridden_at=at + timedelta(minutes=2) if overridden else None)


# ----------------------------------------------------------------------- CRUD


def test_the_list_holds_the_shipped_rules(client: TestClient) -> None:
    listed = client.get(URL).json()
    assert [(r["id"], r["source"], r["enabled"]) for r in listed] == [
        (rule_id, "shipped", True) for rule_id in SHIPPED]
    assert SHIPPED[:2] == ["room-welcome", "stuck-guest"] and len(set(SHIPPED)) == len(SHIPPED)
    one = client.get(f"{URL}/room-welcome").json()
    assert one["trigger"] == "entry_allowed" and len(one["actions"]) == 3
    assert client.get(f"{URL}/nothing-here").status_code == 404


def test_create_read_replace_delete(client: TestClient, engine: Engine) -> None:
    r = client.put(f"{URL}/pool-closing", json=POOL)
    assert r.status_code == 201, r.text
    assert (r.json()["source"], r.json()["overrides_shipped"]) == ("stored", False)
    assert client.get(f"{URL}/pool-closing").json()["filters"] == {"zone.id": "water-park"}
    assert [r["id"] for r in client.get(URL).json()] == [*SHIPPED, "pool-closing"]
    r = client.put(f"{URL}/pool-closing", json={**POOL, "name": "Pool closes"})
    assert r.status_code == 200 and r.json()["name"] == "Pool closes"
    assert rules_in_force(engine)["pool-closing"].name == "Pool closes"
    assert client.delete(f"{URL}/pool-closing").status_code == 204
    assert client.get(f"{URL}/pool-closing").status_code == 404
    assert client.delete(f"{URL}/pool-closing").status_code == 404
    assert "pool-closing" not in rules_in_force(engine)
    assert audit_actions(engine) == [
        ("automation.create", "automation:pool-closing"),
        ("automation.replace", "automation:pool-closing"),
        ("automation.delete", "automation:pool-closing")]


def test_a_body_id_must_be_the_path_s(client: TestClient) -> None:
    r = client.put(f"{URL}/pool-closing", json={**POOL, "id": "other"})
    assert r.status_code == 422 and "not the path's" in r.json()["detail"]


# ----------------------------------------------------------------- validation


def test_an_invalid_rule_is_422_with_every_reason(client: TestClient, engine: Engine) -> None:
    body = {"name": "Broken", "purpose": "marketing", "trigger": "entry_allowed",
            "filters": {"weather.sky": "blue"},
            "conditions": [{"kind": "full_moon"},
                           {"kind": "time_between", "start": "8am", "end": "22:00"}],
            "actions": [{"kind": "command", "target": "lock-999", "name": "open",
                         "params": {"text": "Hi {guest.shoe_size}"}},
                        {"kind": "command", "target": "room:light"}]}
    r = client.put(f"{URL}/broken", json=body)
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert set(problems) == {
        "unknown purpose 'marketing'", "unknown filter field 'weather.sky'",
        "unknown condition 'full_moon'", "unknown device 'lock-999'",
        "unknown template variable {guest.shoe_size}", "a command action needs a name",
        "time_between needs start as HH:MM (local time)"}
    assert "broken" not in rules_in_force(engine)
    assert audit_actions(engine) == []


@pytest.mark.parametrize(("condition", "problem"), [
    ({"kind": "counter_at_least", "counter": "hugs", "value": 2}, "unknown counter 'hugs'"),
    ({"kind": "counter_is", "counter": "wristbands", "value": 2}, "unknown counter 'wristbands'"),
    ({"kind": "counter_is", "counter": "rides", "value": 2.5},
     "counter_is needs an integer value"),
    ({"kind": "counter_is", "counter": "rides", "value": "5"},
     "counter_is needs an integer value"),
    ({"kind": "counter_is", "counter": "rides", "value": True},
     "counter_is needs an integer value"),
    ({"kind": "reading_above", "field": "blood_type", "limit": 3},
     "unknown reading 'blood_type'"),
    ({"kind": "time_between", "start": "08:00", "end": "10:00", "of": "tomorrow"},
     "time_between's of is now (default) or event"),
    ({"kind": "reading_above", "field": "heart_rate_bpm", "limit": "{prefs.shoe_size}"},
     "unknown template variable {prefs.shoe_size}"),
    # A limit that is no number once rendered would make every reading fail the rule.
    ({"kind": "reading_above", "field": "heart_rate_bpm", "limit": "high"},
     "reading_above needs a limit: a number or one template of a number ("
     + ", ".join(sorted(NUMERIC_FIELDS)) + ")"),
    ({"kind": "reading_above", "field": "heart_rate_bpm", "limit": "{prefs.language}"},
     "reading_above needs a limit: a number or one template of a number ("
     + ", ".join(sorted(NUMERIC_FIELDS)) + ")"),
])
def test_a_bad_condition_is_422_and_named(client: TestClient, engine: Engine,
                                          condition: dict[str, Any], problem: str) -> None:
    rule = {**POOL, "purpose": "health", "conditions": [condition]}
    r = client.put(f"{URL}/pool-closing", json=rule)
    assert r.status_code == 422, r.text
    assert r.json()["problems"] == [problem]
    assert "pool-closing" not in rules_in_force(engine)
    assert audit_actions(engine) == []


WATCH = {"name": "Calm down", "purpose": "health", "trigger": "telemetry",
         "filters": {"device.kind": "watch"},
         "conditions": [{"kind": "reading_above", "field": "heart_rate_bpm", "limit": 150},
                        {"kind": "counter_is", "counter": "heart_rate_high", "value": 2},
                        {"kind": "time_between", "start": "22:00", "end": "06:00", "of": "event"},
                        {"kind": "counter_at_least", "counter": "visits",
                         "value": 1}],
         "actions": [{"kind": "command", "target": "self", "name": "vibrate",
                      "params": {"level": "{counters.heart_rate_level}",
                                 "reason": "{reading.heart_rate_bpm} bpm"}}]}


def test_a_rule_may_target_the_device_the_event_came_from(client: TestClient,
                                                          engine: Engine) -> None:
    r = client.put(f"{URL}/calm-down", json=WATCH)
    assert r.status_code == 201, r.text
    assert r.json()["actions"][0]["target"] == "self"
    stored = rules_in_force(engine)["calm-down"]
    assert stored.actions[0].target == "self"
    assert [condition_to_dict(c) for c in stored.conditions] == WATCH["conditions"]
    assert audit_actions(engine) == [("automation.create", "automation:calm-down")]


@pytest.mark.parametrize("rule", shipped(), ids=lambda rule: rule.id)
def test_every_shipped_rule_passes_the_api_s_checks(client: TestClient, rule: Any) -> None:
    body = yaml.safe_load(export_yaml([rule]))["rules"][0]
    r = client.put(f"{URL}/{rule.id}", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["overrides_shipped"] is True


def test_a_malformed_body_is_422(client: TestClient) -> None:
    assert client.put(f"{URL}/x", json={"name": "X"}).status_code == 422
    assert client.put(f"{URL}/x", json={**POOL, "actions": []}).status_code == 422
    assert client.put(f"{URL}/bad id!", json=POOL).status_code == 422


# ------------------------------------------------------------ shipped rules


def test_disabling_a_shipped_rule_stores_it_disabled(client: TestClient, engine: Engine) -> None:
    r = client.patch(f"{URL}/room-welcome", json={"enabled": False})
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["source"], r.json()["overrides_shipped"]) == (
        False, "stored", True)
    welcome = rules_in_force(engine)["room-welcome"]
    assert welcome.enabled is False and welcome.actions == room_welcome().actions
    assert list(rules_in_force(engine)) == SHIPPED  # still in place
    # Deleting the stored copy brings the shipped rule back; the shipped one stays.
    assert client.delete(f"{URL}/room-welcome").status_code == 204
    assert rules_in_force(engine)["room-welcome"].enabled is True
    r = client.delete(f"{URL}/room-welcome")
    assert r.status_code == 409 and "disable it" in r.json()["detail"]
    assert client.patch(f"{URL}/nothing-here", json={"enabled": False}).status_code == 404


# ----------------------------------------------------------------------- YAML


def test_export_then_import_round_trips(client: TestClient, engine: Engine) -> None:
    assert client.put(f"{URL}/pool-closing", json=POOL).status_code == 201
    assert client.patch(f"{URL}/stuck-guest", json={"enabled": False}).status_code == 200
    r = client.get(f"{URL}/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    exported = r.text
    assert [d["id"] for d in yaml.safe_load(exported)["rules"]] == [*SHIPPED, "pool-closing"]
    before = rules_in_force(engine)
    with session_scope(engine) as session:  # start afresh: nothing stored
        for row in session.exec(select(AutomationRule)).all():
            session.delete(row)
    assert rules_in_force(engine)["stuck-guest"].enabled is True
    r = client.post(f"{URL}/import", content=exported,
                    headers={"content-type": "application/yaml"})
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == [*SHIPPED, "pool-closing"]
    assert rules_in_force(engine) == before
    assert client.get(f"{URL}/export").text == exported
    assert audit_actions(engine)[-1] == ("automation.import", "automations")


def test_an_import_is_all_or_nothing(client: TestClient, engine: Engine) -> None:
    document = {"rules": [{**POOL, "id": "pool-closing"},
                          {**POOL, "id": "pool-opening",
                           "actions": [{"kind": "command", "target": "nowhere", "name": "x"}]}]}
    r = client.post(f"{URL}/import", content=yaml.safe_dump(document))
    assert r.status_code == 422
    assert r.json()["problems"] == ["rule 'pool-opening': unknown device 'nowhere'"]
    assert list(rules_in_force(engine)) == SHIPPED
    assert audit_actions(engine) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("rules: [", "not valid YAML at line"),
    ("just a string", "expected a mapping with one key, rules"),
    ("rules: []", "the document holds no rule"),
    ("rules:\n- id: a\n  name: A\n", "rule 'a': purpose must be a non-empty string"),
    ("rules:\n- {id: a, name: A, purpose: service, trigger: entry_denied, actions: [],"
     + " colour: red}", "rule 'a': unknown field 'colour'"),
    ("rules:\n- {id: a, name: A, purpose: service, trigger: entry_denied,"
     + " actions: [{kind: alert_staff, when: 2030-01-01}]}", "rule 'a': action 1: unknown field"),
    ("rules:\n- {id: a, name: A, purpose: service, trigger: entry_denied,"
     + " actions: [{kind: alert_staff, params: {at: 2030-01-01}}]}", "params may hold only"),
    ("- {id: a, name: A, purpose: service, trigger: entry_denied, actions: [{kind: greet}]}\n"
     + "- {id: a, name: A, purpose: service, trigger: entry_denied, actions: [{kind: greet}]}",
     "rule 'a': given twice"),
])
def test_bad_yaml_is_422_and_says_why(client: TestClient, text: str, problem: str) -> None:
    r = client.post(f"{URL}/import", content=text)
    assert r.status_code == 422, r.text
    assert any(problem in p for p in r.json()["problems"]), r.json()


def test_an_alias_bomb_is_refused() -> None:
    text = "rules:\n- &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"- &{n} [{', '.join(['*' + p] * 10)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True))
    with pytest.raises(RuleError, match="too big"):
        import_yaml(text)


def test_not_utf8_is_422(client: TestClient) -> None:
    r = client.post(f"{URL}/import", content=b"\xff\xfe\x00")
    assert r.status_code == 422


def test_yaml_round_trips_the_shipped_rules() -> None:
    assert import_yaml(export_yaml(shipped())) == shipped()


def test_rows_round_trip() -> None:
    for rule in shipped():
        assert rule_of(row_of(rule)) == rule


# ---------------------------------------------------------------------- stats


ZERO = {"fired": 0, "failed": 0, "queued": 0, "expired": 0, "overridden": 0}


def test_stats_come_from_the_recorded_runs(client: TestClient, engine: Engine) -> None:
    assert client.put(f"{URL}/pool-closing", json=POOL).status_code == 201
    add_runs(engine,
             run("room-welcome"), run("room-welcome", overridden=True),
             run("room-welcome", RunStatus.FAILED), run("room-welcome", RunStatus.QUEUED),
             run("breakfast", RunStatus.QUEUED), run("breakfast", RunStatus.QUEUED),
             run("breakfast", RunStatus.EXPIRED),
             run("old-welcome"), run("old-welcome", overridden=True),
             run("old-welcome", overridden=True), run("old-welcome", RunStatus.FAILED))
    stats = client.get(f"{URL}/stats").json()
    # Every rule in force, with zeros for those that did nothing; the runner's own counts
    # (FakeRunner: room-welcome fired 3, stuck-guest failed 1) are not the figures.
    assert stats == {
        **{rule_id: ZERO for rule_id in SHIPPED}, "pool-closing": ZERO,
        "room-welcome": {**ZERO, "fired": 2, "failed": 1, "queued": 1, "overridden": 1},
        "breakfast": {**ZERO, "queued": 2, "expired": 1},
        # no longer in force, but what it did is still counted
        "old-welcome": {**ZERO, "fired": 3, "failed": 1, "overridden": 2}}


def test_stats_follow_a_run_s_status(client: TestClient, engine: Engine) -> None:
    add_runs(engine, run("stuck-guest", RunStatus.QUEUED))
    assert client.get(f"{URL}/stats").json()["stuck-guest"] == {**ZERO, "queued": 1}
    with session_scope(engine) as session:  # the device came back: it was sent
        queued = session.exec(select(AutomationRun)).one()
        queued.status, queued.sent_at = RunStatus.SENT, utcnow()
        session.add(queued)
    assert client.get(f"{URL}/stats").json()["stuck-guest"] == {**ZERO, "fired": 1}


def test_stats_without_a_runner_or_a_run_are_zeros(engine: Engine, tmp_path: Path) -> None:
    app = create_app(engine=engine, settings=Settings(data_dir=tmp_path, broker_url=None))
    with TestClient(app, headers=bearer(staff_token(app))) as c:
        stats = c.get(f"{URL}/stats").json()
    assert stats == {rule_id: ZERO for rule_id in SHIPPED}


# ----------------------------------------------------------------------- runs


def test_runs_are_listed_newest_first_and_filtered(client: TestClient, engine: Engine) -> None:
    add_runs(engine,
             run("room-welcome", device_id="display-101", minutes=0),
             run("stuck-guest", RunStatus.FAILED, device_id=None, minutes=1),
             run("room-welcome", RunStatus.QUEUED, device_id="display-102", minutes=2),
             run("room-welcome", overridden=True, device_id="display-101", minutes=3),
             run("old-welcome", RunStatus.EXPIRED, device_id="display-101", minutes=4))

    def listed(query: str = "") -> list[tuple[str, str, str | None]]:
        r = client.get(f"{URL}/runs{query}")
        assert r.status_code == 200, r.text
        return [(x["rule_id"], x["params"]["text"].rpartition(" at ")[2], x["device_id"])
                for x in r.json()]

    assert listed() == [("old-welcome", "4", "display-101"), ("room-welcome", "3", "display-101"),
                        ("room-welcome", "2", "display-102"), ("stuck-guest", "1", None),
                        ("room-welcome", "0", "display-101")]
    assert listed("?rule_id=room-welcome") == [("room-welcome", "3", "display-101"),
                                               ("room-welcome", "2", "display-102"),
                                               ("room-welcome", "0", "display-101")]
    assert listed("?status=sent") == [("room-welcome", "3", "display-101"),
                                      ("room-welcome", "0", "display-101")]
    assert listed("?status=failed") == [("stuck-guest", "1", None)]
    assert listed("?device_id=display-101") == [("old-welcome", "4", "display-101"),
                                                ("room-welcome", "3", "display-101"),
                                                ("room-welcome", "0", "display-101")]
    assert listed("?rule_id=room-welcome&status=queued&device_id=display-102") == [
        ("room-welcome", "2", "display-102")]
    assert listed("?rule_id=room-welcome&device_id=display-999") == []
    assert listed("?limit=2") == [("old-welcome", "4", "display-101"),
                                  ("room-welcome", "3", "display-101")]
    assert listed("?rule_id=room-welcome&limit=1") == [("room-welcome", "3", "display-101")]
    assert listed("?limit=2&offset=2") == [("room-welcome", "2", "display-102"),
                                           ("stuck-guest", "1", None)]

    newest = client.get(f"{URL}/runs?limit=2").json()
    assert (newest[0]["status"], newest[0]["detail"], newest[0]["sent_at"]) == (
        "expired", None, None)
    assert (newest[1]["status"], newest[1]["name"], newest[1]["action"]) == (
        "sent", "show", "command")
    assert newest[1]["overridden_at"] is not None and newest[1]["sent_at"] is not None
    assert newest[0]["overridden_at"] is None


@pytest.mark.parametrize("query", ["status=lost", "status=SENT", "limit=0", "limit=501",
                                   "limit=many", "offset=-1"])
def test_runs_refuse_a_bad_query(client: TestClient, engine: Engine, query: str) -> None:
    add_runs(engine, run("room-welcome"))
    assert client.get(f"{URL}/runs?{query}").status_code == 422
    assert client.get(f"{URL}/runs?limit=500").status_code == 200


# ---------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ["auditor", "integrator"])
def test_readers_read_but_do_not_write(app: FastAPI, engine: Engine, role: str) -> None:
    with TestClient(app, headers=bearer(staff_token(app, role))) as c:
        for path in ("", "/room-welcome", "/export", "/stats"):
            assert c.get(URL + path).status_code == 200, path
        # Runs hold guests' data (names, heart rates): not for integrators.
        assert c.get(f"{URL}/runs").status_code == (200 if role == "auditor" else 403)
        assert c.put(f"{URL}/pool-closing", json=POOL).status_code == 403
        assert c.patch(f"{URL}/room-welcome", json={"enabled": False}).status_code == 403
        assert c.delete(f"{URL}/room-welcome").status_code == 403
        assert c.post(f"{URL}/import", content=export_yaml(shipped())).status_code == 403
    assert list(rules_in_force(engine)) == SHIPPED
    assert audit_actions(engine) == []


def test_staff_write(app: FastAPI, engine: Engine) -> None:
    with TestClient(app, headers=bearer(staff_token(app, "staff"))) as c:
        assert c.put(f"{URL}/pool-closing", json=POOL).status_code == 201
    assert "pool-closing" in rules_in_force(engine)


def test_guests_see_nothing(app: FastAPI) -> None:
    from tests.conftest import guest_token

    with TestClient(app, headers=bearer(guest_token(app, "guest-01"))) as c:
        for path in ("", "/stats", "/runs"):
            assert c.get(URL + path).status_code == 403, path


# ------------------------------------------------------------- the runner


def test_the_runner_s_rules_follow_the_database_within_the_cache(engine: Engine) -> None:
    now = [0.0]
    rules = CachedRules(engine, ttl=2.0, clock=lambda: now[0])
    assert rules()[0].enabled is True
    with session_scope(engine) as session:
        session.add(row_of(replace(room_welcome(), enabled=False)))
    now[0] = 1.9
    assert rules()[0].enabled is True  # cached: a burst of taps reads the table once
    now[0] = 2.0
    assert rules()[0].enabled is False  # a change is in force within two seconds


def test_a_broken_database_keeps_the_last_rules(engine: Engine) -> None:
    now = [0.0]
    rules = CachedRules(engine, ttl=2.0, clock=lambda: now[0])
    first = rules()
    broken = create_db_engine("sqlite:////nonexistent-dir/x.db", sqlite_synchronous="OFF")
    rules.engine = broken
    now[0] = 5.0
    assert rules() == first


def test_the_readme_s_example_is_the_shipped_room_welcome() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Automations", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert import_yaml(example) == [room_welcome()]


@pytest.mark.parametrize(("change", "problem"), [
    ({"actions": [{"kind": "alert_staff",
                   "params": {"text": "{guest.name} eats {prefs.dietary}"}}]},
     "a service rule may not use prefs.dietary: it needs the guest's consent (give the rule "
     "that purpose)"),
    ({"conditions": [{"kind": "preference_set", "preference": "language"}]},
     "a service rule may not use preference_set: it needs the guest's consent (give the rule "
     "that purpose)"),
    ({"filters": {"reading.heart_rate_bpm": 150}},
     "a service rule may not use reading.heart_rate_bpm: it needs the guest's consent (give "
     "the rule that purpose)"),
])
def test_a_service_rule_may_not_use_what_needs_consent(client: TestClient, engine: Engine,
                                                       change: dict[str, Any],
                                                       problem: str) -> None:
    r = client.put(f"{URL}/pool-closing", json={**POOL, **change})
    assert r.status_code == 422, r.text
    assert problem in r.json()["problems"]
    assert "pool-closing" not in rules_in_force(engine)


@pytest.mark.parametrize("bad", ["\ud800", "\x00"])
@pytest.mark.parametrize("where", ["params", "name", "key"])
def test_a_lone_surrogate_is_refused_before_anything_is_stored(
        client: TestClient, engine: Engine, where: str, bad: str) -> None:
    """JSON lets "\\ud800" in; it cannot be stored or answered as UTF-8 (found by fuzzing).
    Nor can PostgreSQL store "\\u0000" in text: a 500 there, found by attack."""
    action: dict[str, Any] = {"kind": "alert_staff", "params": {"text": "ok"}}
    rule: dict[str, Any] = {**POOL, "actions": [action]}
    if where == "params":
        action["params"] = {"text": bad}
    elif where == "name":
        rule["name"] = f"pool {bad}"
    else:
        action["params"] = {bad: "x"}
    body = json.dumps(rule)  # ensure_ascii: the surrogate travels as an escape
    r = client.put(f"{URL}/pool-closing", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "Unicode" in r.text
    assert "pool-closing" not in rules_in_force(engine)
