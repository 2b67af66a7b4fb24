"""The intruder's attacks on the doors around the cryptography (steps 8-12).

8. reserved venue ids (``hub``, ``evil.venue``) are 422, and a device's broker password,
   even a device named ``bridge``, does not open the hub's bridge login;
9. a phone key re-issued: the superseded key is on the signed revocation list, so an
   offline lock that follows it refuses the old key alone (``key_revoked``), the hub
   refuses it online, and the lock's upload of that refusal alerts staff;
10. bare ids: a wristband's plain UID at the strict venue's gate, and the bare id of a
    phone key that has a signed form, are ``insecure_credential``;
11. forged offline entries: one from a thermostat is ``offline_entry_refused``; one with
    no proof is recorded as the lock's claim, naming no guest; one with a forged proof is
    recorded without the guest and alerts staff (audit ``offline_entry.alert``);
12. a client without credentials gets CONNACK ``Not authorized``, counted by the broker.

Pure helpers first; the steps take the scenario's :class:`~.intruder.Intruder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from devices.client import HubError, new_event_id
from devices.contract import (
    EntryReason,
    OfflineEntry,
    PhoneKeyCredential,
    WristbandCredential,
    utcnow,
)
from devices.phone import Phone
from devices.phone_key import make_proof, new_challenge, phone_keypair
from simulators.offline_lock import OfflineLock
from simulators.rest import (
    AuditEntry,
    Credential,
    Entitlement,
    Event,
    HubApi,
    HubApiError,
    PhoneKeyIssued,
)
from simulators.scenarios.raw_mqtt import NOT_AUTHORIZED, SUCCESS, connack
from simulators.scenarios.runner import deny

if TYPE_CHECKING:
    from simulators.scenarios.intruder import Intruder, Target

BRIDGE_USER = "venuehub-bridge"  # the hub's own broker login (README, "Broker logins")
LAB_VENUE = "intruder-lab"  # a venue of the intruder's own, as any integrator may make
BRIDGE_DEVICE = "bridge"
STRICT_GATE = "gate-spa-in-1"  # the demo's strict venue, demo-spa
# (step, venue id, what the 422 must say)
RESERVED_VENUES = (("8a", "hub", "reserved"), ("8b", "evil.venue", "pattern"))
VENUE_REFUSED = "venue.create_refused"
ALERT = "offline_entry.alert"
T = TypeVar("T")


# ------------------------------------------------------------------ pure helpers


def api_verdict(status: int, detail: str, *, want: int, saying: str) -> str:
    """How a refused REST attempt ended: ``refused`` when ``want`` and its text came back."""
    if status < 300:
        return "let through"
    return "refused" if status == want and saying in detail else "refused for another reason"


def login_verdict(answer: str | None) -> str:
    """A broker login an attacker must not get: CONNACK ``Not authorized`` is the refusal."""
    if answer == SUCCESS:
        return "let through"
    return "refused" if answer == NOT_AUTHORIZED else "refused for another reason"


def login_refusals(stats: Mapping[str, Any]) -> int:
    """The broker's refused logins so far, from ``/stats``."""
    counted = stats.get("broker_refusals")
    value = counted.get("login", 0) if isinstance(counted, Mapping) else 0
    return value if isinstance(value, int) else 0


REFUSED = "broker.refused"


def refusal_entries(api: HubApi, username: str | None) -> int:
    """How many audit entries record refused broker logins as ``username``."""
    target = f"mqtt-user:{username or '(none)'}"
    return len(api.audit(action=REFUSED, target=target, limit=200))


def wait_for(fetch: Callable[[], T | None], within: float, every: float = 0.2) -> T | None:
    """``fetch()`` until it returns something, for ``within`` seconds; None if it never did."""
    deadline = time.monotonic() + within
    while True:
        found = fetch()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(every)


def row_of(events: Iterable[Event], event_id: str) -> Event | None:
    return next((e for e in events if e.event_id == event_id), None)


def alert_of(entries: Iterable[AuditEntry], event_id: str) -> AuditEntry | None:
    return next((a for a in entries if a.action == ALERT
                 and a.detail.get("event_id") == event_id), None)


def entry_verdict(row: Event | None, alert: AuditEntry | None,
                  alert_reason: str | None) -> tuple[str, str]:
    """How a forged offline entry ended: recorded naming no guest, and alerted when
    ``alert_reason`` is given. Named guest: let through."""
    if row is None:
        return "not recorded", "not in the journey"
    got = f"recorded, guest {row.guest_id or 'none'}: {row.text}"
    if row.guest_id is not None:
        return "let through", got
    if alert_reason is None:
        return "refused", got
    if alert is None:
        return "not recorded", got + f"; no {ALERT} in the audit log"
    reason = alert.detail.get("reason")
    got += f"; audit {ALERT} {reason}"
    return ("refused" if reason == alert_reason else "refused for another reason"), got


def pass_holders(entitlements: Iterable[Entitlement], zone_id: str, now: datetime) -> list[str]:
    """The guests with an active entitlement to ``zone_id`` at ``now``, sorted."""
    return sorted({e.guest_id for e in entitlements if e.status == "active"
                   and zone_id in e.zone_ids and e.valid_from <= now < e.valid_until})


# ------------------------------------------------------------------ 8: the bridge


def reserved_venues(attacker: Intruder) -> None:
    """8a-b: venue ids the hub keeps for itself, or that would break its topics."""
    api = attacker.run.api
    for number, venue_id, saying in RESERVED_VENUES:
        def probe(venue_id: str = venue_id, saying: str = saying) -> tuple[str, str]:
            # A reserved id is an attempt on the hub's own logins: audited. A malformed one
            # is a plain 422 of the schema, like any other bad request.
            audited = saying == "reserved"
            before = len(api.audit(action=VENUE_REFUSED, target=f"venue:{venue_id}"))
            try:
                api.create_venue(venue_id, "Intruder venue")
            except HubApiError as exc:
                label = api_verdict(exc.status, exc.detail, want=422, saying=saying)
                got = f"HTTP {exc.status}: {exc.detail}"
                if label != "refused" or not audited:
                    return label, got
                after = len(api.audit(action=VENUE_REFUSED, target=f"venue:{venue_id}"))
                return (("refused", got + f"; audited {VENUE_REFUSED}") if after > before
                        else ("not recorded", got + f"; no {VENUE_REFUSED} in the audit log"))
            return "let through", "HTTP 201: created"

        attacker.attempt(f"{number} venue id {venue_id!r}", "POST /venues",
                         f"HTTP 422 ({saying})", probe)


def lab_device(api: HubApi, stamp: str) -> str:
    """A device of the intruder's lab venue named ``bridge`` (or, once that id is taken
    elsewhere, ``bridge-<stamp>``), created when missing."""
    try:
        api.venue(LAB_VENUE)
    except HubApiError as exc:
        if exc.status != 404:
            raise
        api.create_venue(LAB_VENUE, "The intruder's lab")
    try:
        existing = api.device(BRIDGE_DEVICE)
    except HubApiError as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None and existing.venue_id == LAB_VENUE:
        return existing.id
    device_id = BRIDGE_DEVICE if existing is None else f"{BRIDGE_DEVICE}-{stamp}"
    try:
        api.create_device(device_id, LAB_VENUE, "gate", "The intruder's bridge")
    except HubApiError as exc:
        if exc.status != 409:  # a deleted device's id is never given out again
            raise
        device_id = f"{BRIDGE_DEVICE}-{stamp}"
        api.create_device(device_id, LAB_VENUE, "gate", "The intruder's bridge")
    return device_id


def bridge_login(attacker: Intruder) -> None:
    """8c: an integrator's device named ``bridge``: its password is not the bridge's."""
    api, host, port = attacker.run.api, attacker.host, attacker.port
    title, expected = "8c device password as the bridge's", f"CONNACK {NOT_AUTHORIZED}"
    try:
        device_id = lab_device(api, attacker.stamp)
        login = api.reissue_broker_login(device_id)
    except HubApiError as exc:
        attacker.skip(title, "broker", expected, f"no device of our own: {exc}")
        return

    def probe() -> tuple[str, str]:
        # The embedded broker takes up a re-issued login within a second or so.
        own = wait_for(lambda: answer if (answer := connack(
            host, port, login.username, login.password)) == SUCCESS else None, 3.0, 0.5)
        if own != SUCCESS:
            return "not played", f"{login.username}'s own password got CONNACK {own}"
        before = login_refusals(api.stats())
        audited = refusal_entries(api, BRIDGE_USER)
        answer = connack(host, port, BRIDGE_USER, login.password)
        got = f"{BRIDGE_USER} with {device_id}'s password: CONNACK {answer}"
        return _recorded(api, login_verdict(answer), got, before, audited, BRIDGE_USER)

    attacker.attempt(title, f"broker ({device_id})", expected, probe)


# ------------------------------------------------------------------ 9: superseded keys


@dataclass(frozen=True, slots=True)
class SignedPhone:
    """A phone credential of this run whose key was issued twice: ``old`` is superseded."""

    credential: Credential
    old: Phone
    new: Phone
    zones: tuple[str, ...]


def reissued_phone(api: HubApi, guest_id: str) -> SignedPhone:
    """A new phone credential, its key issued, then issued again (a new phone)."""
    credential = api.create_credential(guest_id, "phone_key", label="intruder: re-issued")

    def issue() -> tuple[Phone, PhoneKeyIssued]:
        key, jwk = phone_keypair()
        issued = api.issue_phone_key(credential.id, jwk)
        return Phone(key, token=issued.token, jti=issued.jti), issued

    old, _ = issue()
    new, issued = issue()
    return SignedPhone(credential, old, new, tuple(issued.zones))


def superseded_key(attacker: Intruder, target: Target) -> SignedPhone | None:
    """9a-d: the old key of a re-issued phone at an offline lock, and online."""
    run, lock_id = attacker.run, target.lock
    titles = ("9a baseline: current key, offline lock", "9b superseded key, offline lock",
              "9c superseded key, online", "9d offline refusal uploaded")
    expects = ("opens (ok)", "refuses (key_revoked)", str(deny(EntryReason.CREDENTIAL_REVOKED)),
               f"audit {ALERT} credential_revoked")
    try:
        phone = reissued_phone(run.api, target.guest_id)
    except HubApiError as exc:
        for title, expect in zip(titles, expects, strict=True):
            attacker.skip(title, lock_id, expect, f"no phone key: {exc}")
        return None
    run.note(f"9: phone credential {phone.credential.id} of {target.guest_id}: key "
             f"{phone.old.jti} superseded by {phone.new.jti}")
    anchor = attacker.sheet.key_anchor
    lock = None
    if anchor is None:
        for title, expect in zip(titles[:2], expects[:2], strict=True):
            attacker.skip(title, lock_id, expect, "the sheet holds no key_anchor")
    else:
        lock = _offline(attacker, target, phone, dict(anchor), titles, expects)
    online = phone.old.answer(new_challenge(), lock_id, utcnow())
    attacker.tap(titles[2], lock_id, online, deny(EntryReason.CREDENTIAL_REVOKED))
    if lock is None:
        attacker.skip(titles[3], lock_id, expects[3], "no offline lock played")
    else:
        _upload(attacker, lock, titles[3], expects[3])
    return phone


def _offline(attacker: Intruder, target: Target, phone: SignedPhone, anchor: dict[str, Any],
             titles: tuple[str, ...], expects: tuple[str, ...]) -> OfflineLock:
    """9a-b: the lock follows the signed key material, then decides alone."""
    run, login = attacker.run, attacker.sheet.devices[target.lock]
    lock = OfflineLock(login.venue, target.lock, target.room, host=attacker.host,
                       port=attacker.port, timeout=run.timeout, username=login.username,
                       password=login.password, anchor=anchor)
    lock.connect()
    try:
        heard = wait_for(lambda: phone.old.jti in lock.revoked or None, run.timeout)
    finally:
        lock.close()  # the hub is out of reach from here on: the lock decides alone
    run.note(f"9: the offline lock {'holds' if heard else 'did NOT get'} the signed revocation "
             f"of {phone.old.jti} ({len(lock.revoked)} revoked; refused material: "
             f"{', '.join(lock.refused_material) or 'none'})")

    def decide(phone_of: Phone, baseline: bool) -> tuple[str, str]:
        done = lock.tap(phone_of)
        got = f"{'opened' if done.allowed else 'refused'} ({done.reason}), " + (
            "alone" if done.offline else "asked the hub")
        if baseline:
            return ("as expected" if done.allowed else "baseline failed"), got
        if done.allowed:
            return "let through", got
        return ("refused" if done.reason == "key_revoked" and done.offline
                else "refused for another reason"), got

    attacker.attempt(titles[0], f"{target.lock} offline", expects[0],
                     lambda: decide(phone.new, True))
    attacker.attempt(titles[1], f"{target.lock} offline", expects[1],
                     lambda: decide(phone.old, False))
    return lock


def _upload(attacker: Intruder, lock: OfflineLock, title: str, expected: str) -> None:
    """9d: back online, the lock uploads what it decided; its refusal alerts staff."""
    run = attacker.run
    refused = [e for e in lock.queue if e.outcome == "deny"]

    def upload() -> tuple[str, str]:
        if not refused:
            return "not played", "the lock queued no refusal"
        event_id = refused[-1].event_id
        lock.connect()
        try:  # connected until the hub has it: the upload is QoS 1 publishes in flight
            sent = lock.upload()
            row = wait_for(lambda: row_of(run.api.events(device_id=lock.device_id), event_id),
                           run.timeout)
        finally:
            lock.close()
        alert = wait_for(lambda: alert_of(run.api.audit(action=ALERT), event_id), 2.0)
        label, got = entry_verdict(row, alert, "credential_revoked")
        return label, f"{sent} uploaded; {got}"

    attacker.attempt(title, lock.device_id, expected, upload)


# ------------------------------------------------------------------ 10: bare ids


def bare_ids(attacker: Intruder, target: Target, phone: SignedPhone | None) -> None:
    """10a-b: copyable credentials where only signed ones are accepted."""
    api = attacker.run.api
    title, expect = "10a bare UID at a strict venue", deny(EntryReason.INSECURE_CREDENTIAL)
    uid = None
    try:
        gate = api.device(STRICT_GATE)
        strict = not api.venue(gate.venue_id).allow_plain_uid
        if strict and gate.zone_id and STRICT_GATE in attacker.sheet.devices:
            uid = _plain_band(api, gate.zone_id)
    except HubApiError as exc:
        attacker.skip(title, STRICT_GATE, expect, f"no strict gate: {exc}")
    else:
        if uid is None:
            attacker.skip(title, STRICT_GATE, expect,
                          "no strict venue's gate with a pass holder's plain band")
        else:
            attacker.run.note(f"10a: {uid}, a plain band whose guest holds a pass to "
                              f"{gate.zone_id}, at {STRICT_GATE} of {gate.venue_id}")
            attacker.tap(title, STRICT_GATE, WristbandCredential(uid=uid), expect)
    title = "10b bare id of a signed phone key"
    if phone is None:
        attacker.skip(title, target.lock, expect, "step 9 issued no phone key")
        return
    attacker.tap(title, target.lock, PhoneKeyCredential(key_id=phone.credential.identifier),
                 expect)


def _plain_band(api: HubApi, zone_id: str) -> str | None:
    for guest_id in pass_holders(api.entitlements(kind="ticket"), zone_id, utcnow()):
        for band in api.credentials(guest_id=guest_id, kind="wristband"):
            if band.status == "active" and not band.sun:
                return band.identifier
    return None


# ------------------------------------------------------------------ 11: offline entries


def forged_offline_entries(attacker: Intruder, target: Target,
                           phone: SignedPhone | None) -> None:
    """11a-c: offline entries that must not put the guest in the journey."""
    run, api, sheet = attacker.run, attacker.run.api, attacker.sheet
    now = utcnow()

    def claim(ts: datetime) -> OfflineEntry:  # "the guest came in", in the lock's word alone
        return OfflineEntry(event_id=new_event_id(), ts=ts, credential_kind="wristband",
                            credential_ref=target.uid, guest_id=target.guest_id,
                            outcome="allow", reason="ok")

    title, expected = "11a offline entry from a non-lock", "error offline_entry_refused"
    # Any device but a lock will do; a thermostat first, as the issue found it.
    others = [d.id for d in sorted(api.devices(zone_id=target.room),
                                   key=lambda d: (d.kind != "thermostat", d.id))
              if d.kind != "door_lock" and d.id in sheet.devices]
    if not others:
        attacker.skip(title, target.room, expected, "no provisioned non-lock device there")
    else:
        device = others[0]

        def from_a_thermostat() -> tuple[str, str]:
            entry = claim(now - timedelta(days=3))
            client = attacker.device(device)
            reply = client.expect(entry.event_id)
            client.publish_event(entry)
            try:
                reply.result(run.timeout)
            except HubError as exc:
                code = exc.error.code.value
                return ("refused" if code == "offline_entry_refused"
                        else "refused for another reason"), f"error {exc}"
            except TimeoutError:
                row = row_of(api.events(device_id=device), entry.event_id)
                return ("let through" if row else "refused for another reason",
                        f"no error in {run.timeout:g}s" + ("; in the journey" if row else ""))
            return "refused for another reason", "a reply that is not an error"

        attacker.attempt(title, device, expected, from_a_thermostat)

    def upload(entry: OfflineEntry, alert_reason: str | None) -> tuple[str, str]:
        attacker.device(target.lock).publish_event(entry)
        row = wait_for(lambda: row_of(api.events(device_id=target.lock), entry.event_id),
                       run.timeout)
        alert = None
        if alert_reason is not None and row is not None:
            alert = wait_for(lambda: alert_of(api.audit(action=ALERT), entry.event_id), 2.0)
        return entry_verdict(row, alert, alert_reason)

    attacker.attempt("11b lock's word, no proof", target.lock, "recorded, no guest named",
                     lambda: upload(claim(now - timedelta(hours=1)), None))
    title, expected = "11c forged proof", f"no guest; audit {ALERT} credential_forged"
    if phone is None:
        attacker.skip(title, target.lock, expected, "step 9 issued no phone key")
        return
    attacker_key: ec.EllipticCurvePrivateKey = phone_keypair()[0]
    challenge = new_challenge()
    forged = PhoneKeyCredential(
        token=phone.new.token, challenge=challenge,
        proof=make_proof(attacker_key, challenge=challenge, lock_id=target.lock,
                         key_jti=phone.new.jti, now=now))
    entry = OfflineEntry(event_id=new_event_id(), ts=now, credential_kind="phone_key",
                         credential_ref=phone.new.jti, guest_id=target.guest_id,
                         outcome="allow", reason="ok", credential=forged)
    before = api.stats().get("offline_entry_alerts", 0)

    def forged_proof() -> tuple[str, str]:
        label, got = upload(entry, "credential_forged")
        counted = wait_for(lambda: api.stats().get("offline_entry_alerts", 0) > before or None,
                           2.0)
        if label == "refused" and not counted:
            return "not recorded", got + "; /stats offline_entry_alerts unchanged"
        return label, got + ("; /stats offline_entry_alerts +1" if counted else "")

    attacker.attempt(title, target.lock, expected, forged_proof)


def _recorded(api: HubApi, label: str, got: str, before: int, audited: int,
              username: str | None) -> tuple[str, str]:
    """A refused login must be counted in /stats and written to the audit log."""
    counted = wait_for(lambda: login_refusals(api.stats()) > before or None, 2.0)
    logged = wait_for(lambda: refusal_entries(api, username) > audited or None, 3.0)
    if label != "refused":
        return label, got
    if not counted or not logged:
        return "not recorded", got + ("" if counted else "; not in /stats broker_refusals") + (
            "" if logged else f"; no {REFUSED} in the audit log")
    return label, got + f"; counted in /stats broker_refusals, audited {REFUSED}"


# ------------------------------------------------------------------ 12: anonymous


def anonymous_client(attacker: Intruder) -> None:
    """12: no username, no password: the closed broker refuses the login and counts it."""
    api, host, port = attacker.run.api, attacker.host, attacker.port

    def probe() -> tuple[str, str]:
        before = login_refusals(api.stats())
        audited = refusal_entries(api, None)
        answer = connack(host, port, None, None)
        return _recorded(api, login_verdict(answer), f"CONNACK {answer}", before, audited,
                         None)

    attacker.attempt("12 anonymous MQTT client", f"mqtt://{host}:{port}",
                     f"CONNACK {NOT_AUTHORIZED}", probe)
