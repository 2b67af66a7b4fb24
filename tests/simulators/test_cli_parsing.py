"""Parsing what a user types: broker URLs, credentials, API addresses, CLI options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devices.client import credential_from_text
from devices.contract import PhoneKeyCredential, WristbandCredential
from simulators.cli import app
from simulators.readers import Broker, PhoneKey, Wristband, parse_broker_url, random_uid
from simulators.rest import api_base
from simulators.scenarios import SCENARIOS

runner = CliRunner()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", Broker("127.0.0.1", 1883)),
        ("mqtt://broker.example:18830", Broker("broker.example", 18830)),
        ("mqtt://broker.example", Broker("broker.example", 1883)),
        ("mqtt://broker.example:18830/", Broker("broker.example", 18830)),
        ("localhost:1884", Broker("localhost", 1884)),
        ("  mqtt://h:1  ", Broker("h", 1)),
        ("mqtt://[::1]:1883", Broker("::1", 1883)),
        ("mqtt://gate%40x:p%3Ass@h:2", Broker("h", 2, "gate@x", "p:ss")),
        ("mqtt://user@h", Broker("h", 1883, "user", None)),
        # TLS: the port defaults to 8883; the CA to trust is hub-sim's --ca (Broker.tls_ca).
        ("mqtts://h:8884", Broker("h", 8884)),
        ("mqtts://h", Broker("h", 8883)),
    ],
)
def test_parse_broker_url(url: str, expected: Broker) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["ws://h:80", "mqtt://h:notaport", "mqtt://h:70000", "mqtt://:1883",
            "mqtt://h:1883/topic", "mqtt://h?x=1", ""],
)
def test_parse_broker_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_broker_url(url)


def test_broker_prints_as_a_url_that_parses_back() -> None:
    for broker in (Broker("h", 2), Broker("::1", 1883)):
        assert parse_broker_url(str(broker)) == broker


def test_random_uids_are_fresh_7_byte_nxp_uids() -> None:
    uids = {random_uid() for _ in range(200)}
    assert len(uids) == 200
    for uid in uids:
        assert re.fullmatch(r"04[0-9A-F]{12}", uid)
        assert credential_from_text(uid) == WristbandCredential(uid=uid)
        assert Wristband(uid).credential == WristbandCredential(uid=uid)


@pytest.mark.parametrize("text", ["pk-guest-01", "04A1", "04A10000000001ZZ", "key:1"])
def test_non_uids_are_phone_keys(text: str) -> None:
    assert credential_from_text(text) == PhoneKeyCredential(key_id=text)
    assert PhoneKey(text).credential == PhoneKeyCredential(key_id=text)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/api/v1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/api/v1"),
        ("http://h:1/api/v1", "http://h:1/api/v1"),
        ("http://h:1/api/v1/", "http://h:1/api/v1"),
        ("https://hub.example/venue", "https://hub.example/venue/api/v1"),
    ],
)
def test_api_base(url: str, base: str) -> None:
    assert api_base(url) == base


def test_invalid_broker_is_a_usage_error() -> None:
    result = runner.invoke(app, ["--broker", "ws://h", "tap", "-d", "gate-1", "-c", "04A1B2C3"])
    assert result.exit_code == 2
    assert "ws" in result.output


def test_tls_without_a_ca_is_a_usage_error(tmp_path: Path) -> None:
    # No sheet to take the CA from: hub-sim must not fall back to trusting anyone.
    result = runner.invoke(app, ["--provisioning", str(tmp_path / "none.json"), "--broker",
                                 "mqtts://h", "tap", "-d", "gate-1", "-c", "04A1B2C3"])
    assert result.exit_code == 2
    assert "--ca" in result.output
    missing = runner.invoke(app, ["--ca", str(tmp_path / "no-ca.crt"), "tap", "-d", "gate-1",
                                  "-c", "04A1B2C3"])
    assert missing.exit_code == 2
    assert "no CA file" in missing.output


def test_broker_comes_from_the_environment() -> None:
    # Port 1 on localhost refuses at once: the command must report *that* broker, exit 2.
    result = runner.invoke(
        app, ["tap", "-d", "gate-park-in-1", "-c", "04A10000000001"],
        env={"HUB_SIM_BROKER": "mqtt://127.0.0.1:1"},
    )
    assert result.exit_code == 2
    assert "mqtt://127.0.0.1:1" in result.output


def test_direction_is_in_or_out() -> None:
    result = runner.invoke(app, ["tap", "-d", "g", "-c", "04A1B2C3", "--direction", "up"])
    assert result.exit_code == 2


def test_every_scenario_is_a_command() -> None:
    result = runner.invoke(app, ["scenario", "--help"])
    assert result.exit_code == 0
    for name in SCENARIOS:
        assert name in result.output


def test_hub_sim_phone_says_when_the_api_is_unreachable(tmp_path: Path) -> None:
    from tests.conftest import free_port

    result = runner.invoke(app, ["--provisioning", str(tmp_path / "none.json"), "--api",
                                 f"http://127.0.0.1:{free_port()}", "phone", "--guest",
                                 "guest-01", "--device", "lock-101"])
    assert result.exit_code == 2, result.output
    assert "hub unreachable" in result.output


def test_a_refused_login_without_a_sheet_says_where_the_sheet_is() -> None:
    """Run from elsewhere, hub-sim finds no sheet and logs in as nobody: say that, not only
    "refused" (which reads like a revoked login)."""
    from devices.client import LoginRefused
    from simulators.cli import broker_problem
    refused = LoginRefused("Not authorized")
    without = broker_problem(Broker("127.0.0.1"), refused)
    assert "no provisioning sheet" in without and "--provisioning" in without
    with_sheet = broker_problem(Broker("127.0.0.1", logins={"lock-101": ("u", "p")}), refused)
    assert "no provisioning sheet" not in with_sheet and "another venue" in with_sheet
