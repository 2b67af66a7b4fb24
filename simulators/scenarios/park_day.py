"""park-day: one guest's day in the demo resort, from the park gates to their room.

Each run creates its own guest (unique name, random wristband, generated phone
key), so it can be replayed against the same hub as often as you like.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from devices.contract import EntryReason, utcnow
from simulators.readers import PhoneKey, Wristband
from simulators.scenarios.runner import Run, allow, deny

PARK, WATER_PARK, ROOM = "park", "water-park", "room-110"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def park_day(run: Run) -> None:
    """A guest enters and leaves the park, is refused at the water park, opens their room."""
    api = run.api
    now = utcnow()
    suffix = secrets.token_hex(3)
    guest = api.create_guest(f"Park Day {suffix}", display_name=f"Sim {suffix}")
    band = Wristband.random()
    band_cred = api.create_credential(guest.id, "wristband", band.uid, label="park-day band")
    # No identifier: the hub generates the phone key's id.
    phone_cred = api.create_credential(guest.id, "phone_key", label="park-day phone")
    phone = PhoneKey(phone_cred.identifier)
    api.create_entitlement(guest.id, "ticket", [PARK], now - HOUR, now + 12 * HOUR)
    api.create_entitlement(guest.id, "ticket", [WATER_PARK], now - 2 * DAY, now - DAY)  # expired
    api.create_entitlement(guest.id, "room", [ROOM], now - HOUR, now + 2 * DAY)
    run.note(f"guest {guest.id} ({guest.name}), band {band.uid}, phone key {phone.key_id}")

    run.tap("band enters the park", "gate-park-in-1", band, allow())
    run.tap("band in again at the other gate", "gate-park-in-2", band,
            deny(EntryReason.ANTI_PASSBACK))
    run.tap("band leaves the park", "gate-park-out-1", band, allow())
    run.tap("band comes back in", "gate-park-in-1", band, allow())
    run.tap("band at the water park (expired)", "gate-water-in-1", band,
            deny(EntryReason.OUTSIDE_VALIDITY))
    run.tap("phone key opens room 110", "lock-110", phone, allow())
    run.tap("band at someone else's room", "lock-101", band, deny(EntryReason.WRONG_ZONE))
    run.tap("band reported lost, then tapped", "lock-110", band, deny(EntryReason.CREDENTIAL_LOST),
            before=lambda: api.set_credential_status(band_cred.id, "lost"))
    stranger = Wristband.random()
    first = run.tap(f"unknown band {stranger.uid}", "gate-park-in-1", stranger,
                    deny(EntryReason.UNKNOWN_CREDENTIAL))
    run.redeliver("same event delivered again", "gate-park-in-1", first)
