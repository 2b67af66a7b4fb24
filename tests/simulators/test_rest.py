"""The REST client against a fake transport: paths, payloads, errors, discovery."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from simulators.load import Target, discover_targets
from simulators.rest import HubApi, HubApiError, HubUnreachable, error_detail

Handler = Callable[[httpx.Request], httpx.Response]


def api_with(handler: Handler) -> HubApi:
    return HubApi("http://hub.test:8000", transport=httpx.MockTransport(handler))


def test_error_carries_status_and_the_hubs_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "guest nope not found"})

    with pytest.raises(HubApiError) as info, api_with(handler) as api:
        api.create_credential("nope", "wristband", "04A1B2C3D4E5F6")
    assert info.value.status == 404
    assert info.value.detail == "guest nope not found"
    assert "POST /credentials -> 404: guest nope not found" in str(info.value)


def test_validation_detail_is_flattened() -> None:
    body = {"detail": [{"loc": ["body", "zone_ids"], "msg": "Field required", "type": "missing"},
                       {"loc": ["body", "valid_from"], "msg": "Input should be a datetime"}]}
    response = httpx.Response(422, json=body)
    assert error_detail(response) == (
        "body.zone_ids: Field required; body.valid_from: Input should be a datetime"
    )
    plain = httpx.Response(500, text="Internal Server Error")
    assert error_detail(plain) == "Internal Server Error"


def test_unreachable_hub() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(HubUnreachable, match=r"hub\.test:8000"), api_with(handler) as api:
        api.health()


def test_a_response_outside_the_sketch_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"id": "g1"})  # no name

    with pytest.raises(HubApiError, match="unexpected response"), api_with(handler) as api:
        api.create_guest("Ann")


def test_requests_follow_the_sketch() -> None:
    seen: list[tuple[str, str, dict[str, str], Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, dict(request.url.params), body))
        if request.url.path.endswith("/credentials") and request.method == "GET":
            return httpx.Response(200, json={"items": [], "next_cursor": None})
        cred = {"id": "c1", "guest_id": "g1", "kind": "phone_key", "identifier": "pk-x",
                "status": "lost"}
        return httpx.Response(200, json=cred)

    start = datetime(2025, 1, 1, tzinfo=UTC)
    with api_with(handler) as api:
        assert api.create_credential("g1", "phone_key").identifier == "pk-x"
        assert api.set_credential_status("c1", "lost").status == "lost"
        assert api.credentials(guest_id="g1") == []
        with pytest.raises(HubApiError):  # a reply of the wrong shape
            api.create_entitlement("g1", "room", ["room-110"], start, start + timedelta(days=1))

    assert seen[0] == ("POST", "/api/v1/credentials", {}, {"guest_id": "g1", "kind": "phone_key"})
    assert seen[1] == ("PATCH", "/api/v1/credentials/c1", {}, {"status": "lost"})
    assert seen[2] == ("GET", "/api/v1/credentials", {"guest_id": "g1"}, None)
    assert seen[3][3] == {"guest_id": "g1", "kind": "room", "zone_ids": ["room-110"],
                          "valid_from": "2025-01-01T00:00:00+00:00",
                          "valid_until": "2025-01-02T00:00:00+00:00"}


def test_discovery_keeps_only_taps_that_must_be_allowed() -> None:
    now = datetime.now(UTC)
    day = timedelta(days=1)

    def ent(eid: str, guest: str, zones: list[str], **kw: Any) -> dict[str, Any]:
        e = {"id": eid, "guest_id": guest, "kind": "room", "zone_ids": zones,
             "valid_from": (now - day).isoformat(), "valid_until": (now + day).isoformat()}
        return e | kw

    def lock(did: str, zone: str | None, enabled: bool = True) -> dict[str, Any]:
        return {"id": did, "venue_id": "v", "kind": "door_lock", "name": did, "zone_id": zone,
                "direction": None, "enabled": enabled}

    def cred(cid: str, guest: str, kind: str, ident: str, status: str = "active") -> dict[str, Any]:
        return {"id": cid, "guest_id": guest, "kind": kind, "identifier": ident, "status": status}

    devices = [lock("lock-2", "room-2"), lock("lock-1", "room-1"), lock("lock-3", "room-3"),
               lock("lock-off", "room-1", enabled=False), lock("lock-x", None)]
    entitlements = [
        ent("e1", "ann", ["room-1"]),
        ent("e2", "bob", ["room-1", "room-2"]),
        ent("e3", "cat", ["room-3"], status="cancelled"),
        ent("e4", "dan", ["room-3"], valid_until=(now + timedelta(seconds=5)).isoformat()),
        ent("e5", "eve", ["room-3"], schedule=[{"days": [0], "start": "00:00", "end": "01:00"}]),
        ent("e6", "fay", ["room-9"]),
    ]
    creds = {
        "ann": [cred("c1", "ann", "wristband", "04000000000001"),
                cred("c2", "ann", "phone_key", "pk-ann")],
        "bob": [cred("c3", "bob", "wristband", "04000000000002"),
                cred("c4", "bob", "wristband", "04000000000003", status="lost")],
    }
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if request.url.path == "/api/v1/devices":
            assert (params["venue_id"], params["kind"]) == ("v", "door_lock")
            return httpx.Response(200, json=devices)
        if request.url.path == "/api/v1/entitlements":
            assert params["kind"] == "room"
            return httpx.Response(200, json=entitlements)
        asked.append(params["guest_id"])
        return httpx.Response(200, json=creds.get(params["guest_id"], []))

    with api_with(handler) as api:
        targets = discover_targets(api, "v", valid_until=now + timedelta(minutes=1))

    assert targets == [
        Target("lock-1", "room-1", ("04000000000001", "04000000000002")),
        Target("lock-2", "room-2", ("04000000000002",)),
    ]
    assert sorted(asked) == ["ann", "bob"]  # cancelled, expiring and scheduled rooms skipped
