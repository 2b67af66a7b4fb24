"""Every JSON example in the README's MQTT contract section validates against the schema
of its channel in devices/asyncapi.yaml, and the hub's parser agrees with it.

Read from the section's code blocks: each ``mosquitto_pub -t TOPIC -m 'JSON'`` (a device's
message, refused only where the README shows the refusal on the errors topic next), each
reply shown as ``# TOPIC {JSON}`` (``"..."`` stands for a value the README leaves out), and
each inline code span that is a whole JSON object with a ``kind``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker

from devices.contract import ContractError, parse_event, parse_status
from devices.topics import Channel, TopicError, parse_topic
from tests.devices.test_asyncapi import load_doc, normalize

README = Path(__file__).resolve().parents[2] / "README.md"
DOC = load_doc()
#: The schema of what travels on each device channel (the unions the readers parse).
CHANNEL_SCHEMA = {Channel.EVENTS: "DeviceEvent", Channel.STATUS: "DeviceStatus",
                  Channel.DECISIONS: "HubReply", Channel.ERRORS: "HubReply",
                  Channel.COMMANDS: "Command"}
_GUEST = re.compile(r"^venuehub/v1/[^/]+/guest/[^/]+/notifications$")
#: Stand-ins for the values the README writes as "..." (they vary per run).
PLACEHOLDERS = {"decided_at": "2026-11-23T10:00:00.052Z", "transaction_id": "tx-1",
                "at": "2026-11-23T10:00:00Z"}


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## The MQTT contract")
    return text[start:text.index("\n## ", start + 1)]


def blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)


def validator(name: str) -> Draft7Validator:
    return Draft7Validator(normalize({"$ref": f"#/components/schemas/{name}"}, DOC),
                           format_checker=FormatChecker())


def schema_for(topic: str) -> str:
    if _GUEST.match(topic):
        return "GuestNotification"
    return CHANNEL_SCHEMA[parse_topic(topic).channel]


def published(block: str) -> list[tuple[str, Any, bool]]:
    """(topic, payload, refused): each mosquitto_pub of a block; refused when the next
    reply the block shows is on an errors topic."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for match in re.finditer(r"^\s*mosquitto_pub ", joined, flags=re.MULTILINE):
        lexer = shlex.shlex(joined[match.end():], posix=True)
        lexer.whitespace_split = True
        words: list[str] = []
        while "-m" not in words[:-1]:  # the message, quoted over several lines maybe
            words.append(lexer.get_token() or "")
        topic, message = words[words.index("-t") + 1], words[words.index("-m") + 1]
        rest = joined[match.end():]
        after = re.search(r"^# (?:venuehub/|\.\.\./)(\S+)", rest, flags=re.MULTILINE)
        refused = after is not None and after[1].endswith("/errors")
        found.append((topic, json.loads(message), refused))
    return found


def replies(block: str) -> list[tuple[str, str]]:
    """(topic, JSON text) of each reply a block shows in comments, continuation joined."""
    found: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith(("# venuehub/", "# .../")):
            topic, _, text = line[2:].partition(" ")
            found.append((topic, text))
        elif line.startswith("#   ") and found:
            found[-1] = (found[-1][0], found[-1][1] + line[4:])
    return found


def filled(text: str) -> Any:
    """The reply's JSON with its "..." placeholders filled; None when it is an excerpt."""
    for key, value in PLACEHOLDERS.items():
        text = text.replace(f'"{key}":"..."', f'"{key}":{json.dumps(value)}')
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None  # an excerpt ("...}" cut short): shown, not a message


def test_published_examples_validate_and_parse_alike() -> None:
    found = [pub for block in blocks(section()) for pub in published(block)]
    assert len(found) >= 3, "the section's mosquitto_pub examples were not found"
    for topic, payload, refused in found:
        schema_ok = validator(schema_for(topic)).is_valid(payload)
        wire = json.dumps(payload).encode()
        parse = parse_status if parse_topic(topic).channel is Channel.STATUS else parse_event
        try:
            parse(wire)
            parser_ok = True
        except ContractError:
            parser_ok = False
        assert (schema_ok, parser_ok) == (not refused, not refused), (topic, payload)


def test_replies_shown_validate() -> None:
    checked = 0
    for block in blocks(section()):
        for topic, text in replies(block):
            payload = filled(text)
            if payload is None:
                continue
            full = topic if topic.startswith("venuehub/") else None
            name = (schema_for(full) if full is not None
                    else {"payment_decision": "HubReply"}[payload["kind"]])
            errors = [e.message for e in validator(name).iter_errors(payload)]
            assert errors == [], (topic, payload)
            checked += 1
    assert checked >= 3, "the section's replies were not found"


def test_inline_messages_validate() -> None:
    by_kind = {"status": "DeviceStatus", "tap": "TapEvent", "decision": "Decision",
               "error": "ErrorMessage", "payment": "PaymentRequest",
               "payment_decision": "PaymentDecision", "receipt": "Receipt"}
    checked = 0
    for span in re.findall(r"`([^`\n]+)`", section()):
        try:
            payload = json.loads(span)
        except json.JSONDecodeError:
            continue
        if isinstance(payload, dict) and "kind" in payload:
            assert validator(by_kind[payload["kind"]]).is_valid(payload), span
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize("word", ["online", "offline"])
def test_the_bare_status_words_are_in_the_readme(word: str) -> None:
    assert f"`{word}`" in section()
    assert word in validator("DeviceStatusWord").schema["enum"]


def test_topics_outside_the_contract_are_explained() -> None:
    text = section()
    assert "venuehub/v1/{venue}/keys/jwks" in text
    with pytest.raises(TopicError):
        parse_topic("venuehub/v1/demo-resort/keys/jwks")  # not a device topic: nobody answers
    assert "outside" in text and "device/#" in text
    assert "broker_refusals.publish" in text  # what the embedded broker counts
