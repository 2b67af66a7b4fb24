"""Secrets handling: the only module that touches argon2, and PyJWT for API tokens.

API tokens are HS256 JWTs signed with the hub's ``api-token.key`` (hub.secrets).
Their claims: ``iss`` "venuehub", ``aud`` "venuehub-api", ``sub`` (a username, or a
guest id), ``roles``, ``typ`` ("staff" or "guest"), ``iat``, ``exp`` and ``jti``.
Verification accepts HS256 only (never ``none`` or another algorithm) and requires
every claim. (Phone keys, ES256, are :mod:`hub.phone_keys`' business.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_ISSUER = "venuehub"
TOKEN_AUDIENCE = "venuehub-api"
TOKEN_ALGORITHM = "HS256"
STAFF_ROLES = frozenset({"admin", "staff", "integrator", "auditor"})
GUEST_ROLE = "guest"
_CLAIMS = ["iss", "aud", "sub", "roles", "typ", "iat", "exp", "jti"]

TokenType = Literal["staff", "guest"]


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def hash_secret(secret: str, *, time_cost: int = 2, memory_kib: int = 19_456) -> str:
    """An argon2id hash of a PIN or password, with its salt and parameters inside."""
    return _hasher(time_cost, memory_kib).hash(secret)


def verify_secret(hashed: str, secret: str) -> bool:
    """Whether ``secret`` matches ``hashed``; never raises for a wrong or garbled hash."""
    try:
        return _hasher(2, 19_456).verify(hashed, secret)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no password matches: verified for unknown users so they cost the same time."""
    return hash_secret(secrets.token_urlsafe(32))


def check_password(hashed: str | None, password: str) -> bool:
    """Verify a password; with no user (None) verify against the dummy hash, then fail."""
    if hashed is None:
        verify_secret(dummy_hash(), password)
        return False
    return verify_secret(hashed, password)


# -------------------------------------------------------------- API tokens


class InvalidToken(ValueError):
    """A token that is malformed, forged, expired, or not for this API."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified API token says."""

    subject: str
    roles: frozenset[str]
    typ: TokenType
    jti: str
    version: int = 0


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed API token, its lifetime in seconds and its id (``jti``, for the audit)."""

    token: str = field(repr=False)
    expires_in: int
    jti: str


def issue_api_token(key: bytes, *, subject: str, roles: Iterable[str], typ: TokenType,
                    minutes: int, now: datetime, version: int = 0) -> IssuedToken:
    """Sign an API token for ``subject`` valid ``minutes`` from ``now``, carrying the
    subject's current token ``version`` (a later bump voids it)."""
    lifetime = timedelta(minutes=minutes)
    jti = secrets.token_hex(16)
    claims: dict[str, Any] = {
        "iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "sub": subject, "roles": sorted(roles),
        "typ": typ, "iat": int(now.timestamp()), "exp": int((now + lifetime).timestamp()),
        "jti": jti, "ver": version,
    }
    token = jwt.encode(claims, key, algorithm=TOKEN_ALGORITHM)
    return IssuedToken(token=token, expires_in=int(lifetime.total_seconds()), jti=jti)


def verify_api_token(key: bytes, token: str) -> TokenClaims:
    """The claims of a token this hub signed and that is still valid; else InvalidToken."""
    try:
        claims = jwt.decode(token, key, algorithms=[TOKEN_ALGORITHM], audience=TOKEN_AUDIENCE,
                            issuer=TOKEN_ISSUER, options={"require": _CLAIMS})
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from None
    subject, roles, typ, jti = claims["sub"], claims["roles"], claims["typ"], claims["jti"]
    if not (isinstance(subject, str) and subject and isinstance(jti, str)
            and isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        raise InvalidToken("malformed claims")
    # A token is either a staff member's (staff roles only) or a guest's (the guest role only).
    if typ == "staff" and set(roles) <= STAFF_ROLES:
        kind: TokenType = "staff"
    elif typ == "guest" and roles == [GUEST_ROLE]:
        kind = "guest"
    else:
        raise InvalidToken("typ and roles disagree")
    version = claims.get("ver", 0)  # tokens from before versions: version 0
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidToken("malformed claims")
    return TokenClaims(subject=subject, roles=frozenset(roles), typ=kind, jti=jti,
                       version=version)
