"""Automations through the REST API: stored rules over the shipped ones, YAML, the runner."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.api.main import API_PREFIX, create_app
from hub.automation_store import (
    CachedRules,
    export_yaml,
    import_yaml,
    load_rules,
    row_of,
    rule_of,
)
from hub.automations import RuleError, room_welcome, shipped
from hub.config import Settings
from hub.db import create_db_engine, init_db, session_scope
from hub.demo import seed_demo
from hub.models import AuditEntry, AutomationRule, utcnow
from tests.conftest import bearer, staff_token

URL = API_PREFIX + "/automations"
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


# ----------------------------------------------------------------------- CRUD


def test_the_list_holds_the_shipped_rules(client: TestClient) -> None:
    listed = client.get(URL).json()
    assert [(r["id"], r["source"], r["enabled"]) for r in listed] == [
        ("room-welcome", "shipped", True), ("stuck-guest", "shipped", True)]
    one = client.get(f"{URL}/room-welcome").json()
    assert one["trigger"] == "entry_allowed" and len(one["actions"]) == 3
    assert client.get(f"{URL}/nothing-here").status_code == 404


def test_create_read_replace_delete(client: TestClient, engine: Engine) -> None:
    r = client.put(f"{URL}/pool-closing", json=POOL)
    assert r.status_code == 201, r.text
    assert (r.json()["source"], r.json()["overrides_shipped"]) == ("stored", False)
    assert client.get(f"{URL}/pool-closing").json()["filters"] == {"zone.id": "water-park"}
    assert [r["id"] for r in client.get(URL).json()] == ["room-welcome", "stuck-guest",
                                                         "pool-closing"]
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
    assert list(rules_in_force(engine)) == ["room-welcome", "stuck-guest"]  # still in place
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
    assert [d["id"] for d in yaml.safe_load(exported)["rules"]] == [
        "room-welcome", "stuck-guest", "pool-closing"]
    before = rules_in_force(engine)
    with session_scope(engine) as session:  # start afresh: nothing stored
        for row in session.exec(select(AutomationRule)).all():
            session.delete(row)
    assert rules_in_force(engine)["stuck-guest"].enabled is True
    r = client.post(f"{URL}/import", content=exported,
                    headers={"content-type": "application/yaml"})
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == ["room-welcome", "stuck-guest", "pool-closing"]
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
    assert list(rules_in_force(engine)) == ["room-welcome", "stuck-guest"]
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


def test_stats_come_from_the_running_runner(client: TestClient) -> None:
    assert client.get(f"{URL}/stats").json() == {
        "room-welcome": {"fired": 3, "failed": 0, "overridden": 0},
        "stuck-guest": {"fired": 0, "failed": 1, "overridden": 0}}


def test_stats_without_a_runner_are_zeros(engine: Engine, tmp_path: Path) -> None:
    app = create_app(engine=engine, settings=Settings(data_dir=tmp_path, broker_url=None))
    with TestClient(app, headers=bearer(staff_token(app))) as c:
        stats = c.get(f"{URL}/stats").json()
    assert stats == {rule.id: {"fired": 0, "failed": 0, "overridden": 0} for rule in shipped()}


# ---------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ["auditor", "integrator"])
def test_readers_read_but_do_not_write(app: FastAPI, engine: Engine, role: str) -> None:
    with TestClient(app, headers=bearer(staff_token(app, role))) as c:
        for path in ("", "/room-welcome", "/export", "/stats"):
            assert c.get(URL + path).status_code == 200, path
        assert c.put(f"{URL}/pool-closing", json=POOL).status_code == 403
        assert c.patch(f"{URL}/room-welcome", json={"enabled": False}).status_code == 403
        assert c.delete(f"{URL}/room-welcome").status_code == 403
        assert c.post(f"{URL}/import", content=export_yaml(shipped())).status_code == 403
    assert list(rules_in_force(engine)) == ["room-welcome", "stuck-guest"]
    assert audit_actions(engine) == []


def test_staff_write(app: FastAPI, engine: Engine) -> None:
    with TestClient(app, headers=bearer(staff_token(app, "staff"))) as c:
        assert c.put(f"{URL}/pool-closing", json=POOL).status_code == 201
    assert "pool-closing" in rules_in_force(engine)


def test_guests_see_nothing(app: FastAPI) -> None:
    from tests.conftest import guest_token

    with TestClient(app, headers=bearer(guest_token(app, "guest-01"))) as c:
        assert c.get(URL).status_code == 403


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
