"""The journey: every tap and its decision, filtered and paged."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from hub.api.deps import (
    GUEST,
    SETUP_READERS,
    Limit,
    Principal,
    SessionDep,
    own_guest_filter,
    require_roles,
)
from hub.schemas import EventPage, EventPublic, Moment
from hub.store import events

router = APIRouter(prefix="/events", tags=["events"])
_CURSOR = re.compile(r"[0-9]{1,9}")  # an event row id, as next_cursor gives it (32-bit)


@router.get("", response_model=EventPage)
def list_events(
    session: SessionDep,
    caller: Annotated[Principal, require_roles(*SETUP_READERS, GUEST)],
    guest_id: str | None = None,
    device_id: str | None = None,
    zone_id: str | None = None,
    outcome: Literal["allow", "deny"] | None = None,
    reason: str | None = None,
    since: Annotated[Moment | None, Query(description="Received at or after")] = None,
    until: Annotated[Moment | None, Query(description="Received before")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Limit = 50,
) -> EventPage:
    """Events newest first; follow next_cursor for older ones. A guest sees their own only."""
    guest_id = own_guest_filter(caller, guest_id)
    before_id: int | None = None
    if cursor is not None:
        if not _CURSOR.fullmatch(cursor):
            raise HTTPException(422, f"cursor: not a cursor this API gave out: {cursor[:40]!r}")
        before_id = int(cursor)
    if since and until and until <= since:
        raise HTTPException(422, "until must be after since")
    rows = events.list_events(session=session, guest_id=guest_id, device_id=device_id,
                              zone_id=zone_id,
                              outcome=outcome, reason=reason, since=since, until=until,
                              before_id=before_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [EventPublic.model_validate(r) for r in rows]
    if caller.typ == "guest":
        # Which check caught a credential is for staff: a guest testing tampered proofs of
        # their own key would learn from it what to change next.
        items = [item.model_copy(update={"detail": None}) for item in items]
    return EventPage(items=items, next_cursor=str(rows[-1].id) if more and rows else None)
