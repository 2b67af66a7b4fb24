"""The data layer's errors: what a service or route turns into an answer."""

from __future__ import annotations


class NotFound(LookupError):
    """A referenced row does not exist."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what, self.key = what, key


class Conflict(ValueError):
    """A write that would break a uniqueness or state rule."""


class Invalid(ValueError):
    """A request that breaks a rule of the domain (answered 422)."""


class InvalidReference(Invalid):
    """A request that names a row that does not exist."""

