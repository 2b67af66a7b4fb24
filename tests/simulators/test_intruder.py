"""The intruder scenario's pure parts: the sheet, bit flips, band counters, target choice.

No hub and no broker: what needs them is played by ``hub-sim scenario intruder``
against ``hub up --demo`` (tests/e2e/test_cli.py).
"""

from __future__ import annotations

import copy
import importlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from devices.contract import EntryReason
from devices.sun import SunMacError, verify_sun
from simulators.cli import app
from simulators.rest import AuditEntry, Entitlement, Event, HubApi, LoginAnswer, LogInAttempts
from simulators.scenarios import SCENARIOS
from simulators.scenarios.intruder import (
    Sheet,
    SheetError,
    connect_host,
    current_room,
    flip_bit,
    intruder,
    load_sheet,
    other_device,
    parse_sheet,
    verdict,
)
from simulators.scenarios.intruder_api import audited, guessing_address, guessing_verdict
from simulators.scenarios.intruder_doors import (
    alert_of,
    api_verdict,
    entry_verdict,
    login_refusals,
    login_verdict,
    pass_holders,
    row_of,
    wait_for,
)
from simulators.scenarios.runner import NotPlayable, Run, allow, deny, play
from simulators.secure_band import COUNTER_MODULUS, SecureBand, initial_counter

# The package binds the scenario function over its module's name: take the module itself.
intruder_module = importlib.import_module("simulators.scenarios.intruder")

UID = "04B10000000001"
META, FILE = secrets.token_bytes(16), secrets.token_bytes(16)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def sheet_data() -> dict[str, Any]:
    return {
        "broker": {"host": "127.0.0.1", "port": 18860},
        "devices": {
            "lock-101": {"venue": "demo-resort", "username": "demo-resort.lock-101",
                         "password": "secret-101"},
            "lock-102": {"venue": "demo-resort", "username": "demo-resort.lock-102",
                         "password": "secret-102"},
        },
        "tags": {UID.lower(): {"meta_read_key": META.hex(), "file_read_key": FILE.hex()}},
    }


# ------------------------------------------------------------------ the sheet


def test_a_demo_sheet_parses() -> None:
    sheet = parse_sheet(sheet_data())
    assert (sheet.broker_host, sheet.broker_port) == ("127.0.0.1", 18860)
    assert sheet.devices["lock-102"].username == "demo-resort.lock-102"
    assert sheet.devices["lock-102"].password == "secret-102"
    assert list(sheet.tags) == [UID]  # UIDs upper-case, as the hub stores them
    assert sheet.tags[UID].file_read_key == FILE.hex()


def test_no_password_or_key_in_reprs() -> None:
    sheet = parse_sheet(sheet_data())
    text = repr(sheet)
    assert "secret-101" not in text and META.hex() not in text and FILE.hex() not in text


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ((), [], "JSON object"),
        (("broker",), None, "broker must be"),
        (("broker", "port"), "18860", "port"),
        (("broker", "port"), True, "port"),
        (("broker", "port"), 0, "port"),
        (("broker", "port"), 70000, "port"),
        (("broker", "host"), "", "broker.host"),
        (("devices",), {}, "devices"),
        (("devices", "lock-101", "password"), None, "devices.lock-101.password"),
        (("devices", "lock-101"), "x", "devices.lock-101"),
        (("tags",), [], "tags"),
        (("tags", UID.lower(), "meta_read_key"), "zz" * 16, "not hex"),
        (("tags", UID.lower(), "file_read_key"), "00" * 15, "16-byte"),
    ],
)
def test_a_broken_sheet_says_what_is_wrong(path: tuple[str, ...], value: Any,
                                           message: str) -> None:
    data: Any = sheet_data()
    if not path:
        data = value
    else:
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is None:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    with pytest.raises(SheetError, match=message):
        parse_sheet(data)


@pytest.mark.parametrize("uid", ["04B1000000", "04B100000000000001", "not-hex"])
def test_tag_uids_are_seven_bytes_of_hex(uid: str) -> None:
    data = sheet_data()
    data["tags"] = {uid: data["tags"][UID.lower()]}
    with pytest.raises(SheetError, match="UID"):
        parse_sheet(data)


def test_a_bad_device_id_is_refused() -> None:
    data = sheet_data()
    data["devices"]["lock/#"] = copy.deepcopy(data["devices"]["lock-101"])
    with pytest.raises(SheetError, match="device id"):
        parse_sheet(data)


def test_load_sheet_reads_a_file_and_refuses_non_json(tmp_path: Path) -> None:
    good = tmp_path / "demo-provisioning.json"
    good.write_text(json.dumps(sheet_data()))
    assert load_sheet(good).broker_port == 18860
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SheetError, match="not JSON"):
        load_sheet(bad)
    with pytest.raises(FileNotFoundError):
        load_sheet(tmp_path / "missing.json")


@pytest.mark.parametrize(("host", "dial"), [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"),
                                            ("::", "::1"), ("10.0.0.5", "10.0.0.5"),
                                            ("127.0.0.1", "127.0.0.1")])
def test_a_wildcard_listen_address_is_dialled_on_loopback(host: str, dial: str) -> None:
    assert connect_host(host) == dial


# ------------------------------------------------------------------ bit flipping


@pytest.mark.parametrize("bit", [0, 1, 7, 8, 33, 63])
def test_flip_bit_changes_exactly_that_bit(bit: int) -> None:
    original = "0123456789ABCDEF"
    flipped = flip_bit(original, bit)
    assert len(flipped) == len(original) and flipped != original
    diff = int(original, 16) ^ int(flipped, 16)
    assert diff == 1 << bit
    assert flip_bit(flipped, bit) == original


def test_flip_bit_keeps_the_case() -> None:
    assert flip_bit("ab", 0) == "aa"
    assert flip_bit("AB", 0) == "AA"
    assert flip_bit("00", 7) == "80"


@pytest.mark.parametrize(("text", "bit"), [("00", 8), ("00", -1), ("", 0)])
def test_flip_bit_refuses_bits_outside_the_data(text: str, bit: int) -> None:
    with pytest.raises(ValueError):
        flip_bit(text, bit)


def test_a_flipped_mac_no_longer_verifies() -> None:
    band = SecureBand(UID, META, FILE, counter=10)
    read = band.read()
    verify_sun(read.picc, read.cmac, meta_read_key=META, file_read_key=FILE)
    with pytest.raises(SunMacError):
        verify_sun(read.picc, flip_bit(read.cmac), meta_read_key=META, file_read_key=FILE)


# ------------------------------------------------------------------ the band's counter


def test_the_counter_starts_from_the_clock_below_the_tag_ceiling() -> None:
    assert initial_counter(1_000) == 1_000
    assert initial_counter(1_000.9) == 1_000
    assert initial_counter(COUNTER_MODULUS + 5) == 5
    assert 0 <= initial_counter() < COUNTER_MODULUS
    with pytest.raises(ValueError):
        initial_counter(-1)


def test_a_later_run_starts_above_an_earlier_runs_reads() -> None:
    start = 1_763_900_000.0
    first = SecureBand(UID, META, FILE, counter=initial_counter(start))
    reads = [first.read() for _ in range(2)]
    assert len(reads) == 2
    # The scenario reads each band twice and takes longer than two seconds.
    later = SecureBand(UID, META, FILE, counter=initial_counter(start + 3))
    assert later.counter >= first.counter


def test_each_read_increments_the_counter_and_verifies() -> None:
    band = SecureBand(UID.lower(), META, FILE, counter=41)
    assert band.uid == UID
    one, two = band.read(), band.read()
    assert one != two
    picc_one = verify_sun(one.picc, one.cmac, meta_read_key=META, file_read_key=FILE)
    picc_two = verify_sun(two.picc, two.cmac, meta_read_key=META, file_read_key=FILE)
    assert (picc_one.uid_hex, picc_one.read_ctr) == (UID, 42)
    assert (picc_two.uid_hex, picc_two.read_ctr) == (UID, 43)
    assert band.counter == 43


def test_a_band_from_the_sheet_keys() -> None:
    band = SecureBand.from_hex_keys(UID, META.hex(), FILE.hex(), counter=7)
    read = band.read()
    assert verify_sun(read.picc, read.cmac, meta_read_key=META, file_read_key=FILE).read_ctr == 8
    assert SecureBand.from_hex_keys(UID, META.hex(), FILE.hex()).counter >= 0
    with pytest.raises(ValueError, match="not hex"):
        SecureBand.from_hex_keys(UID, "zz", FILE.hex())


@pytest.mark.parametrize(
    ("uid", "meta", "counter"),
    [("04B100", META, 0), ("04B1000000000001", META, 0), (UID, META[:8], 0),
     (UID, META, -1), (UID, META, 0xFFFFFF)],
    # Named, not by the random key: every pytest-xdist worker must collect the same ids.
    ids=["short-uid", "long-uid", "short-key", "negative-counter", "counter-past-24-bits"],
)
def test_a_band_refuses_what_no_tag_has(uid: str, meta: bytes, counter: int) -> None:
    with pytest.raises(ValueError):
        SecureBand(uid, meta, FILE, counter=counter)


# ------------------------------------------------------------------ target choice


def entitlement(eid: str, kind: str, zones: list[str], start: timedelta, end: timedelta,
                status: str = "active") -> Entitlement:
    return Entitlement.model_validate({
        "id": eid, "guest_id": "guest-01", "kind": kind, "zone_ids": zones,
        "valid_from": NOW + start, "valid_until": NOW + end, "status": status})


def test_the_current_room_is_that_of_an_active_stay_now() -> None:
    day = timedelta(days=1)
    ents = [
        entitlement("a-ticket", "ticket", ["park"], -day, day),
        entitlement("b-old", "room", ["room-109"], -3 * day, -day),
        entitlement("c-cancelled", "room", ["room-108"], -day, day, status="cancelled"),
        entitlement("d-future", "room", ["room-107"], day, 2 * day),
        entitlement("e-stay", "room", ["room-101"], -day, day),
    ]
    assert current_room(ents, NOW) == "room-101"
    assert current_room(ents[:4], NOW) is None
    assert current_room([], NOW) is None


def test_the_other_device_has_credentials_and_is_not_the_first() -> None:
    sheet = parse_sheet(sheet_data())
    assert other_device(["lock-101", "lock-102", "lock-103"], "lock-101",
                        sheet.devices) == "lock-102"
    assert other_device(["lock-103", "lock-101"], "lock-101", sheet.devices) is None
    assert other_device(["lock-101"], "lock-101", sheet.devices) is None


@pytest.mark.parametrize(
    ("expect", "outcome", "reason", "expected"),
    [
        (deny(EntryReason.CREDENTIAL_FORGED), "deny", "credential_forged", "refused"),
        (deny(EntryReason.CREDENTIAL_FORGED), "allow", "ok", "let through"),
        (deny(EntryReason.CREDENTIAL_FORGED), "deny", "wrong_zone", "refused for another reason"),
        (deny(EntryReason.CREDENTIAL_REPLAYED), None, None, "refused for another reason"),
        (allow(), "allow", "ok", "as expected"),
        (allow(), "deny", "credential_replayed", "baseline failed"),
    ],
)
def test_verdicts(expect: Any, outcome: str | None, reason: str | None, expected: str) -> None:
    assert verdict(expect, outcome, reason) == expected


# ------------------------------------------------------------------ preconditions: exit 2


class FakeApi:
    def health(self) -> dict[str, str]:
        return {"status": "ok"}


def play_intruder(provisioning: Path | None) -> tuple[int, str]:
    console = Console(record=True, width=200)
    run = Run(api=FakeApi(), readers=None, venue="demo-resort",  # type: ignore[arg-type]
              provisioning=provisioning)
    code = play("intruder", intruder, run, console)
    return code, " ".join(console.export_text().split())


def test_no_sheet_means_exit_2_and_says_where_it_comes_from(tmp_path: Path) -> None:
    code, text = play_intruder(tmp_path / "demo-provisioning.json")
    assert code == 2
    assert "no provisioning sheet" in text and "hub up --demo" in text


def test_a_broken_sheet_means_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "sheet.json"
    path.write_text(json.dumps({"broker": {"host": "h", "port": "x"}}))
    code, text = play_intruder(path)
    assert code == 2 and "not a provisioning sheet" in text


def test_a_broker_that_lets_anyone_in_is_not_a_secure_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sheet.json"
    path.write_text(json.dumps(sheet_data()))
    monkeypatch.setattr(intruder_module, "connack", lambda *a, **k: "Success")
    code, text = play_intruder(path)
    assert code == 2
    assert "started with --open-broker" in text


def test_an_unreachable_broker_is_exit_2(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sheet.json"
    path.write_text(json.dumps(sheet_data()))

    def refused(*_a: Any, **_k: Any) -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(intruder_module, "connack", refused)
    code, text = play_intruder(path)
    assert code == 2
    assert "hub unreachable: MQTT broker mqtt://127.0.0.1:18860" in text  # the sheet's broker


def test_not_playable_is_exit_2_with_the_reason() -> None:
    def scenario(_run: Run) -> None:
        raise NotPlayable("the broker accepts clients without credentials")

    console = Console(record=True, width=200)
    run = Run(api=FakeApi(), readers=None, venue="v")  # type: ignore[arg-type]
    assert play("x", scenario, run, console) == 2
    assert "cannot play x: the broker accepts clients without credentials" in \
        console.export_text()


# ------------------------------------------------------------------ REST and CLI


def test_rest_issues_a_phone_key_and_lists_a_guests_entitlements() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.content))
        if request.url.path.endswith("/phone-key"):
            return httpx.Response(201, json={
                "token": "t.o.k", "jti": "j1", "kid": "k1", "zones": ["park", "room-101"],
                "nbf": NOW.isoformat(), "exp": (NOW + timedelta(days=3)).isoformat()})
        return httpx.Response(200, json=[])

    with HubApi("http://hub.test:8000", transport=httpx.MockTransport(handler)) as api:
        issued = api.issue_phone_key("pk-cred", {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"})
        assert api.guest_entitlements("guest-01") == []
    assert (issued.token, issued.jti, issued.zones) == ("t.o.k", "j1", ["park", "room-101"])
    assert seen[0][:2] == ("POST", "/api/v1/credentials/pk-cred/phone-key")
    assert json.loads(seen[0][2]) == {"phone_jwk": {"kty": "EC", "crv": "P-256", "x": "a",
                                                    "y": "b"}}
    assert seen[1][:2] == ("GET", "/api/v1/guests/guest-01/entitlements")


def test_the_scenario_is_registered_with_its_provisioning_option() -> None:
    assert SCENARIOS["intruder"] is intruder
    result = CliRunner().invoke(app, ["scenario", "intruder", "--help"],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "--provisioning" in result.output and "HUB_SIM_PROVISIONING" in result.output


def test_the_provisioning_option_reaches_the_scenario(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path | None] = []

    def fake_play(_name: str, _scenario: Any, run: Run, _console: Any) -> int:
        seen.append(run.provisioning)
        return 0

    monkeypatch.setattr("simulators.cli.play", fake_play)
    sheet = tmp_path / "elsewhere.json"
    cli = CliRunner()
    assert cli.invoke(app, ["scenario", "intruder", "--provisioning", str(sheet)]).exit_code == 0
    assert cli.invoke(app, ["scenario", "intruder"],
                      env={"HUB_SIM_PROVISIONING": str(sheet)}).exit_code == 0
    assert cli.invoke(app, ["scenario", "intruder"],
                      env={"HUB_SIM_PROVISIONING": None}).exit_code == 0
    assert seen == [sheet, sheet, Path("hub-data/demo-provisioning.json")]


def test_sheet_type_is_frozen() -> None:
    sheet = parse_sheet(sheet_data())
    assert isinstance(sheet, Sheet)
    with pytest.raises(AttributeError):
        sheet.broker_port = 1  # type: ignore[misc]


# ------------------------------------------------------------------ the newer attacks


def audit_entry(action: str, target: str, **detail: Any) -> AuditEntry:
    return AuditEntry(id=1, at=NOW, actor="x", action=action, target=target, detail=detail)


def journey_row(event_id: str, guest_id: str | None, text: str = "offline") -> Event:
    return Event(id=1, device_id="lock-101", event_id=event_id, kind="offline_entry",
                 guest_id=guest_id, outcome="allow", reason="ok", text=text)


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [(201, "", "let through"), (422, "'hub' is reserved for the hub", "refused"),
     (422, "String should match pattern", "refused for another reason"),
     (409, "exists already: reserved", "refused for another reason")],
)
def test_a_refused_venue_must_say_why(status: int, detail: str, expected: str) -> None:
    assert api_verdict(status, detail, want=422, saying="reserved") == expected


@pytest.mark.parametrize(("answer", "expected"),
                         [("Not authorized", "refused"), ("Success", "let through"),
                          ("Bad user name or password", "refused for another reason"),
                          (None, "refused for another reason")])
def test_a_broker_login_is_refused_only_by_not_authorized(answer: str | None,
                                                          expected: str) -> None:
    assert login_verdict(answer) == expected


def test_login_refusals_read_from_stats() -> None:
    assert login_refusals({"broker_refusals": {"login": 3, "takeover": 1}}) == 3
    assert login_refusals({"broker_refusals": {}}) == 0
    assert login_refusals({}) == 0  # a hub without an embedded broker


def test_wait_for_polls_until_something_comes() -> None:
    answers = iter([None, None, "there"])
    assert wait_for(lambda: next(answers), within=2.0, every=0.0) == "there"
    assert wait_for(lambda: None, within=0.0) is None


def test_a_forged_offline_entry_must_name_no_guest_and_alert_when_asked() -> None:
    alert = audit_entry("offline_entry.alert", "device:lock-101", event_id="e1",
                        reason="credential_forged")
    assert entry_verdict(None, None, None)[0] == "not recorded"
    assert entry_verdict(journey_row("e1", "guest-06"), alert, "credential_forged")[0] == \
        "let through"
    assert entry_verdict(journey_row("e1", None), None, None)[0] == "refused"
    assert entry_verdict(journey_row("e1", None), None, "credential_forged")[0] == \
        "not recorded"
    label, got = entry_verdict(journey_row("e1", None, "offline, refused"), alert,
                               "credential_forged")
    assert label == "refused" and "offline_entry.alert credential_forged" in got
    assert entry_verdict(journey_row("e1", None), alert, "credential_revoked")[0] == \
        "refused for another reason"


def test_rows_and_alerts_are_found_by_event_id() -> None:
    rows = [journey_row("e1", None), journey_row("e2", None)]
    assert row_of(rows, "e2") is rows[1] and row_of(rows, "e3") is None
    alerts = [audit_entry("auth.failure", "user:x", event_id="e1"),
              audit_entry("offline_entry.alert", "device:lock-101", event_id="e1")]
    assert alert_of(alerts, "e1") is alerts[1] and alert_of(alerts, "e2") is None


def test_pass_holders_hold_an_active_pass_to_the_zone_now() -> None:
    day = timedelta(days=1)
    ents = [entitlement("a", "ticket", ["spa"], -day, day),
            entitlement("b", "ticket", ["park"], -day, day),
            entitlement("c", "ticket", ["spa"], day, 2 * day),
            entitlement("d", "ticket", ["spa"], -day, day, status="cancelled")]
    assert pass_holders(ents, "spa", NOW) == ["guest-01"]
    assert pass_holders(ents[1:], "spa", NOW) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://127.0.0.1:8000", "127.8.9.10"), ("http://127.0.0.1:8000/api/v1", "127.8.9.10"),
     ("http://127.3.2.1:8000", "127.8.9.10"), ("http://localhost:8000", None),
     ("http://10.0.0.5:8000", None), ("http://[::1]:8000", None),
     ("http://hub.example:8000", None)],
)
def test_guesses_come_from_another_loopback_address(url: str, expected: str | None) -> None:
    picks = iter([7, 9, 9])
    assert guessing_address(url, lambda _n: next(picks)) == expected


def test_a_guessing_address_is_never_127_0_0_x() -> None:
    for _ in range(200):
        address = guessing_address("http://127.0.0.1:8000")
        assert address is not None and address.startswith("127.")
        assert not address.startswith("127.0.0.") and not address.endswith((".0", ".255"))
    assert guessing_address("http://127.0.0.1", lambda n: n - 1) == "127.254.255.254"


@pytest.mark.parametrize(
    ("statuses", "expected", "said"),
    [([401] * 5 + [429], "refused", "5 × 401, then 429 Retry-After 1s"),
     ([401, 200], "let through", "then a token"),
     ([401] * 12, "let through", "never throttled"),
     ([401, 500], "refused for another reason", "HTTP 500"),
     ([], "not played", "no attempt")],
)
def test_guessing_verdicts(statuses: list[int], expected: str, said: str) -> None:
    answers = [LoginAnswer(s, "", 1 if s == 429 else None) for s in statuses]
    label, got = guessing_verdict(answers)
    assert label == expected and said in got


def test_a_429_without_retry_after_is_not_the_refusal_asked_for() -> None:
    assert guessing_verdict([LoginAnswer(429, "slow down")])[0] == "refused for another reason"


def test_audited_counts_one_action_on_one_target() -> None:
    entries = [audit_entry("auth.failure", "user:x"), audit_entry("auth.failure", "user:y"),
               audit_entry("auth.throttled", "user:x"), audit_entry("auth.failure", "user:x")]
    assert audited(entries, "auth.failure", "user:x") == 2
    assert audited(entries, "auth.throttled", "user:x") == 1


def test_log_in_attempts_report_status_and_retry_after() -> None:
    answers = iter([httpx.Response(401, json={"detail": "invalid username or password"}),
                    httpx.Response(429, json={"detail": "too many"},
                                   headers={"Retry-After": "2"})])
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return next(answers)

    with LogInAttempts("http://hub.test:8000", transport=httpx.MockTransport(handler)) as g:
        first, second = g.attempt("intruder-x", "guess-1"), g.attempt("intruder-x", "guess-2")
    assert first == LoginAnswer(401, "invalid username or password", None)
    assert second == LoginAnswer(429, "too many", 2)
    assert json.loads(seen[0]) == {"username": "intruder-x", "password": "guess-1"}


def test_rest_reads_the_journey_audit_and_stats() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/events"):
            assert request.url.params["device_id"] == "lock-101"
            return httpx.Response(200, json={"items": [{
                "id": 5, "device_id": "lock-101", "venue_id": "v", "event_id": "e1",
                "kind": "offline_entry", "guest_id": None, "outcome": "allow",
                "reason": "ok", "text": "offline"}], "next_cursor": None})
        if path.endswith("/audit"):
            assert request.url.params["action"] == "auth.failure"
            return httpx.Response(200, json=[{
                "id": 1, "at": NOW.isoformat(), "actor": "x", "roles": [],
                "action": "auth.failure", "target": "user:x", "detail": {},
                "source": "127.1.2.3"}])
        return httpx.Response(200, json={"offline_entry_alerts": 2})

    with HubApi("http://hub.test:8000", transport=httpx.MockTransport(handler)) as api:
        assert api.events(device_id="lock-101")[0].event_id == "e1"
        assert api.audit(action="auth.failure")[0].source == "127.1.2.3"
        assert api.stats() == {"offline_entry_alerts": 2}


def test_the_new_attacks_are_registered_as_steps_of_the_scenario() -> None:
    source = Path(str(intruder_module.__file__)).read_text()
    for call in ("doors.reserved_venues", "doors.bridge_login", "doors.superseded_key",
                 "doors.bare_ids", "doors.forged_offline_entries", "doors.anonymous_client",
                 "accounts.erased_guest_token", "accounts.brute_force"):
        assert call in source
    # The brute force leaves a throttle behind: nothing may come after it.
    body = source[source.index("def intruder(run: Run)"):]
    assert body.index("accounts.brute_force") > body.index("accounts.erased_guest_token")
    assert "attacker." not in body[body.index("accounts.brute_force"):body.index("finally")]
