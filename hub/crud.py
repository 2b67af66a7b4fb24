"""Temporary: what the automation modules still import from here, until they import
hub.store themselves (moved by the automations package; then delete this module)."""

from __future__ import annotations

from sqlmodel import Session

from hub.store import devices
from hub.store.errors import Conflict, NotFound

__all__ = ["Conflict", "NotFound", "venue_timezone"]


def venue_timezone(session: Session, *, venue_id: str) -> str:
    """The IANA time zone staff schedules of this venue are written in."""
    return devices.venue_timezone(session=session, venue_id=venue_id)
