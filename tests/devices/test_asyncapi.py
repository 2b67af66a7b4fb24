"""Keep devices/asyncapi.yaml true to the wire contract.

Every check compares the document with the code (the pydantic models in
``devices.contract`` and the topic builders in ``devices.topics``), never with
a second copy of the document. The helpers return a list of problems so the
negative tests at the end can show that each check does fail on a broken
document.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import yaml  # type: ignore[import-untyped]
from jsonschema import Draft7Validator, FormatChecker
from pydantic import BaseModel, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT7

from devices import contract
from devices.contract import (
    ContractError,
    EntryReason,
    ErrorCode,
    encode,
    parse_command,
    parse_event,
    parse_notification,
    parse_receipt,
    parse_reply,
    parse_staff_alert,
    parse_status,
)
from devices.topics import (
    Channel,
    TopicError,
    device_topic,
    guest_topic,
    keys_topic,
    parse_topic,
    staff_topic,
    subscription,
    valid_id,
)

DOC_PATH = Path(contract.__file__).with_name("asyncapi.yaml")
DOC_URI = "urn:venuehub:devices:asyncapi"

#: Every model that travels on the wire: the contract's models with a ``kind``.
MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    obj.__name__: obj
    for obj in vars(contract).values()
    if isinstance(obj, type) and issubclass(obj, BaseModel) and "kind" in obj.model_fields
}

#: A guest's notifications channel (``guest_topic``): read by guests' apps, not a device Channel.
GUEST = "guest notifications"
#: The venue's staff alerts channel (``staff_topic``): read by staff consoles, not by devices.
STAFF = "staff alerts"
#: The venue's retained key material (``keys_topic``): read by offline-capable locks.
JWKS = "jwks"
REVOCATIONS = "revocations"
ChannelKey = Channel | str


def read_key_document(payload: bytes) -> dict[str, Any]:
    """A key-material document as a lock first reads it: a JSON object (its ``jws`` is
    verified against the lock's trust anchor, see tests/devices/test_key_material.py)."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    return data


#: Who publishes on each channel (from the device's point of view, the guest
#: app's on GUEST, the staff console's on STAFF) and which function of the contract reads it.
CHANNEL_USE: dict[ChannelKey, tuple[str, Callable[[bytes], object]]] = {
    Channel.EVENTS: ("send", parse_event),
    Channel.STATUS: ("send", parse_status),
    Channel.DECISIONS: ("receive", parse_reply),
    Channel.COMMANDS: ("receive", parse_command),
    Channel.ERRORS: ("receive", parse_reply),
    GUEST: ("receive", parse_notification),
    STAFF: ("receive", parse_staff_alert),
    JWKS: ("receive", read_key_document),
    REVOCATIONS: ("receive", read_key_document),
}
#: Documented messages that are no model of devices.contract: the bare status word, and the
#: key material (devices.key_material), with the channel each travels on.
OTHER_MESSAGES: dict[str, ChannelKey] = {
    "DeviceStatusWord": Channel.STATUS,
    "JwksDocument": JWKS,
    "RevocationsDocument": REVOCATIONS,
}

#: Ids the test substitutes for the channel parameters (besides the document's examples).
SAMPLE_IDS = {"venue": "venue-a", "device": "device.b_2", "guest": "guest.c_3"}
#: The parameters of a device channel's address, a guest channel's and the staff one's (sorted).
DEVICE_PARAMS = ("device", "venue")
GUEST_PARAMS = ("guest", "venue")
STAFF_PARAMS = ("venue",)

#: Schema keywords that only annotate; everything else must match the model.
ANNOTATIONS = frozenset(
    {"title", "description", "examples", "discriminator", "$comment", "deprecated"}
)
_PARAM = re.compile(r"\{([^{}]+)\}")


# ------------------------------------------------------------------ helpers


def load_doc() -> dict[str, Any]:
    with DOC_PATH.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    assert isinstance(doc, dict), f"{DOC_PATH} is not a YAML mapping"
    return doc


def pointer(root: Any, ref: str) -> Any:
    """The node a local ``$ref`` (``#/a/b``) points at."""
    if not ref.startswith("#/"):
        raise AssertionError(f"only local references are supported, got {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError):
            raise AssertionError(f"dangling reference {ref!r}") from None
    return node


def resolve(root: Any, node: Any, where: str = "#") -> tuple[str, Any]:
    """Follow ``$ref`` chains; return the final node and its JSON pointer."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise AssertionError(f"reference cycle at {ref!r}")
        seen.add(ref)
        where, node = ref, pointer(root, ref)
    return where, node


def normalize(node: Any, root: Any) -> Any:
    """A schema with references inlined, annotations dropped and unordered lists sorted."""
    if isinstance(node, list):
        return [normalize(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    if "$ref" in node:
        _, target = resolve(root, {"$ref": node["$ref"]})
        out.update(normalize(target, root))
    for key, value in node.items():
        if key in ANNOTATIONS or key in ("$ref", "$defs", "definitions"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: normalize(sub, root) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf", "allOf"):
            items = [normalize(sub, root) for sub in value]
            out[key] = sorted(items, key=lambda s: json.dumps(s, sort_keys=True))
        elif key == "required":
            out[key] = sorted(value)
        else:
            out[key] = normalize(value, root)
    return out


def diff(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Differences between the document's schema (ours) and the model's (theirs)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        problems: list[str] = []
        for key in sorted(set(ours) | set(theirs)):
            at = f"{path}/{key}"
            if key not in ours:
                problems.append(f"{at}: missing in the document (model: {theirs[key]!r})")
            elif key not in theirs:
                problems.append(f"{at}: not in the model (document: {ours[key]!r})")
            else:
                problems += diff(ours[key], theirs[key], at)
        return problems
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        pairs = enumerate(zip(ours, theirs, strict=True))
        return [p for i, (a, b) in pairs for p in diff(a, b, f"{path}/{i}")]
    if type(ours) is not type(theirs) or ours != theirs:
        return [f"{path or '/'}: document has {ours!r}, model has {theirs!r}"]
    return []


def message_of(doc: dict[str, Any], name: str) -> dict[str, Any]:
    messages = doc.get("components", {}).get("messages", {})
    if name not in messages:
        raise AssertionError(f"components/messages has no {name}")
    _, message = resolve(doc, messages[name])
    assert isinstance(message, dict), message
    return message


def payload_of(doc: dict[str, Any], name: str) -> dict[str, Any]:
    message = message_of(doc, name)
    _, payload = resolve(doc, message.get("payload"))
    if not isinstance(payload, dict):
        raise AssertionError(f"message {name} has no payload schema")
    return payload


def model_mismatches(doc: dict[str, Any], model: type[BaseModel]) -> list[str]:
    """How the document's payload schema of ``model`` differs from the model's schema."""
    name = model.__name__
    try:
        ours = normalize(payload_of(doc, name), doc)
    except AssertionError as exc:
        return [str(exc)]
    model_schema = model.model_json_schema()
    theirs = normalize(model_schema, model_schema)
    problems = []
    ours_props, theirs_props = set(ours.get("properties", {})), set(theirs.get("properties", {}))
    if ours_props != theirs_props:
        problems.append(
            f"{name}: properties differ: only in document {sorted(ours_props - theirs_props)}, "
            f"only in model {sorted(theirs_props - ours_props)}"
        )
    ours_req, theirs_req = set(ours.get("required", [])), set(theirs.get("required", []))
    if ours_req != theirs_req:
        problems.append(
            f"{name}: required differs: only in document {sorted(ours_req - theirs_req)}, "
            f"only in model {sorted(theirs_req - ours_req)}"
        )
    problems += [f"{name}{p}" for p in diff(ours, theirs)]
    return problems


def enum_fields() -> Iterator[tuple[type[BaseModel], str, type[Enum]]]:
    """(model, field, enum class) for every enum-typed field of a message model."""
    for model in MESSAGE_MODELS.values():
        for field, info in model.model_fields.items():
            for kind in (info.annotation, *get_args(info.annotation)):
                if isinstance(kind, type) and issubclass(kind, Enum):
                    yield model, field, kind


def kinds_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The values of a model's ``kind`` Literal (GuestNotice has two)."""
    return get_args(model.model_fields["kind"].annotation)


def enum_mismatches(doc: dict[str, Any]) -> list[str]:
    """``kind``, ``v`` and enum-typed fields in the document versus the Python code."""
    problems = []
    for name, model in MESSAGE_MODELS.items():
        try:
            props = normalize(payload_of(doc, name), doc).get("properties", {})
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        kinds = kinds_of(model)
        kind = props.get("kind", {})
        documented = [kind["const"]] if "const" in kind else kind.get("enum")
        if documented != list(kinds):
            problems.append(f"{name}.kind: document {kind!r}, model Literal {kinds!r}")
        if props.get("v", {}).get("const") != contract.VERSION:
            problems.append(f"{name}.v: document {props.get('v')!r}, VERSION {contract.VERSION}")
    for model, field, enum in enum_fields():
        try:
            prop = normalize(payload_of(doc, model.__name__), doc)["properties"][field]
        except (AssertionError, KeyError):
            problems.append(f"{model.__name__}.{field}: not in the document")
            continue
        python = [member.value for member in enum]
        if prop.get("enum") != python:
            problems.append(
                f"{model.__name__}.{field}: document enum {prop.get('enum')!r} != "
                f"{enum.__name__} {python!r}"
            )
    return problems


def fill(address: str, ids: dict[str, str]) -> str:
    """The address with the parameters named in ``ids`` replaced."""
    return _PARAM.sub(lambda m: ids.get(m[1], m[0]), address)


def channel_of(address: str, venue: str, device: str) -> str:
    """The address with its parameters replaced."""
    return fill(address, {"venue": venue, "device": device})


def venue_topics(venue: str) -> dict[str, ChannelKey]:
    """The topics of a venue that name no device or guest, and their channel keys."""
    return {staff_topic(venue): STAFF, keys_topic(venue, "jwks"): JWKS,
            keys_topic(venue, "revocations"): REVOCATIONS}


def channel_key(address: str) -> ChannelKey:
    """GUEST, STAFF, JWKS, REVOCATIONS or the device Channel an address stands for;
    TopicError when none."""
    topic = fill(address, SAMPLE_IDS)
    if topic == guest_topic(SAMPLE_IDS["venue"], SAMPLE_IDS["guest"]):
        return GUEST
    if topic in (venue := venue_topics(SAMPLE_IDS["venue"])):
        return venue[topic]
    return parse_topic(topic).channel


def key_label(key: ChannelKey) -> str:
    if isinstance(key, Channel):
        return f"Channel.{key.name}"
    return {GUEST: "the guest channel", STAFF: "the staff channel",
            JWKS: "the jwks channel", REVOCATIONS: "the revocations channel"}[key]


def channel_params(doc: dict[str, Any], channel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resolve(doc, param)[1] for name, param in (channel.get("parameters") or {}).items()
    }


def channel_mismatches(doc: dict[str, Any]) -> list[str]:
    """Addresses versus ``device_topic``/``guest_topic``/``staff_topic``; each channel
    documented exactly once."""
    problems: list[str] = []
    found: dict[ChannelKey, list[str]] = {}
    for key, channel in (doc.get("channels") or {}).items():
        address = channel.get("address", "")
        placeholders = _PARAM.findall(address)
        params = channel_params(doc, channel)
        expected = (GUEST_PARAMS if "guest" in placeholders
                    else DEVICE_PARAMS if "device" in placeholders else STAFF_PARAMS)
        if sorted(placeholders) != sorted(params) or tuple(sorted(placeholders)) != expected:
            problems.append(
                f"channel {key}: address parameters {placeholders} vs declared {sorted(params)}"
                f" vs the topic's {list(expected)}"
            )
            continue
        samples = {name: [SAMPLE_IDS[name]] for name in expected}
        for name, param in params.items():
            for example in param.get("examples", []):
                if not valid_id(example):
                    problems.append(f"channel {key}: example {name}={example!r} is not a valid id")
                samples[name].append(example)
        if expected == GUEST_PARAMS:
            guest_ok = True
            for venue, guest in itertools.product(samples["venue"], samples["guest"]):
                topic = fill(address, {"venue": venue, "guest": guest})
                try:
                    built = guest_topic(venue, guest)
                except TopicError as exc:
                    problems.append(f"channel {key}: {exc}")
                    guest_ok = False
                    continue
                if topic != built:
                    problems.append(f"channel {key}: {topic!r} but guest_topic builds {built!r}")
                    guest_ok = False
            if guest_ok:
                found.setdefault(GUEST, []).append(key)
            continue
        if expected == STAFF_PARAMS:
            # The staff channel or a keys channel: which one the first sample says.
            venue0 = samples["venue"][0]
            first = venue_topics(venue0).get(fill(address, {"venue": venue0}))
            venue_ok = first is not None
            for venue in samples["venue"]:
                topic = fill(address, {"venue": venue})
                if first is None or venue_topics(venue).get(topic) != first:
                    problems.append(f"channel {key}: {topic!r} but staff_topic builds "
                                    f"{staff_topic(venue)!r} and keys_topic "
                                    f"{sorted(venue_topics(venue))[:2]!r}")
                    venue_ok = False
            if venue_ok and first is not None:
                found.setdefault(first, []).append(key)
            continue
        channels_hit = set()
        for venue, device in itertools.product(samples["venue"], samples["device"]):
            topic = channel_of(address, venue, device)
            try:
                parsed = parse_topic(topic)
            except TopicError as exc:
                problems.append(f"channel {key}: {exc}")
                continue
            built = device_topic(venue, device, parsed.channel)
            if topic != built or (parsed.venue, parsed.device) != (venue, device):
                problems.append(f"channel {key}: {topic!r} but device_topic builds {built!r}")
            channels_hit.add(parsed.channel)
        for hit in channels_hit:
            found.setdefault(hit, []).append(key)
        wildcard = channel_of(address, "+", "+")
        if channels_hit and wildcard != subscription(next(iter(channels_hit))):
            problems.append(f"channel {key}: wildcard form {wildcard!r} != subscription()")
    for channel_key_ in (*Channel, GUEST, STAFF, JWKS, REVOCATIONS):
        keys = found.get(channel_key_, [])
        if len(keys) != 1:
            problems.append(f"{key_label(channel_key_)}: documented by {keys or 'no channel'}")
    return problems


def channel_messages(doc: dict[str, Any]) -> Iterator[tuple[ChannelKey, str, str, dict[str, Any]]]:
    """(Channel, GUEST or STAFF, channel key, JSON pointer of the message, message) for every
    message."""
    for key, channel in (doc.get("channels") or {}).items():
        ch = channel_key(channel["address"])
        for msg_key, ref in (channel.get("messages") or {}).items():
            where, message = resolve(doc, ref, f"#/channels/{key}/messages/{msg_key}")
            yield ch, key, where, message


def example_problems(doc: dict[str, Any]) -> list[str]:
    """Every example validates against its schema and parses with the contract's parser."""
    registry = Registry().with_resource(DOC_URI, DRAFT7.create_resource(doc))
    problems = []
    for ch, key, where, message in channel_messages(doc):
        name = str(message.get("name"))
        model = MESSAGE_MODELS.get(name)
        if model is None and OTHER_MESSAGES.get(name) != ch:
            problems.append(f"{where}: name {name!r} is not a message model of the contract")
            continue
        validator = Draft7Validator(
            {"$ref": f"{DOC_URI}{where}/payload"}, registry=registry, format_checker=FormatChecker()
        )
        examples = message.get("examples") or []
        if not examples:
            problems.append(f"{name}: no examples")
        parse = CHANNEL_USE[ch][1]
        for i, example in enumerate(examples):
            label = f"{name} example {example.get('name', i)!r} on {key}"
            payload = example.get("payload")
            problems += [
                f"{label}: schema: {err.message}" for err in validator.iter_errors(payload)
            ]
            # A text/plain payload is the string itself; JSON is the value encoded.
            wire = (payload.encode() if message.get("contentType") == "text/plain"
                    else json.dumps(payload).encode())
            if len(wire) > contract.MAX_PAYLOAD_BYTES:
                problems.append(f"{label}: larger than MAX_PAYLOAD_BYTES")
            try:
                parsed = parse(wire)
            except (ContractError, ValidationError, ValueError, TypeError) as exc:
                problems.append(f"{label}: {parse.__name__}: {exc}")
                continue
            if model is None:
                continue
            if not isinstance(parsed, model):
                problems.append(f"{label}: {parse.__name__} gave a {type(parsed).__name__}")
                continue
            # What the code itself sends must satisfy the document too.
            problems += [
                f"{label}: encode() output: {err.message}"
                for err in validator.iter_errors(json.loads(encode(parsed)))
            ]
    return problems


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_doc()


# -------------------------------------------------------------------- tests


def test_document_parses_as_asyncapi_3(doc: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.\d+\.\d+", str(doc.get("asyncapi"))), doc.get("asyncapi")
    for section in ("info", "servers", "channels", "operations", "components"):
        assert isinstance(doc.get(section), dict), f"missing section {section}"


def test_every_message_model_is_found() -> None:
    # Guards the discovery above: an empty dict would make the loops vacuous.
    assert {"TapEvent", "Decision", "ErrorMessage", "StaffAlert", "GuestNotice"} <= set(
        MESSAGE_MODELS)
    assert set(CHANNEL_USE) == {*Channel, GUEST, STAFF, JWKS, REVOCATIONS}, \
        "a Channel without a known reader"


def test_channel_addresses_match_topics(doc: dict[str, Any]) -> None:
    assert channel_mismatches(doc) == []


@pytest.mark.parametrize("name", sorted(MESSAGE_MODELS))
def test_payload_schema_matches_model(doc: dict[str, Any], name: str) -> None:
    assert model_mismatches(doc, MESSAGE_MODELS[name]) == []


def test_no_message_without_a_model(doc: dict[str, Any]) -> None:
    documented = {message_of(doc, key).get("name") for key in doc["components"]["messages"]}
    assert documented == set(MESSAGE_MODELS) | set(OTHER_MESSAGES)


def test_kinds_versions_and_enums_match_python(doc: dict[str, Any]) -> None:
    covered = {enum for _, _, enum in enum_fields()}
    assert {EntryReason, ErrorCode} <= covered
    assert enum_mismatches(doc) == []


def test_channels_carry_the_models_their_reader_parses(doc: dict[str, Any]) -> None:
    union_members = {
        Channel.EVENTS: set(get_args(get_args(contract.DeviceEvent)[0])),
        Channel.DECISIONS: set(get_args(get_args(contract.HubReply)[0])),
        Channel.ERRORS: set(get_args(get_args(contract.HubReply)[0])),
        GUEST: set(get_args(get_args(contract.GuestNotification)[0])),
        STAFF: {get_type_hints(parse_staff_alert)["return"]},
    }
    on_channel: dict[ChannelKey, set[type[BaseModel]]] = {}
    others: dict[str, ChannelKey] = {}
    for ch, _, _, message in channel_messages(doc):
        if message["name"] in OTHER_MESSAGES:
            others[message["name"]] = ch
            continue
        on_channel.setdefault(ch, set()).add(MESSAGE_MODELS[message["name"]])
    assert others == OTHER_MESSAGES
    assert on_channel[Channel.EVENTS] == union_members[Channel.EVENTS]
    assert on_channel[GUEST] == union_members[GUEST]
    assert on_channel[STAFF] == union_members[STAFF]
    # A guest's app that reads receipts only still gets the receipt it knows.
    assert get_type_hints(parse_receipt)["return"] in union_members[GUEST]
    for ch in (Channel.DECISIONS, Channel.ERRORS):
        assert on_channel[ch] <= union_members[ch]
    assert set().union(*on_channel.values()) == set(MESSAGE_MODELS.values())


def test_examples_validate_and_parse(doc: dict[str, Any]) -> None:
    assert example_problems(doc) == []


def test_every_kind_has_an_example(doc: dict[str, Any]) -> None:
    """Each value of every model's ``kind`` (an offer and a notice too) is shown on the wire."""
    shown = {(message["name"], example["payload"].get("kind"))
             for _, _, _, message in channel_messages(doc)
             for example in message.get("examples") or []
             if isinstance(example.get("payload"), dict)}
    missing = [(name, kind) for name, model in MESSAGE_MODELS.items()
               for kind in kinds_of(model) if (name, kind) not in shown]
    assert missing == []


def test_operations_from_the_device_point_of_view(doc: dict[str, Any]) -> None:
    used: set[str] = set()
    for op_key, op in doc["operations"].items():
        chan_ref = op["channel"]["$ref"]
        channel = pointer(doc, chan_ref)
        ch = channel_key(channel["address"])
        assert op["action"] == CHANNEL_USE[ch][0], f"{op_key}: {op['action']} on {ch}"
        for ref in op.get("messages", []):
            assert ref["$ref"].startswith(f"{chan_ref}/messages/"), f"{op_key}: {ref}"
            used.add(resolve(doc, ref)[1]["name"])
        mqtt = op.get("bindings", {}).get("mqtt", {})
        assert mqtt.get("qos") == 1, f"{op_key}: the contract uses QoS 1"
        if op["action"] == "send":
            assert mqtt.get("retain") is (ch is Channel.STATUS), f"{op_key}: retain"
        reply = op.get("reply")
        if reply:
            for ref in reply["messages"]:
                assert ref["$ref"].startswith(f"{reply['channel']['$ref']}/messages/")
    assert used == set(MESSAGE_MODELS) | set(OTHER_MESSAGES), "every message needs an operation"
    assert "device" in doc["info"]["description"].lower()


def test_last_will_is_the_retained_offline_status(doc: dict[str, Any]) -> None:
    will = doc["servers"]["local"]["bindings"]["mqtt"]["lastWill"]
    status = parse_status(will["message"].encode())
    assert status.state == "offline"
    status_channels = [
        c for c in doc["channels"].values()
        if channel_key(c["address"]) is Channel.STATUS
    ]
    assert [c["address"] for c in status_channels] == [will["topic"]]
    assert will["retain"] is True and will["qos"] == 1


def test_payload_limit_and_correlation(doc: dict[str, Any]) -> None:
    assert doc["info"]["x-max-payload-bytes"] == contract.MAX_PAYLOAD_BYTES
    assert doc["info"]["x-contract-version"] == contract.VERSION
    for name in ("TapEvent", "Decision", "ErrorMessage"):
        _, correlation = resolve(doc, message_of(doc, name)["correlationId"])
        field = correlation["location"].removeprefix("$message.payload#/")
        assert field in MESSAGE_MODELS[name].model_fields, f"{name}: {correlation['location']}"


# ----------------------------------------------- the checks can fail at all


@pytest.mark.parametrize("name", sorted(MESSAGE_MODELS))
def test_dropping_a_required_property_is_detected(doc: dict[str, Any], name: str) -> None:
    required = MESSAGE_MODELS[name].model_json_schema()["required"]
    broken = copy.deepcopy(doc)
    schema = payload_of(broken, name)  # the node inside `broken`, mutated in place
    schema["properties"].pop(required[0])
    schema["required"].remove(required[0])
    problems = model_mismatches(broken, MESSAGE_MODELS[name])
    assert any("properties differ" in p for p in problems), problems
    assert any("required differs" in p for p in problems), problems


def test_making_a_required_property_optional_is_detected(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    payload_of(broken, "Decision")["required"].remove("reason")
    assert model_mismatches(broken, contract.Decision)


def test_a_changed_constraint_is_detected(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    payload_of(broken, "Decision")["properties"]["text"]["maxLength"] += 1
    assert model_mismatches(broken, contract.Decision) == [
        "Decision/properties/text/maxLength: document has 81, model has 80"
    ]


def test_a_missing_enum_value_is_detected(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    reason = normalize(payload_of(broken, "Decision"), broken)["properties"]["reason"]
    assert reason["enum"]  # resolved through the reference
    for schema in broken["components"]["schemas"].values():
        if schema.get("enum") == reason["enum"]:
            schema["enum"] = schema["enum"][:-1]
    assert enum_mismatches(broken)
    assert model_mismatches(broken, contract.Decision)


def test_a_wrong_address_is_detected(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    for channel in broken["channels"].values():
        if channel["address"].endswith("/decisions"):
            # decisions are the hub's to publish: a device-side address is wrong
            channel["address"] = channel["address"].replace("/hub/", "/device/")
    assert channel_mismatches(broken)


@pytest.mark.parametrize(("who", "ending", "wrong", "right"), [
    # the guest's topic moved among the hub's device topics
    ("guest", "/notifications", "/hub/", "/guest/"),
    ("staff", "/staff/alerts", "/hub/alerts", "/staff/alerts"),
])
def test_a_wrong_guest_or_staff_address_is_detected(doc: dict[str, Any], who: str,
                                                    ending: str, wrong: str,
                                                    right: str) -> None:
    broken = copy.deepcopy(doc)
    for channel in broken["channels"].values():
        if channel["address"].endswith(ending):
            channel["address"] = channel["address"].replace(right, wrong)
    problems = channel_mismatches(broken)
    assert any(f"{who}_topic builds" in p for p in problems), problems
    assert any(f"the {who} channel: documented by no channel" in p for p in problems), problems


def test_a_missing_kind_is_detected(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    payload_of(broken, "GuestNotice")["properties"]["kind"]["enum"] = ["notice"]
    assert any("GuestNotice.kind" in p for p in enum_mismatches(broken))
    assert model_mismatches(broken, contract.GuestNotice)


def test_a_bad_example_is_detected(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    example = message_of(broken, "TapEvent")["examples"][0]["payload"]
    del example["credential"]
    problems = example_problems(broken)
    assert any("schema:" in p for p in problems), problems
    assert any("parse_event" in p for p in problems), problems


@pytest.mark.parametrize(("schema", "union", "tag"), [
    ("DeviceEvent", contract.DeviceEvent, "kind"),
    ("HubReply", contract.HubReply, "kind"),
    ("GuestNotification", contract.GuestNotification, "kind"),
    ("Credential", contract.Credential, "type"),
])
def test_unions_are_the_parsers_with_their_discriminator(doc: dict[str, Any], schema: str,
                                                         union: Any, tag: str) -> None:
    """Each union schema lists the models the contract's union does, told apart by ``tag``,
    which every member requires (a oneOf whose members all take a missing tag would let
    through what the parser refuses)."""
    node = doc["components"]["schemas"][schema]
    members = {ref["$ref"].rsplit("/", 1)[1] for ref in node["oneOf"]}
    assert members == {model.__name__ for model in get_args(get_args(union)[0])}
    assert node["discriminator"] == tag
    for name in members:
        assert tag in doc["components"]["schemas"][name]["required"], name
