"""room-welcome: a guest opens their room door and the room takes their taste at once.

Each run creates its own guest (room 109, a fresh stay, so the tap is the first entry
of the stay), with preferences and consent to personalization, plays the room's
thermostat, light and display, taps the door, and checks the room reached the
guest's preferred state within one second of the door's decision (`--within`).
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

from devices.contract import utcnow
from simulators.appliances import Room
from simulators.readers import Wristband
from simulators.scenarios.runner import Run, allow

ROOM = "109"


def room_welcome(run: Run) -> None:
    """The door opens and, within a second, the room is at the guest's temperature and scene."""
    api = run.api
    now = utcnow()
    suffix = secrets.token_hex(3)
    name = f"Welcome {suffix}"
    guest = api.create_guest(name, display_name=f"Sim {suffix}")
    band = Wristband.random()
    api.create_credential(guest.id, "wristband", band.uid, label="room-welcome band")
    api.create_entitlement(guest.id, "room", [f"room-{ROOM}"], now - timedelta(minutes=5),
                           now + timedelta(days=2))
    celsius, scene = round(18.0 + secrets.randbelow(8) + 0.5, 1), "relax"
    api.request("PUT", f"/guests/{guest.id}/preferences",
                json={"room_temperature_c": celsius, "lighting_scene": scene})
    api.request("PUT", f"/guests/{guest.id}/consent/personalization", json={"granted": True})
    run.note(f"guest {guest.id} prefers {celsius} C and {scene!r}; band {band.uid}")

    broker = run.readers.broker
    room = Room(run.venue, ROOM, host=broker.host, port=broker.port,
                username=broker.username, password=broker.password,
                credentials=dict(broker.logins), setpoint_c=21.0 if celsius != 21.0 else 22.0,
                tls_ca=broker.tls_ca)
    room.connect()
    try:
        step = run.tap(f"guest opens room {ROOM}", f"lock-{ROOM}", band, allow())
        started = time.perf_counter()

        def reached() -> tuple[bool, str]:
            ok = room.wait_for(
                lambda s: s["thermostat"]["setpoint_c"] == celsius
                and s["light"]["scene"] == scene
                and str(s["display"].get("showing", "")).startswith("Welcome"),
                timeout=run.within)
            took = time.perf_counter() - started
            state = room.state
            got = (f"{state['thermostat']['setpoint_c']} C, {state['light']['scene']!r}, "
                   f"{state['display'].get('showing')!r} after {took:.2f}s")
            return ok and took <= run.within, got

        if step.decision is not None and step.decision.outcome == "allow":
            run.check("room takes the guest's taste", f"room {ROOM}",
                      f"{celsius} C, {scene!r}, greeting within {run.within:g}s", reached)
        else:
            run.fail("room takes the guest's taste", f"room {ROOM}", "a welcome",
                     "the door did not open")
    finally:
        room.close()
