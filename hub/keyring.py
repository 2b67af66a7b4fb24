"""Key material for offline locks: the phone-key JWKS and the revocation list, signed, as
retained MQTT messages on ``venuehub/v1/{venue}/keys/jwks`` and ``.../keys/revocations``
and from ``GET /venues/{id}/jwks`` and ``/revocations``.

The format, and how a lock verifies it against its trust anchor, is
:mod:`devices.key_material`; here the hub fills it in and signs it with its oldest
valid signing key. Every publication takes a new ``seq`` from the database, so a lock
can refuse an older list replayed to it; what the REST API serves carries the last
``seq`` published (a read never bumps it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from devices.key_material import Kind, document, sign
from devices.topics import keys_topic
from hub.phone_keys import SigningKey, jwks, material_signing_key
from hub.store import devices, guests


def revocations(session: Session, now: datetime) -> dict[str, Any]:
    """The revoked phone keys (their jti), with the time the list was made (unsigned)."""
    return {"revoked": sorted(guests.revoked_key_ids(session=session, now=now)),
            "issued_at": now.isoformat()}


def _documents(session: Session, keys: Sequence[SigningKey], venue: str, now: datetime,
               seq: int) -> dict[str, dict[str, Any]]:
    """kind -> the document for one venue: signed when a signing key is valid at ``now``."""
    unsigned: dict[str, dict[str, Any]] = {"jwks": jwks(keys),
                                           "revocations": revocations(session, now)}
    try:
        signer = material_signing_key(keys, now)
    except ValueError:
        return unsigned  # no key to sign with: locks refuse it, as they should
    contents: dict[Kind, Any] = {"jwks": unsigned["jwks"],
                                              "revocations": unsigned["revocations"]["revoked"]}
    return {kind: document(sign(kind, content, venue=venue, seq=seq, now=now,
                                private_key=signer.private_key, kid=signer.kid),
                           unsigned[kind])
            for kind, content in contents.items()}


def served(session: Session, keys: Sequence[SigningKey], *, venue: str, kind: str,
           now: datetime) -> dict[str, Any]:
    """One venue's document as the REST API serves it, under the last ``seq`` published."""
    return _documents(session, keys, venue, now, guests.key_material_seq(session=session))[kind]


def key_material(session: Session, keys: Sequence[SigningKey],
                 now: datetime) -> list[tuple[str, bytes]]:
    """(topic, payload) of every venue's JWKS and revocation list, signed under a new
    ``seq``, to publish retained once the caller's transaction commits."""
    seq = guests.next_key_material_seq(session=session)
    messages: list[tuple[str, bytes]] = []
    for venue in devices.live_venue_ids(session=session):
        for kind, doc in _documents(session, keys, venue, now, seq).items():
            messages.append((keys_topic(venue, kind), json.dumps(doc).encode()))
    return messages
