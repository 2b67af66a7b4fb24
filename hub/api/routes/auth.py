"""Staff log in for a bearer token; guests get theirs from staff (POST /guests/{id}/token)."""

from __future__ import annotations

from math import ceil

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from hub.api.deps import SessionDep, client_address
from hub.login_throttle import FORGET_AFTER, retry_after, throttle_keys
from hub.models import utcnow
from hub.schemas import TokenIssued, TokenRequest
from hub.security import check_password, issue_api_token
from hub.store import events, staff

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenIssued,
             responses={401: {"description": "Unknown user, wrong password or disabled user"},
                        429: {"description": "Too many failures in a row: see Retry-After"}})
def log_in(body: TokenRequest, session: SessionDep, request: Request,
           response: Response) -> TokenIssued | JSONResponse:
    """Exchange a staff user's name and password for a bearer token. Public.

    Every failure is the same 401, and an unknown user costs the same time as a wrong
    password (a dummy hash is verified), so the answer tells nobody which names exist.
    Each failure is audited and counted per client address and per account from that
    address; after a few in a row the next attempt must wait, longer each time (429 with
    Retry-After, before any password is checked).
    """
    now = utcnow()
    source = client_address(request)
    address_key, account_key = throttle_keys(body.username, source)
    keys = [address_key, account_key]
    wait = max((retry_after(t.failures, t.last_failure_at, now)
                for t in staff.login_failures(session=session, keys=keys)), default=0.0)
    if wait > 0:
        events.record_audit(session=session, actor=body.username, roles=[], action="auth.throttled",
                            target=f"user:{body.username}", detail={"retry_after_s": ceil(wait)},
                            source=source, at=now)
        return JSONResponse({"detail": "too many failed log-ins: try again later"},
                            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": str(ceil(wait))})
    user = staff.find_staff_user(session=session, username=body.username)
    matches = check_password(user.password_hash if user else None, body.password)
    if user is None or not matches or not user.active:
        # Returned, not raised: the count and the audit entry must commit with the answer.
        staff.count_login_failure(session=session, keys=keys, now=now,
                                  forget_before=now - FORGET_AFTER)
        events.record_audit(session=session, actor=body.username, roles=[], action="auth.failure",
                            target=f"user:{body.username}", detail={}, source=source, at=now)
        return JSONResponse({"detail": "invalid username or password"},
                            status_code=status.HTTP_401_UNAUTHORIZED,
                            headers={"WWW-Authenticate": "Bearer"})
    staff.clear_login_failures(session=session, keys=[account_key])
    issued = issue_api_token(request.app.state.token_key, subject=user.username,
                             roles=user.roles, typ="staff",
                             minutes=request.app.state.settings.api_token_minutes, now=now,
                             version=staff.token_version(
                                 session=session, subject=staff.token_subject("staff",
                                                                              user.username)))
    events.record_audit(session=session, actor=user.username, roles=user.roles, action="auth.token",
                        target=f"user:{user.username}",
                        detail={"jti": issued.jti, "expires_in": issued.expires_in},
                        source=source, at=now)
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: tokens are not cached
    return TokenIssued(access_token=issued.token, expires_in=issued.expires_in,
                       roles=sorted(user.roles))
