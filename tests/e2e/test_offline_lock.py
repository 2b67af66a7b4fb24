"""The offline lock: with the hub stopped it opens for a valid phone key and refuses a
revoked one on its own; when the hub is back its audit trail arrives, once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.phone_key import phone_keypair, public_jwk
from hub.demo import VENUE_ID
from hub.server import Hub
from simulators.offline_lock import OfflineLock, Phone
from tests.conftest import hub_settings

pytestmark = pytest.mark.mosquitto


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def issue(api: str, headers: dict[str, str], credential_id: str) -> Phone:
    private, _ = phone_keypair()
    response = httpx.post(f"{api}/credentials/{credential_id}/phone-key", headers=headers,
                          json={"phone_jwk": public_jwk(private)})
    assert response.status_code == 201, response.text
    body = response.json()
    return Phone(private, token=body["token"], jti=body["jti"])


def auth_headers(api: str) -> dict[str, str]:
    """An admin token where the API asks for one (the demo's admin)."""
    response = httpx.post(f"{api}/auth/token",
                          json={"username": "admin", "password": "demo-admin"})
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def events(api: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    page = httpx.get(f"{api}/events", headers=headers,
                     params={"device_id": "lock-105", "limit": 100}).json()
    return [e for e in page["items"] if e["kind"] == "offline_entry"]


def test_offline_lock_decides_alone_and_uploads_its_trail_once(tmp_path: Path,
                                                                mosquitto: int) -> None:
    settings = hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}")
    hub = Hub(settings, demo=True)
    hub.start()
    hub.serve_in_thread()
    api = f"http://127.0.0.1:{settings.http_port}/api/v1"
    headers = auth_headers(api)
    lock = OfflineLock(VENUE_ID, "lock-105", "room-105", port=mosquitto).connect()
    try:
        guest = issue(api, headers, "phone-guest-05")
        roommate = issue(api, headers, "phone-guest-15")  # guest-15 shares room 105
        wait_for(lambda: lock.jwks is not None)
        online = lock.tap(guest)
        assert (online.allowed, online.reason, online.offline) == (True, "ok", False)

        revoked = httpx.patch(f"{api}/credentials/phone-guest-15", headers=headers,
                              json={"status": "revoked"})
        assert revoked.status_code == 200
        wait_for(lambda: roommate.jti in lock.revoked)  # the retained list reached the lock
        hub.stop()

        alone = lock.tap(guest)
        assert (alone.allowed, alone.reason, alone.offline) == (True, "ok", True)
        refused = lock.tap(roommate)
        assert (refused.allowed, refused.reason, refused.offline) == (False, "key_revoked", True)
        replay = lock.tap(Phone(guest.private_key, token=roommate.token, jti=roommate.jti))
        assert not replay.allowed  # a revoked key with someone else's phone: still refused

        hub = Hub(settings)
        hub.start()
        hub.serve_in_thread()
        queued = list(lock.queue)
        assert lock.upload() == 3
        wait_for(lambda: len(events(api, headers)) == 3)
        for entry in queued:  # the same records again, as after a lost acknowledgement
            lock.queue.append(entry)
        assert lock.upload() == 3
        time.sleep(1.0)
        trail = events(api, headers)
        assert len(trail) == 3
        assert sorted(e["outcome"] for e in trail) == ["allow", "deny", "deny"]
        allowed = next(e for e in trail if e["outcome"] == "allow")
        assert allowed["guest_id"] == "guest-05"  # merged into the guest's journey
    finally:
        lock.close()
        hub.stop()
