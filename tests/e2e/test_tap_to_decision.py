"""From a device's tap over a real broker to the decision message, and bad input on the wire."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devices.client import DeviceClient, HubError
from devices.contract import ErrorCode, WristbandCredential
from devices.topics import Channel
from hub.demo import VENUE_ID, wristband_uid
from hub.server import Hub
from tests.conftest import login
from tests.utils.hubs import demo_hub_on, wait_for

CHARLIE = WristbandCredential(uid=wristband_uid(1))


def api(hub: Hub) -> str:
    return f"http://127.0.0.1:{hub.settings.http_port}/api/v1"


def device(hub: Hub, device_id: str) -> DeviceClient:
    host, port = hub.settings.mqtt_address
    return DeviceClient(VENUE_ID, device_id, host=host, port=port)



@pytest.fixture(params=["embedded", "mosquitto"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """The demo hub behind the embedded broker and behind a real Mosquitto."""
    with demo_hub_on(request.param, request, tmp_path) as running:
        yield running


def test_tap_reaches_a_decision_and_the_journey(hub: Hub) -> None:
    with device(hub, "gate-park-in-1") as gate:
        decision = gate.tap(CHARLIE)
        assert (decision.outcome, decision.reason, decision.guest_name) == ("allow", "ok",
                                                                             "Charlie")
        assert gate.tap(CHARLIE).reason == "anti_passback"
    page = httpx.get(f"{api(hub)}/events", params={"guest_id": "guest-01"},
                     headers=login(api(hub))).json()
    assert [e["reason"] for e in page["items"]] == ["anti_passback", "ok"]
    assert page["items"][1]["event_id"] == decision.event_id


def test_lost_band_marked_through_the_api_denies_the_next_tap(hub: Hub) -> None:
    with device(hub, "lock-101") as lock:
        assert lock.tap(CHARLIE).outcome == "allow"
        response = httpx.patch(f"{api(hub)}/credentials/band-guest-01", json={"status": "lost"},
                               headers=login(api(hub), "staff", "demo-staff"))
        assert response.status_code == 200
        decision = lock.tap(CHARLIE)
        assert (decision.outcome, decision.reason) == ("deny", "credential_lost")


def test_redelivered_event_gets_the_same_decision(hub: Hub) -> None:
    with device(hub, "gate-park-in-1") as gate:
        first = gate.tap(CHARLIE, event_id="redelivered-1")
        again = gate.tap(CHARLIE, event_id="redelivered-1")
    assert again == first and first.outcome == "allow"
    items = httpx.get(f"{api(hub)}/events", params={"device_id": "gate-park-in-1"},
                      headers=login(api(hub))).json()["items"]
    assert len(items) == 1


@pytest.mark.parametrize(("payload", "code"), [
    (b"{oops", ErrorCode.MALFORMED_JSON),
    (b'{"v": 1, "kind": "tap", "event_id": "e1"}', ErrorCode.SCHEMA_VIOLATION),
    (b'{"pad": "' + b"x" * 70_000 + b'"}', ErrorCode.PAYLOAD_TOO_LARGE),
])
def test_bad_input_is_answered_counted_and_the_bridge_keeps_running(
    hub: Hub, payload: bytes, code: ErrorCode
) -> None:
    with device(hub, "gate-park-in-1") as gate:
        errors: list[object] = []
        gate._client.message_callback_add(  # listen to the error path as a device would
            gate._topics[Channel.ERRORS], lambda _c, _u, m: errors.append(m.payload))
        gate.publish_raw(payload)
        wait_for(lambda: errors)
        assert code.value.encode() in errors[0]  # type: ignore[operator]
        assert gate.tap(CHARLIE).outcome == "allow"  # still deciding
    auditor = login(api(hub), "auditor", "demo-auditor")
    stats = httpx.get(f"{api(hub)}/stats", headers=auditor).json()
    assert stats["errors"][code.value] == 1


def test_unknown_device_gets_an_error_not_a_decision(hub: Hub) -> None:
    with device(hub, "rogue-gate") as rogue, pytest.raises(HubError) as caught:
        rogue.tap(CHARLIE)
    assert caught.value.error.code is ErrorCode.UNKNOWN_DEVICE


def test_device_status_follows_the_last_will(hub: Hub) -> None:
    lock = device(hub, "lock-103").connect()
    url, headers = f"{api(hub)}/devices/lock-103", login(api(hub), "integrator", "demo-integrator")
    wait_for(lambda: httpx.get(url, headers=headers).json()["online"] is True)
    lock._client._sock.close()  # type: ignore[union-attr]  # die without DISCONNECT
    lock._client.loop_stop()
    wait_for(lambda: httpx.get(url, headers=headers).json()["online"] is False, timeout=60)


def test_mqtt_5_and_3_1_1_devices_share_one_contract(hub: Hub) -> None:
    host, port = hub.settings.mqtt_address
    if hub.settings.embedded_broker:
        pytest.skip("amqtt speaks 3.1.1 only")
    with DeviceClient(VENUE_ID, "lock-105", host=host, port=port, mqtt5=True) as lock:
        assert lock.tap(WristbandCredential(uid=wristband_uid(5))).outcome == "allow"
    with DeviceClient(VENUE_ID, "lock-105", host=host, port=port, mqtt5=False) as lock:
        assert lock.tap(WristbandCredential(uid=wristband_uid(5))).outcome == "allow"
