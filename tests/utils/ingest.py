"""Feeding device messages to the hub the way the bridge does, without a broker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from devices.contract import (
    PaymentRequest,
    PhoneKeyCredential,
    TapEvent,
    WristbandCredential,
    encode,
)
from devices.topics import Channel, device_topic
from hub.db import session_scope
from hub.ingest import Outcome, handle_message


def feed(engine: Engine, topic: str, payload: bytes, now: datetime) -> Outcome:
    """One message in its own transaction, committed before anyone reads it (as the bridge)."""
    with session_scope(engine) as session:
        return handle_message(session, topic, payload, now)


def credential_of(uid: str | None, key_id: str | None) -> WristbandCredential | PhoneKeyCredential:
    return (WristbandCredential(uid=uid) if uid is not None
            else PhoneKeyCredential(key_id=key_id or "nobody"))


def tap(engine: Engine, venue: str, device: str, now: datetime, event_id: str, *,
        uid: str | None = None, key_id: str | None = None) -> Outcome:
    """A wristband (``uid``) or phone key (``key_id``) tap at ``device``, received at ``now``."""
    event = TapEvent(event_id=event_id, ts=now, credential=credential_of(uid, key_id))
    return feed(engine, device_topic(venue, device, Channel.EVENTS), encode(event), now)


def pay(engine: Engine, venue: str, device: str, now: datetime, event_id: str, *, amount: int,
        merchant_id: str, currency: str = "USD", uid: str | None = None,
        key_id: str | None = None) -> Outcome:
    """A payment request of a point-of-sale terminal, received at ``now``."""
    event = PaymentRequest(event_id=event_id, ts=now, credential=credential_of(uid, key_id),
                           amount=amount, currency=currency, merchant_id=merchant_id,
                           idempotency_key=event_id)
    return feed(engine, device_topic(venue, device, Channel.EVENTS), encode(event), now)
