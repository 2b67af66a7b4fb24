"""A presented credential, checked: its cryptography, the store's record of it (tag
counters, used challenges, revoked keys) and why it must not be trusted."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from devices.contract import PhoneKeyCredential, WristbandCredential, WristbandSunCredential
from hub.models import Credential, Device, Venue
from hub.presented import (
    CredentialProblem,
    Presented,
    Trust,
    problem_of,
    resolve,
    verify_signed_phone_key,
)
from hub.store.guests import advance_tag_counter, revoked_key_ids, use_challenge
from hub.store.registry import UNCACHED, Registry

AnyCredential = WristbandCredential | WristbandSunCredential | PhoneKeyCredential


def present(session: Session, *, credential: AnyCredential, trust: Trust, venue_id: str,
            device_id: str, now: datetime) -> Presented:
    """Resolve what a reader presented, verifying its cryptography against ``trust``."""
    if isinstance(credential, PhoneKeyCredential) and credential.token is not None:
        return verify_signed_phone_key(credential, jwks=trust.jwks, venue=venue_id,
                                       lock_id=device_id, revoked=revoked_key_ids(session=session),
                                       now=now)
    return resolve(credential, master_key=trust.tag_master_key)


def authenticate(session: Session, *, presented: Presented, venue_id: str, device_id: str,
                 now: datetime, registry: Registry = UNCACHED,
                 ) -> tuple[Credential | None, CredentialProblem | None]:
    """The credential a tap presented, and why it must not be trusted (or None).

    With ``registry``, the credential and venue are read through that cache (detached
    copies: for deciding, not for changing).
    """
    credential = None
    if presented.credential_id is not None:
        credential = registry.get(session, Credential, presented.credential_id)
        if credential is not None and credential.key_jti != presented.identifier:
            credential = None  # a key this credential no longer carries
    elif presented.identifier:
        # A forgery that names a known band (a SUN read whose MAC fails) is recorded as an
        # attempt on that guest's band; problem_of refuses it all the same.
        credential = registry.credential(session, kind=presented.kind,
                                         identifier=presented.identifier)
    advanced = bool(credential and presented.counter is not None and advance_tag_counter(
        session=session, credential_id=credential.id, counter=presented.counter, at=now))
    fresh = presented.challenge is None or use_challenge(
        session=session, device_id=device_id, challenge=presented.challenge, now=now)
    venue = registry.get(session, Venue, venue_id)
    device = registry.get(session, Device, device_id)
    allow = device.allow_plain_uid if device is not None and device.allow_plain_uid is not None \
        else (venue.allow_plain_uid if venue else False)
    return credential, problem_of(presented, credential, counter_advanced=advanced,
                                  allow_plain_uid=allow, fresh_challenge=fresh)

