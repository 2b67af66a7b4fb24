"""The hub's messages to staff consoles and guests' apps: strict models of the contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from devices.contract import (
    GuestNotice,
    Receipt,
    StaffAlert,
    encode,
    parse_notification,
    parse_receipt,
    parse_staff_alert,
)

AT = datetime(2025, 6, 1, 22, 14, 3, tzinfo=UTC)


def alert_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, "kind": "alert", "alert_id": "a1b2c3", "rule": "stuck-guest",
                            "at": "2025-06-01T22:14:03Z", "text": "Guest stuck at lock-105"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def notice_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, "kind": "offer", "notice_id": "n1", "rule": "ride-reward",
                            "at": "2025-06-01T15:20:04Z", "text": "A free drink"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def wire(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


RECEIPT = {"v": 1, "kind": "receipt", "transaction_id": "t1", "type": "topup",
           "guest_id": "guest-12", "amount": 5000, "currency": "USD", "account": "wallet",
           "balance_after": 15000, "at": "2025-06-01T10:05:33Z"}


# ------------------------------------------------------------------ round trips


def test_a_staff_alert_round_trips() -> None:
    alert = StaffAlert(alert_id="a1", rule="returning-guest", at=AT, severity="info",
                       text="Welcome back, Charlie", cue="returning_guest", guest_id="guest-01",
                       device_id="lock-101", zone_id="room-101",
                       details={"room_temperature_c": 22.5, "dietary": ["halal"],
                                "language": None})
    again = parse_staff_alert(encode(alert))
    assert again == alert
    assert again.details["language"] is None  # a null inside details is kept: "no preference"
    assert json.loads(encode(alert))["kind"] == "alert"


def test_a_staff_alert_has_defaults_for_what_may_be_left_out() -> None:
    alert = parse_staff_alert(wire(alert_body()))
    assert (alert.severity, alert.details, alert.cue, alert.reason) == ("warning", {}, None, None)
    assert "reason" not in json.loads(encode(alert))  # None is left out on the wire


@pytest.mark.parametrize("kind", ["offer", "notice"])
def test_a_guest_notice_round_trips(kind: str) -> None:
    notice = GuestNotice(kind=kind, notice_id="n1", rule="ride-reward", at=AT,  # type: ignore[arg-type]
                         text="5 rides!", offer_id="ride-reward", merchant_id="cafe",
                         details={"rides": 5})
    parsed = parse_notification(encode(notice))
    assert isinstance(parsed, GuestNotice) and parsed == notice


def test_a_guest_app_reads_receipts_and_notices_apart() -> None:
    assert isinstance(parse_notification(wire(RECEIPT)), Receipt)
    assert isinstance(parse_notification(wire(notice_body(kind="notice"))), GuestNotice)
    assert isinstance(parse_receipt(wire(RECEIPT)), Receipt)  # the receipts-only reader still works
    with pytest.raises(ValidationError):
        parse_receipt(wire(notice_body()))  # ... and is not fooled by a notice
    with pytest.raises(ValidationError):
        parse_notification(wire(alert_body()))  # a staff alert is no guest's business


# -------------------------------------------------------------------- strictness


@pytest.mark.parametrize("body", [
    alert_body(extra="x"),                      # unknown field
    alert_body(room_temperature_c=22.5),        # free keys belong in details
    alert_body(kind="notice"),
    alert_body(v=2),
    alert_body(severity="urgent!!"),
    alert_body(severity="URGENT"),
    alert_body(text=""),
    alert_body(text="x" * 501),
    alert_body(text=42),
    alert_body(at="2025-06-01T22:14:03"),       # no UTC offset
    alert_body(at=1748816043),                  # a number is not a timestamp
    alert_body(alert_id="not an id"),
    alert_body(alert_id=None),
    alert_body(rule=None),
    alert_body(rule="r" * 65),
    alert_body(guest_id=12),                    # strict: a number is not an id
    alert_body(device_id=""),
    alert_body(reason="r" * 201),
    alert_body(details=["not", "a", "mapping"]),
])
def test_a_staff_alert_refuses_what_breaks_the_contract(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_staff_alert(wire(body))


@pytest.mark.parametrize("body", [
    notice_body(extra="x"),
    notice_body(kind="notify_guest"),           # the action's name is not the message's kind
    notice_body(kind="alert"),
    notice_body(text=None),
    notice_body(text="x" * 501),
    notice_body(notice_id=None),
    notice_body(at="yesterday"),
    notice_body(offer_id=7),
    notice_body(severity="info"),               # a staff alert's field
])
def test_a_guest_notice_refuses_what_breaks_the_contract(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_notification(wire(body))


def test_the_models_are_strict_in_python_too() -> None:
    with pytest.raises(ValidationError):
        StaffAlert(alert_id="a1", rule="r", at=datetime(2025, 6, 1), text="naive")  # no tz
    with pytest.raises(ValidationError):
        StaffAlert(alert_id="a1", rule="r", at=AT, text="x", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GuestNotice(notice_id="n1", rule="r", at=AT, text=3)  # type: ignore[arg-type]
    alert = StaffAlert(alert_id="a1", rule="r", at=AT, text="x")
    with pytest.raises(ValidationError):
        alert.text = "changed"  # type: ignore[misc]  # frozen, like every message
