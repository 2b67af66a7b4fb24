"""What a reader presented: resolved to a credential identifier and checked for
authenticity. Pure: the caller passes the venue's tag master key.

Secure wristbands (NTAG 424 DNA) are keyed as NXP AN12196 deployments usually
are: the SDM meta-read key, which encrypts the PICC data, is one key per venue
(the reader cannot know the UID before decrypting), and the SDM file-read key,
which keys the MAC, is diversified per tag from the venue master key (AN10922).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.contract import PhoneKeyCredential, WristbandCredential, WristbandSunCredential
from devices.sun import SunError, decrypt_picc_data, diversify_key, verify_sun
from hub.models import Credential, CredentialKind

_META = b"venuehub-sdm-meta"
_FILE = b"venuehub-sdm-file"
_NO_UID = bytes(7)


@dataclass(frozen=True)
class Presented:
    """The credential a tap claims to be, and what its cryptography proved."""

    kind: CredentialKind
    identifier: str
    secure: bool = False  # proved by a valid SUN MAC
    forged: bool = False  # SUN data that does not verify
    counter: int | None = None  # the tag's read counter, for replay detection


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
        return Presented(CredentialKind.PHONE_KEY, credential.key_id)
    if master_key is None:
        return Presented(CredentialKind.WRISTBAND, "", forged=True)
    meta, _ = tag_keys(master_key, _NO_UID)
    try:
        picc = decrypt_picc_data(bytes.fromhex(credential.picc), meta)
        _, file_key = tag_keys(master_key, picc.uid)
        verified = verify_sun(credential.picc, credential.cmac, meta_read_key=meta,
                              file_read_key=file_key)
    except SunError:
        return Presented(CredentialKind.WRISTBAND, "", forged=True)
    return Presented(CredentialKind.WRISTBAND, verified.uid_hex, secure=True,
                     counter=verified.read_ctr)


def problem_of(presented: Presented, credential: Credential | None, *, counter_advanced: bool,
               allow_plain_uid: bool) -> str | None:
    """Why a presented credential must not be trusted (a reason code), or None."""
    if presented.forged:
        return "credential_forged"
    if credential is None:
        return None  # unknown: the decision says so
    if credential.sun and not presented.secure:
        return "credential_forged"  # a secure band's bare UID: a clone
    if presented.counter is not None and not counter_advanced:
        return "credential_replayed"
    if presented.kind is CredentialKind.WRISTBAND and not presented.secure and not allow_plain_uid:
        return "insecure_credential"
    return None
