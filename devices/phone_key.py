"""Signed phone keys and the tap challenge: issued by the hub, verified offline by locks.

A *phone key* is a JWT (RFC 7519) signed by the hub with ES256 (ECDSA P-256, SHA-256):

- header: ``alg: "ES256"``, ``kid`` (which hub signing key, looked up in the hub's
  JWKS), ``typ: "vh-phone-key+jwt"``;
- claims: ``iss`` (the hub's issuer string, e.g. ``"venuehub:demo-resort"``), ``aud``
  (the venue id, a single string), ``sub`` (guest id), ``cid`` (credential id),
  ``scope: {"zones": [...]}`` (the zones and rooms it opens), ``nbf``/``exp`` (the
  stay), ``iat``, ``jti`` (unique, what revocation lists name) and
  ``cnf: {"jwk": <the phone's public P-256 JWK>}`` (RFC 7800 proof of possession:
  the private half is generated on the phone and never leaves it).

The key alone does not open anything: it can be copied off a screen or out of the
air. On a tap the lock sends the phone a fresh challenge (:func:`new_challenge`, 16
random bytes, base64url) and the phone answers with the key and a *proof*
(:func:`make_proof`): a compact JWS, ES256, ``typ: "vh-key-proof+jwt"``, signed with
the phone's private key, claims ``{"nonce": challenge, "lock": lock id, "iat": now,
"jti": random, "key": <the phone key's jti>}``. A captured key and proof are worth
nothing at the next tap, whose challenge differs.

:func:`verify_phone_key` checks, in this order, and raises :class:`PhoneKeyError` with
the first failing ``reason``:

1. the key is a compact JWS of reasonable size (``key_malformed``) whose header ``alg``
   is exactly ``ES256`` (``key_bad_alg``: ``none``, ``HS256`` — including the classic
   HMAC-keyed-with-the-public-key confusion — and everything else);
2. its ``kid`` names a P-256 signing key of the JWKS (``key_unknown_kid``); keys carried
   in the token itself (``jwk``, ``jku``, ``x5u`` headers) are never used;
3. the signature (``key_bad_signature``), every claim above present (``key_malformed``),
   ``iss`` (``key_wrong_issuer``), ``aud`` exactly this venue, a string
   (``key_wrong_audience``), claims well-typed and ``typ`` right (``key_malformed``),
   ``exp`` (``key_expired``), ``nbf`` and ``iat`` (``key_not_yet_valid``), all against
   the caller's ``now`` with ``leeway_s`` seconds of slack (PyJWT's own time checks
   read the wall clock, so they are switched off and done here, which also makes them
   testable with a fixed clock);
4. the proof is present (``proof_missing``), is an ES256 JWS of the proof ``typ`` with
   a ``jti``, signed by ``cnf.jwk`` (``proof_bad_signature``, which also covers a proof
   that is not a well-formed one: there is no "proof malformed"), its ``nonce`` is the
   challenge the lock issued (``proof_wrong_challenge``), its ``lock`` is this lock
   (``proof_wrong_lock``), its ``key`` is the key's ``jti`` (``proof_wrong_key``) and
   its ``iat`` is within ±30 s of ``now`` (``proof_stale``);
5. the key's ``jti`` is not revoked (``key_revoked``); last, so only the phone holding
   the key can learn that it was revoked.

Everything here is a pure function without I/O, shared by the hub (which issues),
locks (which verify) and phones (which prove). Signing and verification come from
PyJWT and ``cryptography``.
"""

from __future__ import annotations

import base64
import math
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.types import Options

__all__ = [
    "ALGORITHM",
    "CHALLENGE_BYTES",
    "DEFAULT_LEEWAY_S",
    "KEY_TYP",
    "MAX_TOKEN_CHARS",
    "PROOF_TYP",
    "PROOF_WINDOW_S",
    "PhoneKeyError",
    "Reason",
    "VerifiedKey",
    "make_proof",
    "new_challenge",
    "phone_keypair",
    "public_jwk",
    "verify_phone_key",
]

ALGORITHM = "ES256"
KEY_TYP = "vh-phone-key+jwt"
PROOF_TYP = "vh-key-proof+jwt"
CHALLENGE_BYTES = 16
DEFAULT_LEEWAY_S = 30
PROOF_WINDOW_S = 30  # the proof's iat may be this far from the lock's clock, either way
# A phone key with a JWK and a few zones is well under 1 KiB; a lock should not parse
# (or base64-decode) megabytes handed to it over NFC or BLE.
MAX_TOKEN_CHARS = 8192

# Every PyJWT check that reads the wall clock is off: times are checked against `now`.
_KEY_OPTIONS: Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "require": ["iss", "aud", "sub", "cid", "scope", "nbf", "exp", "iat", "jti", "cnf"],
    "strict_aud": True,  # aud is one string, the venue id; no lists
}
_PROOF_OPTIONS: Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,  # a proof is addressed by its `lock` claim, not by aud
    "verify_iss": False,
}


class Reason(StrEnum):
    """Why a phone key or its proof was refused; stable, machine-readable."""

    KEY_MALFORMED = "key_malformed"
    KEY_BAD_ALG = "key_bad_alg"
    KEY_UNKNOWN_KID = "key_unknown_kid"
    KEY_BAD_SIGNATURE = "key_bad_signature"
    KEY_EXPIRED = "key_expired"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_WRONG_AUDIENCE = "key_wrong_audience"
    KEY_WRONG_ISSUER = "key_wrong_issuer"
    KEY_REVOKED = "key_revoked"
    PROOF_MISSING = "proof_missing"
    PROOF_BAD_SIGNATURE = "proof_bad_signature"
    PROOF_WRONG_CHALLENGE = "proof_wrong_challenge"
    PROOF_WRONG_LOCK = "proof_wrong_lock"
    PROOF_STALE = "proof_stale"
    PROOF_WRONG_KEY = "proof_wrong_key"


class PhoneKeyError(Exception):
    """A phone key or proof was refused; ``reason`` says why (a :class:`Reason`)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"PhoneKeyError({self.reason.value!r}, {self.detail!r})"


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """What a verified phone key grants: who, which credential, where, until when."""

    guest_id: str
    credential_id: str
    zones: tuple[str, ...]
    jti: str
    exp: datetime


# ---------------------------------------------------------------- helpers


def _timestamp(now: datetime) -> float:
    # A naive datetime would be read in the machine's local zone: refuse it.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.timestamp()


def _numeric_date(value: Any) -> float | None:
    # bool is an int in Python and json.loads accepts Infinity/NaN: neither is a time.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _p256_public(jwk_dict: Any) -> bool:
    """True for a public (no ``d``) EC P-256 JWK, the only kind that may verify here."""
    return (
        isinstance(jwk_dict, Mapping)
        and jwk_dict.get("kty") == "EC"
        and jwk_dict.get("crv") == "P-256"
        and "d" not in jwk_dict
    )


def _signing_jwk(jwks: Mapping[str, Any], kid: str) -> jwt.PyJWK | None:
    """The ES256 verification key named ``kid`` in the JWKS, if there is a usable one."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    for entry in keys:
        if not (_p256_public(entry) and entry.get("kid") == kid):
            continue
        # A JWKS entry declaring another alg or use is not meant for this, even with our kid.
        if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
            continue
        try:
            # The algorithm is pinned, so the JWK's own fields cannot pick another one.
            return jwt.PyJWK(dict(entry), algorithm=ALGORITHM)
        except jwt.PyJWTError:
            continue
    return None


def _header(token: str, reason: Reason) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_CHARS:
        raise PhoneKeyError(reason, f"longer than {MAX_TOKEN_CHARS} characters")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise PhoneKeyError(reason, f"not a compact JWS: {exc}") from None


# ---------------------------------------------------------------- phone side


def public_jwk(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK (``kty``, ``crv``, ``x``, ``y``) of a P-256 key; never the private part."""
    if key.curve.name != ec.SECP256R1.name:
        raise ValueError(f"phone and hub keys are P-256, not {key.curve.name}")
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    jwk_dict = ECAlgorithm.to_jwk(public, as_dict=True)
    return {name: str(jwk_dict[name]) for name in ("kty", "crv", "x", "y")}


def phone_keypair() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    """A fresh P-256 key pair as a phone makes it: the private key and its public JWK."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    return private_key, public_jwk(private_key)


def new_challenge() -> str:
    """A lock's challenge for one tap: 16 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(CHALLENGE_BYTES)).rstrip(b"=").decode()


def make_proof(
    phone_private_key: ec.EllipticCurvePrivateKey,
    *,
    challenge: str,
    lock_id: str,
    key_jti: str,
    now: datetime,
) -> str:
    """The phone's answer to a challenge: a JWS, signed by the phone, of challenge, lock, key."""
    claims = {
        "nonce": challenge,
        "lock": lock_id,
        "iat": int(_timestamp(now)),
        "jti": secrets.token_urlsafe(16),
        "key": key_jti,
    }
    return jwt.encode(claims, phone_private_key, algorithm=ALGORITHM, headers={"typ": PROOF_TYP})


# ---------------------------------------------------------------- lock side


def _verify_key(
    token: str, *, jwks: Mapping[str, Any], issuer: str, audience: str, now_ts: float,
    leeway_s: float,
) -> dict[str, Any]:
    """The phone key's verified claims (steps 1-3 of the module docstring)."""
    header = _header(token, Reason.KEY_MALFORMED)
    # Checked before any key is looked up, so no alg can select how the JWKS key is used.
    if header.get("alg") != ALGORITHM:
        raise PhoneKeyError(Reason.KEY_BAD_ALG, f"alg {header.get('alg')!r} is not {ALGORITHM}")
    kid = header.get("kid")
    signing_key = _signing_jwk(jwks, kid) if isinstance(kid, str) else None
    if signing_key is None:
        raise PhoneKeyError(Reason.KEY_UNKNOWN_KID, f"no ES256 key {kid!r} in the JWKS")
    try:
        decoded = jwt.decode_complete(
            token,
            signing_key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options=_KEY_OPTIONS,
        )
    except jwt.InvalidSignatureError:
        raise PhoneKeyError(Reason.KEY_BAD_SIGNATURE, "signature does not verify") from None
    except jwt.InvalidAlgorithmError as exc:
        raise PhoneKeyError(Reason.KEY_BAD_ALG, str(exc)) from None
    except jwt.InvalidIssuerError:
        raise PhoneKeyError(Reason.KEY_WRONG_ISSUER, "iss is not this hub") from None
    except jwt.InvalidAudienceError:
        raise PhoneKeyError(Reason.KEY_WRONG_AUDIENCE, "aud is not this venue") from None
    except jwt.PyJWTError as exc:  # missing claims, bad JSON, unsupported crit ...
        raise PhoneKeyError(Reason.KEY_MALFORMED, str(exc)) from None
    claims: dict[str, Any] = decoded["payload"]

    if decoded["header"].get("typ") != KEY_TYP:
        raise PhoneKeyError(Reason.KEY_MALFORMED, f"typ is not {KEY_TYP}")
    scope, cnf = claims["scope"], claims["cnf"]
    zones = scope.get("zones") if isinstance(scope, dict) else None
    if not (
        all(_nonempty_str(claims[name]) for name in ("sub", "cid", "jti"))
        and isinstance(zones, list)
        and all(_nonempty_str(z) for z in zones)
        and isinstance(cnf, dict)
        and _p256_public(cnf.get("jwk"))
    ):
        raise PhoneKeyError(Reason.KEY_MALFORMED, "sub, cid, jti, scope.zones or cnf.jwk invalid")

    times = {name: _numeric_date(claims[name]) for name in ("nbf", "exp", "iat")}
    nbf, exp, iat = times["nbf"], times["exp"], times["iat"]
    if nbf is None or exp is None or iat is None:
        raise PhoneKeyError(Reason.KEY_MALFORMED, "nbf, exp and iat must be NumericDates")
    if exp <= now_ts - leeway_s:
        raise PhoneKeyError(Reason.KEY_EXPIRED, "the stay has ended")
    if nbf > now_ts + leeway_s:
        raise PhoneKeyError(Reason.KEY_NOT_YET_VALID, "the stay has not started")
    if iat > now_ts + leeway_s:
        raise PhoneKeyError(Reason.KEY_NOT_YET_VALID, "issued in the future")
    return claims


def _verify_proof(
    proof: str | None, *, cnf_jwk: dict[str, Any], challenge: str, lock_id: str, key_jti: str,
    now_ts: float,
) -> None:
    """Step 4 of the module docstring: the phone holds the key's private half, now, here."""
    if not proof:
        raise PhoneKeyError(Reason.PROOF_MISSING, "no proof of possession")
    header = _header(proof, Reason.PROOF_BAD_SIGNATURE)
    # A proof without the right alg and typ is not a proof this protocol defines.
    if header.get("alg") != ALGORITHM or header.get("typ") != PROOF_TYP:
        raise PhoneKeyError(Reason.PROOF_BAD_SIGNATURE, f"not an {ALGORITHM} {PROOF_TYP}")
    try:
        phone_key = jwt.PyJWK(cnf_jwk, algorithm=ALGORITHM)
        claims = jwt.decode(
            proof,
            phone_key,
            algorithms=[ALGORITHM],
            options=_PROOF_OPTIONS,
        )
    except jwt.PyJWTError as exc:
        raise PhoneKeyError(Reason.PROOF_BAD_SIGNATURE, str(exc)) from None
    if not _nonempty_str(claims.get("jti")):
        raise PhoneKeyError(Reason.PROOF_BAD_SIGNATURE, "the proof has no jti")
    if claims.get("nonce") != challenge:
        raise PhoneKeyError(Reason.PROOF_WRONG_CHALLENGE, "not an answer to this tap's challenge")
    if claims.get("lock") != lock_id:
        raise PhoneKeyError(Reason.PROOF_WRONG_LOCK, "made for another lock")
    if claims.get("key") != key_jti:
        raise PhoneKeyError(Reason.PROOF_WRONG_KEY, "made for another phone key")
    iat = _numeric_date(claims.get("iat"))
    if iat is None or abs(iat - now_ts) > PROOF_WINDOW_S:
        raise PhoneKeyError(Reason.PROOF_STALE, f"iat not within {PROOF_WINDOW_S} s of now")


def verify_phone_key(
    token: str,
    proof: str | None,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    audience: str,
    challenge: str,
    lock_id: str,
    revoked: Collection[str],
    now: datetime,
    leeway_s: float = DEFAULT_LEEWAY_S,
) -> VerifiedKey:
    """Verify a phone key and the proof answering ``challenge``; raise PhoneKeyError if refused.

    ``jwks`` is the hub's published key set, ``revoked`` the revoked keys' ``jti``;
    ``now`` must be timezone-aware. An empty ``challenge`` or ``lock_id`` is a bug in
    the caller and raises ValueError rather than accepting an empty nonce.
    """
    if not challenge or not lock_id:
        raise ValueError("challenge and lock_id must be non-empty")
    now_ts = _timestamp(now)
    if not isinstance(token, str) or not token:
        raise PhoneKeyError(Reason.KEY_MALFORMED, "no phone key")
    claims = _verify_key(
        token, jwks=jwks, issuer=issuer, audience=audience, now_ts=now_ts, leeway_s=leeway_s
    )
    _verify_proof(
        proof, cnf_jwk=claims["cnf"]["jwk"], challenge=challenge, lock_id=lock_id,
        key_jti=claims["jti"], now_ts=now_ts,
    )
    if claims["jti"] in revoked:
        raise PhoneKeyError(Reason.KEY_REVOKED, "this phone key was revoked")
    return VerifiedKey(
        guest_id=claims["sub"],
        credential_id=claims["cid"],
        zones=tuple(claims["scope"]["zones"]),
        jti=claims["jti"],
        exp=datetime.fromtimestamp(claims["exp"], UTC),
    )
