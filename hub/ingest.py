"""From a device message to what the hub records and answers; no MQTT here.

The bridge hands each message to :func:`handle_message` inside a transaction
it owns (several messages may share one commit); it returns the replies, which
the bridge publishes only after that transaction has committed, so a decision a
device sees is durable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from devices.contract import (
    ContractError,
    Decision,
    EntryReason,
    ErrorCode,
    ErrorMessage,
    HeartbeatEvent,
    OfflineEntry,
    PaymentDecision,
    PaymentRequest,
    PhoneKeyCredential,
    TapEvent,
    TelemetryEvent,
    WristbandCredential,
    encode,
    parse_event,
    parse_status,
)
from devices.topics import Channel, TopicError, device_of, device_topic, parse_topic
from hub import appliance_queue, credential_checks, journey_detail, offline_entries
from hub.automations.occurrence import Occurrence
from hub.cashier import EventIdReused, handle_payment
from hub.config import Settings
from hub.deadline import NEVER, Deadline
from hub.entry import EntryContext, decide_entry
from hub.models import (
    Device,
    DeviceKind,
    Direction,
    Entitlement,
    Event,
    Guest,
    Telemetry,
    Venue,
    Zone,
)
from hub.payment import PaymentLimits
from hub.presented import Presented, Trust
from hub.security import verify_secret
from hub.store import devices, events, money, rows
from hub.store.registry import UNCACHED, Registry

log = logging.getLogger(__name__)

# The settings' defaults, for callers without settings of their own (tools, tests).
DEFAULT_LIMITS = PaymentLimits(
    max_amount=Settings.model_fields["payment_max_amount"].default,
    max_pin_failures=Settings.model_fields["pin_max_failures"].default,
)

# No keys: secure bands and signed phone keys are refused as forged (tools, tests).
NO_TRUST = Trust()

# How long a command waits for an offline appliance (tools, tests).
DEFAULT_COMMAND_TTL = timedelta(minutes=Settings.model_fields["command_queue_minutes"].default)

# Attempts at a tap whose zone state changed between read and write (another worker won).
_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Outgoing:
    """A message for the bridge to publish."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass
class Outcome:
    """What handling one message produced: replies, and an error code to count."""

    replies: list[Outgoing] = field(default_factory=list)
    error: ErrorCode | None = None
    decision: Decision | PaymentDecision | None = None
    # What automations may react to, handed to them after the reply has gone out.
    occurrence: Occurrence | None = None
    # Why this message alerted staff (an offline entry's refused proof), to count.
    alert: str | None = None


def refuse(topic: str, err: ContractError) -> Outcome:
    """Answer a refused message on its device's errors topic, when the topic names one."""
    where = device_of(topic)
    if where is None:
        return Outcome(error=err.code)
    message = ErrorMessage(code=err.code, detail=err.detail[:500], event_id=err.event_id,
                           topic=topic)
    reply = Outgoing(device_topic(where[0], where[1], Channel.ERRORS), encode(message))
    return Outcome(replies=[reply], error=err.code)


def lock_ahead(session: Session, topics: Sequence[str], *,
               registry: Registry = UNCACHED) -> None:
    """Before a batch is decided: lock the revenue accounts its payments may post to.

    A payment posts to the revenue account of its terminal's merchant. Every batch takes
    those it may need at once, in one global order (by account id), instead of one by
    one in the order of its messages: two workers' batches then never deadlock over the
    merchants' accounts they share.
    """
    registry.sync(session)
    merchants: set[str] = set()
    for topic in topics:
        try:
            where = parse_topic(topic)
        except TopicError:
            continue
        if where.channel is not Channel.EVENTS:
            continue
        device = registry.get(session, Device, where.device)
        if device is not None and device.merchant_id and device.venue_id == where.venue:
            merchants.add(device.merchant_id)
    money.lock_revenues(session=session, merchant_ids=sorted(merchants))


def handle_message(session: Session, topic: str, payload: bytes, now: datetime, *,
                   limits: PaymentLimits = DEFAULT_LIMITS,
                   received_at: datetime | None = None,
                   trust: Trust = NO_TRUST,
                   command_ttl: timedelta = DEFAULT_COMMAND_TTL,
                   deadline: Deadline = NEVER,
                   registry: Registry = UNCACHED,
                   verify_pin: Callable[[str, str], bool] = verify_secret) -> Outcome:
    """Validate, decide and record one message from the broker; return what to answer.

    Runs in a savepoint of the caller's transaction (one per message: taps and payments
    take theirs where they retry a lost race), so a failure undoes only this message.
    A tap or payment past ``deadline`` (counted from ``received_at``, when the broker
    handed it over) is answered ``too_late`` and moves nothing. With ``registry``, taps read
    devices, venues, guests, credentials and entitlements through that cache.
    """
    try:
        where = parse_topic(topic)
    except TopicError as exc:
        return refuse(topic, ContractError(ErrorCode.UNKNOWN_TOPIC, str(exc)))
    if where.channel is Channel.STATUS:
        with session.begin_nested():
            return _handle_status(session, where.venue, where.device, payload, now,
                                  command_ttl)
    if where.channel is not Channel.EVENTS:
        # A device publishing on a channel of the hub's (a forged decision, say).
        return refuse(topic, ContractError(ErrorCode.UNKNOWN_TOPIC,
                                           f"devices do not publish on {where.channel.value}"))
    try:
        event = parse_event(payload)
    except ContractError as exc:
        return refuse(topic, exc)
    if isinstance(event, TapEvent):
        registry.sync(session)
        return _handle_tap(session, topic, where.venue, where.device, event, now,
                           received_at or now, trust, deadline, registry)
    if isinstance(event, OfflineEntry):
        with session.begin_nested():
            return _handle_offline_entry(session, topic, where.venue, where.device, event,
                                         now, trust)
    if isinstance(event, PaymentRequest):
        registry.sync(session)
        return _handle_payment(session, topic, where.venue, where.device, event, now, limits,
                               trust, late=deadline.too_late(now=now, handed_at=received_at or now,
                                                             device_ts=event.ts),
                               verify_pin=verify_pin, received_at=received_at,
                               registry=registry)
    with session.begin_nested():
        return _handle_report(session, topic, where.venue, where.device, event, now,
                              command_ttl)


def _handle_status(session: Session, venue: str, device_id: str, payload: bytes,
                   now: datetime, command_ttl: timedelta) -> Outcome:
    try:
        status = parse_status(payload)
    except ContractError as exc:
        return Outcome(error=exc.code)  # retained junk: count it, never answer it forever
    device = rows.find(session=session, model=Device, key=device_id)
    if device is None or device.venue_id != venue:
        return Outcome(error=ErrorCode.UNKNOWN_DEVICE)
    devices.record_device_seen(session=session, device_id=device_id, now=now,
                               online=status.state == "online")
    if status.state != "online":
        return Outcome()
    return _back_online(session, venue, device_id, now, command_ttl)


def _back_online(session: Session, venue: str, device_id: str, now: datetime,
                 command_ttl: timedelta) -> Outcome:
    """A device is online: what automations queued for it goes out now."""
    messages = appliance_queue.release(session, venue=venue, device_id=device_id, now=now,
                                       ttl=command_ttl)
    return Outcome(replies=[Outgoing(topic, payload) for topic, payload in messages])


def _handle_report(session: Session, topic: str, venue: str, device_id: str,
                   event: HeartbeatEvent | TelemetryEvent, now: datetime,
                   command_ttl: timedelta) -> Outcome:
    device = rows.find(session=session, model=Device, key=device_id)
    if device is None or device.venue_id != venue:
        return refuse(topic, ContractError(ErrorCode.UNKNOWN_DEVICE,
                                           f"device {device_id!r} is not registered",
                                           event.event_id))
    data = event.model_dump(mode="json", exclude={"v", "kind", "event_id", "ts"},
                            exclude_none=True)
    digest = content_digest(event)
    row = Telemetry(device_id=device_id, event_id=event.event_id, kind=event.kind, ts=event.ts,
                    received_at=now, data=data, content_digest=digest)
    fresh = events.record_telemetry(session=session, row=row)
    if not fresh:
        first = events.recorded_report(session=session, device_id=device_id,
                                       event_id=event.event_id)
        if first is not None and first[1] is not None and first[1] != digest:
            # Not a redelivery: another report under a used id. Nothing of it is taken in.
            return _conflict(session, topic, device_id, event.event_id, now,
                             f"event id {event.event_id!r} was used by this device for "
                             f"another {first[0]} already",
                             first={"kind": first[0]}, again={"kind": event.kind})
    if isinstance(event, HeartbeatEvent):
        devices.record_device_seen(session=session, device_id=device_id, now=now, online=True,
                                   battery_pct=event.battery_pct, firmware=event.firmware)
        return _back_online(session, venue, device_id, now, command_ttl)
    devices.record_device_seen(session=session, device_id=device_id, now=now)
    if not fresh:
        return Outcome()  # a redelivery: automations reacted to it the first time
    return Outcome(occurrence=Occurrence("telemetry", venue, device_id, None, now,
                                         readings=dict(event.readings), reported_at=event.ts,
                                         telemetry_id=row.id))


def _handle_payment(session: Session, topic: str, venue: str, device_id: str,
                    req: PaymentRequest, now: datetime, limits: PaymentLimits,
                    trust: Trust, *, late: bool,
                    verify_pin: Callable[[str, str], bool],
                    received_at: datetime | None = None,
                    registry: Registry = UNCACHED) -> Outcome:
    device = registry.get(session, Device, device_id)
    if device is None or device.venue_id != venue:
        return refuse(topic, ContractError(ErrorCode.UNKNOWN_DEVICE,
                                           f"device {device_id!r} is not registered",
                                           req.event_id))
    try:
        done = handle_payment(session, venue=venue, device=device, req=req, now=now,
                              limits=limits, trust=trust, late=late, verify_pin=verify_pin,
                              received_at=received_at, registry=registry)
    except EventIdReused as exc:
        with session.begin_nested():
            return _reused(session, topic, device_id, req.event_id, now, first=exc.kind,
                           again="payment")
    outcome = Outcome(replies=[Outgoing(t, p) for t, p in done.messages], decision=done.decision)
    if done.charged_guest_id is not None:
        outcome.occurrence = Occurrence(
            "payment_approved", venue, device_id, done.charged_guest_id, now,
            purchase={"merchant_id": req.merchant_id, "amount": req.amount,
                      "currency": req.currency})
    return outcome


def _handle_offline_entry(session: Session, topic: str, venue: str, device_id: str,
                          entry: OfflineEntry, now: datetime, trust: Trust) -> Outcome:
    """Merge a lock's offline decision into the journey, once per (device, event_id).

    Evidence, not orders: only an enabled door lock with a zone decides offline; a time
    ahead of the hub's clock is refused; the rest is recorded, and the guest named only
    from a proof the hub verifies again (:mod:`hub.offline_entries`), which also alerts
    staff to a forged or replayed proof, or one of a credential void at that time.
    """
    device = rows.find(session=session, model=Device, key=device_id)
    if device is None or device.venue_id != venue:
        return refuse(topic, ContractError(ErrorCode.UNKNOWN_DEVICE,
                                           f"device {device_id!r} is not registered",
                                           entry.event_id))
    if events.find_event(session=session, device_id=device_id, event_id=entry.event_id) is not None:
        return Outcome()  # uploaded before: already in the journey
    why = _offline_entry_problem(device, entry, now)
    if why is not None:
        return refuse(topic, ContractError(ErrorCode.OFFLINE_ENTRY_REFUSED, why, entry.event_id))
    evidence = offline_entries.weigh(session, entry=entry, device=device, venue=venue,
                                     trust=trust)
    alerts = offline_entries.record(session, entry=entry, device=device, venue=venue,
                                    evidence=evidence, now=now)
    return Outcome(replies=[Outgoing(t, p) for t, p in alerts], alert=evidence.suspicious)


# A lock's clock may run this far ahead of the hub's before its entries are refused.
_OFFLINE_CLOCK_AHEAD = timedelta(minutes=5)


def _offline_entry_problem(device: Device, entry: OfflineEntry, now: datetime) -> str | None:
    """Why this device cannot have made this offline decision, or None."""
    if device.kind is not DeviceKind.DOOR_LOCK or device.zone_id is None:
        return f"a {device.kind.value} does not decide entries offline: only door locks do"
    if not device.enabled:
        return "this lock is disabled"
    if entry.ts > now + _OFFLINE_CLOCK_AHEAD:
        return "decided in the future by the hub's clock"
    return None


def _reused(session: Session, topic: str, device_id: str, event_id: str, now: datetime, *,
            first: str, again: str) -> Outcome:
    """A device reused an event id for another kind of message: refused, never replayed
    (the first message's decision would answer a question this one did not ask)."""
    return _conflict(session, topic, device_id, event_id, now,
                     f"event id {event_id!r} was used by this device for a {first} already",
                     first={"kind": first}, again={"kind": again})


def _conflict(session: Session, topic: str, device_id: str, event_id: str, now: datetime,
              detail: str, *, first: Mapping[str, Any], again: Mapping[str, Any]) -> Outcome:
    """Refuse a message whose event id this device used before for something else, and
    audit it (once per device and event id) for staff: what the id said first, and now."""
    events.record_event_id_conflict(session=session, device_id=device_id, event_id=event_id,
                                    now=now,
                                    detail={"event_id": event_id, "topic": topic,
                                            "first": dict(first), "again": dict(again)})
    return refuse(topic, ContractError(ErrorCode.EVENT_ID_CONFLICT, detail, event_id))


def content_digest(event: TapEvent | HeartbeatEvent | TelemetryEvent) -> str:
    """What a tap or report says, as a digest: an event id may come again (QoS 1
    redelivers), always saying the same thing.

    Taken from the parsed message, so the JSON's spacing and key order do not count (its
    values do, as sent: a UID in other letters is another tap); its time does not count
    either (a device may stamp a retry anew). A tap's credential counts as presented, SUN
    data and a signed key's proof included: a redelivery carries the same bytes, and
    another read of the same band under a used id is another tap.
    """
    said = event.model_dump(mode="json", exclude={"v", "event_id", "ts"}, exclude_none=True)
    canonical = json.dumps(said, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _plain_ref(tap: TapEvent) -> str | None:
    """The identifier a tap presents in clear (a bare UID or key id), else None: SUN data
    and signed keys are not verified for a refused tap, so they name nobody."""
    credential = tap.credential
    if isinstance(credential, WristbandCredential):
        return credential.uid.upper()
    if isinstance(credential, PhoneKeyCredential) and credential.token is None:
        return credential.key_id
    return None


def _again(session: Session, topic: str, venue: str, device_id: str, tap: TapEvent,
           seen: Event, digest: str, now: datetime) -> Outcome:
    """A tap under an event id this device used before: a redelivery gets the first
    answer; another kind of message, or a tap saying something else, is refused."""
    if seen.kind != "tap":
        return _reused(session, topic, device_id, tap.event_id, now, first=seen.kind,
                       again="tap")
    if seen.content_digest is not None and seen.content_digest != digest:
        # Rows from before digests were kept cannot tell: they answer as they always did.
        return _conflict(
            session, topic, device_id, tap.event_id, now,
            f"event id {tap.event_id!r} was used by this device for another tap already "
            "(another credential or direction)",
            first={"kind": "tap", "credential_kind": seen.credential_kind,
                   "credential_ref": seen.credential_ref, "direction": seen.direction,
                   "outcome": seen.outcome, "reason": seen.reason,
                   "decided_at": seen.decided_at},
            again={"kind": "tap", "credential_kind": tap.credential.type,
                   "credential_ref": _plain_ref(tap), "direction": tap.direction})
    return _answer(topic, venue, device_id, _decision_of(seen.model_dump()),
                   known=seen.reason != EntryReason.UNKNOWN_DEVICE, tap=tap)


def _decision_of(event: Mapping[str, Any]) -> Decision:
    """The decision a recorded tap (an Event's columns) stands for."""
    return Decision(event_id=event["event_id"], outcome=event["outcome"],
                    reason=EntryReason(event["reason"]), text=event["text"],
                    guest_name=event["guest_name"], zone_id=event["zone_id"],
                    decided_at=event["decided_at"])


def tap_device_id(device: Device | None) -> str:
    return device.id if device else "-"


def _load_context(session: Session, venue: str, device: Device | None, tap: TapEvent,
                  presented: Presented, now: datetime,
                  registry: Registry) -> tuple[EntryContext, bool]:
    """Read everything the entry decision depends on, inside the tap's transaction; and
    whether the guest's presence row for the zone exists yet."""
    credential, problem = credential_checks.authenticate(
        session, presented=presented, venue_id=venue, device_id=tap_device_id(device), now=now,
        registry=registry)
    guest = registry.get(session, Guest, credential.guest_id) if credential else None
    zone = registry.get(session, Zone, device.zone_id) if device and device.zone_id else None
    # The zone's settings from the cache; its occupancy, which is state, read now.
    occupancy = devices.occupancy_of(session=session, zone_id=zone.id) \
        if zone is not None and registry.caching and zone.capacity is not None else None
    entitlements: tuple[Entitlement, ...] = registry.entitlements(
        session, guest_id=guest.id) if guest else ()
    inside = devices.presence(session=session, guest_id=guest.id,
                              zone_id=zone.id) if guest and zone \
        else None
    scheduled = any(e.schedule for e in entitlements)  # only schedules need the venue's clock
    context = EntryContext(
        device=device,
        credential=credential,
        guest=guest,
        zone=zone,
        entitlements=entitlements,
        inside=bool(inside),
        requested_direction=Direction(tap.direction) if tap.direction else None,
        venue_timezone=_timezone(session, venue, registry) if scheduled else "UTC",
        credential_problem=problem,
        presented_kind=presented.kind,
        occupancy=occupancy,
        venue_enabled=devices.venue_open(registry.get(session, Venue, venue)),
    )
    return context, inside is not None


def _timezone(session: Session, venue: str, registry: Registry) -> str:
    row = registry.get(session, Venue, venue)
    return row.timezone if row else "UTC"


def _handle_tap(session: Session, topic: str, venue: str, device_id: str, tap: TapEvent,
                now: datetime, received_at: datetime, trust: Trust,
                deadline: Deadline, registry: Registry) -> Outcome:
    late = deadline.too_late(now=now, handed_at=received_at, device_ts=tap.ts)
    digest = content_digest(tap)
    for _attempt in range(_MAX_ATTEMPTS):
        try:
            with session.begin_nested():
                if late:
                    return _too_late(session, topic, venue, device_id, tap, digest, now,
                                     received_at, registry)
                return _try_tap(session, topic, venue, device_id, tap, digest, now,
                                received_at, trust, registry)
        except _StateChanged:
            continue
        except sa.exc.IntegrityError:
            continue  # a concurrent worker recorded the same event: the retry replays it
    raise RuntimeError(f"tap {tap.event_id} kept losing races after {_MAX_ATTEMPTS} attempts")


def _too_late(session: Session, topic: str, venue: str, device_id: str, tap: TapEvent,
              digest: str, now: datetime, received_at: datetime,
              registry: Registry) -> Outcome:
    """Answer a tap that waited past its deadline: recorded, and nothing else moves.

    The credential is not even authenticated (a band's tag counter stays where it was),
    and automations hear nothing of it.
    """
    seen = events.find_event(session=session, device_id=device_id, event_id=tap.event_id)
    if seen is not None:  # decided before (a redelivery): that answer stands
        return _again(session, topic, venue, device_id, tap, seen, digest, now)
    device = registry.get(session, Device, device_id)
    if device is not None and device.venue_id != venue:
        device = None
    row = events.event_columns(
        device_id=device_id, venue_id=venue, event_id=tap.event_id, kind="tap",
        received_at=received_at, device_ts=tap.ts, credential_kind=tap.credential.type,
        zone_id=device.zone_id if device else None, direction=tap.direction, outcome="deny",
        reason=(EntryReason.TOO_LATE if device else EntryReason.UNKNOWN_DEVICE).value,
        text="Please tap again", decided_at=now, content_digest=digest)
    events.insert_event(session=session, values=row)
    return _answer(topic, venue, device_id, _decision_of(row), known=device is not None,
                   tap=tap)


class _StateChanged(Exception):
    """Zone state moved between read and conditional write; decide again."""


def _try_tap(session: Session, topic: str, venue: str, device_id: str, tap: TapEvent,
             digest: str, now: datetime, received_at: datetime, trust: Trust,
             registry: Registry) -> Outcome:
    # Rows cached by earlier messages of this batch may be stale: read afresh.
    session.expire_all()
    seen = events.find_event(session=session, device_id=device_id, event_id=tap.event_id)
    if seen is not None:
        return _again(session, topic, venue, device_id, tap, seen, digest, now)
    device = registry.get(session, Device, device_id)
    if device is not None and device.venue_id != venue:
        device = None  # a device id under another venue's topic is not this device
    presented = credential_checks.present(session, credential=tap.credential, trust=trust,
                                          venue_id=venue, device_id=device_id, now=now)
    ctx, presence_row = _load_context(session, venue, device, tap, presented, now, registry)
    decision = decide_entry(ctx, now)
    credential = ctx.credential
    if decision.allowed and device is not None and device.zone_id and credential \
            and not devices.apply_effect(session=session, guest_id=credential.guest_id,
                                         presence_row=presence_row, zone_id=device.zone_id,
                                         effect=decision.effect, now=now):
        raise _StateChanged
    detail = journey_detail.detail_of(presented, ctx.credential_problem,
                                      known=credential is not None)
    if ctx.credential_problem is not None and device is not None:
        journey_detail.log_refused(ctx.credential_problem, detail, device_id=device_id,
                                   event_id=tap.event_id, kind=presented.kind.value)
    row = events.event_columns(
        device_id=device_id, venue_id=venue, event_id=tap.event_id, kind="tap",
        received_at=received_at, device_ts=tap.ts, credential_kind=presented.kind.value,
        credential_ref=presented.identifier or None,
        credential_id=credential.id if credential else None,
        guest_id=credential.guest_id if credential else None,
        zone_id=device.zone_id if device else None,
        direction=decision.direction.value if decision.direction else None,
        outcome=decision.outcome, reason=decision.reason.value, text=decision.text,
        guest_name=decision.guest_name, decided_at=now, content_digest=digest, detail=detail,
    )
    row_id = events.insert_event(session=session, values=row)
    answer = _answer(topic, venue, device_id, _decision_of(row), known=device is not None,
                     tap=tap)
    if device is not None:  # a first decision, not a replay: worth reacting to
        answer.occurrence = Occurrence(
            "entry_allowed" if decision.allowed else "entry_denied", venue, device_id,
            row["guest_id"], now, reason=row["reason"], event_row_id=row_id)
    return answer


def _answer(topic: str, venue: str, device_id: str, decision: Decision, *, known: bool,
            tap: TapEvent) -> Outcome:
    if not known:
        return refuse(topic, ContractError(ErrorCode.UNKNOWN_DEVICE,
                                           f"device {device_id!r} is not registered",
                                           tap.event_id))
    reply = Outgoing(device_topic(venue, device_id, Channel.DECISIONS), encode(decision))
    return Outcome(replies=[reply], decision=decision)
