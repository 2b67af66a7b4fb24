"""The offline lock: with the hub stopped it opens for a valid phone key and refuses a
revoked one on its own; when the hub is back its audit trail arrives, once, weighed as
evidence. Key material planted on the retained topics (forged, or an older list) is
refused by the lock."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.key_material import document, sign
from devices.phone import Phone
from devices.phone_key import phone_keypair, public_jwk
from devices.topics import keys_topic, staff_topic
from hub.demo import VENUE_ID
from hub.models import utcnow
from hub.phone_keys import issue_phone_key, jwks, new_signing_key
from hub.presented import issuer
from hub.server import Hub
from simulators.offline_lock import OfflineLock
from tests.conftest import hub_settings
from tests.utils.listener import Listener

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
    # The lock's trust anchor, provisioned out of band: the hub's public JWKS.
    lock = OfflineLock(VENUE_ID, "lock-105", "room-105", port=mosquitto,
                       anchor=jwks(hub.signing_keys)).connect()
    staff = Listener("127.0.0.1", mosquitto, [staff_topic(VENUE_ID)])
    try:
        guest = issue(api, headers, "phone-guest-05")
        roommate = issue(api, headers, "phone-guest-15")  # guest-15 shares room 105
        wait_for(lambda: lock.keys is not None and "jwks" in lock.keys.seqs)
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
        assert allowed["guest_id"] == "guest-05"  # its proof verified: in the guest's journey
        assert [e["guest_id"] for e in trail if e["outcome"] == "deny"] == [None, None]
        # The revoked key, and its token with another phone's proof: staff hear of both.
        raised = staff.wait(lambda _t, body: body.get("rule") == "offline-entry", count=2)
        assert sorted(a["reason"] for a in raised) == ["credential_forged", "credential_revoked"]
        assert lock.refused_material == []  # all it received was the hub's, signed
    finally:
        staff.close()
        lock.close()
        hub.stop()


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    """What anyone who can write the retained key topics could plant there."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_forged_or_rolled_back_key_material_is_refused_and_a_forged_entry_alerts(
        tmp_path: Path, mosquitto: int) -> None:
    settings = hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}")
    hub = Hub(settings, demo=True)
    hub.start()
    hub.serve_in_thread()
    api = f"http://127.0.0.1:{settings.http_port}/api/v1"
    headers = auth_headers(api)
    lock = OfflineLock(VENUE_ID, "lock-105", "room-105", port=mosquitto,
                       anchor=jwks(hub.signing_keys)).connect()
    staff = Listener("127.0.0.1", mosquitto, [staff_topic(VENUE_ID)])
    try:
        guest = issue(api, headers, "phone-guest-05")
        issue(api, headers, "phone-guest-15")  # a key whose revocation must reach the lock
        wait_for(lambda: lock.keys is not None and {"jwks", "revocations"} <= set(lock.keys.seqs))
        held = lock.keys
        assert held is not None
        old_list = httpx.get(f"{api}/venues/{VENUE_ID}/revocations").content  # signed, seq n
        assert httpx.patch(f"{api}/credentials/phone-guest-15", headers=headers,
                           json={"status": "revoked"}).status_code == 200
        wait_for(lambda: lock.keys is not held and lock.keys is not None
                 and lock.keys.seqs["revocations"] > held.seqs["revocations"])
        trusted = lock.jwks

        # An attacker's signing key, in a JWKS: unsigned, then signed by itself.
        evil = new_signing_key(utcnow(), timedelta(days=30))
        evil_jwks = jwks([evil])
        publish_retained(mosquitto, keys_topic(VENUE_ID, "jwks"), json.dumps(evil_jwks).encode())
        signed_by_evil = sign("jwks", evil_jwks, venue=VENUE_ID, seq=10**9, now=utcnow(),
                              private_key=evil.private_key, kid=evil.kid)
        publish_retained(mosquitto, keys_topic(VENUE_ID, "jwks"),
                         json.dumps(document(signed_by_evil, evil_jwks)).encode())
        # The list from before the revocation, replayed: validly signed, but older.
        publish_retained(mosquitto, keys_topic(VENUE_ID, "revocations"), old_list)
        wait_for(lambda: len(lock.refused_material) == 3)
        assert lock.refused_material == ["material_malformed", "material_unknown_kid",
                                         "material_rollback"]
        assert lock.jwks == trusted and lock.revoked != frozenset()

        hub.stop()
        # A phone key the attacker signed: the lock alone refuses it.
        private, phone_jwk = phone_keypair()
        now = utcnow()
        token, jti = issue_phone_key(
            [evil], now=now, issuer=issuer(VENUE_ID), venue=VENUE_ID, guest_id="guest-05",
            credential_id="phone-guest-05", zones=["room-105"], nbf=now - timedelta(hours=1),
            exp=now + timedelta(days=1), phone_jwk=phone_jwk)
        planted = lock.tap(Phone(private, token=token, jti=jti))
        assert (planted.allowed, planted.reason, planted.offline) == (
            False, "key_unknown_kid", True)
        fair = lock.tap(guest)
        assert (fair.allowed, fair.offline) == (True, True)
        # A lock that lies: it claims to have opened for the attacker's key.
        forged = lock.queue[0].model_copy(update={"outcome": "allow", "reason": "ok",
                                                  "guest_id": "guest-05"})
        lock.queue[0] = forged

        hub = Hub(settings)
        hub.start()
        hub.serve_in_thread()
        assert lock.upload() == 2
        wait_for(lambda: len(events(api, headers)) == 2)
        trail = {e["event_id"]: e for e in events(api, headers)}
        assert trail[forged.event_id]["guest_id"] is None
        assert [e["guest_id"] for k, e in trail.items() if k != forged.event_id] == ["guest-05"]
        [alert] = staff.wait(lambda _t, body: body.get("rule") == "offline-entry")
        assert (alert["reason"], alert["severity"], alert["device_id"]) == (
            "credential_forged", "urgent", "lock-105")
        assert hub.bridge is not None
        wait_for(lambda: hub.bridge is not None
                 and hub.bridge.counters["offline_entry_alerts"] == 1)
    finally:
        staff.close()
        lock.close()
        hub.stop()
