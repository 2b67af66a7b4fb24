"""The hub's side of phone keys: signing keys, their JWKS, issuing keys, rotation.

The token format, the tap challenge and verification are in :mod:`devices.phone_key`
(shared with locks and phones); this module signs. With :mod:`hub.security` it is the
only hub module that touches PyJWT.

Signing keys are ES256 (P-256). A :class:`SigningKey` is published in :func:`jwks`
and verifies tokens from ``not_before`` to ``not_after``; its ``kid`` is the RFC 7638
thumbprint of its public key, so a kid can never name two different keys. The hub
signs with the newest key that is valid now, and refuses to issue a phone key whose
``exp`` is past that signing key's ``not_after`` (such a key would stop verifying in
the middle of the stay, when its signing key leaves the JWKS).

Rotation, :func:`rotate` ``(keys, now, lifetime, overlap)``, drops the keys whose
``not_after`` has passed and adds a key valid from ``now`` for ``lifetime + overlap``.
Called every ``lifetime``, each key signs for ``lifetime`` and then stays in the JWKS
for ``overlap`` more, beside its successor, so phone keys it signed just before the
rotation keep verifying until its ``not_after``. ``overlap`` must therefore be at
least the longest stay a phone key is issued for::

    key 1  |== signs ==|-- verifies --|
    key 2              |== signs ==|-- verifies --|
                       ^ rotate    ^ rotate
                       |<-overlap->|  (here overlap = lifetime)

Keys are stored by :func:`save_keys` as JSON (one PKCS#8 PEM private key per entry,
unencrypted) in a file created with mode 0600 and swapped in atomically; the file
mode is the protection. ``repr()`` of a :class:`SigningKey` and :func:`jwks` never
show private material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from devices.phone_key import ALGORITHM, KEY_TYP, public_jwk

__all__ = [
    "FILE_MODE",
    "SigningKey",
    "current_signing_key",
    "issue_phone_key",
    "jwks",
    "load_keys",
    "material_signing_key",
    "new_signing_key",
    "rotate",
    "save_keys",
]

FILE_MODE = 0o600
_FORMAT_VERSION = 1


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, eq=False, slots=True)
class SigningKey:
    """One hub signing key (ES256) and the period in which it verifies phone keys."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey
    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.private_key.curve, ec.SECP256R1
        ):
            raise TypeError("a signing key must be an EC P-256 private key")
        _aware(self.not_before, "not_before")
        _aware(self.not_after, "not_after")
        if self.not_after <= self.not_before:
            raise ValueError("not_after must be after not_before")

    def __repr__(self) -> str:
        # Never the private key: reprs end up in logs and tracebacks.
        return (
            f"SigningKey(kid={self.kid!r}, not_before={self.not_before.isoformat()}, "
            f"not_after={self.not_after.isoformat()})"
        )

    def valid_at(self, now: datetime) -> bool:
        """Whether the key is in its validity period at ``now``."""
        return self.not_before <= now < self.not_after


def _thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key."""
    members = public_jwk(key)  # exactly the required members of an EC key: crv, kty, x, y
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def new_signing_key(now: datetime, lifetime: timedelta) -> SigningKey:
    """A fresh P-256 signing key valid from ``now`` for ``lifetime``."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(_thumbprint(private_key), private_key, now, now + lifetime)


def rotate(
    keys: Sequence[SigningKey], now: datetime, lifetime: timedelta, overlap: timedelta
) -> list[SigningKey]:
    """Drop expired keys, keep the others until their not_after, add a new signing key.

    The new key is valid from ``now`` for ``lifetime + overlap`` (see the module
    docstring); oldest first, the new key last.
    """
    kept = sorted((k for k in keys if k.not_after > now), key=lambda k: k.not_before)
    return [*kept, new_signing_key(now, lifetime + overlap)]


def current_signing_key(keys: Sequence[SigningKey], now: datetime) -> SigningKey:
    """The newest key valid at ``now``; ValueError when there is none (rotate first)."""
    valid = [k for k in keys if k.valid_at(now)]
    if not valid:
        raise ValueError(f"no signing key is valid at {now.isoformat()}: rotate the keys")
    return max(valid, key=lambda k: k.not_before)


def material_signing_key(keys: Sequence[SigningKey], now: datetime) -> SigningKey:
    """The key that signs key material (the JWKS, revocations): the *oldest* valid at ``now``.

    The oldest, so that the JWKS announcing a new signing key is signed by the key locks
    already trust (see :mod:`devices.key_material`); ValueError when none is valid.
    """
    valid = [k for k in keys if k.valid_at(now)]
    if not valid:
        raise ValueError(f"no signing key is valid at {now.isoformat()}: rotate the keys")
    return min(valid, key=lambda k: k.not_before)


def jwks(keys: Sequence[SigningKey]) -> dict[str, Any]:
    """The public JWK Set locks verify with: kid, alg ES256, use sig; no private parts."""
    return {
        "keys": [
            {**public_jwk(k.private_key), "kid": k.kid, "alg": ALGORITHM, "use": "sig"}
            for k in keys
        ]
    }


def _phone_public_jwk(phone_jwk: dict[str, Any]) -> dict[str, str]:
    """The phone's JWK reduced to its public P-256 members, after checking it is one."""
    if "d" in phone_jwk:
        # A private key in the request means the phone's secret left the phone: refuse it.
        raise ValueError("phone_jwk must be a public key")
    if phone_jwk.get("kty") != "EC" or phone_jwk.get("crv") != "P-256":
        raise ValueError("phone_jwk must be an EC P-256 key")
    try:
        public = ECAlgorithm.from_jwk(dict(phone_jwk))  # also checks the point is on the curve
    except (jwt.PyJWTError, ValueError) as exc:
        raise ValueError(f"phone_jwk is not a valid P-256 key: {exc}") from None
    return public_jwk(public)  # public part only, whatever from_jwk returned


def issue_phone_key(
    keys: Sequence[SigningKey],
    *,
    now: datetime,
    issuer: str,
    venue: str,
    guest_id: str,
    credential_id: str,
    zones: Sequence[str],
    nbf: datetime,
    exp: datetime,
    phone_jwk: dict[str, Any],
) -> tuple[str, str]:
    """Sign a phone key for a stay with the newest valid key; returns (token, jti)."""
    for name, value in (("now", now), ("nbf", nbf), ("exp", exp)):
        _aware(value, name)
    if exp <= nbf:
        raise ValueError("exp must be after nbf")
    if isinstance(zones, str) or not zones or not all(isinstance(z, str) and z for z in zones):
        raise ValueError("zones must be a non-empty list of zone ids")
    for name, text in (("issuer", issuer), ("venue", venue), ("guest_id", guest_id),
                       ("credential_id", credential_id)):
        if not text:
            raise ValueError(f"{name} must be non-empty")
    signer = current_signing_key(keys, now)
    if exp > signer.not_after:
        raise ValueError(
            f"exp {exp.isoformat()} is past the signing key's not_after "
            f"{signer.not_after.isoformat()}: rotate with a longer overlap"
        )
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": venue,
        "sub": guest_id,
        "cid": credential_id,
        "scope": {"zones": list(zones)},
        "nbf": int(nbf.timestamp()),
        "exp": int(exp.timestamp()),
        "iat": int(now.timestamp()),
        "jti": jti,
        "cnf": {"jwk": _phone_public_jwk(phone_jwk)},
    }
    token = jwt.encode(
        claims, signer.private_key, algorithm=ALGORITHM, headers={"kid": signer.kid, "typ": KEY_TYP}
    )
    return token, jti


# ---------------------------------------------------------------- storage


def save_keys(path: Path | str, keys: Sequence[SigningKey]) -> None:
    """Write the keys (PEM private keys in JSON) to ``path``, mode 0600, atomically."""
    path = Path(path)
    document = {
        "version": _FORMAT_VERSION,
        "keys": [
            {
                "kid": k.kid,
                "not_before": k.not_before.isoformat(),
                "not_after": k.not_after.isoformat(),
                "private_key": k.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
            }
            for k in keys
        ],
    }
    data = json.dumps(document, indent=2).encode()
    # A temporary file beside the target, then rename: a crash never leaves half a key file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask can only narrow it; make it exact
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_keys(path: Path | str) -> list[SigningKey]:
    """Read the keys written by :func:`save_keys`; ValueError when the file is not such a bundle."""
    try:
        document = json.loads(Path(path).read_bytes())
        if document.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported key file version {document.get('version')!r}")
        keys = []
        for entry in document["keys"]:
            private_key = serialization.load_pem_private_key(
                entry["private_key"].encode(), password=None
            )
            if not isinstance(private_key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"key {entry['kid']!r} is not an EC key")
            keys.append(
                SigningKey(
                    kid=entry["kid"],
                    private_key=private_key,
                    not_before=datetime.fromisoformat(entry["not_before"]),
                    not_after=datetime.fromisoformat(entry["not_after"]),
                )
            )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a signing key file: {exc!r}") from None
    return keys


def ensure_keys(path: Path, now: datetime, *, lifetime: timedelta,
                overlap: timedelta) -> list[SigningKey]:
    """Load the signing keys, rotating (and saving) when none will sign for ``overlap``."""
    keys = load_keys(path) if path.exists() else []
    if not any(k.valid_at(now) and k.not_after - now > overlap for k in keys):
        keys = rotate(keys, now, lifetime, overlap)
        save_keys(path, keys)
    return keys


def ensure_signing_keys(data_dir: Path, now: datetime, *, rotation_days: int,
                        overlap_days: int) -> list[SigningKey]:
    """The hub's phone-key signing keys under ``data_dir`` (``secrets/``), made or rotated
    as ``ensure_keys`` does: by ``hub init``, so that every host copying the secrets it
    made gets the same keys, and by every hub process at start."""
    return ensure_keys(data_dir / "secrets" / "phone-signing-keys.json", now,
                       lifetime=timedelta(days=rotation_days),
                       overlap=timedelta(days=overlap_days))
