"""devices/asyncapi.yaml is as strict as the hub's parser, both ways, for what devices send.

For every message kind a device publishes (each kind on the ``events`` topic, and the
status), instances are generated from the document's own schema (hypothesis-jsonschema):
each must be accepted by the parser (:func:`devices.contract.parse_event`,
:func:`~devices.contract.parse_status`). Then valid instances are broken the ways devices
break them (a required field dropped, an unknown field added, a value of the wrong JSON
type, a value out of its range) and the schema must refuse exactly what the parser refuses.

What JSON Schema cannot say is left out on purpose and documented in the document: line
items that do not add up to the amount, the 64 KiB limit, duplicate keys, nesting depth,
lone surrogates, and ``1.0`` for ``1`` (JSON Schema treats them as the same number).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, FormatChecker

from devices import contract
from devices.contract import ContractError, parse_event, parse_status
from tests.devices.test_asyncapi import load_doc, normalize
from tests.utils.jsonschema_strategies import schema_strategy

# Our date-time strategy replaces hypothesis-jsonschema's (years 0 to 9999, which the
# document's pattern would filter down to nothing): it says so with a warning, every time.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Overriding standard format:hypothesis.errors.HypothesisWarning")

DOC = load_doc()


def schema_of(name: str) -> dict[str, Any]:
    """The document's schema of one message, references inlined and annotations dropped
    (hypothesis-jsonschema then has less to canonicalise: it is the slow part)."""
    schema = normalize({"$ref": f"#/components/schemas/{name}"}, DOC)
    assert isinstance(schema, dict)
    return schema


#: The kinds a device sends, the schema of each, and the parser that reads it.
SENT: dict[str, tuple[str, Callable[[bytes], object]]] = {
    "tap": ("TapEvent", parse_event),
    "heartbeat": ("HeartbeatEvent", parse_event),
    "telemetry": ("TelemetryEvent", parse_event),
    "payment": ("PaymentRequest", parse_event),
    "offline_entry": ("OfflineEntry", parse_event),
    "status": ("DeviceStatus", parse_status),
}
# Kept small: the file must stay well under 20 s on a loaded two-core machine.
ACCEPT = settings(max_examples=25, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large])
REJECT = settings(max_examples=12, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large])


@st.composite
def _date_times(draw: st.DrawFn) -> str:
    """RFC 3339 times around and inside the contract's range (2000 to 2199 in UTC), with
    any offset: the edges are where a schema and a parser part ways."""
    edge = draw(st.sampled_from([contract.EARLIEST, contract.LATEST,
                                 datetime(2025, 6, 1, tzinfo=UTC)]))
    moment = edge + timedelta(seconds=draw(st.integers(-3 * 86_400, 3 * 86_400)),
                              microseconds=draw(st.integers(0, 999_999)))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    local = moment.astimezone(timezone(timedelta(minutes=minutes)))
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        stamp += f".{local.microsecond:06d}"
    return stamp + ("Z" if minutes == 0 and draw(st.booleans()) else
                    f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:"
                    f"{abs(minutes) % 60:02d}")


FORMATS = {"date-time": _date_times()}
VALIDATORS = {kind: Draft7Validator(schema_of(name), format_checker=FormatChecker())
              for kind, (name, _) in SENT.items()}


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {}


def _credential_forms(credential: dict[str, Any]) -> list[dict[str, Any]]:
    """A credential schema (``oneOf`` of the types, a phone key ``oneOf`` its two forms) as
    one schema per type and form."""
    forms = []
    for alt in credential.get("oneOf", [credential]):
        for form in alt.get("oneOf", [None]):
            one = {k: v for k, v in alt.items() if k != "oneOf"}
            forms.append(one if form is None else {**one, "oneOf": [form]})
    return forms


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A message schema as one schema per credential type and form (and, for an offline
    entry, per credential_kind), each with its constraints moved into the members.

    hypothesis-jsonschema generates those many times faster than it filters the whole,
    and every form gets its share of the examples (a signed phone key is one in six taps,
    not one in thirty). Every instance is still checked against the document's schema
    itself (test_what_the_schema_accepts_the_parser_accepts).
    """
    out = []
    for branch in schema.get("anyOf", [None]):
        one = copy.deepcopy({k: v for k, v in schema.items() if k != "anyOf"})
        types: list[str] | None = None
        if branch is not None:  # an offline entry: credential_kind and the types it takes
            one["properties"]["credential_kind"] = {
                "type": "string", "const": branch["properties"]["credential_kind"]["const"]}
            [types] = [alt["properties"]["type"]["enum"] for alt in
                       branch["properties"]["credential"]["anyOf"] if "properties" in alt]
        credential = one.get("properties", {}).get("credential")
        if credential is None:
            out.append(one)
            continue
        nullable = "anyOf" in credential
        [inner] = [c for c in credential["anyOf"] if "oneOf" in c] if nullable else [credential]
        for form in _credential_forms(inner):
            if types is not None and form["properties"]["type"]["const"] not in types:
                continue
            with_form = copy.deepcopy(one)
            with_form["properties"]["credential"] = (
                {"anyOf": [{"type": "null"}, form]} if nullable else form)
            out.append(with_form)
    return out


def instances(kind: str) -> st.SearchStrategy[Any]:
    """Valid instances of a kind, per the document (built once: building is slow)."""
    if kind not in STRATEGIES:
        STRATEGIES[kind] = st.one_of([schema_strategy(branch, FORMATS)
                                      for branch in _branches(schema_of(SENT[kind][0]))])
    return STRATEGIES[kind]


def wire(value: Any) -> bytes:
    # ensure_ascii=False: non-ASCII text travels as UTF-8, as devices send it.
    return json.dumps(value, ensure_ascii=False).encode()


def parser_accepts(kind: str, value: Any) -> bool:
    try:
        SENT[kind][1](wire(value))
    except ContractError:
        return False
    return True


def schema_accepts(kind: str, value: Any) -> bool:
    return bool(VALIDATORS[kind].is_valid(value))


def _items_add_up(value: Any) -> bool:
    """JSON Schema cannot add: line items that do not sum to the amount are the parser's."""
    items = value.get("items") if isinstance(value, dict) else None
    if not (isinstance(items, list) and items and all(isinstance(i, dict) for i in items)):
        return True
    pairs = [(i.get("quantity", 1), i.get("unit_amount")) for i in items]
    if not all(type(q) is int and type(a) is int for q, a in pairs):
        return True  # a wrong type: the schema's to refuse, not a sum
    return bool(sum(q * a for q, a in pairs) == value.get("amount"))


def _fits(value: Any) -> bool:
    return len(wire(value)) <= contract.MAX_PAYLOAD_BYTES


# ------------------------------------------------------------ accepted


@pytest.mark.parametrize("kind", sorted(SENT))
def test_what_the_schema_accepts_the_parser_accepts(kind: str) -> None:
    @ACCEPT
    @given(instances(kind))
    def check(value: Any) -> None:
        if not (_items_add_up(value) and _fits(value)):
            return  # beyond JSON Schema (see the module)
        assert schema_accepts(kind, value)  # hypothesis-jsonschema's side of the bargain
        try:
            SENT[kind][1](wire(value))
        except ContractError as exc:
            raise AssertionError(f"the schema accepts, the parser refuses: {exc!r}\n"
                                 f"{wire(value)[:2000]!r}") from None

    check()


# ------------------------------------------------------------ refused


def _paths(value: Any, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON value, the root included."""
    found = [at]
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _paths(sub, (*at, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += _paths(sub, (*at, i))
    return found


def _get(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    parent = _get(value, path[:-1])
    parent[path[-1]] = new
    return value


#: Values of another JSON type than the one at hand (never int for float: see the module).
def _wrong_type(current: Any) -> list[Any]:
    if isinstance(current, bool):
        return [1, "true", None]
    if isinstance(current, int | float):
        return [str(current), True, None, [current]]
    if isinstance(current, str):
        return [7, False, None, {"x": current}]
    if current is None:
        return ["null", 0, []]
    if isinstance(current, list):
        return [{}, "[]"]
    return [[], "{}", 1]


def _out_of_range(current: Any) -> list[Any]:
    if isinstance(current, bool):
        return []
    if isinstance(current, int):
        # Past any bound of the contract: 64-bit integers, amounts, percentages, counts.
        return [contract.INT64_MAX + 1, contract.INT64_MIN - 1, -1, 0, 101, 1000, 86_401]
    if isinstance(current, str):
        return ["", current + "x" * 8193, current + "\x00", current.lower(), current.upper()]
    return []


def mutants(value: Any) -> list[tuple[str, Any]]:
    """(how, value): ``value`` broken in one place, every way, everywhere.

    Every member dropped and an unknown one added to every object; every value replaced
    by values of other JSON types and by values past the contract's bounds.
    """
    found: list[tuple[str, Any]] = []
    for path in _paths(value):
        where = ".".join(map(str, path)) or "payload"
        current = _get(value, path)
        if isinstance(current, dict):
            for key in current:
                broken = copy.deepcopy(value)
                del _get(broken, path)[key]
                found.append((f"drop {where}.{key}", broken))
            broken = copy.deepcopy(value)
            _get(broken, path)["extra"] = 1
            found.append((f"add {where}.extra", broken))
        if not path:
            continue  # the payload itself stays an object
        for how, options in (("type", _wrong_type(current)), ("range", _out_of_range(current))):
            for new in options:
                found.append((f"{how} {where} = {new!r:.40}",
                              _set(copy.deepcopy(value), path, new)))
    return found


@pytest.mark.parametrize("kind", sorted(SENT))
def test_the_schema_refuses_exactly_what_the_parser_refuses(kind: str) -> None:
    @REJECT
    @given(instances(kind))
    def check(value: Any) -> None:
        disagree = []
        for how, broken in mutants(value):
            if not (_items_add_up(broken) and _fits(broken)):
                continue  # beyond JSON Schema (see the module)
            schema, parser = schema_accepts(kind, broken), parser_accepts(kind, broken)
            if schema != parser:
                disagree.append(f"{how}: the schema {'accepts' if schema else 'refuses'}, "
                                f"the parser {'accepts' if parser else 'refuses'}")
        assert disagree == [], wire(value)[:2000]

    check()


def test_the_bare_status_words_are_the_documented_ones() -> None:
    words = DOC["components"]["schemas"]["DeviceStatusWord"]["enum"]
    for word in words:
        assert parse_status(word.encode()).state == word
    for other in ("Online", " online", "online\n", "up", '"online"'):
        with pytest.raises(ContractError):
            parse_status(other.encode())


def test_the_generated_instances_cover_every_form() -> None:
    """Guards the property tests: every credential type and both phone-key forms are among
    what the tap's schema is split into, and a reading of each JSON type is generated."""
    forms = set()
    for branch in _branches(schema_of("TapEvent")):
        credential = branch["properties"]["credential"]
        form = credential["properties"]["type"]["const"]
        if "oneOf" in credential:
            form += ".signed" if "token" in credential["oneOf"][0]["required"] else ".legacy"
        forms.add(form)
    assert forms == {"wristband", "wristband_sun", "phone_key.signed", "phone_key.legacy"}
    entries = {(b["properties"]["credential_kind"]["const"],
                b["properties"]["credential"]["anyOf"][1]["properties"]["type"]["const"])
               for b in _branches(schema_of("OfflineEntry"))}
    assert entries == {("phone_key", "phone_key"), ("wristband", "wristband"),
                       ("wristband", "wristband_sun")}
    seen: set[str] = set()

    @settings(max_examples=30, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(instances("telemetry"))
    def collect(telemetry: Any) -> None:
        seen.update(type(v).__name__ for v in telemetry["readings"].values())

    collect()
    assert {"str", "bool"} <= seen and seen & {"int", "float"}
