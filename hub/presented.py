"""What a reader presented: resolved to a credential identifier and checked for
authenticity. Pure: the caller passes the venue's tag master key.

Secure wristbands (NTAG 424 DNA) are keyed as NXP AN12196 deployments usually
are: the SDM meta-read key, which encrypts the PICC data, is one key per venue
(the reader cannot know the UID before decrypting), and the SDM file-read key,
which keys the MAC, is diversified per tag from the venue master key (AN10922).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import jwt

from devices.contract import PhoneKeyCredential, WristbandCredential, WristbandSunCredential
from devices.phone_key import PhoneKeyError, Reason, verify_phone_key
from devices.sun import SunError, decrypt_picc_data, diversify_key, verify_sun
from hub.models import Credential, CredentialKind

_META = b"venuehub-sdm-meta"
_FILE = b"venuehub-sdm-file"
_NO_UID = bytes(7)


class CredentialProblem(StrEnum):
    """Why a presented credential cannot be trusted; no problem (None) is a genuine one.

    The one vocabulary of what the cryptography and the hub's records say about a band or
    key: entry (``hub.entry.PROBLEMS``) and payment (``hub.payment.PROBLEMS``) each map it
    to their own wire reasons through one table.
    """

    FORGED = "forged"  # SUN data or a phone key (or its proof) that does not verify
    REPLAYED = "replayed"  # a read counter or a lock's challenge seen before; a stale proof
    INSECURE = "insecure"  # a bare UID or key id where a proof is required
    EXPIRED = "expired"  # a signed phone key past its ``exp``
    NOT_YET_VALID = "not_yet_valid"  # a signed phone key before its ``nbf``
    REVOKED = "revoked"  # a signed phone key on the revocation list


@dataclass(frozen=True)
class Trust:
    """The key material a tap is checked against."""

    tag_master_key: bytes | None = field(default=None, repr=False)
    jwks: Mapping[str, Any] | None = None  # the hub's phone-key signing keys (public)


def issuer(venue: str) -> str:
    """The ``iss`` of the phone keys this hub signs for a venue."""
    return f"venuehub:{venue}"


@dataclass(frozen=True)
class Presented:
    """The credential a tap claims to be, and what its cryptography proved."""

    kind: CredentialKind
    identifier: str
    secure: bool = False  # proved by a valid SUN MAC or a signed phone key and its proof
    forged: bool = False  # SUN data or a phone key that does not verify
    counter: int | None = None  # the tag's read counter, for replay detection
    credential_id: str | None = None  # named by a signed phone key
    problem: CredentialProblem | None = None  # decided by the cryptography itself
    challenge: str | None = None  # the lock's nonce a signed phone key answered
    # What the cryptography found wrong, in words for staff (the journey's detail, the log):
    # e.g. "proof_bad_signature: signature does not verify". Never sent to the reader.
    why: str | None = None

# Why a signed phone key failed, as a problem; any reason not here is a forgery.
_PHONE_PROBLEMS: dict[Reason, CredentialProblem] = {
    Reason.KEY_EXPIRED: CredentialProblem.EXPIRED,
    Reason.KEY_NOT_YET_VALID: CredentialProblem.NOT_YET_VALID,
    Reason.KEY_REVOKED: CredentialProblem.REVOKED,
    Reason.PROOF_WRONG_CHALLENGE: CredentialProblem.REPLAYED,
    Reason.PROOF_WRONG_LOCK: CredentialProblem.REPLAYED,
    Reason.PROOF_STALE: CredentialProblem.REPLAYED,
}


def verify_signed_phone_key(credential: PhoneKeyCredential, *, jwks: Mapping[str, Any] | None,
                            venue: str, lock_id: str, revoked: Collection[str],
                            now: datetime) -> Presented:
    """Check a signed phone key and its proof of possession for this lock's challenge."""
    if credential.token is None or credential.challenge is None or jwks is None:
        return Presented(CredentialKind.PHONE_KEY, "", forged=True,
                         problem=CredentialProblem.FORGED,
                         why="no_signing_keys: the hub has no phone-key keys to verify with")
    try:
        key = verify_phone_key(credential.token, credential.proof, jwks=jwks,
                               issuer=issuer(venue), audience=venue,
                               challenge=credential.challenge, lock_id=lock_id,
                               revoked=revoked, now=now)
    except PhoneKeyError as exc:
        jti, credential_id = _claimed(credential.token)
        return Presented(CredentialKind.PHONE_KEY, jti, forged=True, credential_id=credential_id,
                         problem=_PHONE_PROBLEMS.get(exc.reason, CredentialProblem.FORGED),
                         why=f"{exc.reason.value}: {exc.detail}")
    return Presented(CredentialKind.PHONE_KEY, key.jti, secure=True,
                     credential_id=key.credential_id, challenge=credential.challenge)


def _claimed(token: str) -> tuple[str, str | None]:
    """The (key jti, credential id) a phone key that failed verification claims to be.

    Unverified, so it only names whom the attempt imitates:
    ``credential_checks.authenticate`` counts it as that guest's only when the jti is the
    one their credential carries now, which only someone who saw the guest's real key
    knows (a replayed or tampered key, a revoked one).
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        return "", None
    jti, cid = claims.get("jti"), claims.get("cid")
    if isinstance(jti, str) and isinstance(cid, str) and 0 < len(jti) <= 128 \
            and 0 < len(cid) <= 64:
        return jti, cid
    return "", None


def tag_keys(master_key: bytes, uid: bytes) -> tuple[bytes, bytes]:
    """(meta-read key of the venue, file-read key of this tag) from the venue master key."""
    meta = diversify_key(master_key, _NO_UID, application_info=_META)
    return meta, diversify_key(master_key, uid, application_info=_FILE)


def resolve(credential: WristbandCredential | WristbandSunCredential | PhoneKeyCredential, *,
            master_key: bytes | None) -> Presented:
    """Resolve a presented credential; SUN data is decrypted and its MAC verified."""
    if isinstance(credential, WristbandCredential):
        return Presented(CredentialKind.WRISTBAND, credential.uid.upper())
    if isinstance(credential, PhoneKeyCredential):
        # Signed keys are verified by verify_signed_phone_key, which needs the revocations.
        return Presented(CredentialKind.PHONE_KEY, credential.key_id or "")
    if master_key is None:
        return Presented(CredentialKind.WRISTBAND, "", forged=True,
                         why="no_tag_key: the hub has no tag master key to check SUN data")
    meta, _ = tag_keys(master_key, _NO_UID)
    try:
        picc = decrypt_picc_data(bytes.fromhex(credential.picc), meta)
    except SunError as exc:
        return Presented(CredentialKind.WRISTBAND, "", forged=True,
                         why=f"sun_bad_data: not encrypted under this venue's key ({exc})")
    try:
        _, file_key = tag_keys(master_key, picc.uid)
        verified = verify_sun(credential.picc, credential.cmac, meta_read_key=meta,
                              file_read_key=file_key)
    except SunError as exc:
        # The UID decrypted under the venue's key but the MAC is wrong: an attempt to pass
        # as that band, recorded as the guest's (never let in).
        return Presented(CredentialKind.WRISTBAND, picc.uid_hex, forged=True,
                         why=f"sun_bad_mac: the SUN MAC does not verify ({exc})")
    return Presented(CredentialKind.WRISTBAND, verified.uid_hex, secure=True,
                     counter=verified.read_ctr)


def problem_of(presented: Presented, credential: Credential | None, *, counter_advanced: bool,
               allow_plain_uid: bool, fresh_challenge: bool = True) -> CredentialProblem | None:
    """Why a presented credential must not be trusted, or None (genuine)."""
    if presented.forged:
        return presented.problem or CredentialProblem.FORGED
    if presented.challenge is not None and not fresh_challenge:
        return CredentialProblem.REPLAYED  # this lock's challenge was answered before
    if credential is None:
        return None  # unknown: the decision says so
    if credential.sun and not presented.secure:
        return CredentialProblem.FORGED  # a secure band's bare UID: a clone
    if credential.key_jti is not None and not presented.secure:
        # A phone key with a signed form: its bare id is a side door around the signature
        # (anyone who learns "pk-guest-03" could open the door), whatever the venue allows.
        return CredentialProblem.INSECURE
    if presented.counter is not None and not counter_advanced:
        return CredentialProblem.REPLAYED
    if not presented.secure and not allow_plain_uid:
        return CredentialProblem.INSECURE  # a bare UID or phone key id: copyable
    return None
