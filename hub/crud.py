"""Temporary: what the automation modules still import from here, until they import
hub.store themselves (moved by the automations package; then delete this module)."""

from __future__ import annotations

from hub.store.devices import venue_timezone
from hub.store.errors import Conflict, NotFound

__all__ = ["Conflict", "NotFound", "venue_timezone"]
