"""The audit log: who changed what through the API. Read-only: no route edits it."""

from __future__ import annotations

from fastapi import APIRouter

from hub.api.deps import ADMIN, AUDITOR, Limit, Offset, SessionDep, require_roles
from hub.models import AuditEntry
from hub.schemas import AuditEntryPublic
from hub.store import events

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntryPublic],
            dependencies=[require_roles(ADMIN, AUDITOR)])
def list_audit(session: SessionDep, actor: str | None = None, action: str | None = None,
               target: str | None = None, limit: Limit = 100,
               offset: Offset = 0) -> list[AuditEntry]:
    """Entries newest first, by exact actor (a username or guest:<id>), action or target."""
    return events.list_audit(session=session, actor=actor, action=action, target=target,
                             limit=limit,
                             offset=offset)
