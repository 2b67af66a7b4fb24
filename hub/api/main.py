"""The FastAPI application: routers combined, domain errors turned into HTTP status codes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from hub.api.routes import (
    accounts,
    credentials,
    devices,
    entitlements,
    events,
    guests,
    merchants,
    system,
    transactions,
    venues,
    zones,
)
from hub.config import Settings
from hub.crud import Conflict, Invalid, NotFound

API_PREFIX = "/api/v1"


def create_app(*, engine: Engine, settings: Settings, bridge: Any = None) -> FastAPI:
    """Build the API around an engine (and the bridge, when one runs)."""
    app = FastAPI(
        title="Venue hub",
        version="1.0",
        description="Guests, credentials, devices, zones, entitlements and the journey of taps.",
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.bridge = bridge
    for module in (system, venues, zones, devices, guests, credentials, entitlements, events,
                   merchants, accounts, transactions):
        app.include_router(module.router, prefix=API_PREFIX)

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Invalid)
    async def _invalid(_r: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Conflict)
    async def _conflict(_r: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    return app
