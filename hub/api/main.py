"""The FastAPI application: routers combined, domain errors turned into HTTP status codes."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine

from hub.api import docs, openapi
from hub.api.deps import declared_roles
from hub.api.headers import SecurityHeaders
from hub.api.routes import (
    accounts,
    audit,
    auth,
    credentials,
    devices,
    entitlements,
    events,
    guests,
    merchants,
    profile,
    system,
    transactions,
    users,
    venues,
    zones,
)
from hub.api.routes import automations as automation_routes
from hub.automations.rules import RuleError
from hub.config import Settings
from hub.db import Contended, brief, database_away, database_clock
from hub.models import utcnow
from hub.store.errors import Conflict, Invalid, NotFound

API_PREFIX = "/api/v1"
DOCS_STATIC = docs.STATIC_URL  # Swagger UI's and ReDoc's scripts and styles
# The only routes anyone may call without a token: locks read keys and revocations offline.
PUBLIC = frozenset({("GET", "/health"), ("POST", "/auth/token"),
                    ("GET", "/venues/{venue_id}/jwks"), ("GET", "/venues/{venue_id}/revocations")})

log = logging.getLogger(__name__)


def _check_declared(router: APIRouter) -> None:
    """Refuse to build an API with a route that does not say who may call it."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods or ():
            if declared_roles(route) is None and (method, route.path) not in PUBLIC:
                raise RuntimeError(f"{method} {route.path} declares no roles (require_roles)")


def create_app(*, engine: Engine, settings: Settings, bridge: Any = None, publisher: Any = None,
               signing_keys: list[Any] | None = None, token_key: bytes | None = None,
               automations: Any = None, broker_key: bytes | None = None,
               reader: Engine | None = None) -> FastAPI:
    """Build the API around an engine (and the bridge, when one runs).

    What the API publishes after a commit goes through ``publisher`` (``hub api``'s own
    MQTT client, :class:`hub.publisher.Publisher`), else through the bridge, else nowhere
    (tests, tools).

    ``token_key`` signs and verifies API tokens (the hub's ``api-token.key``); without
    one, a random key lives as long as the app (tests, ``hub openapi``). ``automations``
    is the running :class:`hub.automations.runner.AutomationRunner` (its counters), if any.
    """
    app = FastAPI(
        title="Venue hub",
        version="1.0",
        description="Guests, credentials, devices, zones, entitlements and the journey of taps.",
        # Swagger UI and ReDoc from the hub's own copies (hub.api.docs), not from a CDN.
        docs_url=None, redoc_url=None, swagger_ui_parameters=docs.SWAGGER_UI_PARAMETERS,
    )
    docs.serve_docs(app)
    app.state.engine = engine
    app.state.database_clock = database_clock(engine, utcnow)  # what the fleet agrees on
    app.state.reader = reader  # GETs read through it (read-only, never the write lock)
    app.state.settings = settings
    app.state.bridge = bridge  # health and counters of the taps decided here
    app.state.publisher = publisher if publisher is not None else bridge
    app.state.signing_keys = signing_keys or []
    app.state.token_key = token_key or secrets.token_bytes(32)
    app.state.automations = automations
    app.state.broker_key = broker_key  # guests' apps' broker logins derive from it
    app.add_middleware(SecurityHeaders)
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    for module in (system, auth, venues, zones, devices, guests, credentials, entitlements,
                   events, merchants, accounts, transactions, audit, profile, users,
                   automation_routes):
        _check_declared(module.router)
        app.include_router(module.router, prefix=API_PREFIX)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back, which fails for input JSON cannot hold
        # (NaN, huge numbers): say where and what, never 500.
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Invalid)
    async def _invalid(_r: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RuleError)
    async def _invalid_rule(_r: Request, exc: RuleError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "problems": exc.problems}, status_code=422)

    @app.exception_handler(Conflict)
    async def _conflict(_r: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(sa.exc.DBAPIError)
    async def _busy(_r: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        # SQLite's write lock held past its busy timeout (a backup, a long batch), or the
        # database out of reach (PostgreSQL restarting): nothing was done, the caller may
        # try again. Anything else about the database is a real failure.
        if "database is locked" in str(exc.orig):
            return JSONResponse({"detail": "the database is busy: try again",
                                 "reason": "busy"}, status_code=503, headers={"Retry-After": "1"})
        # SQLite's errors are the file's (a disk I/O error): a real failure, not an outage.
        if database_away(exc) and not type(exc.orig).__module__.startswith("sqlite3"):
            log.warning("an API call found the database out of reach (%s)", brief(exc))
            return JSONResponse({"detail": "the database is out of reach: nothing was done, "
                                           "try again", "reason": "database_unavailable"},
                                status_code=503, headers={"Retry-After": "5"})
        raise exc

    @app.exception_handler(Contended)
    async def _contended(_r: Request, exc: Contended) -> JSONResponse:
        # Retried inside the hub already; what is left is the caller's to retry, not a 500.
        return JSONResponse({"detail": str(exc), "reason": "contended"}, status_code=409)

    return app
