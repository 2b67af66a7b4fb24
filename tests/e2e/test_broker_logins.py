"""Broker logins revoked and re-issued one by one, devices and venues deleted: on the
embedded broker of a running hub (which follows the database within a second) and on a
real Mosquitto with the files ``hub provision mosquitto`` writes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from devices.client import DeviceClient
from devices.contract import WristbandCredential
from hub import broker_logins
from hub.broker_auth import device_password, device_username, guest_password
from hub.demo import STRICT_VENUE_ID, VENUE_ID, wristband_uid
from hub.provisioning import BRIDGE_USER, mosquitto_config
from hub.server import Hub
from tests.conftest import bearer, free_port, hub_settings, missing, secured_mosquitto, staff_token
from tests.e2e.test_broker_acl import NOT_AUTHORIZED, Probe
from tests.utils.hubs import wait_for

API = "/api/v1"
LOCK = "lock-106"


@pytest.fixture
def secure_hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(hub_settings(tmp_path, secure_broker=True), demo=True)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def api(secure_hub: Hub) -> Iterator[TestClient]:
    assert secure_hub.app is not None
    with TestClient(secure_hub.app, headers=bearer(staff_token(secure_hub.app))) as client:
        yield client


def device_login(hub: Hub, device: str = LOCK, generation: int = 0) -> tuple[str, str]:
    assert hub.secrets is not None
    return (device_username(VENUE_ID, device),
            device_password(hub.secrets.broker_key, VENUE_ID, device, generation))


def lock_client(hub: Hub, login: tuple[str, str], device: str = LOCK) -> DeviceClient:
    return DeviceClient(VENUE_ID, device, port=hub.settings.mqtt_port, username=login[0],
                        password=login[1])


def refused(hub: Hub, login: tuple[str, str]) -> bool:
    probe = Probe(hub.settings.mqtt_port, login)
    try:
        return probe.connect().value == NOT_AUTHORIZED
    finally:
        probe.close()


def test_a_reissued_device_login_cuts_off_the_old_password(secure_hub: Hub,
                                                           api: TestClient) -> None:
    old = device_login(secure_hub)
    with lock_client(secure_hub, old) as lock:
        assert lock.tap(WristbandCredential(uid=wristband_uid(6))).outcome == "allow"
        issued = api.post(f"{API}/devices/{LOCK}/broker-credentials")
        assert issued.status_code == 200, issued.text
        body = issued.json()
        assert body["username"] == old[0] and body["generation"] == 1
        assert body["password"] != old[1]
        wait_for(lambda: not lock.connected, timeout=5)  # the broker cut it off
    assert refused(secure_hub, old)
    with lock_client(secure_hub, (body["username"], body["password"])) as lock:
        assert lock.tap(WristbandCredential(uid=wristband_uid(6))).outcome == "allow"
    # The demo's sheet, which hub-sim logs in with, follows.
    sheet = secure_hub.settings.data_dir / "demo-provisioning.json"
    wait_for(lambda: json.loads(sheet.read_text())["devices"][LOCK]["password"]
             == body["password"], timeout=5)
    # The demo sheet the hub writes at start, and `hub provision`, follow the generation.
    assert secure_hub.engine is not None and secure_hub.secrets is not None
    with Session(secure_hub.engine) as session:
        assert broker_logins.generation_of(session, old[0]) == 1


def test_a_revoked_device_login_opens_for_nobody_until_reissued(secure_hub: Hub,
                                                                api: TestClient) -> None:
    login = device_login(secure_hub)
    assert not refused(secure_hub, login)
    assert api.delete(f"{API}/devices/{LOCK}/broker-credentials").status_code == 204
    wait_for(lambda: refused(secure_hub, login), timeout=5)
    assert refused(secure_hub, device_login(secure_hub, generation=1))  # no guessing ahead
    other = device_login(secure_hub, "lock-107")
    assert not refused(secure_hub, other)  # one login, not the venue's
    issued = api.post(f"{API}/devices/{LOCK}/broker-credentials").json()
    wait_for(lambda: not refused(secure_hub, (issued["username"], issued["password"])),
             timeout=5)


def test_a_deleted_device_is_cut_off_gone_from_lists_and_its_id_kept(
        secure_hub: Hub, api: TestClient) -> None:
    login = device_login(secure_hub)
    with lock_client(secure_hub, login) as lock:
        assert api.delete(f"{API}/devices/{LOCK}").status_code == 204
        wait_for(lambda: not lock.connected, timeout=5)
    assert refused(secure_hub, login)
    assert api.get(f"{API}/devices/{LOCK}").status_code == 404
    assert LOCK not in {d["id"] for d in api.get(f"{API}/devices?limit=500").json()}
    again = api.post(f"{API}/devices", json={"id": LOCK, "venue_id": VENUE_ID,
                                               "kind": "door_lock", "name": "New lock"})
    assert again.status_code == 409 and "deleted" in again.json()["detail"]
    assert api.delete(f"{API}/devices/{LOCK}").status_code == 404
    assert api.post(f"{API}/devices/{LOCK}/broker-credentials").status_code == 404


def test_a_venue_is_deleted_only_once_its_devices_are(secure_hub: Hub, api: TestClient) -> None:
    assert api.post(f"{API}/venues", json={"id": "pier", "name": "Pier"}).status_code == 201
    assert api.post(f"{API}/devices", json={"id": "pier-gate", "venue_id": "pier",
                                            "kind": "gate", "name": "Pier gate"}
                    ).status_code == 201
    busy = api.delete(f"{API}/venues/pier")
    assert busy.status_code == 409 and "device" in busy.json()["detail"]
    assert api.delete(f"{API}/devices/pier-gate").status_code == 204
    assert api.delete(f"{API}/venues/pier").status_code == 204
    assert api.get(f"{API}/venues/pier").status_code == 404
    assert "pier" not in {v["id"] for v in api.get(f"{API}/venues").json()}
    assert api.post(f"{API}/venues", json={"id": "pier", "name": "Pier"}).status_code == 409
    late = api.post(f"{API}/devices", json={"id": "pier-gate-2", "venue_id": "pier",
                                            "kind": "gate", "name": "Pier gate"})
    assert late.status_code == 422 and "deleted" in late.json()["detail"]
    for path, body in (("zones", {"id": "pier-z", "venue_id": "pier", "name": "Z"}),
                       ("merchants", {"id": "pier-m", "venue_id": "pier", "name": "M",
                                      "currency": "USD"})):
        refused_late = api.post(f"{API}/{path}", json=body)
        assert refused_late.status_code == 422 and "deleted" in refused_late.json()["detail"]


def test_a_guest_s_app_login_is_revoked_and_replaced(secure_hub: Hub, api: TestClient) -> None:
    guest_token = api.post(f"{API}/guests/guest-01/token").json()["access_token"]
    first = api.post(f"{API}/guests/guest-01/broker-login",
                     headers=bearer(guest_token)).json()
    app = Probe(secure_hub.settings.mqtt_port, (first["username"], first["password"]))
    try:
        assert app.connect().value == 0
        assert api.delete(f"{API}/guests/guest-01/broker-login").status_code == 204
        wait_for(lambda: not app.client.is_connected(), timeout=5)
    finally:
        app.close()
    assert refused(secure_hub, (first["username"], first["password"]))
    # The phone given away holds the app's token too: it cannot fetch the next login.
    assert api.post(f"{API}/guests/guest-01/broker-login",
                    headers=bearer(guest_token)).status_code == 401
    second = api.post(f"{API}/guests/guest-01/broker-login").json()
    assert second["password"] != first["password"]
    assert not refused(secure_hub, (second["username"], second["password"]))


def test_a_lost_phone_key_stops_the_guest_s_app_login(secure_hub: Hub, api: TestClient) -> None:
    login = api.post(f"{API}/guests/guest-01/broker-login").json()
    phones = [c for c in api.get(f"{API}/guests/guest-01/credentials").json()
              if c["kind"] == "phone_key"]
    assert phones, "the demo gives guest-01 a phone key"
    lost = api.patch(f"{API}/credentials/{phones[0]['id']}", json={"status": "lost"})
    assert lost.status_code == 200, lost.text
    wait_for(lambda: refused(secure_hub, (login["username"], login["password"])), timeout=5)


def test_mosquitto_follows_reissued_revoked_and_deleted_logins(
        secure_hub: Hub, api: TestClient, tmp_path: Path) -> None:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        missing("mosquitto")
    api.post(f"{API}/devices/lock-106/broker-credentials")
    api.delete(f"{API}/devices/lock-107/broker-credentials")
    api.delete(f"{API}/devices/lock-108")
    api.delete(f"{API}/guests/guest-02/broker-login")
    assert secure_hub.engine is not None and secure_hub.secrets is not None
    with Session(secure_hub.engine) as session:
        passwd, acl = mosquitto_config(session, secure_hub.secrets)
    root, port = tmp_path / "mosquitto", free_port()
    root.mkdir()
    (root / "passwd").write_text(passwd)
    (root / "acl").write_text(acl)
    key = secure_hub.secrets.broker_key

    def opens(user: tuple[str, str]) -> bool:
        probe = Probe(port, user)
        try:
            return probe.connect().value == 0
        finally:
            probe.close()

    with secured_mosquitto(str(binary), root, port):
        assert opens(device_login(secure_hub, "lock-106", generation=1))
        assert not opens(device_login(secure_hub, "lock-106"))
        assert not opens(device_login(secure_hub, "lock-107"))
        assert not opens(device_login(secure_hub, "lock-108"))
        assert opens(device_login(secure_hub, "lock-109"))
        assert opens(("guest-guest-01", guest_password(key, "guest-01")))
        assert opens(("guest-guest-02", guest_password(key, "guest-02", 1)))
        assert not opens(("guest-guest-02", guest_password(key, "guest-02")))
    assert f"user {BRIDGE_USER}" in acl


def test_a_closed_venue_s_devices_are_cut_off_until_it_opens(secure_hub: Hub,
                                                             api: TestClient) -> None:
    login = device_login(secure_hub)
    with lock_client(secure_hub, login) as lock:
        closed = api.patch(f"{API}/venues/{VENUE_ID}", json={"enabled": False})
        assert closed.status_code == 200 and closed.json()["enabled"] is False
        wait_for(lambda: not lock.connected, timeout=5)
    assert refused(secure_hub, login)
    assert secure_hub.secrets is not None
    spa = (device_username(STRICT_VENUE_ID, "gate-spa-in-1"),
           device_password(secure_hub.secrets.broker_key, STRICT_VENUE_ID, "gate-spa-in-1"))
    assert not refused(secure_hub, spa)  # the venue next door is open
    assert api.patch(f"{API}/venues/{VENUE_ID}", json={"enabled": True}).status_code == 200
    wait_for(lambda: not refused(secure_hub, login), timeout=5)
    with lock_client(secure_hub, login) as lock:
        assert lock.tap(WristbandCredential(uid=wristband_uid(6))).outcome == "allow"


def test_refused_broker_logins_reach_the_audit_log(secure_hub: Hub, api: TestClient) -> None:
    """Counted in /stats and written for staff: who tried, as whom, from where (no password)."""
    wrong = (device_username(VENUE_ID, LOCK), "not-its-password")
    for _ in range(3):
        assert refused(secure_hub, wrong)
    assert refused(secure_hub, ("", ""))  # no credentials at all

    def entries() -> list[dict[str, object]]:
        found = api.get(f"{API}/audit?action=broker.refused&limit=50")
        assert found.status_code == 200, found.text
        return list(found.json())

    def refused_thrice() -> bool:
        counts = [int(e["detail"]["count"]) for e in entries()  # type: ignore[index]
                  if e["target"] == f"mqtt-user:{wrong[0]}"]
        return sum(counts) == 3

    wait_for(refused_thrice, timeout=10)
    rows = entries()
    mine = [e for e in rows if e["target"] == f"mqtt-user:{wrong[0]}"]
    assert all(e["actor"] == "broker" and e["detail"]["reason"] == "login"  # type: ignore[index]
               and e["detail"]["address"] == "127.0.0.1" for e in mine)  # type: ignore[index]
    wait_for(lambda: any(e["target"] == "mqtt-user:(none)" for e in entries()), timeout=10)
    assert "not-its-password" not in str(rows)


def test_an_erased_guest_s_app_login_stops(secure_hub: Hub, api: TestClient) -> None:
    login = api.post(f"{API}/guests/guest-20/broker-login").json()
    assert not refused(secure_hub, (login["username"], login["password"]))
    assert api.post(f"{API}/guests/guest-20/erase").status_code == 200
    wait_for(lambda: refused(secure_hub, (login["username"], login["password"])), timeout=5)
    assert secure_hub.engine is not None and secure_hub.secrets is not None
    with Session(secure_hub.engine) as session:
        passwd, _ = mosquitto_config(session, secure_hub.secrets)
    assert "guest-guest-20:" not in passwd


def test_a_new_venue_s_locks_get_its_key_material_at_once(secure_hub: Hub,
                                                           api: TestClient) -> None:
    assert api.post(f"{API}/venues", json={"id": "annex", "name": "Annex"}).status_code == 201
    assert api.post(f"{API}/devices", json={"id": "annex-lock", "venue_id": "annex",
                                            "kind": "door_lock", "name": "Annex lock"}
                    ).status_code == 201
    login = api.post(f"{API}/devices/annex-lock/broker-credentials").json()
    wait_for(lambda: not refused(secure_hub, (login["username"], login["password"])),
             timeout=5)
    lock = Probe(secure_hub.settings.mqtt_port, (login["username"], login["password"]))
    try:
        assert lock.connect().value == 0
        assert lock.subscribe("venuehub/v1/annex/keys/#") == 1
        got: set[str] = set()

        def both() -> bool:
            while not lock.messages.empty():
                got.add(lock.messages.get_nowait()[0])
            return got >= {"venuehub/v1/annex/keys/jwks", "venuehub/v1/annex/keys/revocations"}

        wait_for(both, timeout=5)
    finally:
        lock.close()
