"""Shared dependencies of the routers: the session, the running hub, who calls, the audit.

Every route declares who may call it with :func:`require_roles`; only ``/health``,
``/auth/token`` and a venue's ``/jwks`` and ``/revocations`` (locks read those
offline) are public. A guest's token reaches only the guest's own data:
:func:`ensure_own` and :func:`own_guest_filter` answer 403 for anyone else's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import BackgroundTasks, Depends, HTTPException, Query, Request, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from hub.db import session_scope
from hub.models import Guest, utcnow
from hub.security import InvalidToken, TokenClaims, verify_api_token
from hub.store import events, rows, staff

log = logging.getLogger(__name__)

ADMIN, STAFF, INTEGRATOR, AUDITOR, GUEST = "admin", "staff", "integrator", "auditor", "guest"
# Who reads the venue's set-up (venues, zones, devices, merchants, the journey).
SETUP_READERS = (ADMIN, STAFF, INTEGRATOR, AUDITOR)
# Who reads guests' data (staff-side; guests add themselves where a route allows it).
GUEST_DATA_READERS = (ADMIN, STAFF, AUDITOR)


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; it commits before the response is sent.

    A GET reads through the read-only engine when the app has one: on SQLite it then
    never takes the write lock the bridge's batches wait for (and cannot write).
    """
    reader = getattr(request.app.state, "reader", None)
    engine = reader if reader is not None and request.method in ("GET", "HEAD") \
        else request.app.state.engine
    with session_scope(engine) as session:
        yield session


# scope="function": commit before the response, so a 2xx means the write is durable.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip")]


def get_bridge(request: Request) -> Any:
    """The MQTT bridge, or None when the API runs without one (hub api, tests, tools)."""
    return getattr(request.app.state, "bridge", None)


BridgeDep = Annotated[Any, Depends(get_bridge)]


def get_publisher(request: Request) -> Any:
    """What the API publishes through: the bridge (hub up), the API's own MQTT client
    (hub api), or None (tests, tools)."""
    return getattr(request.app.state, "publisher", None)


PublisherDep = Annotated[Any, Depends(get_publisher)]


def publish_after_commit(tasks: BackgroundTasks, publisher: Any,
                         messages: list[tuple[str, bytes]], *, retain: bool = False) -> None:
    """Publish once the response is on its way, i.e. after the commit."""
    if publisher is None:
        return
    for topic, payload in messages:
        if retain:
            tasks.add_task(publisher.publish, topic, payload, retain=True)
        else:  # a receipt: publish(topic, payload), as every publisher takes it
            tasks.add_task(publisher.publish, topic, payload)


# ------------------------------------------------------------------ who calls


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a staff user (by username) or a guest (by guest id)."""

    subject: str
    roles: frozenset[str]
    typ: Literal["staff", "guest"]

    @property
    def name(self) -> str:
        """How the audit log names the caller."""
        return f"guest:{self.subject}" if self.typ == "guest" else self.subject

    @property
    def guest_id(self) -> str | None:
        return self.subject if self.typ == "guest" else None


# With HUB_API_AUTH=false a request without a token is this (loopback development only).
ANONYMOUS = Principal(subject="anonymous", roles=frozenset({ADMIN}), typ="staff")

_bearer = HTTPBearer(auto_error=False, description="POST /api/v1/auth/token for a token")


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": challenge})


def get_principal(
    request: Request, session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller named by the ``Authorization: Bearer`` token; 401 without a valid one."""
    if credentials is None:
        if not request.app.state.settings.api_auth and "authorization" not in request.headers:
            return ANONYMOUS
        raise _unauthorized("a bearer token is required: POST /api/v1/auth/token")
    try:
        claims = verify_api_token(request.app.state.token_key, credentials.credentials)
    except InvalidToken:
        raise _unauthorized("invalid or expired token", "invalid_token") from None
    roles = claims.roles
    # A password change, a disable, an erasure or a lost phone voids every older token.
    if claims.version != staff.token_version(
            session=session, subject=staff.token_subject(claims.typ, claims.subject)):
        raise _voided(request, session, claims, "revoked")
    if claims.typ == "staff":
        # A disabled or removed user's tokens stop at once, and so do roles taken away.
        user = staff.find_staff_user(session=session, username=claims.subject)
        if user is None or not user.active:
            raise _voided(request, session, claims, "user disabled or removed")
        roles = roles & frozenset(user.roles)
    elif rows.find(session=session, model=Guest, key=claims.subject) is None:
        raise _voided(request, session, claims, "guest erased")
    return Principal(subject=claims.subject, roles=roles, typ=claims.typ)


# A voided token is audited once a minute per token: whoever holds it is seen, however
# often they try, without a row per request. In-process: it only thins out the audit.
_VOIDED_EVERY = 60.0
_voided_seen: dict[str, float] = {}


def _voided(request: Request, session: Session, claims: TokenClaims,
            why: str) -> HTTPException:
    """A genuine token that no longer stands for anyone: refused, and audited (in its own
    transaction: the request's is rolled back by the 401)."""
    now = time.monotonic()
    if now - _voided_seen.get(claims.jti, -_VOIDED_EVERY) >= _VOIDED_EVERY:
        if len(_voided_seen) > 10_000:
            _voided_seen.clear()
        _voided_seen[claims.jti] = now
        try:
            write_refusal(session, request.app.state.engine,
                          actor=f"{claims.typ}:{claims.subject}", roles=[],
                          action="auth.token_refused", target=f"{claims.typ}:{claims.subject}",
                          detail={"why": why, "jti": claims.jti},
                          source=client_address(request))
        except Exception:  # never let the audit turn a 401 into a 500
            log.exception("could not audit a refused token")
    return _unauthorized("invalid or expired token", "invalid_token")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class RoleCheck:
    """The dependency :func:`require_roles` makes; ``roles`` is the route's declaration."""

    def __init__(self, roles: Sequence[str]) -> None:
        self.roles = frozenset(roles)

    def __call__(self, principal: CurrentPrincipal) -> Principal:
        if principal.roles & self.roles:
            return principal
        held = ", ".join(sorted(principal.roles)) or "no role"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"{principal.name} ({held}) may not do this: it takes one of "
                   f"{', '.join(sorted(self.roles))}")


def require_roles(*roles: str) -> Any:
    """``Annotated[Principal, require_roles(...)]``: the caller, if they hold one of ``roles``."""
    return Depends(RoleCheck(roles))


def declared_roles(route: APIRoute) -> frozenset[str] | None:
    """The roles a route lets in (None: it declares none, i.e. it is public)."""
    pending, found = list(route.dependant.dependencies), set[str]()
    declared = False
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, RoleCheck):
            declared = True
            found |= dependant.call.roles
        pending += dependant.dependencies
    return frozenset(found) if declared else None


def ensure_own(principal: Principal, guest_id: str | None) -> None:
    """A guest may reach their own data only: 403 for any other, existing or not."""
    if principal.typ == "guest" and guest_id != principal.guest_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="a guest may only reach their own data")


def own_guest_filter(principal: Principal, guest_id: str | None) -> str | None:
    """The ``guest_id`` filter in force: forced to a guest's own id (another's is 403)."""
    if principal.typ != "guest":
        return guest_id
    ensure_own(principal, principal.guest_id if guest_id is None else guest_id)
    return principal.guest_id


# --------------------------------------------------------------------- audit


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True, slots=True)
class AuditLog:
    """Writes the caller's changes to the audit log, in the request's transaction."""

    session: Session
    principal: Principal
    source: str
    engine: Any = None  # for refusals, written in a transaction of their own

    def record(self, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        """One entry; ``detail`` names the changed fields and must hold no secret."""
        events.record_audit(session=self.session, actor=self.principal.name,
                            roles=sorted(self.principal.roles), action=action, target=target,
                            detail=detail or {}, source=self.source, at=utcnow())

    def refused(self, action: str, target: str, detail: dict[str, Any]) -> None:
        """An attempt the route refuses: it raises next, and the request's transaction is
        rolled back, so the entry is committed now."""
        write_refusal(self.session, self.engine, actor=self.principal.name,
                      roles=sorted(self.principal.roles), action=action, target=target,
                      detail=detail, source=self.source)


def write_refusal(session: Session, engine: Any, *, actor: str, roles: Sequence[str],
                  action: str, target: str, detail: dict[str, Any], source: str) -> None:
    """Audit a refused attempt so that it outlives the 4xx that rolls the request back.

    A request that writes holds the write lock (SQLite's BEGIN IMMEDIATE): the entry is
    committed in its transaction, which holds nothing else yet. A read goes through the
    read-only engine: the entry gets a transaction of its own on the writer.
    """
    if session.get_bind() is engine:
        events.record_audit(session=session, actor=actor, roles=roles, action=action, target=target,
                            detail=detail, source=source, at=utcnow())
        session.commit()
        return
    with session_scope(engine) as own:
        events.record_audit(session=own, actor=actor, roles=roles, action=action, target=target,
                            detail=detail, source=source, at=utcnow())


def get_audit(request: Request, session: SessionDep, principal: CurrentPrincipal) -> AuditLog:
    return AuditLog(session=session, principal=principal, source=client_address(request),
                    engine=request.app.state.engine)


AuditDep = Annotated[AuditLog, Depends(get_audit)]
