"""A purchase at a merchant triggers a staff-defined rule, after the payment's decision."""

from __future__ import annotations

import json
import queue
import threading

import httpx
import paho.mqtt.client as mqtt

from devices.client import DeviceClient
from devices.contract import PaymentRequest, WristbandCredential
from devices.topics import guest_topic
from hub.demo import VENUE_ID, wristband_uid
from hub.models import utcnow
from hub.server import Hub
from tests.conftest import bearer, guest_token, staff_token

RULE = {"name": "After a coffee", "purpose": "offers", "trigger": "payment_approved",
        "filters": {"event.merchant_id": "cafe"},
        "actions": [{"kind": "offer", "params": {
            "text": "Thanks for stopping by the cafe: 10% off at the gift shop today",
            "offer_id": "coffee-then-shop", "merchant_id": "shop"}}]}


def test_a_cafe_purchase_brings_an_offer_only_with_consent(running_hub: Hub) -> None:
    assert running_hub.app is not None
    api = f"http://127.0.0.1:{running_hub.settings.http_port}/api/v1"
    staff = bearer(staff_token(running_hub.app, "staff"))
    assert httpx.put(f"{api}/automations/coffee-then-shop", json=RULE,
                     headers=staff).status_code == 201
    # The runner reads rules through a cache of at most 2 s (see the README): skip the wait.
    assert running_hub.automations is not None
    running_hub.automations.rules.invalidate()  # type: ignore[attr-defined]
    r = httpx.put(f"{api}/guests/guest-02/consent/offers", json={"granted": True},
                  headers=bearer(guest_token(running_hub.app, "guest-02")))
    assert r.status_code == 200, r.text
    host, port = running_hub.settings.mqtt_address
    heard: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
    subscribed = threading.Event()
    app = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    app.on_message = lambda _c, _u, m: heard.put((m.topic, json.loads(m.payload)))
    app.on_subscribe = lambda *_a: subscribed.set()
    app.connect(host, port)
    app.subscribe([(guest_topic(VENUE_ID, "guest-02"), 1), (guest_topic(VENUE_ID, "guest-03"), 1)])
    app.loop_start()
    try:
        assert subscribed.wait(5)
        with DeviceClient(VENUE_ID, "pos-cafe-1", host=host, port=port) as till:
            for n, guest in ((2, "guest-02"), (3, "guest-03")):  # guest-03 did not consent
                decision = till.pay(PaymentRequest(
                    event_id=f"coffee-{n}", ts=utcnow(),
                    credential=WristbandCredential(uid=wristband_uid(n)), amount=450,
                    currency="USD", merchant_id="cafe", idempotency_key=f"coffee-{n}",
                    account="wallet"))
                assert decision.outcome == "approve", (guest, decision)
        kinds: dict[str, list[object]] = {}
        try:
            while True:
                topic, body = heard.get(timeout=3)
                kinds.setdefault(topic.split("/")[-2], []).append(body.get("kind"))
                if "offer" in kinds.get("guest-02", []):
                    break
        except queue.Empty:
            pass
        assert running_hub.automations is not None
        running_hub.automations.drain()
        try:
            while True:
                topic, body = heard.get(timeout=1)
                kinds.setdefault(topic.split("/")[-2], []).append(body.get("kind"))
        except queue.Empty:
            pass
        assert kinds["guest-02"].count("offer") == 1
        assert "offer" not in kinds.get("guest-03", [])
        assert "receipt" in kinds["guest-03"]  # the receipt came; only the offer did not
    finally:
        app.disconnect()
        app.loop_stop()
