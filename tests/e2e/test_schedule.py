"""A scheduled automation through the real hub: at its venue time, each consenting guest's
room display greets them; the others' rooms stay dark."""

from __future__ import annotations

import httpx

from hub.demo import VENUE_ID
from hub.models import utcnow
from hub.server import Hub
from simulators.appliances import Display
from tests.conftest import bearer, guest_token, staff_token


def test_a_morning_greeting_reaches_the_rooms_of_consenting_guests(running_hub: Hub) -> None:
    assert running_hub.app is not None and running_hub.scheduler is not None
    api = f"http://127.0.0.1:{running_hub.settings.http_port}/api/v1"
    at = utcnow().strftime("%H:%M")  # the demo venue is on UTC: due now, for an hour
    rule = {"name": "Good morning", "purpose": "personalization", "trigger": "schedule",
            "filters": {"event.schedule": at},
            "actions": [{"kind": "command", "target": "room:display", "name": "show",
                         "params": {"text": "Good morning, {guest.display_name}",
                                    "kind": "greeting"}}]}
    staff = bearer(staff_token(running_hub.app, "staff"))
    bad = httpx.put(f"{api}/automations/good-morning", headers=staff,
                    json={**rule, "filters": {"event.schedule": "7 am"}})
    assert bad.status_code == 422 and "event.schedule" in bad.text
    assert httpx.put(f"{api}/automations/good-morning", json=rule,
                     headers=staff).status_code == 201
    r = httpx.put(f"{api}/guests/guest-03/consent/personalization", json={"granted": True},
                  headers=bearer(guest_token(running_hub.app, "guest-03")))
    assert r.status_code == 200
    host, port = running_hub.settings.mqtt_address
    with Display(VENUE_ID, "display-103", host=host, port=port) as consenting, \
            Display(VENUE_ID, "display-104", host=host, port=port) as other:
        assert running_hub.automations is not None
        # The demo's rules are a cached loader (hub.automation_store) with an invalidate().
        running_hub.automations.rules.invalidate()  # type: ignore[attr-defined]
        running_hub.scheduler.run_once()  # what its thread does every 15 s
        assert consenting.wait_for(lambda s: s["kind"] == "greeting", timeout=3)
        assert consenting.shown[0].text == "Good morning, Bo"
        running_hub.scheduler.run_once()  # again today: nothing more
        assert running_hub.automations is not None and running_hub.automations.drain()
        assert not other.wait_for(lambda s: s["kind"] == "greeting", timeout=0.5)
    assert len(consenting.shown) == 1
    runs = httpx.get(f"{api}/automations/runs?rule_id=good-morning", headers=staff).json()
    assert [(r["guest_id"], r["device_id"], r["status"]) for r in runs] == [
        ("guest-03", "display-103", "sent")]
