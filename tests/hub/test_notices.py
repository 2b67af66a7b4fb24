"""Automations' alerts and notices as contract models: params to fields, the rest to details,
and a param that does not fit never stops the runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from devices.contract import GuestNotice, StaffAlert, parse_notification, parse_staff_alert
from devices.topics import guest_topic, staff_topic
from hub.appliance_queue import expired_alert
from hub.automations.catalogue import health_staff, returning_guest, ride_reward, stuck_guest
from hub.automations.engine import Planned, plan
from hub.automations.facts import Facts
from hub.automations.occurrence import Occurrence
from hub.automations.rules import Action, Rule
from hub.automations.runner import AutomationRunner, message_for
from hub.db import create_db_engine, init_db, session_scope
from hub.models import AutomationRun, RunStatus, Venue
from hub.notices import TEXT_MAX, guest_notice, staff_alert

AT = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
VENUE = "demo-resort"


def occurrence(guest_id: str | None = "guest-01") -> Occurrence:
    return Occurrence("entry_allowed", VENUE, "lock-101", guest_id, AT)


def sent_alert(params: dict[str, Any], rule: str = "r") -> StaffAlert:
    topic, payload = message_for(occurrence(), Planned(rule, "alert_staff", None, None, params))
    assert topic == staff_topic(VENUE)
    return parse_staff_alert(payload)


# ----------------------------------------------------------- the shipped rules


def test_a_stuck_guest_is_a_warning_with_the_door_and_the_reason() -> None:
    facts = Facts(trigger="entry_denied", now=AT, device={"id": "lock-105"},
                  event={"reason": "wrong_zone"}, counters={"recent_denials": 2})
    [action] = plan([stuck_guest()], facts)
    alert = sent_alert(dict(action.params), "stuck-guest")
    assert (alert.rule, alert.severity, alert.device_id, alert.reason, alert.text) == (
        "stuck-guest", "warning", "lock-105", "wrong_zone", "Guest stuck at lock-105: wrong_zone")
    assert alert.details == {} and alert.at == AT


def test_a_lasting_heart_rate_is_urgent_with_the_reading_in_details() -> None:
    facts = Facts(trigger="telemetry", now=AT, data_purposes=frozenset({"health"}),
                  guest={"id": "guest-03", "display_name": "Bo"},
                  prefs={"heart_rate_threshold": 120}, consents=frozenset({"health"}),
                  device={"id": "watch-03", "kind": "watch"}, reading={"heart_rate_bpm": 140},
                  counters={"heart_rate_high": 3})
    [action] = plan([health_staff()], facts)
    alert = sent_alert(dict(action.params), "health-staff")
    assert (alert.severity, alert.guest_id, alert.device_id) == ("urgent", "guest-03", "watch-03")
    assert alert.details == {"heart_rate_bpm": 140}
    assert alert.text == "Bo's heart rate has stayed above 120 bpm (140 now)"


def test_a_returning_guest_cue_keeps_the_preferences_in_details() -> None:
    facts = Facts(trigger="entry_allowed", now=AT, guest={"id": "guest-01",
                                                          "display_name": "Charlie"},
                  prefs={"room_temperature_c": 22.5, "lighting_scene": "warm",
                         "dietary": ["halal"]},
                  consents=frozenset({"personalization"}),
                  zone={"id": "room-101", "kind": "room"},
                  device={"id": "lock-101"}, counters={"entries": 1, "earlier_stays": 1})
    [action] = plan([returning_guest()], facts)
    alert = sent_alert(dict(action.params), "returning-guest")
    assert (alert.severity, alert.cue, alert.guest_id, alert.zone_id) == (
        "info", "returning_guest", "guest-01", "room-101")
    assert alert.details == {"room_temperature_c": 22.5, "lighting_scene": "warm",
                             "language": None, "dietary": ["halal"]}


def test_the_ride_reward_is_an_offer_on_the_guests_topic() -> None:
    facts = Facts(trigger="entry_allowed", now=AT, consents=frozenset({"offers"}),
                  zone={"kind": "ride"}, counters={"rides": 5})
    [action] = plan([ride_reward()], facts)
    topic, payload = message_for(occurrence("guest-09"), action)
    notice = parse_notification(payload)
    assert topic == guest_topic(VENUE, "guest-09")
    assert isinstance(notice, GuestNotice)
    assert (notice.kind, notice.rule, notice.offer_id, notice.merchant_id, notice.details) == (
        "offer", "ride-reward", "ride-reward", "cafe", {})
    assert notice.text.startswith("5 rides!")


def test_notify_guest_is_a_notice() -> None:
    action = Planned("park-visits", "notify_guest", None, None,
                     {"text": "Visit 3 to the park", "visits": 3})
    notice = parse_notification(message_for(occurrence(), action)[1])
    assert isinstance(notice, GuestNotice)
    assert (notice.kind, notice.text, notice.details) == ("notice", "Visit 3 to the park",
                                                          {"visits": 3})


def test_an_expired_command_alert_is_info_with_the_command_in_details() -> None:
    queued = AT - timedelta(hours=5)
    run = AutomationRun(rule_id="room-welcome", action="command", device_id="thermostat-104",
                        command_id="c1", name="set_temperature", created_at=queued)
    topic, payload = expired_alert(VENUE, run, device_id="thermostat-104", now=AT)
    alert = parse_staff_alert(payload)
    assert topic == staff_topic(VENUE)
    assert (alert.rule, alert.severity, alert.cue, alert.device_id, alert.at) == (
        "room-welcome", "info", "command_expired", "thermostat-104", AT)
    assert alert.details == {"command": "set_temperature", "queued_at": queued.isoformat()}
    assert "was offline from 04:30 UTC" in alert.text


# -------------------------------------------------- params that do not fit


@pytest.mark.parametrize(("given", "severity", "details"), [
    ("urgent", "urgent", {}),
    ("URGENT!!", "urgent", {}),          # case and punctuation: still unambiguous
    (" info ", "info", {}),
    ("critical", "warning", {"severity": "critical"}),  # unknown: default, kept for staff
    (3, "warning", {"severity": 3}),
    (["urgent"], "warning", {"severity": ["urgent"]}),
    (None, "warning", {}),
    ("", "warning", {}),
])
def test_a_severity_is_coerced_or_kept_in_details(given: Any, severity: str,
                                                  details: dict[str, Any]) -> None:
    alert = sent_alert({"text": "x", "severity": given})
    assert (alert.severity, alert.details) == (severity, details)


@pytest.mark.parametrize(("given", "text", "details"), [
    (42, "42", {}),
    (2.5, "2.5", {}),
    ("  padded  ", "padded", {}),
    (["a", "list"], "Alert from the automation r", {"text": ["a", "list"]}),
    ({"a": 1}, "Alert from the automation r", {"text": {"a": 1}}),
    (True, "Alert from the automation r", {"text": True}),
    (None, "Alert from the automation r", {}),
    ("", "Alert from the automation r", {}),
])
def test_a_text_is_coerced_or_kept_in_details(given: Any, text: str,
                                              details: dict[str, Any]) -> None:
    alert = sent_alert({"text": given})
    assert (alert.text, alert.details) == (text, details)


def test_a_missing_text_gets_a_fallback_and_a_long_one_is_cut() -> None:
    assert sent_alert({}).text == "Alert from the automation r"
    long = sent_alert({"text": "x" * 2000}).text
    assert len(long) == TEXT_MAX and long.endswith("\u2026")
    assert guest_notice("offer", "r", AT, {"text": []}).text == "An offer for you"
    assert guest_notice("notice", "r", AT, {}).text == "A message from the venue"


def test_ids_are_coerced_or_kept_in_details() -> None:
    alert = sent_alert({"text": "x", "guest_id": 12, "device_id": "d" * 65, "zone_id": ["z"],
                        "cue": None, "reason": ""})
    assert (alert.guest_id, alert.device_id, alert.zone_id, alert.cue, alert.reason) == (
        "12", None, None, None, None)
    assert alert.details == {"device_id": "d" * 65, "zone_id": ["z"]}
    notice = guest_notice("offer", "r", AT, {"text": "x", "offer_id": 7, "merchant_id": False})
    assert (notice.offer_id, notice.merchant_id, notice.details) == ("7", None,
                                                                     {"merchant_id": False})


def test_params_named_like_the_envelope_cannot_change_it() -> None:
    alert = sent_alert({"text": "x", "kind": "receipt", "v": 2, "rule": "other", "at": "never",
                        "alert_id": "mine", "details": {"a": 1}}, rule="r")
    assert (alert.kind, alert.v, alert.rule, alert.at) == ("alert", 1, "r", AT)
    assert alert.alert_id != "mine"
    assert alert.details == {"kind": "receipt", "v": 2, "rule": "other", "at": "never",
                             "alert_id": "mine", "details": {"a": 1}}


def test_values_that_are_not_json_become_strings() -> None:
    params: dict[Any, Any] = {"text": "x", "when": AT, 5: "five"}
    alert = staff_alert("r", AT, params)
    assert alert.details == {"when": str(AT), "5": "five"}
    json.loads(parse_staff_alert(json.dumps(alert.model_dump(mode="json")).encode())
               .model_dump_json())


def test_a_naive_time_is_taken_as_utc() -> None:
    alert = staff_alert("r", datetime(2025, 6, 1, 9, 30), {"text": "x"})
    assert alert.at == AT


def test_every_alert_and_notice_gets_its_own_id() -> None:
    assert len({staff_alert("r", AT, {"text": "x"}).alert_id for _ in range(10)}) == 10
    assert len({guest_notice("notice", "r", AT, {"text": "x"}).notice_id
                for _ in range(10)}) == 10


# ----------------------------------------------------------------- the runner


def runner_for(tmp_path: Path, rules: list[Rule], publish: Any, *,
               guest: str | None = "guest-01") -> AutomationRunner:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    with session_scope(engine) as session:
        session.add(Venue(id=VENUE, name="Demo"))
    facts = Facts(trigger="entry_denied", now=AT, guest={"id": guest} if guest else {},
                  device={"id": "lock-105"}, event={"reason": "wrong_zone"})
    runner = AutomationRunner(engine, publish, lambda _s, _o: facts, lambda: rules, attempts=3)
    runner.start()
    return runner


def runs_of(runner: AutomationRunner) -> list[AutomationRun]:
    with session_scope(runner.engine) as session:
        found = list(session.exec(select(AutomationRun)).all())
        session.expunge_all()
        return found


def test_a_rule_with_params_that_do_not_fit_still_alerts_staff(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    bad = Rule(id="bad-alert", name="Staff-written", purpose="service", trigger="entry_denied",
               actions=(Action("alert_staff", params={
                   "text": ["not", "text"], "severity": "urgent!!", "guest_id": 12,
                   "zone_id": {"nested": True}, "reason": "{event.reason}"}),
                        Action("notify_guest", params={"text": 3.5, "offer_id": []})))
    runner = runner_for(tmp_path, [bad], lambda t, p: sent.append((t, p)))
    runner.submit(Occurrence("entry_denied", VENUE, "lock-105", "guest-01", AT))
    assert runner.drain()
    runner.stop()
    assert runner.fired["bad-alert"] == 2 and not runner.failed
    [(staff, alert_payload), (guest, notice_payload)] = sent
    alert = parse_staff_alert(alert_payload)
    assert (staff, alert.severity, alert.guest_id, alert.reason, alert.text) == (
        staff_topic(VENUE), "urgent", "12", "wrong_zone", "Alert from the automation bad-alert")
    assert alert.details == {"text": ["not", "text"], "zone_id": {"nested": True}}
    notice = parse_notification(notice_payload)
    assert isinstance(notice, GuestNotice)
    assert (guest, notice.kind, notice.text, notice.details) == (
        guest_topic(VENUE, "guest-01"), "notice", "3.5", {"offer_id": []})
    assert {r.status for r in runs_of(runner)} == {RunStatus.SENT}


def test_a_retried_alert_keeps_its_id(tmp_path: Path) -> None:
    attempts: list[bytes] = []

    def flaky(_topic: str, payload: bytes) -> None:
        attempts.append(payload)
        if len(attempts) < 3:
            raise ConnectionError("broker away")

    runner = runner_for(tmp_path, [stuck_guest(threshold=0)], flaky)
    runner.submit(Occurrence("entry_denied", VENUE, "lock-105", None, AT))
    assert runner.drain()
    runner.stop()
    assert len(attempts) == 3 and runner.fired["stuck-guest"] == 1
    assert len({parse_staff_alert(p).alert_id for p in attempts}) == 1  # staff show it once


def test_a_notice_for_nobody_is_a_failed_run_not_a_crash(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    rule = Rule(id="nobody", name="Nobody", purpose="service", trigger="entry_denied",
                actions=(Action("notify_guest", params={"text": "hi"}),
                         Action("alert_staff", params={"text": "still here"})))
    runner = runner_for(tmp_path, [rule], lambda t, p: sent.append((t, p)), guest=None)
    runner.submit(Occurrence("entry_denied", VENUE, "lock-105", None, AT))
    assert runner.drain()
    runner.stop()
    assert runner.failed["nobody"] == 1 and runner.fired["nobody"] == 1
    assert [t for t, _ in sent] == [staff_topic(VENUE)]  # the next action still ran
    failed = [r for r in runs_of(runner) if r.status == RunStatus.FAILED]
    assert [r.detail for r in failed] == ["nobody: nobody to notify"]
