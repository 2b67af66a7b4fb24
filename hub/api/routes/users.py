"""Staff users: list them, disable or enable one, set a password (each voids their tokens)."""

from __future__ import annotations

from fastapi import APIRouter

from hub.api.deps import ADMIN, AUDITOR, AuditDep, SessionDep, require_roles
from hub.models import StaffUser
from hub.schemas import StaffUserChange, StaffUserPublic
from hub.security import hash_secret
from hub.store import errors, staff

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[StaffUserPublic],
            dependencies=[require_roles(ADMIN, AUDITOR)])
def list_users(session: SessionDep) -> list[StaffUser]:
    return staff.list_staff_users(session=session)


@router.patch("/{username}", response_model=StaffUserPublic,
              dependencies=[require_roles(ADMIN)])
def change_user(username: str, body: StaffUserChange, session: SessionDep,
                audit: AuditDep) -> StaffUser:
    """Disable or enable a user, or set their password: every token they hold stops."""
    user = staff.find_staff_user(session=session, username=username)
    if user is None:
        raise errors.NotFound("user", username)
    if body.active is False and ADMIN in user.roles and user.active and not any(
            u.active and ADMIN in u.roles and u.username != username
            for u in staff.list_staff_users(session=session)):
        raise errors.Conflict(f"{username!r} is the last active admin: add another first")
    staff.change_staff_user(session=session, user=user, active=body.active,
                            password_hash=hash_secret(body.password) if body.password else None)
    detail: dict[str, object] = {"password_changed": True} if body.password else {}
    if body.active is not None:
        detail["active"] = body.active
    audit.record("user.change", f"user:{username}", detail)  # never the password
    return user
