"""devices/topics.py: what it builds it parses back, and nothing outside the contract parses."""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.topics import (
    ID_PATTERN,
    ROOT,
    Channel,
    DeviceTopic,
    TopicError,
    device_of,
    device_topic,
    from_devices,
    guest_topic,
    keys_topic,
    parse_topic,
    shared,
    staff_topic,
    subscription,
    valid_id,
)

ids = st.from_regex(f"^{ID_PATTERN}$", fullmatch=True)
DEVICE_CHANNELS = [Channel.EVENTS, Channel.STATUS]
HUB_CHANNELS = [Channel.DECISIONS, Channel.COMMANDS, Channel.ERRORS]
# Ids no topic may carry: wildcards, separators, empty, too long, a leading dot or dash,
# spaces, characters past ASCII, the NUL MQTT forbids.
BAD_IDS = ["", "+", "#", "a+", "a#", "a/b", "-a", ".a", "_a", "a b", "x" * 65, "caf\u00e9",
           "a\x00", "$SYS"]


@given(ids, ids, st.sampled_from(list(Channel)))
def test_what_is_built_parses_back(venue: str, device: str, channel: Channel) -> None:
    topic = device_topic(venue, device, channel)
    assert parse_topic(topic) == DeviceTopic(venue, device, channel)
    assert device_of(topic) == (venue, device)
    # The one subscription filter of the channel, for every venue and device, matches it.
    assert mqtt.topic_matches_sub(subscription(channel), topic)


@pytest.mark.parametrize("channel", list(Channel))
def test_the_publisher_segment_says_who_writes(channel: Channel) -> None:
    publisher = "device" if channel in DEVICE_CHANNELS else "hub"
    assert channel.publisher == publisher
    assert device_topic("v1", "d1", channel) == f"{ROOT}/v1/{publisher}/d1/{channel.value}"


@pytest.mark.parametrize("channel", list(Channel))
def test_the_hubs_subscription_hears_devices_and_never_its_own_replies(
        channel: Channel) -> None:
    topic = device_topic("demo-resort", "gate-1", channel)
    heard = mqtt.topic_matches_sub(from_devices(), topic)
    assert heard is (channel in DEVICE_CHANNELS)
    assert mqtt.topic_matches_sub(from_devices("demo-resort"), topic) is heard
    assert not mqtt.topic_matches_sub(from_devices("other"), topic)


def test_a_shared_subscription_names_its_group() -> None:
    assert shared(from_devices(), "hubs") == f"$share/hubs/{ROOT}/+/device/#"


@pytest.mark.parametrize("bad", BAD_IDS)
def test_no_topic_is_built_with_an_id_outside_the_contract(bad: str) -> None:
    assert not valid_id(bad)
    builders: list[Callable[[], str]] = [
        lambda: device_topic(bad, "d1", Channel.EVENTS),
        lambda: device_topic("v1", bad, Channel.EVENTS),
        lambda: guest_topic(bad, "g1"), lambda: guest_topic("v1", bad),
        lambda: staff_topic(bad), lambda: keys_topic(bad, "jwks")]
    for build in builders:
        with pytest.raises(TopicError):
            build()


@pytest.mark.parametrize("bad", BAD_IDS)
def test_no_topic_with_such_an_id_parses(bad: str) -> None:
    for topic in (f"{ROOT}/{bad}/device/d1/events", f"{ROOT}/v1/device/{bad}/events"):
        with pytest.raises(TopicError):
            parse_topic(topic)
    assert device_of(f"{ROOT}/{bad}/device/d1/events") is None
    if "/" not in bad:  # else it reads as device "a" with a channel "b/events" it lacks
        assert device_of(f"{ROOT}/v1/device/{bad}/events") is None


@pytest.mark.parametrize("topic", [
    "",
    "venuehub/v1",
    f"{ROOT}/v1/device/d1",  # no channel
    f"{ROOT}/v1/device/d1/events/extra",
    f"/{ROOT}/v1/device/d1/events",  # a leading slash is another topic in MQTT
    f"{ROOT}/v1/device/d1/events/",
    "venuehub/v2/v1/device/d1/events",  # another contract version
    "VENUEHUB/v1/v1/device/d1/events",
    "other/v1/v1/device/d1/events",
    f"{ROOT}/v1/phone/d1/events",  # an unknown publisher
    f"{ROOT}/v1/guest/g1/notifications",  # a guest's topic is no device topic
    f"{ROOT}/v1/keys/jwks",
    f"{ROOT}/v1/staff/alerts",
    f"{ROOT}/v1/device/d1/telemetry",  # an unknown channel
    f"{ROOT}/v1/device/d1/Events",
    f"{ROOT}/v1/hub/d1/events",  # a channel under the wrong publisher: forged either way
    f"{ROOT}/v1/device/d1/decisions",
    f"{ROOT}/v1/device/d1/errors",
    f"{ROOT}/+/device/d1/events",  # a filter is not a topic
    f"{ROOT}/v1/device/#",
    f"$share/hubs/{ROOT}/v1/device/d1/events",
])
def test_a_foreign_topic_is_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_the_device_of_a_topic_with_an_unknown_channel_is_still_known() -> None:
    """So a refusal can go to that device's errors topic."""
    assert device_of(f"{ROOT}/v1/device/d1/telemetry") == ("v1", "d1")
    assert device_of(f"{ROOT}/v1/hub/d1/whatever/else") == ("v1", "d1")
    assert device_of(f"{ROOT}/v1/guest/g1/notifications") is None
    assert device_of("other/v1/v1/device/d1/events") is None


def test_the_hubs_own_topics() -> None:
    assert guest_topic("v1", "guest-01") == f"{ROOT}/v1/guest/guest-01/notifications"
    assert staff_topic("v1") == f"{ROOT}/v1/staff/alerts"
    assert [keys_topic("v1", name) for name in ("jwks", "revocations")] == [
        f"{ROOT}/v1/keys/jwks", f"{ROOT}/v1/keys/revocations"]
    for name in ("", "keys", "jwks/x", "+", "#"):
        with pytest.raises(TopicError):
            keys_topic("v1", name)


def test_ids_at_the_length_limit() -> None:
    longest = "a" * 64
    assert parse_topic(device_topic(longest, longest, Channel.EVENTS)).device == longest
    with pytest.raises(TopicError):
        device_topic("a" * 65, "d1", Channel.EVENTS)
