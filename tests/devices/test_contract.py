"""devices/contract.py's parse functions, kind by kind: what each accepts, what it refuses
and with which code, and how the contract version is read.

Random and hostile payloads (bytes, damaged JSON, deep nesting, 64 KiB edges, numbers and
strings strict JSON cannot carry) are tests/devices/test_contract_robust.py's job.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import pytest

from devices.contract import (
    MAX_PAYLOAD_BYTES,
    ContractError,
    DeviceStatus,
    ErrorCode,
    HeartbeatEvent,
    OfflineEntry,
    PaymentRequest,
    PhoneKeyCredential,
    TapEvent,
    TelemetryEvent,
    WristbandCredential,
    WristbandSunCredential,
    encode,
    event_id_of,
    parse_event,
    parse_status,
)
from tests.devices.test_contract_robust import VALID

EVENT_KINDS = sorted(k for k in VALID if k != "status")
MODELS: dict[str, type] = {"tap_wristband": TapEvent, "tap_phone_key": TapEvent,
                           "tap_signed_phone_key": TapEvent, "tap_sun": TapEvent,
                           "heartbeat": HeartbeatEvent, "telemetry": TelemetryEvent,
                           "payment": PaymentRequest, "offline_entry": OfflineEntry}
CREDENTIALS = {"tap_wristband": WristbandCredential, "tap_phone_key": PhoneKeyCredential,
               "tap_signed_phone_key": PhoneKeyCredential, "tap_sun": WristbandSunCredential}


def raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def refusal(payload: bytes) -> ContractError:
    with pytest.raises(ContractError) as caught:
        parse_event(payload)
    return caught.value


def changed(base: str, /, **fields: Any) -> dict[str, Any]:
    """A copy of the valid message ``base`` with ``fields`` set."""
    message = copy.deepcopy(VALID[base])
    message.update(fields)
    return message


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_each_kind_parses_to_its_model_and_encodes_back(kind: str) -> None:
    event = parse_event(raw(VALID[kind]))
    assert type(event) is MODELS[kind] and event.event_id == VALID[kind]["event_id"]
    if kind in CREDENTIALS:
        assert isinstance(event, TapEvent)
        assert type(event.credential) is CREDENTIALS[kind]
    assert parse_event(encode(event)) == event


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_an_unknown_field_is_refused_naming_the_event(kind: str) -> None:
    err = refusal(raw(changed(kind, colour="blue")))
    assert (err.code, err.event_id) == (ErrorCode.SCHEMA_VIOLATION, VALID[kind]["event_id"])
    assert "colour" in err.detail


@pytest.mark.parametrize("kind", EVENT_KINDS)
@pytest.mark.parametrize("field", ["event_id", "ts", "kind"])
def test_a_required_field_missing_is_refused(kind: str, field: str) -> None:
    message = copy.deepcopy(VALID[kind])
    del message[field]
    err = refusal(raw(message))
    assert err.code is ErrorCode.SCHEMA_VIOLATION
    # Without its event id the refusal names no event: the device cannot be answered under one.
    assert err.event_id == (None if field == "event_id" else message["event_id"])


@pytest.mark.parametrize(("kind", "fields"), [
    ("payment", {"amount": "750"}),  # strict: a string is not a number
    ("payment", {"amount": 7.5}),  # money is integer minor units
    ("payment", {"amount": 0}),
    ("payment", {"amount": -750}),
    ("payment", {"currency": "usd"}),
    ("payment", {"pin": 1234}),
    ("payment", {"pin": "12"}),
    ("payment", {"amount": 751}),  # the line items no longer add up
    ("payment", {"account": "credit"}),
    ("heartbeat", {"battery_pct": 101}),
    ("heartbeat", {"battery_pct": True}),  # strict: a boolean is not a number
    ("heartbeat", {"interval_s": 0}),
    ("telemetry", {"readings": {"x": [1, 2]}}),
    ("telemetry", {"readings": {f"r{n}": n for n in range(65)}}),
    ("tap_wristband", {"ts": "2026-01-01T12:00:00"}),  # no offset: whose noon?
    ("tap_wristband", {"ts": 1767268800}),  # strict: a number is not a time
    ("tap_wristband", {"direction": "up"}),
    ("tap_wristband", {"credential": {"type": "wristband", "uid": "04A1"}}),  # too short
    ("tap_wristband", {"credential": {"uid": "04A10000000001"}}),  # no type
    ("tap_wristband", {"credential": {"type": "card", "uid": "04A10000000001"}}),
    ("tap_phone_key", {"credential": {"type": "phone_key"}}),  # neither form
    ("tap_phone_key", {"credential": {"type": "phone_key", "key_id": "k1", "token": "t"}}),
    ("tap_signed_phone_key", {"credential": {"type": "phone_key", "token": "t",
                                             "proof": "p"}}),  # no challenge
    ("tap_sun", {"credential": {"type": "wristband_sun", "picc": "00", "cmac": "00"}}),
    ("offline_entry", {"outcome": "maybe"}),
    ("offline_entry", {"credential_kind": "phone_key"}),  # a band's SUN data, not a key's
    ("offline_entry", {"credential_kind": "phone_key", "credential": {
        "type": "wristband", "uid": "04FF0000000001"}}),
])
def test_what_breaks_a_kinds_schema_is_a_schema_violation(kind: str,
                                                          fields: dict[str, Any]) -> None:
    message = changed(kind, **fields)
    if kind == "offline_entry" and fields.get("credential_kind") == "phone_key" \
            and "credential" not in fields:
        message["credential"] = {"type": "wristband", "uid": "04FF0000000001"}
    err = refusal(raw(message))
    assert (err.code, err.event_id) == (ErrorCode.SCHEMA_VIOLATION, message["event_id"]), err


def test_an_implausible_event_id_is_refused_and_not_answered_under() -> None:
    for event_id in ("has space", "", "-lead", "x" * 65, 7):
        err = refusal(raw(changed("tap_wristband", event_id=event_id)))
        assert (err.code, err.event_id) == (ErrorCode.SCHEMA_VIOLATION, None), event_id


def test_an_unknown_kind_or_none_is_a_schema_violation() -> None:
    for kind in ("teleport", "", None, 1, "decision", "status"):
        err = refusal(raw(changed("heartbeat", kind=kind)))
        assert (err.code, err.event_id) == (ErrorCode.SCHEMA_VIOLATION, "h-1"), kind


def test_a_payload_that_is_no_object_is_a_schema_violation() -> None:
    for payload in (b"[]", b'"tap"', b"1", b"null", b"true"):
        err = refusal(payload)
        assert (err.code, err.event_id) == (ErrorCode.SCHEMA_VIOLATION, None), payload


# ------------------------------------------------------------------- version


def test_a_message_without_v_is_read_as_version_1() -> None:
    message = copy.deepcopy(VALID["heartbeat"])
    del message["v"]
    assert parse_event(raw(message)).v == 1


@pytest.mark.parametrize("version", [0, 2, 99, -1, "1", 1.0, True, None, [1], {"major": 1}])
def test_any_other_version_is_unsupported_and_named(version: Any) -> None:
    err = refusal(raw(changed("tap_wristband", v=version)))
    assert (err.code, err.event_id) == (ErrorCode.UNSUPPORTED_VERSION, "t-1")
    # The device is told what it sent as it sent it: `true` is not "True".
    assert json.dumps(version) in err.detail or repr(version) in err.detail


def test_the_version_is_checked_before_the_schema() -> None:
    """A version 2 message may have fields version 1 lacks: it is told about the version."""
    err = refusal(raw(changed("payment", v=2, loyalty_points=10)))
    assert err.code is ErrorCode.UNSUPPORTED_VERSION


# ------------------------------------------------------------------ status


@pytest.mark.parametrize("state", ["online", "offline"])
def test_status_accepts_the_bare_words_of_a_last_will(state: Literal["online", "offline"]) -> None:
    assert parse_status(state.encode()) == DeviceStatus(state=state)


def test_status_accepts_its_json_form_and_nothing_more() -> None:
    assert parse_status(raw(VALID["status"])).state == "online"
    for bad in (b"ONLINE", b" online", b"online\n", b"1", raw(changed("status", state="away")),
                raw(changed("status", extra=1)), raw(changed("status", kind="tap"))):
        with pytest.raises(ContractError) as caught:
            parse_status(bad)
        assert caught.value.code in (ErrorCode.MALFORMED_JSON, ErrorCode.SCHEMA_VIOLATION), bad
    # Another version of the contract is said as such, as for events.
    with pytest.raises(ContractError) as caught:
        parse_status(raw(changed("status", v=2)))
    assert caught.value.code is ErrorCode.UNSUPPORTED_VERSION


# ------------------------------------------------------------- size and ids


def test_an_oversized_payload_is_refused_before_it_is_read() -> None:
    """Past the limit the payload is not even decoded: no event id is looked for."""
    huge = raw(changed("telemetry", readings={"pad": "x" * MAX_PAYLOAD_BYTES}))
    err = refusal(huge)
    assert (err.code, err.event_id) == (ErrorCode.PAYLOAD_TOO_LARGE, None)
    assert str(len(huge)) in err.detail
    assert event_id_of(huge) is None


def test_the_event_id_of_a_refused_message_is_read_when_it_can_be() -> None:
    assert event_id_of(raw(changed("payment", amount="lots"))) == "p-1"
    assert event_id_of(b'{"event_id": "e-1", "v": 7}') == "e-1"
    assert event_id_of(b'{"event_id": 5}') is None
    assert event_id_of(b"not json") is None
