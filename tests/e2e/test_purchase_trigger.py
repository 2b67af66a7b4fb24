"""A purchase at a merchant triggers a staff-defined rule, after the payment's decision."""

from __future__ import annotations

import time

import httpx

from devices.client import DeviceClient
from devices.contract import PaymentRequest, WristbandCredential
from devices.topics import guest_topic
from hub.demo import VENUE_ID, wristband_uid
from hub.models import utcnow
from hub.server import Hub
from tests.conftest import bearer, guest_token, staff_token
from tests.utils.listener import Listener, Predicate

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
    topics = [guest_topic(VENUE_ID, "guest-02"), guest_topic(VENUE_ID, "guest-03")]

    def offers(guest: str) -> Predicate:
        return lambda t, b: t == guest_topic(VENUE_ID, guest) and b.get("kind") == "offer"

    with Listener(host, port, topics) as heard:
        with DeviceClient(VENUE_ID, "pos-cafe-1", host=host, port=port) as till:
            for n, guest in ((2, "guest-02"), (3, "guest-03")):  # guest-03 did not consent
                decision = till.pay(PaymentRequest(
                    event_id=f"coffee-{n}", ts=utcnow(),
                    credential=WristbandCredential(uid=wristband_uid(n)), amount=450,
                    currency="USD", merchant_id="cafe", idempotency_key=f"coffee-{n}",
                    account="wallet"))
                assert decision.outcome == "approve", (guest, decision)
        [offer] = heard.wait(offers("guest-02"))
        assert offer["offer_id"] == "coffee-then-shop" and offer["merchant_id"] == "shop"
        assert running_hub.automations.drain()
        time.sleep(1)
        assert len(heard.matching(offers("guest-02"))) == 1
        assert heard.matching(offers("guest-03")) == []
        # the receipt came; only the offer did not
        assert heard.wait(lambda t, b: t == topics[1] and b.get("kind") == "receipt")
        assert heard.invalid == []
