"""MQTT topics of the contract: the only place that builds or matches them.

Every topic has the shape ``venuehub/v1/{venue}/{publisher}/{device}/{channel}``,
where the publisher segment says who writes to it, so the hub can subscribe to
everything devices send without hearing its own replies, and a broker ACL can
give each device ``device/{itself}/#`` to write and ``hub/{itself}/#`` to read:

- ``device/{device}/events``    taps, heartbeats, telemetry (QoS 1)
- ``device/{device}/status``    retained ``online``/``offline``, set by the device's last will
- ``hub/{device}/decisions``    the answer to a tap, correlated by ``event_id`` (QoS 1)
- ``hub/{device}/commands``     instructions for appliances (QoS 1)
- ``hub/{device}/errors``       why a message of this device was refused (QoS 1)

Guests' own apps read ``venuehub/v1/{venue}/guest/{guest}/notifications``
(receipts and other news for that guest; written by the hub only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

ROOT = "venuehub/v1"
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_ID = re.compile(rf"^{ID_PATTERN}$")


class Channel(StrEnum):
    """The last segment of a device topic."""

    EVENTS = "events"
    DECISIONS = "decisions"
    COMMANDS = "commands"
    STATUS = "status"
    ERRORS = "errors"

    @property
    def publisher(self) -> str:
        """The topic segment naming who publishes on this channel: ``device`` or ``hub``."""
        return DEVICE if self in (Channel.EVENTS, Channel.STATUS) else HUB


DEVICE, HUB = "device", "hub"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    venue: str
    device: str
    channel: Channel


class TopicError(ValueError):
    """A topic or a topic segment that is outside the contract."""


def valid_id(value: str) -> bool:
    """True when ``value`` may be used as a venue or device id in a topic."""
    return bool(_ID.match(value))


def device_topic(venue: str, device: str, channel: Channel) -> str:
    """Build the topic of one device's channel."""
    for value in (venue, device):
        if not valid_id(value):
            raise TopicError(f"not a valid topic id: {value!r}")
    return f"{ROOT}/{venue}/{channel.publisher}/{device}/{channel.value}"


def subscription(channel: Channel, venue: str = "+", device: str = "+") -> str:
    """A subscription filter for one channel; ``+`` matches every venue or device."""
    return f"{ROOT}/{venue}/{channel.publisher}/{device}/{channel.value}"


def guest_topic(venue: str, guest: str) -> str:
    """The notifications topic of one guest (receipts, alerts for them)."""
    for value in (venue, guest):
        if not valid_id(value):
            raise TopicError(f"not a valid topic id: {value!r}")
    return f"{ROOT}/{venue}/guest/{guest}/notifications"


def keys_topic(venue: str, name: str) -> str:
    """Retained key material for offline locks: ``jwks`` or ``revocations`` (hub-written)."""
    if not valid_id(venue) or name not in ("jwks", "revocations"):
        raise TopicError(f"no keys topic {name!r} for venue {venue!r}")
    return f"{ROOT}/{venue}/keys/{name}"


def staff_topic(venue: str) -> str:
    """Alerts for the venue's staff (a stuck guest, a failing automation); hub-written."""
    if not valid_id(venue):
        raise TopicError(f"not a valid topic id: {venue!r}")
    return f"{ROOT}/{venue}/staff/alerts"


def from_devices(venue: str = "+") -> str:
    """The filter of everything devices publish (the hub's subscription)."""
    return f"{ROOT}/{venue}/{DEVICE}/#"


def shared(filter_: str, group: str) -> str:
    """An MQTT 5 shared subscription of ``filter_`` for a group of hub workers."""
    return f"$share/{group}/{filter_}"


@lru_cache(maxsize=4096)
def parse_topic(topic: str) -> DeviceTopic:
    """Parse a device topic, raising TopicError when it is outside the contract."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != ROOT or parts[3] not in (DEVICE, HUB):
        raise TopicError(f"topic outside the contract: {topic!r}")
    venue, device, channel = parts[2], parts[4], parts[5]
    if not (valid_id(venue) and valid_id(device)):
        raise TopicError(f"invalid venue or device id in topic: {topic!r}")
    try:
        parsed = DeviceTopic(venue, device, Channel(channel))
    except ValueError:
        raise TopicError(f"unknown channel {channel!r} in topic {topic!r}") from None
    if parsed.channel.publisher != parts[3]:
        raise TopicError(f"{channel!r} is not published by {parts[3]!r}: {topic!r}")
    return parsed


def device_of(topic: str) -> tuple[str, str] | None:
    """The (venue, device) a topic belongs to, even when its channel is unknown; else None."""
    parts = topic.split("/")
    if len(parts) >= 5 and "/".join(parts[:2]) == ROOT and parts[3] in (DEVICE, HUB) \
            and valid_id(parts[2]) and valid_id(parts[4]):
        return parts[2], parts[4]
    return None
