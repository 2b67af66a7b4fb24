"""Signed key material: the JWKS and revocation list the hub retains for offline locks.

The hub retains two documents per venue, on ``venuehub/v1/{venue}/keys/jwks`` and
``.../keys/revocations`` (and serves the same at ``GET /venues/{id}/jwks`` and
``/revocations``). Each is a JSON object whose ``jws`` member is a compact JWS:

- header: ``alg: "ES256"``, ``kid`` (the hub signing key that signed it),
  ``typ: "vh-key-material+jwt"``;
- payload, exactly these members: ``v`` (1), ``kind`` (``"jwks"`` or
  ``"revocations"``), ``venue``, ``iat`` (seconds), ``seq`` (an integer the hub
  increases with every document it signs, across both kinds and restarts), and
  ``jwks`` (a JWK Set of P-256 public keys) or ``revoked`` (the jti of every phone
  key a lock must refuse).

The object's other members (``keys``; ``revoked`` and ``issued_at``) repeat the
payload unsigned, for readers from before signing; a verifier reads only the payload.

A lock is provisioned out of band with a *trust anchor*: the hub's public JWKS at the
time (the provisioning sheet's ``key_anchor``). :class:`KeyState` starts from it and
accepts a document only if it is signed by a key it already trusts, for its venue, with
a ``seq`` not below the last one of that kind it accepted (an older list replayed onto
the retained topic is a rollback, refused; the same ``seq`` again changes nothing). A
lock with no ``seq`` yet takes any validly signed document: the anchor proves origin,
not freshness. An accepted JWKS replaces the trusted keys: the
hub signs key material with its *oldest* key still valid, so the JWKS that announces a
new signing key is signed by one the locks already trust (rotation), and a lock that
was away longer than the hub's key overlap must be provisioned again.

Pure functions and values, no I/O; shared by the hub (which signs), the SDK and locks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.types import Options

from devices.phone_key import ALGORITHM, public_jwk

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "TYP",
    "VERSION",
    "KeyMaterial",
    "KeyMaterialError",
    "KeyState",
    "Kind",
    "Reason",
    "document",
    "sign",
    "verify",
]

TYP: Final = "vh-key-material+jwt"
VERSION: Final = 1
# A retained message is at most the contract's 64 KiB; a revocation list of ~1,500 jti fits.
MAX_DOCUMENT_BYTES: Final = 64 * 1024
Kind = Literal["jwks", "revocations"]
_KINDS: Final = ("jwks", "revocations")
_MEMBERS: Final = {"jwks": frozenset({"v", "kind", "venue", "iat", "seq", "jwks"}),
                   "revocations": frozenset({"v", "kind", "venue", "iat", "seq", "revoked"})}
# Times are not PyJWT's business here (there are no exp/nbf); the signature and alg are.
_OPTIONS: Options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False, "verify_iss": False}


class Reason(StrEnum):
    """Why a key-material document was refused; stable, machine-readable."""

    MALFORMED = "material_malformed"
    BAD_ALG = "material_bad_alg"
    UNKNOWN_KID = "material_unknown_kid"
    BAD_SIGNATURE = "material_bad_signature"
    WRONG_KIND = "material_wrong_kind"
    WRONG_VENUE = "material_wrong_venue"
    ROLLBACK = "material_rollback"


class KeyMaterialError(Exception):
    """A key-material document was refused; ``reason`` says why."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"KeyMaterialError({self.reason.value!r}, {self.detail!r})"


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A verified document: its kind, venue, sequence number, and what it carries."""

    kind: Kind
    venue: str
    seq: int
    iat: datetime
    kid: str  # the key that signed it
    jwks: Mapping[str, Any] | None = None  # kind "jwks"
    revoked: frozenset[str] = frozenset()  # kind "revocations"


# ---------------------------------------------------------------- hub side


def sign(kind: Kind, content: Mapping[str, Any] | list[str], *, venue: str, seq: int,
         now: datetime, private_key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """The compact JWS of one document: ``content`` is the JWKS or the revoked jti."""
    if kind not in _KINDS:
        raise ValueError(f"no key material of kind {kind!r}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    claims: dict[str, Any] = {"v": VERSION, "kind": kind, "venue": venue,
                              "iat": int(now.timestamp()), "seq": seq}
    if kind == "jwks":
        claims["jwks"] = dict(content) if isinstance(content, Mapping) else {}
    else:
        claims["revoked"] = sorted(content)
    return jwt.encode(claims, private_key, algorithm=ALGORITHM,
                      headers={"kid": kid, "typ": TYP})


def document(jws: str, legacy: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object published and served: the unsigned ``legacy`` members and ``jws``."""
    return {**legacy, "jws": jws}


# ---------------------------------------------------------------- lock side


def _verifying_key(trusted: Mapping[str, Any], kid: str) -> jwt.PyJWK | None:
    keys = trusted.get("keys")
    for entry in keys if isinstance(keys, list) else []:
        if not (isinstance(entry, Mapping) and entry.get("kid") == kid
                and entry.get("kty") == "EC" and entry.get("crv") == "P-256"
                and "d" not in entry and entry.get("alg", ALGORITHM) == ALGORITHM):
            continue
        try:
            return jwt.PyJWK(dict(entry), algorithm=ALGORITHM)  # the alg pinned, not the JWK's
        except jwt.PyJWTError:
            continue
    return None


def _valid_jwks(value: Any) -> bool:
    """A JWK Set of public P-256 keys, each with a kid: what phone keys verify against."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        return False
    for entry in value["keys"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("kid"), str) and entry["kid"]
                and entry.get("kty") == "EC" and entry.get("crv") == "P-256"
                and "d" not in entry):
            return False
        try:
            public_jwk(jwt.PyJWK(entry, algorithm=ALGORITHM).key)  # a point on the curve
        except (jwt.PyJWTError, ValueError, TypeError):
            return False
    return True


def _jws_of(payload: bytes | str | Mapping[str, Any]) -> str:
    if isinstance(payload, Mapping):
        data: Any = payload
    else:
        if len(payload) > MAX_DOCUMENT_BYTES:
            raise KeyMaterialError(Reason.MALFORMED, f"larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise KeyMaterialError(Reason.MALFORMED, "not a JSON object") from None
    jws = data.get("jws") if isinstance(data, Mapping) else None
    if not isinstance(jws, str) or not jws:
        raise KeyMaterialError(Reason.MALFORMED, "no signed jws member (unsigned key material)")
    return jws


def verify(payload: bytes | str | Mapping[str, Any], *, kind: Kind, venue: str,
           trusted: Mapping[str, Any]) -> KeyMaterial:
    """Verify one document against the ``trusted`` JWKS; KeyMaterialError says why not.

    Checks, in order: the ``jws`` member is a compact JWS (``material_malformed``) with
    alg ES256 (``material_bad_alg``), typ and a kid the trusted JWKS names
    (``material_unknown_kid``), its signature (``material_bad_signature``), exactly the
    members of its kind, well-typed (``material_malformed``), the kind asked for
    (``material_wrong_kind``) and the venue (``material_wrong_venue``). Sequence numbers
    are :class:`KeyState`'s business.
    """
    jws = _jws_of(payload)
    try:
        header = jwt.get_unverified_header(jws)
    except jwt.PyJWTError as exc:
        raise KeyMaterialError(Reason.MALFORMED, f"not a compact JWS: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise KeyMaterialError(Reason.BAD_ALG, f"alg {header.get('alg')!r} is not {ALGORITHM}")
    if header.get("typ") != TYP:
        raise KeyMaterialError(Reason.MALFORMED, f"typ is not {TYP}")
    kid = header.get("kid")
    key = _verifying_key(trusted, kid) if isinstance(kid, str) else None
    if key is None or not isinstance(kid, str):
        raise KeyMaterialError(Reason.UNKNOWN_KID, f"no trusted key {kid!r}")
    try:
        claims: dict[str, Any] = jwt.decode(jws, key, algorithms=[ALGORITHM], options=_OPTIONS)
    except jwt.InvalidSignatureError:
        raise KeyMaterialError(Reason.BAD_SIGNATURE, "signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise KeyMaterialError(Reason.MALFORMED, str(exc)) from None
    got = claims.get("kind")
    if got not in _KINDS or set(claims) != _MEMBERS[got] or claims.get("v") != VERSION:
        raise KeyMaterialError(Reason.MALFORMED, "not a version-1 key-material payload")
    seq, iat = claims["seq"], claims["iat"]
    # bool is an int in Python, and JSON allows 1e400: neither is a sequence number.
    if (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0
            or isinstance(iat, bool) or not isinstance(iat, int | float)
            or not math.isfinite(iat) or not isinstance(claims["venue"], str)):
        raise KeyMaterialError(Reason.MALFORMED, "seq, iat or venue ill-typed")
    if got != kind:
        raise KeyMaterialError(Reason.WRONG_KIND, f"a {got} document where {kind} belongs")
    if claims["venue"] != venue:
        raise KeyMaterialError(Reason.WRONG_VENUE, f"signed for venue {claims['venue']!r}")
    try:
        issued = datetime.fromtimestamp(iat, UTC)
    except (OverflowError, OSError, ValueError):
        raise KeyMaterialError(Reason.MALFORMED, "iat out of range") from None
    if kind == "jwks":
        if not _valid_jwks(claims["jwks"]):
            raise KeyMaterialError(Reason.MALFORMED, "jwks is not a set of public P-256 keys")
        return KeyMaterial(kind, venue, seq, issued, kid, jwks=claims["jwks"])
    revoked = claims["revoked"]
    if not isinstance(revoked, list) or not all(isinstance(j, str) and j for j in revoked):
        raise KeyMaterialError(Reason.MALFORMED, "revoked is not a list of jti")
    return KeyMaterial(kind, venue, seq, issued, kid, revoked=frozenset(revoked))


@dataclass(frozen=True, slots=True)
class KeyState:
    """What a lock trusts: the keys (its anchor, then the last JWKS it accepted), the
    revoked jti, and the last ``seq`` accepted of each kind (None: none yet)."""

    venue: str
    jwks: Mapping[str, Any]
    revoked: frozenset[str] = frozenset()
    seqs: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_anchor(cls, venue: str, anchor: Mapping[str, Any]) -> KeyState:
        """The state of a freshly provisioned lock; ValueError for an anchor with no key."""
        if not _valid_jwks(dict(anchor)) or not anchor["keys"]:
            raise ValueError("the trust anchor must be a JWKS of public P-256 keys with kids")
        return cls(venue=venue, jwks=dict(anchor))

    def accept(self, kind: Kind, payload: bytes | str | Mapping[str, Any]) -> KeyState:
        """The state after a document arrived; KeyMaterialError (the state unchanged) if
        it is forged, for another venue or kind, or older than the last one accepted.

        The ``seq`` already held is no error and changes nothing: the broker hands the
        retained document over again at every reconnection.
        """
        material = verify(payload, kind=kind, venue=self.venue, trusted=self.jwks)
        last = self.seqs.get(kind)
        if last is not None and material.seq == last:
            return self
        if last is not None and material.seq < last:
            raise KeyMaterialError(Reason.ROLLBACK,
                                   f"seq {material.seq} is older than {last}, already held")
        seqs = {**self.seqs, kind: material.seq}
        if material.jwks is not None:
            return replace(self, jwks=material.jwks, seqs=seqs)
        return replace(self, revoked=material.revoked, seqs=seqs)
