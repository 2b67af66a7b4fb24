"""A hotel door lock that keeps working when the hub is out of reach (the guest's phone is
:class:`devices.phone.Phone`, re-exported here).

Online, the lock sends each tap to the hub and obeys its decision. When no decision
comes (hub or broker down), it verifies the phone key itself against the JWKS and
revocation list it last accepted, opens or refuses, and queues an audit record with
the credential as it saw it (the key, its challenge and the phone's proof); when the
connection returns it uploads the queue, and the hub weighs each record again.

The JWKS and revocation list arrive retained on MQTT, signed by the hub; the lock
believes them only if they verify against its trust anchor, the hub's public JWKS
provisioned with it (devices/key_material.py): a forged list, one for another venue or
an older one replayed is refused and counted in ``refused_material``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.client import DeviceClient, HubError, NoReply
from devices.contract import OfflineEntry, PhoneKeyCredential
from devices.key_material import KeyMaterialError, KeyState
from devices.phone import Phone
from devices.phone_key import PhoneKeyError, new_challenge, verify_phone_key


@dataclass(frozen=True)
class LockDecision:
    """What the lock did with a tap, and whether the hub or the lock itself decided."""

    allowed: bool
    reason: str
    offline: bool


@dataclass
class OfflineLock:
    """A door lock for one room (zone) that falls back on its own verification."""

    venue: str
    device_id: str
    zone_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    timeout: float = 1.0
    username: str | None = None  # its broker login, on a closed broker
    password: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None  # speak TLS, trusting this CA file (the venue's)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # The hub's public JWKS, provisioned out of band (the sheet's key_anchor): without
    # it the lock believes no key material at all, and decides nothing alone.
    anchor: dict[str, Any] | None = None
    keys: KeyState | None = None
    refused_material: list[str] = field(default_factory=list)  # the reasons, in order
    queue: list[OfflineEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: DeviceClient | None = None

    def __post_init__(self) -> None:
        if self.anchor is not None and self.keys is None:
            self.keys = KeyState.from_anchor(self.venue, self.anchor)

    @property
    def jwks(self) -> Mapping[str, Any] | None:
        """The keys phone keys verify against: the anchor, then the last signed JWKS."""
        with self._lock:
            return self.keys.jwks if self.keys is not None else None

    @property
    def revoked(self) -> frozenset[str]:
        """The revoked phone keys' jti, from the last signed list accepted."""
        with self._lock:
            return self.keys.revoked if self.keys is not None else frozenset()

    def connect(self) -> OfflineLock:
        """Connect to the broker and follow the venue's key material."""
        client = DeviceClient(self.venue, self.device_id, host=self.host, port=self.port,
                              username=self.username, password=self.password,
                              tls_ca=self.tls_ca)
        client.watch_keys(self._on_keys)
        self._client = client.connect()
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _on_keys(self, name: str, payload: bytes) -> None:
        if name not in ("jwks", "revocations"):
            return
        with self._lock:
            if self.keys is None:
                self.refused_material.append("no_trust_anchor")
                return
            try:
                self.keys = self.keys.accept("jwks" if name == "jwks" else "revocations",
                                             payload)
            except KeyMaterialError as exc:
                # Keep what was trusted: a forged or older list changes nothing here.
                self.refused_material.append(exc.reason.value)

    def tap(self, phone: Phone) -> LockDecision:
        """A phone at the door: ask the hub, or decide alone when it does not answer."""
        challenge, now = new_challenge(), self.clock()
        credential = phone.answer(challenge, self.device_id, now)
        event_id = uuid.uuid4().hex
        if self._client is not None and self._client.connected:
            try:
                decision = self._client.tap(credential, event_id=event_id, timeout=self.timeout)
                return LockDecision(decision.outcome == "allow", decision.reason.value, False)
            except (NoReply, HubError):
                pass  # the hub is out of reach: decide alone, below
        return self._decide_alone(credential, challenge, event_id, now)

    def _decide_alone(self, credential: PhoneKeyCredential, challenge: str, event_id: str,
                      now: datetime) -> LockDecision:
        jwks, revoked = self.jwks, self.revoked
        ref, cid, guest = "-", None, None
        if jwks is None:
            allowed, reason = False, "no_keys_cached"
        else:
            try:
                key = verify_phone_key(credential.token or "", credential.proof, jwks=jwks,
                                       issuer=f"venuehub:{self.venue}", audience=self.venue,
                                       challenge=challenge, lock_id=self.device_id,
                                       revoked=revoked, now=now)
                ref, cid, guest = key.jti, key.credential_id, key.guest_id
                allowed = self.zone_id in key.zones
                reason = "ok" if allowed else "wrong_zone"
            except PhoneKeyError as exc:
                allowed, reason = False, exc.reason.value
        entry = OfflineEntry(event_id=event_id, ts=now, credential_kind="phone_key",
                             credential_ref=ref, credential_id=cid, guest_id=guest,
                             outcome="allow" if allowed else "deny", reason=reason[:40],
                             credential=credential)  # the proof, for the hub to weigh
        with self._lock:
            self.queue.append(entry)
        return LockDecision(allowed, reason, True)

    def upload(self) -> int:
        """Send the queued audit trail to the hub; returns how many records were sent."""
        if self._client is None or not self._client.connected:
            return 0
        with self._lock:
            pending, self.queue = self.queue, []
        for entry in pending:
            self._client.publish_event(entry)
        return len(pending)
