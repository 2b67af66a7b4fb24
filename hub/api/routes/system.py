"""Health and bridge counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hub.api.deps import SETUP_READERS, BridgeDep, require_roles
from hub.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health)
def health(request: Request, bridge: BridgeDep) -> Health:
    """Is the hub up, and is its bridge connected to the broker? Public."""
    settings = request.app.state.settings
    host, port = settings.mqtt_address
    connected = bool(bridge and bridge.snapshot()["connected"])
    return Health(status="ok" if connected else "degraded", mqtt=f"mqtt://{host}:{port}",
                  mqtt_connected=connected, database=request.app.state.engine.dialect.name)


@router.get("/stats", dependencies=[require_roles(*SETUP_READERS)])
def stats(bridge: BridgeDep) -> dict[str, Any]:
    """Bridge counters: messages received, decisions, errors by code, queue depth."""
    return bridge.snapshot() if bridge else {}
