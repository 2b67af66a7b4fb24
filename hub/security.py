"""Secrets handling: the only module that touches argon2 (and, later, PyJWT)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


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
