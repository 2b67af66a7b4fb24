"""Health, bridge counters and the dead letters."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from hub.api.deps import (
    GUEST_DATA_READERS,
    SETUP_READERS,
    BridgeDep,
    Limit,
    PublisherDep,
    SessionDep,
    require_roles,
)
from hub.health import GONE_AFTER, bridge_problems, fleet_problems, live
from hub.schemas import DeadLetterPage, DeadLetterPublic, Health, WorkerHealth
from hub.store import events, workers

router = APIRouter(tags=["system"])

# A PIN in a dead payment request is not for anyone's eyes, staff's included.
_PIN = re.compile(rb'("pin"\s*:\s*)"[^"]*"')
_PREVIEW_BYTES = 4096


@router.get("/health", response_model=Health,
            responses={503: {"model": Health, "description": "Taps are not being decided"}})
def health(request: Request, response: Response, bridge: BridgeDep,
           publisher: PublisherDep, session: SessionDep) -> Health:
    """Are taps being decided? Public; 503 with the reasons when they are not.

    With a bridge in this process (``hub up``, ``hub worker``): not when its worker is not
    running, it is not connected to the broker, or the oldest message waiting is older
    than the tap deadline. In ``hub api``: ``deciding`` is false when no worker has
    reported deciding in the last 15 s (each writes a heartbeat to the database every
    5 s), and ``workers`` lists them; the status code stays 200 (the API itself serves)
    unless the database is out of reach (503).
    """
    settings = request.app.state.settings
    mqtt = settings.broker_shown
    database = request.app.state.engine.dialect.name
    if bridge is None:  # hub api: the fleet's workers say, through the database
        now = request.app.state.database_clock()  # the clock the beats were stamped by
        # A worker gone a day is no longer listed; one silent for 15 s is not deciding,
        # whatever it last said.
        beats = [b for b in workers.all_beats(session=session) if now - b.seen_at <= GONE_AFTER]
        # 200 all the same: this API serves, and a load balancer must keep sending it
        # calls; whether taps are decided is ``deciding`` (hub status exits 1 on false).
        problems = fleet_problems(beats, now)
        return Health(
            status="degraded" if problems else "ok", mqtt=mqtt,
            # Whether what this process publishes goes out now (else it waits: /stats).
            mqtt_connected=publisher is not None and publisher.connected,
            database=database, deciding=not problems, problems=problems,
            workers=[WorkerHealth(name=b.name, deciding=b.deciding and live(b, now),
                                  seen_s_ago=round((now - b.seen_at).total_seconds(), 1),
                                  queue_depth=b.queue_depth, problems=b.problems)
                     for b in beats])
    snap = bridge.snapshot()
    deadline_ms = settings.tap_deadline_ms
    problems = bridge_problems(snap, deadline_ms)
    if problems:
        response.status_code = 503
    return Health(status="degraded" if problems else "ok", mqtt=mqtt,
                  mqtt_connected=bool(snap.get("connected")), database=database,
                  deciding=not problems, problems=problems,
                  worker_alive=snap.get("worker_alive"), worker_deaths=snap.get("worker_deaths"),
                  queue_depth=snap.get("queue_depth"),
                  oldest_waiting_ms=snap.get("oldest_waiting_ms"),
                  last_decision_ms_ago=snap.get("last_decision_ms_ago"),
                  tap_deadline_ms=deadline_ms, dead_letters=snap.get("dead_letters", 0))


@router.get("/stats", dependencies=[require_roles(*SETUP_READERS)])
def stats(bridge: BridgeDep, publisher: PublisherDep) -> dict[str, Any]:
    """Bridge counters: messages received, decisions, errors by code, queue depth; in
    ``hub api``, its publisher's: published, deferred while the broker is away, failed."""
    if bridge is not None:
        return dict(bridge.snapshot())
    return dict(publisher.snapshot()) if publisher is not None else {}


_CURSOR = re.compile(r"[0-9]{1,9}")  # a row id, as next_cursor gives it (32-bit)


@router.get("/dead-letters", response_model=DeadLetterPage,
            dependencies=[require_roles(*GUEST_DATA_READERS)])
def list_dead_letters(
    session: SessionDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Limit = 50,
) -> DeadLetterPage:
    """Device messages the hub could not process, newest first: each was answered
    ``internal`` on its device's errors topic and acknowledged, never redelivered."""
    before_id: int | None = None
    if cursor is not None:
        if not _CURSOR.fullmatch(cursor):
            raise HTTPException(422, f"cursor: not a cursor this API gave out: {cursor[:40]!r}")
        before_id = int(cursor)
    rows = events.list_dead_letters(session=session, before_id=before_id, limit=limit)
    items = [DeadLetterPublic(
        id=row.id or 0, topic=row.topic.encode("utf-8", "backslashreplace").decode(),
        error=row.error, received_at=row.received_at, recorded_at=row.recorded_at,
        worker=row.worker, payload_bytes=len(row.payload),
        payload_sha256=hashlib.sha256(row.payload).hexdigest(),
        payload_preview=_PIN.sub(rb'\1"***"', row.payload[:_PREVIEW_BYTES])
        .decode("utf-8", "backslashreplace").encode("utf-8", "backslashreplace").decode())
        for row in rows]
    next_cursor = str(rows[-1].id) if len(rows) == limit and rows else None
    return DeadLetterPage(items=items, next_cursor=next_cursor)
