"""Feeding device messages to the hub the way the bridge does, without a broker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from devices.contract import PhoneKeyCredential, TapEvent, WristbandCredential, encode
from devices.topics import Channel, device_topic
from hub.db import session_scope
from hub.ingest import Outcome, handle_message
from hub.payment import PaymentLimits

# Generous limits: tests of the API do not exercise payments.
LIMITS = PaymentLimits(max_amount=1_000_000, max_pin_failures=5)


def feed(engine: Engine, topic: str, payload: bytes, now: datetime) -> Outcome:
    """One message in its own transaction, committed before anyone reads it (as the bridge)."""
    with session_scope(engine) as session:
        return handle_message(session, topic, payload, now, limits=LIMITS)


def tap(engine: Engine, venue: str, device: str, now: datetime, event_id: str, *,
        uid: str | None = None, key_id: str | None = None) -> Outcome:
    """A wristband (``uid``) or phone key (``key_id``) tap at ``device``, received at ``now``."""
    credential = (WristbandCredential(uid=uid) if uid is not None
                  else PhoneKeyCredential(key_id=key_id or "nobody"))
    event = TapEvent(event_id=event_id, ts=now, credential=credential)
    return feed(engine, device_topic(venue, device, Channel.EVENTS), encode(event), now)
