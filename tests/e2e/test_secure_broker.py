"""`hub up --demo --secure-broker`: devices log in with provisioned credentials, secure
bands carry provisioned keys, and a device without credentials gets nowhere."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.client import DeviceClient, LoginRefused
from devices.contract import WristbandCredential, WristbandSunCredential
from devices.sun import make_sun
from hub.demo import STRICT_VENUE_ID, VENUE_ID, secure_band_uid, wristband_uid
from hub.server import Hub
from tests.conftest import hub_settings


@pytest.fixture
def secure_hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(hub_settings(tmp_path, secure_broker=True), demo=True)
    hub.start()
    yield hub
    hub.stop()


def sheet_of(hub: Hub) -> dict[str, dict[str, dict[str, str]]]:
    path = hub.settings.data_dir / "demo-provisioning.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_provisioned_devices_and_bands_work(secure_hub: Hub) -> None:
    sheet = sheet_of(secure_hub)
    port = secure_hub.settings.mqtt_port
    lock = sheet["devices"]["lock-106"]
    with DeviceClient(VENUE_ID, "lock-106", port=port, username=lock["username"],
                      password=lock["password"]) as client:
        assert client.tap(WristbandCredential(uid=wristband_uid(6))).outcome == "allow"
        uid = secure_band_uid(6)
        keys = sheet["tags"][uid]
        picc, cmac = make_sun(bytes.fromhex(uid), 5,
                              meta_read_key=bytes.fromhex(keys["meta_read_key"]),
                              file_read_key=bytes.fromhex(keys["file_read_key"]))
        secure = client.tap(WristbandSunCredential(picc=picc, cmac=cmac))
        assert (secure.outcome, secure.reason) == ("allow", "ok")
        clone = client.tap(WristbandCredential(uid=uid))
        assert (clone.outcome, clone.reason) == ("deny", "credential_forged")


def test_devices_without_their_credentials_are_refused(secure_hub: Hub) -> None:
    sheet = sheet_of(secure_hub)
    port = secure_hub.settings.mqtt_port
    with pytest.raises(LoginRefused):  # told at once, not left to time out
        DeviceClient(VENUE_ID, "lock-106", port=port).connect(timeout=30)
    other = sheet["devices"]["lock-107"]
    with pytest.raises(LoginRefused):  # lock-106 with lock-107's password
        DeviceClient(VENUE_ID, "lock-106", port=port, username=sheet["devices"]["lock-106"][
            "username"], password=other["password"]).connect(timeout=2)


def test_the_demo_has_a_strict_venue_beside_the_legacy_one(secure_hub: Hub) -> None:
    sheet = sheet_of(secure_hub)
    gate = sheet["devices"]["gate-spa-in-1"]
    assert gate["venue"] == STRICT_VENUE_ID
    with DeviceClient(STRICT_VENUE_ID, "gate-spa-in-1", port=secure_hub.settings.mqtt_port,
                      username=gate["username"], password=gate["password"]) as client:
        bare = client.tap(WristbandCredential(uid=wristband_uid(1)))
        assert (bare.outcome, bare.reason) == ("deny", "insecure_credential")
        uid = secure_band_uid(6)
        keys = sheet["tags"][uid]
        picc, cmac = make_sun(bytes.fromhex(uid), 1,
                              meta_read_key=bytes.fromhex(keys["meta_read_key"]),
                              file_read_key=bytes.fromhex(keys["file_read_key"]))
        secure = client.tap(WristbandSunCredential(picc=picc, cmac=cmac))
        assert (secure.outcome, secure.reason) == ("allow", "ok")
    # The same bare UID is still let in at the legacy resort's gate.
    lock = sheet["devices"]["gate-park-in-1"]
    with DeviceClient(VENUE_ID, "gate-park-in-1", port=secure_hub.settings.mqtt_port,
                      username=lock["username"], password=lock["password"]) as client:
        assert client.tap(WristbandCredential(uid=wristband_uid(1))).outcome == "allow"
