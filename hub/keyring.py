"""Key material for offline locks: the phone-key JWKS and the revocation list, as retained
MQTT messages on ``venuehub/v1/{venue}/keys/jwks`` and ``.../keys/revocations``."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from devices.topics import keys_topic
from hub import crud
from hub.models import Venue, utcnow
from hub.presented import Trust


def revocations(session: Session) -> dict[str, object]:
    """The revoked phone keys (their jti), with the time the list was made."""
    return {"revoked": sorted(crud.revoked_key_ids(session)), "issued_at": utcnow().isoformat()}


def key_material(session: Session, trust: Trust) -> list[tuple[str, bytes]]:
    """(topic, payload) of every venue's JWKS and revocation list, to publish retained."""
    revoked = json.dumps(revocations(session)).encode()
    messages: list[tuple[str, bytes]] = []
    for venue in session.exec(select(Venue.id)).all():
        if trust.jwks is not None:
            messages.append((keys_topic(venue, "jwks"), json.dumps(trust.jwks).encode()))
        messages.append((keys_topic(venue, "revocations"), revoked))
    return messages
