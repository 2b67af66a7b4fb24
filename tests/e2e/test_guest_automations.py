"""The shipped automations end to end: real broker, real database, simulated appliances.

One demo hub serves the module; each test uses its own guests and rooms. Preferences
and consent go through the guest's own REST API, as a guest's phone would send them;
devices are the simulators' appliances (a watch, a fridge display, a thermostat) and
the SDK's DeviceClient for locks and gates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.client import DeviceClient
from devices.contract import WristbandCredential
from devices.topics import ROOT
from hub.demo import VENUE_ID, watch_id, wristband_uid
from hub.models import utcnow
from hub.server import Hub
from simulators.appliances import FridgeDisplay, Thermostat, Watch
from tests.conftest import bearer, guest_token, hub_settings, staff_token
from tests.utils.listener import Listener, Predicate

# Long enough for the runner to have acted; a message that should not come is awaited this long.
QUIET = 1.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = Hub(hub_settings(tmp_path_factory.mktemp("automations")), demo=True)
    running.start()
    running.serve_in_thread()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def heard(hub: Hub) -> Iterator[Listener]:
    host, port = hub.settings.mqtt_address
    listener = Listener(host, port, [f"{ROOT}/{VENUE_ID}/staff/alerts",
                                     f"{ROOT}/{VENUE_ID}/guest/+/notifications"])
    yield listener
    listener.close()
    assert listener.invalid == []  # every alert, notice and receipt kept to the contract


def api(hub: Hub) -> str:
    return f"http://127.0.0.1:{hub.settings.http_port}/api/v1"


def profile(hub: Hub, guest: str, *, consents: dict[str, bool], **prefs: Any) -> None:
    """Set a guest's preferences and consents through their own API, as their phone does."""
    assert hub.app is not None
    headers = bearer(guest_token(hub.app, guest))
    if prefs:
        r = httpx.put(f"{api(hub)}/guests/{guest}/preferences", json=prefs, headers=headers)
        assert r.status_code == 200, r.text
    for purpose, granted in consents.items():
        r = httpx.put(f"{api(hub)}/guests/{guest}/consent/{purpose}",
                      json={"granted": granted}, headers=headers)
        assert r.status_code == 200, r.text


def staff(hub: Hub) -> dict[str, str]:
    assert hub.app is not None
    return bearer(staff_token(hub.app, "admin"))


def runs(hub: Hub, **query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{api(hub)}/automations/runs", params=query, headers=staff(hub))
    assert r.status_code == 200, r.text
    result: list[dict[str, Any]] = r.json()
    return result


def stats(hub: Hub, rule: str) -> dict[str, int]:
    r = httpx.get(f"{api(hub)}/automations/stats", headers=staff(hub))
    assert r.status_code == 200, r.text
    result: dict[str, int] = r.json()[rule]
    return result


def settle(hub: Hub) -> None:
    """Let the bridge and the runner finish what they were given."""
    assert hub.bridge is not None and hub.automations is not None
    deadline = time.monotonic() + 5
    while hub.bridge.queue_depth and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.automations.drain()


def device(hub: Hub, device_id: str) -> DeviceClient:
    host, port = hub.settings.mqtt_address
    return DeviceClient(VENUE_ID, device_id, host=host, port=port)


def watch(hub: Hub, n: int, **kw: Any) -> Watch:
    host, port = hub.settings.mqtt_address
    return Watch(VENUE_ID, watch_id(n), host=host, port=port, **kw)


def band(n: int) -> WristbandCredential:
    return WristbandCredential(uid=wristband_uid(n))


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------------- health


def test_a_high_heart_rate_vibrates_harder_then_alerts_staff_once(
        hub: Hub, heard: Listener) -> None:
    profile(hub, "guest-03", consents={"health": True}, heart_rate_threshold=120)
    alerts_for_3 = lambda _t, b: b.get("rule") == "health-staff" and (  # noqa: E731
        b.get("guest_id") == "guest-03")
    with watch(hub, 3) as wrist:
        for bpm in (130, 135, 140, 145):
            wrist.heart_rate(bpm)
            settle(hub)
        assert wait_until(lambda: len(wrist.vibrations) == 4)
        assert [v.level for v in wrist.vibrations] == [1, 2, 3, 3]  # escalating, capped
        assert "130 bpm" in wrist.vibrations[0].reason
        [alert] = heard.wait(alerts_for_3)
        assert alert["severity"] == "urgent" and alert["details"]["heart_rate_bpm"] == 140
        assert alert["device_id"] == watch_id(3)
        assert "Chen" not in alert["text"] and "Bo" in alert["text"]  # display name only
        # Back under the threshold: calm; the next high reading starts over, gently.
        wrist.heart_rate(90)
        settle(hub)
        wrist.heart_rate(125)
        settle(hub)
        assert wait_until(lambda: len(wrist.vibrations) == 5)
        assert wrist.vibrations[-1].level == 1
    time.sleep(QUIET)
    assert len(heard.matching(alerts_for_3)) == 1  # lasting is reported once, not per reading
    assert stats(hub, "health-watch")["fired"] >= 5


# ------------------------------------------------------------------- breakfast


def test_a_morning_workout_suggests_a_breakfast_that_fits(hub: Hub) -> None:
    profile(hub, "guest-02", consents={"personalization": True, "health": True},
            dietary=["vegan"], display_name="Ana")
    host, port = hub.settings.mqtt_address
    evening = _evening_clock()
    with FridgeDisplay(VENUE_ID, "fridge-102", host=host, port=port) as fridge, \
            watch(hub, 2, clock=evening) as wrist:
        wrist.workout_ended("swim", 40)  # in the evening: no breakfast
        settle(hub)
        time.sleep(QUIET)
        assert fridge.shown == []
        wrist.clock = utcnow  # the latest 08:00 before now: within the day the hub believes
        wrist.workout_ended("run", 30, at_morning=True)
        assert fridge.wait_for(lambda s: s["kind"] == "suggestion", timeout=3)
        [shown] = fridge.shown
        assert shown.text == ("Good morning, Ana: after your run, how about a tofu scramble "
                              "with spinach and potatoes?")


def _evening_clock() -> Callable[[], datetime]:
    """A clock at the latest 20:00 UTC before now (the demo venue is on UTC)."""
    now = utcnow()
    at = now.replace(hour=20, minute=0, second=0, microsecond=0)
    at = at if at <= now else at - timedelta(days=1)
    return lambda: at


# ---------------------------------------------------------- the staff console cue


def test_staff_see_a_returning_guest_with_their_preferences(
        hub: Hub, heard: Listener) -> None:
    profile(hub, "guest-01", consents={"personalization": True}, room_temperature_c=22.5,
            lighting_scene="warm", language="fr", dietary=["halal"])
    profile(hub, "guest-07", consents={"personalization": True}, room_temperature_c=20.0)

    def cue(guest: str) -> Predicate:
        return lambda _t, b: b.get("cue") == "returning_guest" and b.get("guest_id") == guest
    with device(hub, "lock-101") as lock_101, device(hub, "lock-107") as lock_107:
        assert lock_101.tap(band(1)).outcome == "allow"
        assert lock_107.tap(band(7)).outcome == "allow"  # a first stay: no cue
        [alert] = heard.wait(cue("guest-01"))
        assert alert["text"] == "Welcome back, Charlie"
        details = alert["details"]  # the guest's preferences: beyond the alert's own fields
        assert (details["room_temperature_c"], details["lighting_scene"], details["language"],
                details["dietary"], alert["zone_id"]) == (22.5, "warm", "fr", ["halal"],
                                                          "room-101")
        assert alert["severity"] == "info"
        assert lock_101.tap(band(1)).outcome == "allow"  # the second entry: no second cue
    time.sleep(QUIET)
    assert len(heard.matching(cue("guest-01"))) == 1
    assert heard.matching(cue("guest-07")) == []


# ----------------------------------------------------------------------- offers


def test_the_fifth_ride_brings_an_offer_once(hub: Hub, heard: Listener) -> None:
    profile(hub, "guest-09", consents={"offers": True})
    offers = lambda t, b: t.endswith("/guest-09/notifications") and (  # noqa: E731
        b.get("kind") == "offer")
    with device(hub, "ride-coaster-1") as coaster, device(hub, "ride-carousel-1") as carousel:
        for ride in (coaster, carousel, coaster, coaster):
            assert ride.tap(band(9)).outcome == "allow"
        settle(hub)
        time.sleep(QUIET / 2)
        assert heard.matching(offers) == []  # four rides: not yet
        assert carousel.tap(band(9)).outcome == "allow"
        [offer] = heard.wait(offers)
        assert offer["rule"] == "ride-reward" and offer["text"].startswith("5 rides!")
        assert (offer["offer_id"], offer["merchant_id"]) == ("ride-reward", "cafe")
        assert coaster.tap(band(9)).outcome == "allow"
    time.sleep(QUIET)
    assert len(heard.matching(offers)) == 1


# -------------------------------------------------- offline appliances, overrides


def test_a_command_to_an_offline_thermostat_waits_for_it(hub: Hub) -> None:
    profile(hub, "guest-04", consents={"personalization": True}, room_temperature_c=23.5)
    with device(hub, "lock-104") as lock:
        assert lock.tap(band(4)).outcome == "allow"
    settle(hub)
    [queued] = runs(hub, device_id="thermostat-104")
    assert (queued["rule_id"], queued["status"], queued["params"]["celsius"]) == (
        "room-welcome", "queued", 23.5)
    assert stats(hub, "room-welcome")["queued"] >= 1
    host, port = hub.settings.mqtt_address
    with Thermostat(VENUE_ID, "thermostat-104", host=host, port=port) as dial:
        assert dial.wait_for(lambda s: s["setpoint_c"] == 23.5, timeout=3)
        [command] = dial.accepted
        assert command.command_id == queued["command_id"]
    assert wait_until(lambda: runs(hub, device_id="thermostat-104")[0]["status"] == "sent")


def test_a_guest_undoing_the_welcome_by_hand_counts_as_an_override(hub: Hub) -> None:
    profile(hub, "guest-06", consents={"personalization": True}, room_temperature_c=21.5)
    host, port = hub.settings.mqtt_address
    before = stats(hub, "room-welcome")["overridden"]
    with Thermostat(VENUE_ID, "thermostat-106", host=host, port=port) as dial:
        assert wait_until(lambda: _online(hub, "thermostat-106"))
        with device(hub, "lock-106") as lock:
            assert lock.tap(band(6)).outcome == "allow"
        assert dial.wait_for(lambda s: s["setpoint_c"] == 21.5, timeout=3)
        dial.manual_set(21.5)  # the same value: agreeing is no override
        settle(hub)
        assert stats(hub, "room-welcome")["overridden"] == before
        dial.manual_set(25.0)
        settle(hub)
        assert wait_until(lambda: stats(hub, "room-welcome")["overridden"] == before + 1)
        [run] = runs(hub, device_id="thermostat-106")
        assert run["overridden_at"] is not None


def _online(hub: Hub, device_id: str) -> bool:
    r = httpx.get(f"{api(hub)}/devices/{device_id}", headers=staff(hub))
    return bool(r.status_code == 200 and r.json().get("online"))


# ------------------------------------------------------------ consent withdrawn


def test_withdrawing_health_consent_stops_the_watch_on_the_next_reading(hub: Hub) -> None:
    profile(hub, "guest-04", consents={"health": True}, heart_rate_threshold=110)
    with watch(hub, 4) as wrist:
        wrist.heart_rate(150)
        assert wait_until(lambda: len(wrist.vibrations) == 1)
        profile(hub, "guest-04", consents={"health": False})
        wrist.heart_rate(160)
        settle(hub)
        time.sleep(QUIET)
        assert len(wrist.vibrations) == 1


def test_withdrawing_personalization_stops_the_breakfast_on_the_next_workout(hub: Hub) -> None:
    profile(hub, "guest-05", consents={"personalization": True, "health": True},
            dietary=["gluten_free", "halal"])
    host, port = hub.settings.mqtt_address
    with FridgeDisplay(VENUE_ID, "fridge-105", host=host, port=port) as fridge, \
            watch(hub, 5) as wrist:
        wrist.workout_ended("yoga", 20, at_morning=True)
        assert fridge.wait_for(lambda s: s["kind"] == "suggestion", timeout=3)
        assert "veggie omelette" in fridge.shown[0].text
        profile(hub, "guest-05", consents={"personalization": False})
        wrist.workout_ended("run", 25, at_morning=True)
        settle(hub)
        time.sleep(QUIET)
        assert len(fridge.shown) == 1
        # Health data needs health consent too, whatever the rule's own purpose.
        profile(hub, "guest-05", consents={"personalization": True, "health": False})
        wrist.workout_ended("bike", 45, at_morning=True)
        settle(hub)
        time.sleep(QUIET)
        assert len(fridge.shown) == 1


def test_withdrawing_offers_consent_stops_the_offer(hub: Hub, heard: Listener) -> None:
    profile(hub, "guest-10", consents={"offers": True})
    offers = lambda t, b: t.endswith("/guest-10/notifications") and (  # noqa: E731
        b.get("kind") == "offer")
    with device(hub, "ride-coaster-1") as coaster:
        for _ in range(4):
            assert coaster.tap(band(10)).outcome == "allow"
        profile(hub, "guest-10", consents={"offers": False})
        assert coaster.tap(band(10)).outcome == "allow"  # the fifth ride
    settle(hub)
    time.sleep(QUIET)
    assert heard.matching(offers) == []


def test_withdrawing_analytics_consent_stops_an_analytics_rule(
        hub: Hub, heard: Listener) -> None:
    rule = {"name": "Park visit count", "purpose": "analytics", "trigger": "entry_allowed",
            "filters": {"zone.id": "park"},
            "actions": [{"kind": "notify_guest",
                         "params": {"text": "Visit {counters.visits} to the park"}}]}
    r = httpx.put(f"{api(hub)}/automations/park-visits", json=rule, headers=staff(hub))
    assert r.status_code == 201, r.text
    profile(hub, "guest-08", consents={"analytics": True})
    counted = lambda t, b: t.endswith("/guest-08/notifications") and (  # noqa: E731
        b.get("rule") == "park-visits" and b.get("kind") == "notice")
    with device(hub, "gate-park-in-1") as gate_in, device(hub, "gate-park-out-1") as gate_out:
        # The runner reads rules through a two-second cache: tap until the new rule is in.
        assert wait_until(lambda: _enter_and_leave(gate_in, gate_out, 8)
                          and bool(heard.wait(counted, timeout=0.3)), timeout=5)
        profile(hub, "guest-08", consents={"analytics": False})
        seen = len(heard.matching(counted))
        _enter_and_leave(gate_in, gate_out, 8)
    settle(hub)
    time.sleep(QUIET)
    assert len(heard.matching(counted)) == seen


def _enter_and_leave(gate_in: DeviceClient, gate_out: DeviceClient, n: int) -> bool:
    entered = gate_in.tap(band(n)).outcome == "allow"
    return gate_out.tap(band(n)).outcome == "allow" and entered


def test_the_demo_watch_belongs_to_its_guest(tmp_path: Path, hub: Hub) -> None:
    """An export of a guest with a watch holds its readings; other guests' do not."""
    with watch(hub, 1) as wrist:
        wrist.heart_rate(72)
        settle(hub)
    assert hub.app is not None
    mine = httpx.get(f"{api(hub)}/guests/guest-01/export",
                     headers=bearer(guest_token(hub.app, "guest-01"))).json()
    assert [w["device_id"] for w in mine["wearables"]] == [watch_id(1)]
    assert {"heart_rate_bpm": 72} in [r["data"].get("readings") for r in
                                      mine["wearable_readings"]]
    other = httpx.get(f"{api(hub)}/guests/guest-11/export",
                      headers=bearer(guest_token(hub.app, "guest-11"))).json()
    assert other["wearables"] == [] and other["wearable_readings"] == []
