"""No payload makes the contract raise anything but ContractError, and every refusal encodes.

The bridge hands every MQTT payload to :func:`parse_event` or :func:`parse_status` and
answers a ContractError on the device's errors topic; any other exception (a
RecursionError from deep nesting, say) or a refusal that cannot be encoded (one that
echoes a lone surrogate) used to kill its worker thread. Hypothesis feeds random
bytes, random JSON, every message kind mutated, and text-level damage; each result must
be a model that re-encodes to itself, or a ContractError whose reply encodes to UTF-8
JSON that :func:`parse_reply` reads back.

The strategies here (``payloads``, ``VALID``) also drive tests/e2e/test_pipeline_fuzz.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devices.contract import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    ContractError,
    DeviceStatus,
    ErrorCode,
    ErrorMessage,
    encode,
    error_message,
    event_id_of,
    parse_event,
    parse_reply,
    parse_status,
)
from devices.topics import Channel, device_topic

TOPIC = device_topic("demo-resort", "gate-park-in-1", Channel.EVENTS)
EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
PARSE_CODES = {ErrorCode.MALFORMED_JSON, ErrorCode.SCHEMA_VIOLATION,
               ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.UNSUPPORTED_VERSION}
TS = "2026-01-01T12:00:00+00:00"
# No demo guest's band or key: the end-to-end fuzzer sends these to a demo hub, where a
# valid payment with a real band would move money and a real band's taps change journeys.
BAND = {"type": "wristband", "uid": "04FF0000000001"}

# One valid message of every kind a device sends, each credential form included.
VALID: dict[str, dict[str, Any]] = {
    "tap_wristband": {"v": 1, "kind": "tap", "event_id": "t-1", "ts": TS, "credential": BAND,
                      "direction": "in"},
    "tap_phone_key": {"v": 1, "kind": "tap", "event_id": "t-2", "ts": TS,
                      "credential": {"type": "phone_key", "key_id": "pk-fuzz-01"}},
    "tap_signed_phone_key": {"v": 1, "kind": "tap", "event_id": "t-3", "ts": TS, "credential": {
        "type": "phone_key", "token": "eyJhbGciOiJFUzI1NiJ9.e30.sig",
        "challenge": "Zm9vYmFyYmF6cXV4cXV1eA", "proof": "eyJhbGciOiJFUzI1NiJ9.e30.proof"}},
    "tap_sun": {"v": 1, "kind": "tap", "event_id": "t-4", "ts": TS, "credential": {
        "type": "wristband_sun", "picc": "0123456789ABCDEF0123456789ABCDEF",
        "cmac": "0123456789ABCDEF"}},
    "heartbeat": {"v": 1, "kind": "heartbeat", "event_id": "h-1", "ts": TS, "battery_pct": 80,
                  "firmware": "1.2.3", "interval_s": 30},
    "telemetry": {"v": 1, "kind": "telemetry", "event_id": "m-1", "ts": TS, "readings": {
        "temperature_c": 21.5, "heart_rate_bpm": 72, "mode": "eco", "on": True}},
    "payment": {"v": 1, "kind": "payment", "event_id": "p-1", "ts": TS, "credential": BAND,
                "amount": 750, "currency": "USD", "merchant_id": "cafe",
                "idempotency_key": "k-1", "pin": "1234", "account": "wallet",
                "items": [{"name": "Latte", "unit_amount": 350, "sku": "L1"},
                          {"name": "Cake", "unit_amount": 200, "quantity": 2}]},
    "offline_entry": {"v": 1, "kind": "offline_entry", "event_id": "o-1", "ts": TS,
                      "credential_kind": "wristband", "credential_ref": "04FF0000000001",
                      "guest_id": "guest-fuzz", "outcome": "allow", "reason": "ok"},
    "status": {"v": 1, "kind": "status", "state": "online"},
}

# Literals json.dumps cannot write (or writes only leniently), spliced in as raw text.
LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "9" * 5000,
            "-" + "1" * 4301, "9223372036854775808", "-9223372036854775809",
            "9223372036854775807", "-0", "0.0", "1e-999", "1.5e308", "4.9e-324"]
_LITERAL = "\x00literal-{}\x00"

surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=20)
benign = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False,
                                                                    allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "1", "tap", "status", "online", "offline", "in", "out", "USD",
                     "2026-01-01T00:00:00", "2026-01-01T00:00:00Z", "9999-12-31T23:59:59+23:59",
                     "04FF0000000001", "wristband", "phone_key", "wristband_sun", "x" * 200]),
)
nasty = st.one_of(
    st.integers(), st.floats(), any_text, surrogates,
    st.integers(min_value=2**63 - 2, max_value=2**64),
    st.integers(min_value=-(2**64), max_value=-(2**63) + 2),
    st.sampled_from(range(len(LITERALS))).map(_LITERAL.format),
)
scalars = st.one_of(benign, benign, nasty)  # mostly JSON that reaches the schema
keys = st.one_of(any_text, st.sampled_from(["v", "kind", "event_id", "ts", "credential", "type",
                                            "uid", "amount", "items", "readings", "state"]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16)


def render(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON text of ``value``: lenient like a sloppy device (NaN, lone surrogates kept)."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    for n, literal in enumerate(LITERALS):
        text = text.replace(json.dumps(_LITERAL.format(n)), literal)
    # Without ensure_ascii a lone surrogate goes out as its raw (invalid UTF-8) bytes.
    return text.encode("utf-8", "surrogatepass")


def _containers(value: Any) -> list[Any]:
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            found.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


@st.composite
def mutated(draw: st.DrawFn, message: dict[str, Any]) -> Any:
    """``message`` with one to three fields set to odd values, dropped, renamed or added."""
    data = copy.deepcopy(message)
    for _ in range(draw(st.integers(1, 3))):
        parent = draw(st.sampled_from(_containers(data)))
        if isinstance(parent, list):
            if parent:
                parent[draw(st.integers(0, len(parent) - 1))] = draw(json_values)
            else:
                parent.append(draw(json_values))
            continue
        op = draw(st.sampled_from(["set", "set", "set", "drop", "rename", "add"]))
        key = draw(st.sampled_from(sorted(parent))) if parent and op != "add" else draw(keys)
        if op == "drop":
            parent.pop(key, None)
        elif op == "rename":
            parent[draw(keys)] = parent.pop(key, None)
        else:
            parent[key] = draw(json_values)
    return data


valid_messages = st.sampled_from(sorted(VALID)).map(lambda kind: VALID[kind])
json_payloads = st.builds(
    render, st.one_of(json_values, valid_messages, valid_messages.flatmap(mutated),
                      valid_messages.flatmap(mutated)),
    ascii_only=st.booleans())


@st.composite
def damaged(draw: st.DrawFn, payload: bytes) -> bytes:
    """Text-level damage: a lone surrogate escape after a quote, a cut, a byte changed,
    a duplicated key, or the whole wrapped in deep nesting."""
    how = draw(st.sampled_from(["surrogate", "surrogate", "cut", "byte", "duplicate",
                                "nest"]))
    if how == "surrogate":
        quotes = [i for i, b in enumerate(payload) if b == ord('"')] or [0]
        at = draw(st.sampled_from(quotes)) + 1
        escape = draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\uDBFF", b"\\udc00x"]))
        return payload[:at] + escape + payload[at:]
    if how == "cut":
        return payload[:draw(st.integers(0, max(len(payload) - 1, 0)))]
    if how == "byte" and payload:
        at = draw(st.integers(0, len(payload) - 1))
        return payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1:]
    if how == "duplicate" and payload.startswith(b"{"):
        return b'{"kind": "tap", ' + payload[1:]
    depth = draw(st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 999, 1000, 5000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return opener * depth + payload + closer * depth


def padded(message: dict[str, Any], size: int) -> bytes:
    """``message`` compact, grown to exactly ``size`` bytes by a reading (or extra key)."""
    data = copy.deepcopy(message)
    holder = data.get("readings", data)
    holder["pad"] = ""
    short = len(encode_compact(data))
    holder["pad"] = "x" * max(size - short, 0)
    return encode_compact(data)


def encode_compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


edge_sized = st.builds(padded, valid_messages, st.sampled_from(
    [MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1]))

payloads = st.one_of(
    st.binary(max_size=256),
    json_payloads,
    json_payloads.flatmap(damaged),
    st.sampled_from([encode_compact(m) for m in VALID.values()]).flatmap(damaged),
    edge_sized,
    st.sampled_from([b"", b"online", b"offline", b"null", b"[]", b"{}", b"\xef\xbb\xbf{}",
                     b"\xff\xfe{\x00}\x00", b'"\xed\xa0\x80"', b'{"event_id": "\\ud800"}',
                     b"[" * 1000 + b"]" * 1000]),
)
"""Every kind of payload the fuzzers send: raw bytes, JSON, damaged JSON, 64 KiB edges."""


# ------------------------------------------------------------------ the checks


def assert_refusal_encodes(err: ContractError, topic: str = TOPIC) -> None:
    """The refusal the hub would send for ``err`` is UTF-8 JSON a device reads back."""
    assert err.code in PARSE_CODES, err
    assert err.event_id is None or EVENT_ID.fullmatch(err.event_id), err
    for message in (error_message(err.code, err.detail, event_id=err.event_id, topic=topic),
                    # As hub/ingest.py builds it today.
                    ErrorMessage(code=err.code, detail=err.detail[:500], event_id=err.event_id,
                                 topic=topic)):
        raw = encode(message)
        json.loads(raw.decode("utf-8"))
        assert parse_reply(raw) == message


def check(payload: bytes) -> None:
    """What the bridge does with a payload on an events and on a status topic."""
    found = event_id_of(payload)
    assert found is None or EVENT_ID.fullmatch(found), found
    for parse in (parse_event, parse_status):
        try:
            model = parse(payload)
        except ContractError as err:
            event(f"{parse.__name__}: {err.code.value}")
            assert_refusal_encodes(err)
            continue
        event(f"{parse.__name__}: accepted")
        assert parse(encode(model)) == model  # what was accepted is the contract's own
        if not isinstance(model, DeviceStatus):
            assert found == model.event_id


FUZZ = settings(max_examples=600, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(payload: bytes) -> None:
    check(payload)


@FUZZ
@given(json_payloads)
def test_arbitrary_and_mutated_json(payload: bytes) -> None:
    check(payload)


@settings(FUZZ, max_examples=1200)
@given(valid_messages.flatmap(mutated).map(render))
def test_every_kind_mutated(payload: bytes) -> None:
    check(payload)


@FUZZ
@given(json_payloads.flatmap(damaged))
def test_damaged_json(payload: bytes) -> None:
    check(payload)


@FUZZ
@given(payloads)
def test_the_e2e_fuzzers_payloads(payload: bytes) -> None:
    check(payload)


@FUZZ
@given(st.sampled_from(sorted(ErrorCode)), any_text, st.none() | any_text, any_text)
def test_an_error_message_encodes_whatever_its_text(code: ErrorCode, detail: str,
                                                    event_id: str | None, topic: str) -> None:
    detail = detail * 40  # past the 500 characters, surrogates straddling the cut
    for message in (error_message(code, detail, event_id=event_id, topic=topic),
                    ErrorMessage(code=code, detail=detail, event_id=event_id, topic=topic)):
        raw = encode(message)
        assert parse_reply(raw) == message and len(message.detail) <= 500
    assert_refusal_encodes(ContractError(ErrorCode.SCHEMA_VIOLATION, detail, event_id), topic)


# -------------------------------------------------------------- regressions


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_valid_message_parses(kind: str) -> None:
    payload = encode_compact(VALID[kind])
    parse = parse_status if kind == "status" else parse_event
    assert parse(payload).kind == VALID[kind]["kind"]


def test_a_lone_surrogate_event_id_is_refused_and_the_refusal_encodes() -> None:
    """This payload killed the bridge's worker: the refusal echoed an unencodable id."""
    payload = b'{"event_id":"\\ud800"}'
    for parse in (parse_event, parse_status):
        with pytest.raises(ContractError) as caught:
            parse(payload)
        assert caught.value.code is ErrorCode.MALFORMED_JSON and caught.value.event_id is None
        assert_refusal_encodes(caught.value)
    assert event_id_of(payload) is None


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_nesting_is_malformed_json_not_a_recursion_error(opener: bytes) -> None:
    """A JSON array nested 1,000 deep escaped the contract as RecursionError."""
    closer = b"]" if opener == b"[" else b"}"
    for depth in (1000, MAX_PAYLOAD_BYTES // len(opener + closer)):  # deepest that fits
        payload = opener * depth + closer * depth
        for parse in (parse_event, parse_status):
            with pytest.raises(ContractError) as caught:
                parse(payload)
            assert caught.value.code is ErrorCode.MALFORMED_JSON
            assert "nested deeper" in caught.value.detail
        assert event_id_of(payload) is None


MALFORMED, OUT_OF_RANGE = ErrorCode.MALFORMED_JSON, ErrorCode.SCHEMA_VIOLATION


@pytest.mark.parametrize(("literal", "why", "code"), [
    ("NaN", "NaN is not a JSON number", MALFORMED), ("Infinity", "Infinity is not", MALFORMED),
    ("-Infinity", "-Infinity is not", MALFORMED), ("1e999", "out of range", MALFORMED),
    ("-1e999", "out of range", MALFORMED),
    # Integers are JSON at any length; past 64 bits no field of the contract holds them.
    ("1" * 5000, "out of range", OUT_OF_RANGE),
    ("9223372036854775808", "out of range", OUT_OF_RANGE),
    ("-9223372036854775809", "out of range", OUT_OF_RANGE),
])
def test_numbers_strict_json_cannot_carry_are_refused(literal: str, why: str,
                                                      code: ErrorCode) -> None:
    payload = (b'{"v": 1, "kind": "telemetry", "event_id": "m-9", "ts": "2026-01-01T00:00:00Z",'
               b' "readings": {"x": ' + literal.encode() + b"}}")
    with pytest.raises(ContractError) as caught:
        parse_event(payload)
    # The rest of the message was read: the refusal still names the event.
    assert (caught.value.code, caught.value.event_id) == (code, "m-9")
    assert why in caught.value.detail
    assert event_id_of(payload) == "m-9"


def test_int64_edges_are_numbers() -> None:
    for edge in (2**63 - 1, -(2**63)):
        event = parse_event(encode_compact(VALID["telemetry"] | {"readings": {"n": edge}}))
        assert event.readings == {"n": edge}  # type: ignore[union-attr]


def test_a_key_given_twice_is_refused() -> None:
    """Readers disagree on which one counts; the contract refuses to pick."""
    payload = encode_compact(VALID["payment"])[:-1] + b',"amount":1}'
    with pytest.raises(ContractError) as caught:
        parse_event(payload)
    assert caught.value.code is ErrorCode.MALFORMED_JSON
    assert "'amount' appears twice" in caught.value.detail and caught.value.event_id == "p-1"


@pytest.mark.parametrize("payload", [
    b'{"v": 1, "kind": "status", "state": "\xed\xa0\x80"}',  # a surrogate as raw bytes
    b"\xef\xbb\xbf" + encode_compact(VALID["status"]),  # a byte order mark
    encode_compact(VALID["status"]).decode().encode("utf-16"),
])
def test_only_utf8_without_surrogates_or_bom(payload: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        parse_status(payload)
    assert caught.value.code is ErrorCode.MALFORMED_JSON


@pytest.mark.parametrize("kind", ["telemetry", "status"])
def test_the_64_kib_edge(kind: str) -> None:
    parse = parse_status if kind == "status" else parse_event
    exactly = padded(VALID[kind], MAX_PAYLOAD_BYTES)
    assert len(exactly) == MAX_PAYLOAD_BYTES
    if kind == "telemetry":
        assert parse(exactly).kind == "telemetry"  # the largest payload still goes in
    else:  # an extra key: refused for what it says, not for its size
        with pytest.raises(ContractError) as caught:
            parse(exactly)
        assert caught.value.code is ErrorCode.SCHEMA_VIOLATION
    with pytest.raises(ContractError) as caught:
        parse(padded(VALID[kind], MAX_PAYLOAD_BYTES + 1))
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE


def test_existing_refusals_keep_their_codes() -> None:
    cases = {b"{not json": ErrorCode.MALFORMED_JSON, b"[1, 2]": ErrorCode.SCHEMA_VIOLATION,
             b'{"v": 2, "kind": "tap", "event_id": "e1"}': ErrorCode.UNSUPPORTED_VERSION,
             b'{"v": true, "kind": "tap"}': ErrorCode.UNSUPPORTED_VERSION,
             b'{"v": 1, "kind": "teleport", "event_id": "e1"}': ErrorCode.SCHEMA_VIOLATION}
    for payload, code in cases.items():
        with pytest.raises(ContractError) as caught:
            parse_event(payload)
        assert caught.value.code is code, payload


@pytest.mark.parametrize(("v", "shown"), [
    ("true", "true"), ("false", "false"), ('"1"', '"1"'), ("1.0", "1.0"), ("null", "null"),
    ("2", "2"), ('{"major": 1}', '{"major": 1}'),
])
@pytest.mark.parametrize("parse", [parse_event, parse_status])
def test_a_wrong_version_is_named_as_the_device_wrote_it(
        v: str, shown: str, parse: Callable[[bytes], object]) -> None:
    payload = f'{{"v": {v}, "kind": "status", "state": "online"}}'.encode()
    with pytest.raises(ContractError) as caught:
        parse(payload)
    assert caught.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert caught.value.detail == f"contract version {shown} is not 1"


def test_a_long_wrong_version_is_cut_short() -> None:
    with pytest.raises(ContractError) as caught:
        parse_event(json.dumps({"v": "x" * 1000, "kind": "tap"}).encode())
    assert caught.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert len(caught.value.detail) < 80 and caught.value.detail.endswith("... is not 1")


def test_a_schema_refusal_does_not_echo_what_cannot_be_encoded() -> None:
    """Pydantic's messages may quote the input (a discriminator's tag); it is escaped."""
    err = ContractError(ErrorCode.SCHEMA_VIOLATION, "kind: tag 'x\ud800' unknown", "e\udc00")
    assert err.detail == "kind: tag 'x\\ud800' unknown" and err.event_id is None
    assert_refusal_encodes(err)


def test_an_implausible_event_id_is_not_answered_under() -> None:
    payload = b'{"v": 1, "kind": "tap", "event_id": "not an id\\n"}'
    with pytest.raises(ContractError) as caught:
        parse_event(payload)
    assert caught.value.event_id is None and event_id_of(payload) is None
    assert event_id_of(b'{"event_id": "ok-1"}') == "ok-1"


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00",
                                "9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59Z",
                                "1999-12-31T23:59:59Z", "2200-01-01T00:00:00Z"])
def test_a_time_no_clock_could_show_is_a_schema_violation(ts: str) -> None:
    """Converted to UTC, stored or compared, these overflowed (an `internal` reply)."""
    tap = {"v": 1, "kind": "tap", "event_id": "t-1", "ts": ts,
           "credential": {"type": "wristband", "uid": "04A10000000002"}}
    with pytest.raises(ContractError) as caught:
        parse_event(json.dumps(tap).encode())
    assert caught.value.code is ErrorCode.SCHEMA_VIOLATION


def test_times_within_the_plausible_range_parse_with_any_offset() -> None:
    for ts in ("2000-01-01T00:00:00Z", "2199-12-31T23:59:59+14:00", "2026-12-04T10:00:00-12:00"):
        tap = {"v": 1, "kind": "tap", "event_id": "t-1", "ts": ts,
               "credential": {"type": "wristband", "uid": "04A10000000002"}}
        assert parse_event(json.dumps(tap).encode()).ts.isoformat().startswith(ts[:4])
