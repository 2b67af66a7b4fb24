"""Automation runs: what automations did, and the queue of commands waiting for an
offline appliance."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.models import AutomationRun, RunStatus


def move_queued(*, session: Session, run_id: int | None, status: RunStatus,
                detail: str | None, sent_at: datetime | None = None) -> bool:
    """Move a run out of the queue if it is still queued; whether this call moved it."""
    moved = session.execute(
        sa.update(AutomationRun)
        .where(col(AutomationRun.id) == run_id, col(AutomationRun.status) == RunStatus.QUEUED)
        .values(status=status, sent_at=sent_at, detail=detail)
        .execution_options(synchronize_session=False))
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def queued_for_device(*, session: Session, device_id: str) -> list[AutomationRun]:
    """The device's queued commands, in the order they were made."""
    return list(session.exec(select(AutomationRun).where(
        AutomationRun.device_id == device_id, AutomationRun.status == RunStatus.QUEUED)
        .order_by(col(AutomationRun.id))).all())


def queued_for_guest(*, session: Session, guest_id: str) -> list[AutomationRun]:
    """The guest's queued commands, any device."""
    return list(session.exec(select(AutomationRun).where(
        AutomationRun.guest_id == guest_id, AutomationRun.status == RunStatus.QUEUED)))


def queued_before(*, session: Session, before: datetime) -> list[AutomationRun]:
    """Every command queued before ``before``, in the order they were made."""
    return list(session.exec(select(AutomationRun).where(
        AutomationRun.status == RunStatus.QUEUED,
        col(AutomationRun.created_at) < before).order_by(col(AutomationRun.id))).all())
