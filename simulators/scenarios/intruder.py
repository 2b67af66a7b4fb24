"""intruder: an attacker against a hub started with ``hub up --demo`` (its broker is closed).

Every attack must be refused, each for its own reason, and leave a trace:

1. baseline: a genuine secure band (NTAG 424 DNA) at its guest's room lock is let in;
2. a cloned band (its UID alone) is ``credential_forged``;
3. the SUN data of step 1 sent again in a new tap is ``credential_replayed``;
4. fresh SUN data with one bit of its MAC flipped is ``credential_forged``;
5. a signed phone key opens the room once; its captured (token, challenge, proof)
   sent again is ``credential_replayed``; the token with a proof for a new challenge
   signed by the attacker's own key is ``credential_forged``;
6. once the key is revoked, a correct tap is ``credential_revoked``;
7. the broker: a device cannot read another's decisions, cannot get a tap decided
   for another device, and cannot log in with another device's password;
8. the bridge's password: venue ids ``hub`` (reserved, audited ``venue.create_refused``) and
   ``evil.venue`` are 422, and the
   broker password of a device named ``bridge`` is ``Not authorized`` as the bridge's
   login (the refusal counted in ``/stats`` ``broker_refusals`` and audited);
9. a phone key issued again: an offline lock following the signed revocation list
   refuses the superseded key alone (``key_revoked``) while the new one opens; the hub
   refuses it online (``credential_revoked``); the lock's upload of its refusal is
   recorded without the guest and alerts staff (audit ``offline_entry.alert``);
10. bare ids: a plain band's UID at the strict venue's gate (``gate-spa-in-1``), and the
    bare id of a phone key that has a signed form, are ``insecure_credential``;
11. forged offline entries: from a thermostat, ``offline_entry_refused``; from the lock
    with no proof, recorded naming no guest; with a forged proof, recorded naming no guest,
    audited ``offline_entry.alert`` and counted in ``/stats`` ``offline_entry_alerts``;
12. a client without credentials: CONNACK ``Not authorized``, counted and audited;
13. a throwaway guest's app token works, the guest is erased, the token is 401 (audited
    ``auth.token_refused``);
14. wrong passwords for a made-up account until 429 with Retry-After; every failure is
    audited ``auth.failure`` and the 429 ``auth.throttled``.

Steps 8-12 live in :mod:`.intruder_doors`, 13-14 in :mod:`.intruder_api`. Broker refusals
are counted (``/stats`` ``broker_refusals``) and audited (``broker.refused``, grouped per
user and address each second); the scenario checks both. The journey rows, audit entries
and counters are read through the REST API as the admin hub-sim logs in as (``/audit``
takes an admin or auditor; erasure an admin).

It reads the provisioning sheet the demo writes (``<data_dir>/demo-provisioning.json``):
the broker address, each device's broker username and password, the secure bands' SDM
keys and the offline locks' trust anchor. Exit 0 when every attack is refused as
expected, 1 when one is let through, refused for another reason or not recorded, 2 when
the hub is unreachable or its broker lets anyone in (``--open-broker``).

Re-runnable against the same hub: each run creates its own phone credentials (revoking
the demo's ``phone-guest-NN`` would break them for every later run), throwaway guest and
account names, and starts its bands' read counters from the clock. The lab venue
``intruder-lab`` and its device ``bridge`` are made once and reused. The password guesses
of step 14 come from another loopback address each run, so the throttle they leave does
not touch this machine's 127.0.0.1 (where that is impossible the step runs last and waits
out the Retry-After; see :mod:`.intruder_api`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.client import DeviceClient, HubError, NoReply, new_event_id
from devices.contract import (
    Decision,
    EntryReason,
    PhoneKeyCredential,
    TapEvent,
    WristbandCredential,
    WristbandSunCredential,
    encode,
    utcnow,
)
from devices.phone_key import make_proof, new_challenge, phone_keypair
from devices.topics import Channel, device_topic
from simulators.readers import random_uid
from simulators.rest import Entitlement, HubApiError, HubUnreachable
from simulators.scenarios import intruder_api as accounts
from simulators.scenarios import intruder_doors as doors
from simulators.scenarios.raw_mqtt import (
    NOT_AUTHORIZED,
    QUIET_S,
    SUCCESS,
    RawClient,
    connack,
    suback_text,
)
from simulators.scenarios.runner import Expect, NotPlayable, Run, allow, deny
from simulators.secure_band import SecureBand
from simulators.sheet import (
    DeviceLogin,
    Sheet,
    SheetError,
    TagKeys,
    connect_host,
    load_sheet,
    parse_sheet,
)

DEFAULT_PROVISIONING = Path("hub-data/demo-provisioning.json")

Credential = WristbandCredential | WristbandSunCredential | PhoneKeyCredential


# ------------------------------------------------------------------ pure helpers


def flip_bit(hex_text: str, bit: int = 0) -> str:
    """``hex_text`` with one bit inverted (bit 0 = lowest bit of the last byte); same case."""
    raw = bytearray(bytes.fromhex(hex_text))
    if not raw:
        raise ValueError("nothing to flip in empty data")
    if not 0 <= bit < 8 * len(raw):
        raise ValueError(f"bit {bit} outside {len(raw)} bytes")
    raw[len(raw) - 1 - bit // 8] ^= 1 << (bit % 8)
    flipped = raw.hex()
    return flipped.upper() if hex_text.isupper() else flipped


def current_room(entitlements: Iterable[Entitlement], now: datetime) -> str | None:
    """The room zone of the guest's active stay at ``now`` (the first room of it), if any."""
    for e in sorted(entitlements, key=lambda e: e.id):
        if e.kind == "room" and e.status == "active" and e.valid_from <= now < e.valid_until:
            rooms = [z for z in e.zone_ids if z.startswith("room-")] or list(e.zone_ids)
            if rooms:
                return rooms[0]
    return None


def other_device(candidates: Iterable[str], exclude: str, provisioned: Iterable[str]) -> str | None:
    """The first of ``candidates`` (sorted) that is not ``exclude`` and has credentials."""
    known = set(provisioned)
    return next((d for d in sorted(candidates) if d != exclude and d in known), None)


VERDICTS = ("refused", "let through", "refused for another reason", "not recorded",
            "not played", "as expected", "baseline failed")
PASSING = frozenset({"refused", "as expected"})


def verdict(expected: Expect, outcome: str | None, reason: str | None) -> str:
    """How an attack ended: ``refused``, ``let through`` or ``refused for another reason``.

    ``outcome`` None: no decision came (or an error did), which is not the refusal asked for.
    """
    if outcome == expected.outcome and reason == expected.reason.value:
        return "refused" if expected.outcome == "deny" else "as expected"
    if expected.outcome == "deny" and outcome == "allow":
        return "let through"
    if expected.outcome == "allow":
        return "baseline failed"
    return "refused for another reason"


# ------------------------------------------------------------------ the target


@dataclass(frozen=True, slots=True)
class Target:
    """A secure band, its guest, and the lock of the room the guest stays in."""

    uid: str
    credential_id: str
    guest_id: str
    room: str
    lock: str


def find_target(run: Run, sheet: Sheet) -> Target:
    """The first secure band of the sheet whose guest has a current stay with a lock we
    can play; NotPlayable when there is none."""
    api, now = run.api, utcnow()
    seen: list[str] = []
    for uid in sorted(sheet.tags):
        owners = [c for c in api.credentials(identifier=uid, kind="wristband")
                  if c.identifier.upper() == uid]
        owner = next((c for c in owners if c.status == "active"), None)
        if owner is None:
            seen.append(f"{uid}: " + ("not active" if owners else "unknown to the hub"))
            continue
        room = current_room(api.guest_entitlements(owner.guest_id), now)
        if room is None:
            seen.append(f"{uid}: {owner.guest_id} has no current room stay")
            continue
        locks = [d.id for d in api.devices(kind="door_lock", zone_id=room)]
        lock = next((d for d in sorted(locks) if d in sheet.devices), None)
        if lock is None:
            seen.append(f"{uid}: no provisioned lock on {room}")
            continue
        return Target(uid=uid, credential_id=owner.id, guest_id=owner.guest_id, room=room,
                      lock=lock)
    why = "; ".join(seen[:5]) or "the sheet lists no secure bands"
    raise NotPlayable(f"no secure band of the sheet can be played ({why}): "
                      "is this the hub `hub up --demo` wrote the sheet for?")


# ------------------------------------------------------------------ the attack


class Intruder:
    """One play of the scenario: the sheet, the devices it logged in as, the summary."""

    def __init__(self, run: Run, sheet: Sheet, sheet_path: Path) -> None:
        self.run, self.sheet, self.sheet_path = run, sheet, sheet_path
        self.host, self.port = sheet.connect_host, sheet.broker_port
        self.clients: dict[str, DeviceClient] = {}
        self.verdicts: list[tuple[str, str]] = []  # (attack, verdict)
        # Tells this run's throwaway ids (guests, users) from every earlier run's.
        self.stamp = f"{int(time.time()):x}{uuid.uuid4().hex[:4]}"

    # --------------------------------------------------------- plumbing

    def device(self, device_id: str) -> DeviceClient:
        """A legitimate device session, logged in with that device's own credentials."""
        client = self.clients.get(device_id)
        if client is None:
            login = self.sheet.devices[device_id]
            where = f"MQTT broker mqtt://{self.host}:{self.port}"
            try:
                answer = connack(self.host, self.port, login.username, login.password)
            except OSError as exc:
                raise HubUnreachable(f"{where}: {exc}") from None
            if answer != SUCCESS:
                raise NotPlayable(
                    f"the broker answered {answer or 'nothing'} to {device_id}'s own "
                    f"credentials from {self.sheet_path}: the sheet is not this hub's")
            client = DeviceClient(login.venue, device_id, host=self.host, port=self.port,
                                  username=login.username, password=login.password)
            try:
                self.clients[device_id] = client.connect(5.0)
            except OSError as exc:
                raise HubUnreachable(f"{where}, as {device_id}: {exc}") from None
        return client

    def close(self) -> None:
        clients, self.clients = list(self.clients.values()), {}
        for client in clients:
            client.close()

    def tap(self, title: str, device_id: str, credential: Credential,
            expect: Expect) -> Decision | None:
        """Present ``credential`` at ``device_id`` in a new tap event; record the step."""
        client = self.device(device_id)
        decision: Decision | None = None

        def probe() -> tuple[bool, str]:
            nonlocal decision
            try:
                decision = client.tap(credential, timeout=self.run.timeout)
            except NoReply:
                return False, f"no decision in {self.run.timeout:g}s"
            except HubError as exc:
                return False, f"hub error {exc}"
            return expect.matches(decision), f"{decision.outcome} {decision.reason.value}"

        self.run.check(title, device_id, str(expect), probe)
        outcome = decision.outcome if decision else None
        reason = decision.reason.value if decision else None
        self.verdicts.append((title, verdict(expect, outcome, reason)))
        return decision

    def attempt(self, title: str, where: str, expected: str,
                probe: Callable[[], tuple[str, str]]) -> bool:
        """A step that is not a tap: ``probe`` returns (its verdict, what it saw).

        The verdict is one of :data:`VERDICTS`; the step passes on ``refused`` (an attack)
        or ``as expected`` (a baseline). A REST call the hub refuses ends the probe as
        ``refused for another reason``.
        """
        seen = ["refused for another reason"]

        def checked() -> tuple[bool, str]:
            label, got = probe()
            seen[0] = label
            return label in PASSING, got

        step = self.run.check(title, where, expected, checked)
        self.verdicts.append((title, seen[0]))
        return step.ok

    def skip(self, title: str, where: str, expect: Expect | str, why: str) -> None:
        self.run.fail(title, where, expect, f"not played: {why}")
        self.verdicts.append((title, "not played"))

    # --------------------------------------------------------- the attacks

    def secure_band(self, target: Target) -> None:
        """Attacks 1-4: the genuine band, a clone, a replay and a forgery of its SUN data."""
        keys = self.sheet.tags[target.uid]
        band = SecureBand.from_hex_keys(target.uid, keys.meta_read_key, keys.file_read_key)
        lock = target.lock
        self.run.note(f"target: secure band {target.uid} of {target.guest_id} ({target.room}, "
                      f"{lock}), read counters from {band.counter + 1}")
        genuine = band.read()
        first = self.tap("1 baseline: genuine band", lock, genuine, allow())
        baseline_ok = first is not None and first.outcome == "allow" and first.reason == "ok"
        if not baseline_ok:
            got = f"{first.outcome} {first.reason.value}" if first else "no decision"
            hint = (" (the hub has accepted a higher read counter for this band: counters "
                    "start at unix seconds mod 2**23)" if first is not None
                    and first.reason is EntryReason.CREDENTIAL_REPLAYED else "")
            self.run.note(f"BASELINE FAILED: the genuine band {target.uid} got {got} at {lock}"
                          f"{hint}; the setup is not what this scenario needs, so the refusals "
                          "below prove little")
        self.tap("2 cloned band (UID only)", lock, WristbandCredential(uid=target.uid),
                 deny(EntryReason.CREDENTIAL_FORGED))
        replay_title = "3 replayed SUN"
        if baseline_ok:
            self.tap(replay_title, lock, genuine, deny(EntryReason.CREDENTIAL_REPLAYED))
        else:
            self.skip(replay_title, lock, deny(EntryReason.CREDENTIAL_REPLAYED),
                      "step 1 was not accepted, so nothing can be replayed")
        fresh = band.read()
        forged = WristbandSunCredential(picc=fresh.picc, cmac=flip_bit(fresh.cmac, 0))
        self.tap("4 forged SUN (1 bit)", lock, forged,
                 deny(EntryReason.CREDENTIAL_FORGED))

    def phone_key(self, target: Target) -> None:
        """Attacks 5-6: a captured phone key replayed, re-proved by the attacker, revoked."""
        api, lock = self.run.api, target.lock
        titles = ("5a baseline: phone key",
                  "5b replayed phone tap",
                  "5c attacker-signed proof",
                  "6 revoked phone key")
        expects = (allow(), deny(EntryReason.CREDENTIAL_REPLAYED),
                   deny(EntryReason.CREDENTIAL_FORGED), deny(EntryReason.CREDENTIAL_REVOKED))
        try:
            credential = api.create_credential(target.guest_id, "phone_key",
                                               label="intruder scenario phone")
            phone, phone_jwk = phone_keypair()
            issued = api.issue_phone_key(credential.id, phone_jwk)
        except HubApiError as exc:
            for title, expect in zip(titles, expects, strict=True):
                self.skip(title, lock, expect, f"no phone key: {exc}")
            return
        self.run.note(f"phone credential {credential.id} of {target.guest_id}, "
                      f"key jti {issued.jti}, zones {', '.join(issued.zones)}")

        def answer(key: Any, challenge: str) -> PhoneKeyCredential:
            proof = make_proof(key, challenge=challenge, lock_id=lock, key_jti=issued.jti,
                               now=datetime.now(UTC))
            return PhoneKeyCredential(token=issued.token, challenge=challenge, proof=proof)

        captured = answer(phone, new_challenge())
        self.tap(titles[0], lock, captured, expects[0])
        # The very (token, challenge, proof) triple of 5a, in a new tap event.
        self.tap(titles[1], lock, captured, expects[1])
        # The captured token answering a new challenge, signed by a key the attacker made.
        attacker, _ = phone_keypair()
        self.tap(titles[2], lock, answer(attacker, new_challenge()), expects[2])
        try:
            api.set_credential_status(credential.id, "revoked")
        except HubApiError as exc:
            self.skip(titles[3], lock, expects[3], f"revocation refused: {exc}")
            return
        self.tap(titles[3], lock, answer(phone, new_challenge()), expects[3])

    def rogue_device(self, target: Target) -> None:
        """Attack 7: device A, logged in as itself, goes after device B's topics and login."""
        run, sheet = self.run, self.sheet
        a = target.lock
        b = other_device([d.id for d in run.api.devices(kind="door_lock")], a, sheet.devices)
        titles = ("7a A reads B's decisions", "7b A taps on B's topic",
                  "7c A with B's password")
        if b is None:
            for title in titles:
                self.skip(title, a, "refused", "no second provisioned door lock")
            return
        where = a
        run.note(f"7: rogue device A = {a} (its own broker login), victim B = {b}")
        a_login, b_login = sheet.devices[a], sheet.devices[b]
        venue = b_login.venue
        b_client = self.device(b)

        # 7a: A subscribes to B's decisions; then B taps at its own lock and gets a decision.
        expected = "A hears nothing"
        with RawClient(self.host, self.port, a_login.username, a_login.password,
                       name=f"rogue-{a}") as spy:
            if spy.connect() != SUCCESS:
                self.skip(titles[0], where, expected, f"{a}'s own login refused")
            else:
                suback = spy.subscribe(device_topic(venue, b, Channel.DECISIONS))
                leaked: list[tuple[str, bytes]] = []

                def overhear() -> tuple[bool, str]:
                    try:
                        control = b_client.tap(WristbandCredential(uid=random_uid()),
                                               timeout=run.timeout)
                    except (NoReply, HubError) as exc:
                        return False, f"not played: B's own tap got no decision ({exc})"
                    leaked.extend(spy.received(QUIET_S))
                    run.note(f"7a: SUBACK {suback_text(suback)}; B's own tap got "
                             f"{control.outcome} {control.reason.value}")
                    if leaked:
                        return False, f"A heard {len(leaked)}: {leaked[0][1][:60]!r}"
                    return True, f"A heard nothing in {QUIET_S:g}s"

                step = run.check(titles[0], where, expected, overhear)
                self.verdicts.append((titles[0], "refused" if step.ok else
                                      "let through" if leaked else "not played"))

        # 7b: A publishes a tap on B's events topic; B listens on its decisions and errors.
        expected = "B gets no reply"
        with RawClient(self.host, self.port, a_login.username, a_login.password,
                       name=f"rogue-{a}") as rogue:
            if rogue.connect() != SUCCESS:
                self.skip(titles[1], where, expected, f"{a}'s own login refused")
            else:
                def impersonate() -> tuple[bool, str]:
                    event = TapEvent(event_id=new_event_id(), ts=utcnow(),
                                     credential=WristbandCredential(uid=random_uid()))
                    reply = b_client.expect(event.event_id)  # before publishing
                    acked = rogue.publish(device_topic(venue, b, Channel.EVENTS), encode(event))
                    run.note(f"7b: the broker {'acknowledged' if acked else 'did not ack'} "
                             "A's publish (QoS 1)")
                    try:
                        answer = reply.result(QUIET_S)
                    except HubError as exc:
                        return False, f"B got error {exc}"
                    except TimeoutError:
                        return True, f"nothing in {QUIET_S:g}s"
                    return False, f"B got {answer.outcome} {answer.reason.value}"

                step = run.check(titles[1], where, expected, impersonate)
                self.verdicts.append((titles[1], "refused" if step.ok else "let through"))

        # 7c: A's username with B's password.
        expected = f"CONNACK {NOT_AUTHORIZED}"
        answered: list[str | None] = []

        def borrow_password() -> tuple[bool, str]:
            answered.append(connack(self.host, self.port, a_login.username, b_login.password))
            code = answered[0]
            return code == NOT_AUTHORIZED, f"CONNACK {code}" if code else "no CONNACK"

        step = run.check(titles[2], where, expected, borrow_password)
        self.verdicts.append((titles[2], "refused" if step.ok else
                              "let through" if answered and answered[0] == SUCCESS else
                              "refused for another reason"))

    def summarize(self) -> None:
        attacks = [(t, v) for t, v in self.verdicts if "baseline" not in t]
        refused = sum(v == "refused" for _, v in attacks)
        self.run.note(f"summary: {refused} of {len(attacks)} attacks refused for the right reason")
        for label in VERDICTS[1:]:
            if label == "as expected":
                continue
            names = [t.split(":")[0] for t, v in self.verdicts if v == label]
            if names:
                self.run.note(f"  {label}: {', '.join(names)}")


def _sheet_of(path: Path) -> Sheet:
    try:
        return load_sheet(path)
    except FileNotFoundError:
        raise NotPlayable(
            f"no provisioning sheet at {path}: the hub writes it to "
            "<data_dir>/demo-provisioning.json when started with `hub up --demo` "
            "(pass --provisioning or HUB_SIM_PROVISIONING)") from None
    except PermissionError:
        raise NotPlayable(f"cannot read {path} (it is 0600: run as the hub's user)") from None
    except SheetError as exc:
        raise NotPlayable(f"{path} is not a provisioning sheet: {exc}") from None


def _require_secure_broker(sheet: Sheet, path: Path) -> None:
    """NotPlayable when the broker lets anyone in; HubUnreachable when it is not there."""
    host, port = sheet.connect_host, sheet.broker_port
    try:
        answer = connack(host, port, None, None)
    except OSError as exc:
        raise HubUnreachable(f"MQTT broker mqtt://{host}:{port} (from {path}): {exc}") from None
    if answer is None:
        raise HubUnreachable(f"no CONNACK from mqtt://{host}:{port} (from {path})")
    if answer == SUCCESS:
        raise NotPlayable(
            f"the broker at mqtt://{host}:{port} (from {path}) accepts clients without "
            "credentials: the hub was started with --open-broker")


def intruder(run: Run) -> None:
    """An attacker against `hub up --demo` and its closed broker: cloned, replayed and
    forged bands and phone keys, revoked and superseded keys, a rogue device, reserved
    ids, bare ids, forged offline entries, an anonymous client, an erased guest's token
    and a password guesser; every attack must be refused for its reason and recorded."""
    path = run.provisioning or DEFAULT_PROVISIONING
    sheet = _sheet_of(path)
    _require_secure_broker(sheet, path)
    run.note(f"broker mqtt://{sheet.connect_host}:{sheet.broker_port} (from {path}); "
             "refuses clients without credentials")
    target = find_target(run, sheet)
    attacker = Intruder(run, sheet, path)
    try:
        attacker.secure_band(target)
        attacker.phone_key(target)
        attacker.rogue_device(target)
        doors.reserved_venues(attacker)
        doors.bridge_login(attacker)
        phone = doors.superseded_key(attacker, target)
        doors.bare_ids(attacker, target, phone)
        doors.forged_offline_entries(attacker, target, phone)
        doors.anonymous_client(attacker)
        accounts.erased_guest_token(attacker)
        accounts.brute_force(attacker)  # last: it leaves a throttle behind (intruder_api)
    finally:
        attacker.close()
        attacker.summarize()


__all__ = [
    "DEFAULT_PROVISIONING",
    "DeviceLogin",
    "RawClient",
    "Sheet",
    "SheetError",
    "TagKeys",
    "Target",
    "connack",
    "connect_host",
    "current_room",
    "flip_bit",
    "intruder",
    "load_sheet",
    "other_device",
    "parse_sheet",
    "verdict",
]

