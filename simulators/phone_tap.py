"""A guest's phone at a door, end to end: the steps of the README's phone-key walk-through.

1. the guest's app holds an API token (staff give it at check-in: ``POST
   /guests/{id}/token``);
2. the phone makes its key pair and asks for its key, ``POST
   /credentials/{id}/phone-key`` with its public JWK (the credential's *id*,
   ``phone-guest-01``, not its identifier ``pk-guest-01``);
3. the lock makes a fresh challenge (the hub hands none out: every lock makes its own);
4. the phone answers it with a proof (:class:`devices.phone.Phone`);
5. the lock publishes the tap and the hub decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from devices.client import DeviceClient
from devices.contract import Decision
from devices.phone import Phone
from devices.phone_key import new_challenge
from simulators.rest import HubApi, HubApiError, PhoneKeyIssued


@dataclass(frozen=True)
class PhoneTap:
    """What one phone tap took and got: the credential, the key issued, the decision."""

    credential_id: str
    issued: PhoneKeyIssued
    challenge: str
    decision: Decision
    tap_ms: float  # the tap's round trip alone, from publish to decision


def phone_key_credential(guest_app: HubApi, guest_id: str) -> str:
    """The id of the guest's active phone-key credential (their own app may list them)."""
    for credential in guest_app.guest_credentials(guest_id):
        if credential.kind == "phone_key" and credential.status == "active":
            return credential.id
    raise HubApiError("GET", f"/guests/{guest_id}/credentials", 200,
                      f"guest {guest_id!r} has no active phone key")


def tap_with_phone(guest_app: HubApi, lock: DeviceClient, *, guest_id: str,
                   credential_id: str | None = None, direction: str | None = None,
                   timeout: float = 5.0) -> PhoneTap:
    """Issue a key to a new phone, answer the lock's challenge with it, and tap."""
    credential_id = credential_id or phone_key_credential(guest_app, guest_id)
    phone = Phone.new()
    issued = guest_app.issue_phone_key(credential_id, phone.public_jwk, venue=lock.venue)
    phone.hold(issued.model_dump())
    challenge = new_challenge()  # the lock's, for this tap only
    credential = phone.answer(challenge, lock.device_id)
    started = time.perf_counter()
    decision = lock.tap(credential, direction=direction, timeout=timeout)
    return PhoneTap(credential_id, issued, challenge, decision,
                    (time.perf_counter() - started) * 1000)
