"""Staff log in for a bearer token; guests get theirs from staff (POST /guests/{id}/token)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from hub import crud
from hub.api.deps import SessionDep, client_address
from hub.models import utcnow
from hub.schemas import TokenIssued, TokenRequest
from hub.security import check_password, issue_api_token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenIssued,
             responses={401: {"description": "Unknown user, wrong password or disabled user"}})
def log_in(body: TokenRequest, session: SessionDep, request: Request,
           response: Response) -> TokenIssued:
    """Exchange a staff user's name and password for a bearer token. Public.

    Every failure is the same 401, and an unknown user costs the same time as a wrong
    password (a dummy hash is verified), so the answer tells nobody which names exist.
    """
    user = crud.find_staff_user(session, username=body.username)
    matches = check_password(user.password_hash if user else None, body.password)
    if user is None or not matches or not user.active:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    now = utcnow()
    issued = issue_api_token(request.app.state.token_key, subject=user.username,
                             roles=user.roles, typ="staff",
                             minutes=request.app.state.settings.api_token_minutes, now=now)
    crud.record_audit(session, actor=user.username, roles=user.roles, action="auth.token",
                      target=f"user:{user.username}",
                      detail={"jti": issued.jti, "expires_in": issued.expires_in},
                      source=client_address(request), at=now)
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: tokens are not cached
    return TokenIssued(access_token=issued.token, expires_in=issued.expires_in,
                       roles=sorted(user.roles))
