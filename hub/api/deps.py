"""Shared dependencies of the routers: the database session and the running hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Query, Request
from sqlmodel import Session

from hub.db import session_scope


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; it commits before the response is sent."""
    with session_scope(request.app.state.engine) as session:
        yield session


# scope="function": commit before the response, so a 2xx means the write is durable.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip")]


def get_bridge(request: Request) -> Any:
    """The MQTT bridge, or None when the API runs without one (tests, tools)."""
    return getattr(request.app.state, "bridge", None)


BridgeDep = Annotated[Any, Depends(get_bridge)]


def publish_after_commit(tasks: BackgroundTasks, bridge: Any,
                         messages: list[tuple[str, bytes]]) -> None:
    """Publish receipts once the response is on its way, i.e. after the commit."""
    if bridge is None:
        return
    for topic, payload in messages:
        tasks.add_task(bridge.publish, topic, payload)
