"""A lock's offline decision, merged into the journey as evidence, not as an order.

A lock that decided alone uploads an ``offline_entry`` with the credential as it saw it
(devices/contract.py). The hub weighs that proof again, at the entry's time:

- a signed phone key: the token is verified against the hub's JWKS, and the phone's proof
  over the lock's challenge, for this lock, with the key's validity and the proof's age
  checked at ``entry.ts`` (not now); the lock's challenge is spent, so the same proof
  under another ``event_id`` is a replay;
- a secure band: its SUN data decrypts and its MAC verifies with the venue's keys; the
  tag's read counter is spent per band, so the same read uploaded twice is a replay.

Then the entry is recorded (once per device and ``event_id``, the caller checks) as:

- *proven*: the proof holds and the credential was active at ``ts``: the guest is named,
  if they held an entitlement to the lock's zone then;
- *the lock's claim*: no proof (a bare UID or key id, or a lock from before proofs): the
  row names no guest and raises nothing, since a lock's word alone never puts a guest in
  the journey;
- *suspicious*: a proof that does not verify or was replayed; or a valid one for a key
  revoked (superseded) or a band reported lost before ``ts``. The row names no guest (the
  credential, when proven, is kept), and a staff alert (rule ``offline-entry``) goes to
  the venue's staff topic, recorded in the audit log (action ``offline_entry.alert``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from devices.contract import (
    EntryReason,
    OfflineEntry,
    PhoneKeyCredential,
    WristbandSunCredential,
    encode,
)
from devices.topics import staff_topic
from hub.entry import PROBLEMS
from hub.models import Credential, CredentialKind, CredentialStatus, Device, Event
from hub.notices import staff_alert
from hub.presented import CredentialProblem, Trust, resolve, verify_signed_phone_key
from hub.store import events, guests, rows

RULE = "offline-entry"
# Spent SUN read counters share the lock challenges' table, under a scope no device id can
# take (device ids never contain ":"), one per band: a read is spent wherever it was seen.
_TAG_SCOPE = "tag:"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an offline entry's proof showed."""

    credential: Credential | None = None  # the hub's credential the proof proved
    ref: str | None = None  # the proven jti or UID
    problem: EntryReason | None = None  # why the proof does not hold
    conflict: str | None = None  # a valid proof, but the credential was void at ts

    @property
    def suspicious(self) -> str | None:
        """The reason to alert staff, or None."""
        return self.problem or self.conflict


def weigh(session: Session, *, entry: OfflineEntry, device: Device, venue: str,
          trust: Trust) -> Evidence:
    """Verify the proof an offline entry carries, as of the entry's time."""
    presented = entry.credential
    if isinstance(presented, PhoneKeyCredential) and presented.token is not None:
        return _phone_key(session, entry, presented, device, venue, trust)
    if isinstance(presented, WristbandSunCredential):
        return _sun_band(session, entry, presented, trust)
    return Evidence()  # no proof at all: the lock's word


def _phone_key(session: Session, entry: OfflineEntry, presented: PhoneKeyCredential,
               device: Device, venue: str, trust: Trust) -> Evidence:
    # Revocation is judged below by when it happened, so none is passed here.
    verdict = verify_signed_phone_key(presented, jwks=trust.jwks, venue=venue,
                                      lock_id=device.id, revoked=(), now=entry.ts)
    if verdict.forged:
        return Evidence(problem=PROBLEMS[verdict.problem or CredentialProblem.FORGED])
    # What the lock wrote beside the proof (credential_ref, _id, guest_id) is not read: the
    # proof alone says whose key it was (a lock that refused a key may not have named it).
    assert presented.challenge is not None  # a signed key always carries it (the contract)
    if not guests.use_challenge(session=session, device_id=device.id, challenge=presented.challenge,
                                now=entry.ts):
        return Evidence(ref=verdict.identifier, problem=EntryReason.CREDENTIAL_REPLAYED)
    credential = rows.find(session=session, model=Credential,
                           key=verdict.credential_id) if verdict.credential_id \
        else None
    revoked_at = guests.key_revoked_at(session=session, jti=verdict.identifier)
    conflict = "credential_revoked" if revoked_at is not None and revoked_at <= entry.ts \
        else None
    return Evidence(credential=credential, ref=verdict.identifier, conflict=conflict)


def _sun_band(session: Session, entry: OfflineEntry, presented: WristbandSunCredential,
              trust: Trust) -> Evidence:
    verdict = resolve(presented, master_key=trust.tag_master_key)
    if verdict.forged or verdict.counter is None:
        return Evidence(problem=EntryReason.CREDENTIAL_FORGED)
    if not guests.use_challenge(session=session, device_id=_TAG_SCOPE + verdict.identifier,
                                challenge=str(verdict.counter), now=entry.ts):
        return Evidence(ref=verdict.identifier, problem=EntryReason.CREDENTIAL_REPLAYED)
    credential = guests.find_credential(session=session, kind=CredentialKind.WRISTBAND,
                                        identifier=verdict.identifier)
    if credential is not None:  # moved by Core UPDATEs the session's copy has not seen
        session.refresh(credential, ["sun_counter", "sun_counter_at"])
    if credential is not None and _out_of_order(credential, verdict.counter, entry.ts):
        # A read the hub saw online (the same counter), or one whose counter and claimed
        # time disagree with it (a newer read dated earlier, an older one dated later):
        # reads are ordered in time as their counters are, so this is not what happened.
        return Evidence(ref=verdict.identifier, problem=EntryReason.CREDENTIAL_REPLAYED)
    if credential is not None:  # a later online replay of this read is refused too
        guests.advance_tag_counter(session=session, credential_id=credential.id,
                                   counter=verdict.counter, at=entry.ts)
    conflict = None
    if credential is not None and credential.status is not CredentialStatus.ACTIVE \
            and credential.status_changed_at <= entry.ts:
        conflict = f"credential_{credential.status.value}"  # lost, suspended, revoked
    return Evidence(credential=credential, ref=verdict.identifier, conflict=conflict)


def _out_of_order(credential: Credential, counter: int, at: datetime) -> bool:
    seen, seen_at = credential.sun_counter, credential.sun_counter_at
    if seen is None or seen_at is None:
        return False
    return (counter <= seen and at >= seen_at) or (counter >= seen and at <= seen_at)


def _entitled(session: Session, credential: Credential, zone_id: str, at: datetime) -> bool:
    """Whether the credential's guest could have entered the zone at ``at``."""
    return any(zone_id in e.zone_ids and e.valid_from <= at <= e.valid_until
               for e in guests.entitlements_of(session=session, guest_id=credential.guest_id))


def _text(entry: OfflineEntry, evidence: Evidence, named: bool) -> str:
    if evidence.suspicious is not None:
        return f"offline, refused by the hub: {evidence.suspicious}"
    if entry.credential is None or evidence.ref is None:
        return "offline, the lock's claim: no proof of the credential"
    return "offline, proof verified" if named else "offline, proof verified, no entitlement"


def record(session: Session, *, entry: OfflineEntry, device: Device, venue: str,
           evidence: Evidence, now: datetime) -> list[tuple[str, bytes]]:
    """Record the entry as the evidence allows; the staff alert to publish, if any."""
    credential = evidence.credential
    named = (credential is not None and evidence.suspicious is None and device.zone_id is not None
             and _entitled(session, credential, device.zone_id, entry.ts))
    guest_id = credential.guest_id if credential is not None and named else None
    with session.begin_nested():
        session.add(Event(
            device_id=device.id, venue_id=venue, event_id=entry.event_id, kind="offline_entry",
            received_at=now, device_ts=entry.ts, credential_kind=entry.credential_kind,
            credential_ref=evidence.ref or entry.credential_ref,
            credential_id=credential.id if credential else None, guest_id=guest_id,
            zone_id=device.zone_id, outcome=entry.outcome, reason=entry.reason,
            text=_text(entry, evidence, named)[:80], decided_at=entry.ts))
        session.flush()
    why = evidence.suspicious
    if why is None:
        return []
    whose = credential.guest_id if credential is not None else None
    opened = entry.outcome == "allow"
    detail = {"event_id": entry.event_id, "decided_at": entry.ts.isoformat(),
              "outcome": entry.outcome, "reason": why, "credential_ref": evidence.ref,
              "guest_id": whose}
    events.record_audit(session=session, actor=f"device:{device.id}", roles=[],
                        action="offline_entry.alert", target=f"device:{device.id}",
                        detail=detail, source="mqtt", at=now)
    alert = staff_alert(RULE, now, {
        "text": f"{device.id} {'opened' if opened else 'refused'} offline at "
                f"{entry.ts:%Y-%m-%d %H:%M} UTC for a credential the hub does not accept: {why}",
        # A door that opened on it is urgent; one that held is worth knowing.
        "severity": "urgent" if opened else "warning",
        "device_id": device.id, "zone_id": device.zone_id, "guest_id": whose, "reason": why,
        "cue": "offline_entry", "event_id": entry.event_id, "decided_at": entry.ts.isoformat()})
    return [(staff_topic(venue), encode(alert))]
