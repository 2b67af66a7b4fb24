"""Worker heartbeats: which hub processes decide taps, and how they were last seen."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from hub.models import WorkerBeat


def beat(*, session: Session, name: str, host: str, pid: int, seen_at: datetime,
         deciding: bool, queue_depth: int, problems: str) -> None:
    """Record this worker's state now (one row per worker name, overwritten)."""
    row = session.get(WorkerBeat, name)
    if row is None:
        row = WorkerBeat(name=name, host=host, pid=pid, seen_at=seen_at, deciding=deciding)
    row.host, row.pid, row.seen_at, row.deciding = host, pid, seen_at, deciding
    row.queue_depth, row.problems = queue_depth, problems[:500]
    session.add(row)


def all_beats(*, session: Session) -> Sequence[WorkerBeat]:
    """Every worker ever seen, by name."""
    return session.exec(select(WorkerBeat).order_by(col(WorkerBeat.name))).all()
